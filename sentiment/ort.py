"""ONNX Runtime as the model's runtime: the model exported once with torch.onnx, int8 by ONNX
Runtime's own dynamic quantization, cached on disk and checked before it is served.

The export is keyed by the model (a folder's path and config, or a hub id and revision), the
precision and the versions of torch and ONNX Runtime, so a model saved again or a new runtime gets a
new export; several replicas of a node starting together export once (a file lock). A cached file
whose checksum does not match is exported again, never served. `python -m sentiment.ort` prepares
the export ahead (a Docker build step, a RayService's init container), so replicas start fast.
"""

import argparse
import contextlib
import fcntl
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from sentiment.settings import CACHE_HOME

PRECISIONS = ("fp32", "int8")
OPSET = 17
# An fp32 export must answer a probe as the model it came from does, within this (logits).
PROBE_TOLERANCE = 1e-3
DEFAULT_CACHE = CACHE_HOME / "onnx"


class ExportError(RuntimeError):
    """The model could not be exported or loaded in ONNX Runtime; the message says why."""


def _runtime():
    """Import ONNX Runtime, or say in one line that it is missing."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ExportError("onnxruntime is not installed (pip install onnxruntime)") from error
    return onnxruntime


def folder_for(identity: str, precision: str, cache_dir: Path) -> Path:
    """Where the export of one model in one precision, with these versions, lives."""
    versions = f"torch {torch.__version__} | onnxruntime {_runtime().__version__} | opset {OPSET}"
    digest = hashlib.sha256(f"{identity} | {precision} | {versions}".encode()).hexdigest()[:20]
    return cache_dir / digest


def _checksum(path: Path) -> str:
    """The file's sha256."""
    sha = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def cached(folder: Path) -> Path | None:
    """The exported model in `folder` if it is whole (its checksum matches), else None."""
    model, checksum = folder / "model.onnx", folder / "model.onnx.sha256"
    try:
        return model if checksum.read_text().strip() == _checksum(model) else None
    except OSError:
        return None


def _export(model: PreTrainedModel, precision: str, out: Path, probe: torch.Tensor) -> None:
    """Export `model` (fp32, eager attention) to `out`, check that the export answers the `probe`
    token ids as the model does, then quantize it to int8 when asked."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ids = torch.ones((2, 8), dtype=torch.long)
    fp32 = out.with_suffix(".fp32.onnx") if precision == "int8" else out
    with torch.inference_mode():
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids)),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "logits": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    with torch.inference_mode():
        expected = model(input_ids=probe).logits.float()
    got = Session(fp32, threads=1).logits(probe, torch.ones_like(probe)).float()
    if (got - expected).abs().max().item() > PROBE_TOLERANCE:
        raise ExportError(
            f"the export answers {got.tolist()} where torch answers {expected.tolist()}"
        )
    if precision == "int8":
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
        fp32.unlink()


def prepare(
    model: PreTrainedModel, identity: str, precision: str, cache_dir: Path, probe: torch.Tensor
) -> Path:
    """Return the exported model, exporting it first unless a whole copy is cached; of several
    processes asking at once, one exports and the others wait for it."""
    folder = folder_for(identity, precision, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if found := cached(folder):
            return found
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            out = Path(scratch) / "model.onnx"
            try:
                _export(model, precision, out, probe)
            except ExportError:
                raise
            except Exception as error:  # torch.onnx and the quantizer raise many kinds
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise ExportError(f"export failed: {type(error).__name__}: {reason}") from error
            checksum = _checksum(out)
            os.replace(out, folder / "model.onnx")
        (folder / "model.onnx.sha256").write_text(checksum + "\n")
    return folder / "model.onnx"


class Session:
    """An exported model in an ONNX Runtime session: padded token ids in, logits out."""

    def __init__(self, path: Path, threads: int) -> None:
        runtime = _runtime()
        options = runtime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = runtime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = runtime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # a file ONNX Runtime cannot read
            raise ExportError(f"ONNX Runtime cannot load {path}: {error}") from error
        self.version = runtime.__version__

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run one padded batch."""
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return torch.from_numpy(np.asarray(self.session.run(None, feeds)[0]))


def main(argv: list[str] | None = None) -> int:
    """Export the settings' model for ONNX Runtime ahead of the replicas (exit 2 on failure)."""
    from sentiment.model import SentimentBertModel
    from sentiment.settings import Settings, StartupError

    parser = argparse.ArgumentParser(prog="python -m sentiment.ort", description=__doc__)
    parser.add_argument("--model", help="folder or hub id (default: SENTIMENT_MODEL)")
    parser.add_argument("--precision", choices=PRECISIONS, default="int8")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        model = SentimentBertModel(
            args.model or settings.model,
            revision=None if args.model else settings.model_revision,
            precision=args.precision,
            runtime="onnxruntime",
            cache_dir=settings.onnx_cache_dir,
            fall_back=False,
        )
    except (StartupError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"ready: {model.describe()}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
