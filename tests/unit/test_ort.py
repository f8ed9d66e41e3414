"""ONNX Runtime as the runtime: the export, its cache and its failure paths; no Ray, no HTTP."""

import logging
import threading
from pathlib import Path

import onnx
import pytest
import torch

from sentiment import ort
from sentiment.model import SCORE_TOLERANCE, SentimentBertModel
from tests.helpers import assert_prediction

TEXTS = ["a wonderful film", "the plot was dull and the cast was poor", "ok", "great " * 700]


def load(folder: Path, cache: Path, precision: str = "fp32", **options) -> SentimentBertModel:
    """The tiny model in ONNX Runtime, its exports cached in `cache`."""
    return SentimentBertModel(
        str(folder),
        num_threads=1,
        precision=precision,
        runtime="onnxruntime",
        cache_dir=cache,
        **options,
    )


def test_onnxruntime_answers_as_torch_does(tiny_model_dir: Path, tmp_path: Path) -> None:
    onnx = load(tiny_model_dir, tmp_path)
    assert onnx.runtime_name == "onnxruntime" and onnx.runtime.startswith("onnxruntime")
    assert onnx.model is None  # the session holds the only copy of the weights
    torch_model = SentimentBertModel(str(tiny_model_dir), num_threads=1, padding_free=False)
    for ours, theirs in zip(
        onnx.predict_batch(TEXTS), torch_model.predict_batch(TEXTS), strict=True
    ):
        assert_prediction(ours)
        assert ours["label"] == theirs["label"] and ours["tokens"] == theirs["tokens"]
        for label, score in ours["scores"].items():
            assert abs(score - theirs["scores"][label]) <= SCORE_TOLERANCE["fp32"]


def test_int8_is_onnxruntimes_own_quantization(tiny_model_dir: Path, tmp_path: Path) -> None:
    int8 = load(tiny_model_dir, tmp_path, "int8")
    assert int8.precision == "int8" and int8.runtime_name == "onnxruntime"
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert any("Integer" in node.op_type or "Quant" in node.op_type for node in graph.node)
    for answer in int8.predict_batch(TEXTS):
        assert_prediction(answer)


def test_the_export_is_cached_and_a_second_load_does_not_export(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(tiny_model_dir, tmp_path)

    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(ort, "_export", no_export)
    again = load(tiny_model_dir, tmp_path, fall_back=False)
    assert again.runtime_name == "onnxruntime"
    # Another precision is another export.
    with pytest.raises(ort.ExportError, match="exported again"):
        load(tiny_model_dir, tmp_path, "int8", fall_back=False)


def test_a_corrupt_cache_is_exported_again_never_served(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    load(tiny_model_dir, tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    exported = folder / "model.onnx"
    data = bytearray(exported.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: still loads, answers wrong
    exported.write_bytes(bytes(data))
    assert ort.cached(folder) is None
    reloaded = load(tiny_model_dir, tmp_path, fall_back=False)
    assert ort.cached(folder) == exported
    reference = SentimentBertModel(str(tiny_model_dir), num_threads=1, padding_free=False)
    assert reloaded.predict(TEXTS[1])["scores"] == pytest.approx(
        reference.predict(TEXTS[1])["scores"], abs=SCORE_TOLERANCE["fp32"]
    )


def test_a_failed_export_says_one_line_and_serves_with_torch(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("unsupported operator\nmore detail")

    monkeypatch.setattr(ort, "_export", broken)
    with caplog.at_level(logging.WARNING, logger="sentiment.model"):
        model = load(tiny_model_dir, tmp_path, "int8")
    assert model.runtime_name == "torch" and model.runtime.startswith("torch")
    assert model.precision == "int8" and model.model is not None
    (line,) = [r.getMessage() for r in caplog.records]
    assert "ONNX Runtime not used" in line and "unsupported operator" in line and "\n" not in line
    assert_prediction(model.predict("still answers"))
    with pytest.raises(ort.ExportError, match="export failed: RuntimeError: unsupported operator"):
        load(tiny_model_dir, tmp_path, fall_back=False)


def test_an_export_that_answers_differently_from_torch_is_not_served(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        ort.Session, "logits", lambda self, ids, mask: torch.full((ids.shape[0], 2), 9.0)
    )
    model = load(tiny_model_dir, tmp_path)
    assert model.runtime_name == "torch"


def test_replicas_starting_together_export_once(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports: list[int] = []
    export = ort._export

    def counted(*args: object) -> None:
        exports.append(1)
        export(*args)

    monkeypatch.setattr(ort, "_export", counted)
    loaded: list[SentimentBertModel] = []
    threads = [
        threading.Thread(target=lambda: loaded.append(load(tiny_model_dir, tmp_path)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(loaded) == 3 and all(m.runtime_name == "onnxruntime" for m in loaded)
    assert len(exports) == 1


def test_onnxruntime_refuses_precisions_it_does_not_run(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="onnxruntime runs fp32 or int8"):
        load(tiny_model_dir, tmp_path, "bf16")


def test_the_export_command_prepares_the_cache(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("SENTIMENT_ONNX_CACHE_DIR", str(tmp_path))
    assert ort.main(["--model", str(tiny_model_dir), "--precision", "int8"]) == 0
    assert "ready: " in capsys.readouterr().out
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert ort.cached(folder) is not None
