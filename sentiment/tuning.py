"""The records of `python -m sentiment.tune`: which precision ran a model fastest on which CPU."""

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Record:
    """What the tune command measured for one model on one machine, and what it chose."""

    precision: str
    runtime: str  # torch or onnxruntime
    sentences_per_s: float  # the chosen precision's rate on the calibration texts
    speedup: float  # over the runner-up that passed (1.0 when it alone passed)
    agreement: float  # share of calibration texts whose label equals fp32's
    max_score_diff: float  # largest difference from fp32 in any label's probability
    texts: int  # how many calibration texts

    def why(self) -> str:
        """Say in a few words why this precision runs (the start-up line, /healthcheck)."""
        return (
            f"fastest measured by sentiment.tune ({self.runtime}), {self.sentences_per_s:.0f} texts/s"
            f" ({self.speedup:.2f}x the next), labels {100 * self.agreement:.1f}% as fp32's"
        )


def model_identity(model: str, revision: str | None) -> str:
    """Name a model: a folder's path and config, or a hub id and revision."""
    path = Path(model)
    if (path / "config.json").is_file():
        config = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:12]
        return f"{path.resolve()} config {config}"
    return f"{model}@{revision or 'main'}"


def key(model: str, revision: str | None, device: str, cpu: str, cores: int) -> str:
    """Name a model, the machine and torch: what a record holds for."""
    identity = model_identity(model, revision)
    return f"{identity} | {device} | {cpu}, {cores} cores | torch {torch.__version__}"


def read(path: Path) -> dict[str, dict]:
    """Every record in `path` by key; none where the file is missing or unreadable."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def lookup(path: Path | None, record_key: str) -> Record | None:
    """The record for `record_key`, or None (no file, no record, or one this code cannot read)."""
    if path is None:
        return None
    try:
        return Record(**read(path)[record_key])
    except (KeyError, TypeError):
        return None


def write(path: Path, record_key: str, record: Record) -> None:
    """Add or replace one record; the file is replaced whole, so a reader never sees half of it."""
    records = read(path)
    records[record_key] = asdict(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        json.dump(records, out, indent=1, sort_keys=True)
    os.replace(out.name, path)
