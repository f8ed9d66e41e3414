"""`auto` precision from what `python -m sentiment.tune` measured: no Ray, no HTTP."""

import json
from pathlib import Path

import pytest

from sentiment import model as model_module
from sentiment import tune, tuning
from sentiment.model import SentimentBertModel, cpu_name


def record_key(folder: Path, cores: int = 1) -> str:
    """The key a 1-thread CPU model in `folder` is recorded under on this machine."""
    return tuning.key(str(folder), None, "cpu", cpu_name(), cores)


def record(precision: str) -> tuning.Record:
    """A record that chose `precision`."""
    return tuning.Record(precision, "torch", 321.0, 1.4, 1.0, 0.004, 1024)


def test_auto_takes_the_recorded_precision(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "tune.json"
    tuning.write(path, record_key(tiny_model_dir), record("int8"))
    model = SentimentBertModel(str(tiny_model_dir), num_threads=1, precision="auto", tune_file=path)
    assert model.precision == "int8"
    assert "sentiment.tune" in model.precision_reason and "321 texts/s" in model.precision_reason
    # Asked for by name, a precision wins over the record.
    asked = SentimentBertModel(str(tiny_model_dir), num_threads=1, precision="fp32", tune_file=path)
    assert (asked.precision, asked.precision_reason) == ("fp32", "asked for")


def test_without_a_record_auto_keeps_its_rule(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_module, "cpu_flags", lambda: {"avx2"})
    path = tmp_path / "tune.json"
    # Records for another thread count and for another model do not apply.
    tuning.write(path, record_key(tiny_model_dir, cores=64), record("int8"))
    tuning.write(path, record_key(tmp_path), record("bf16"))
    model = SentimentBertModel(str(tiny_model_dir), num_threads=1, precision="auto", tune_file=path)
    assert model.precision == "fp32" and "no sentiment.tune record" in model.precision_reason


def test_a_model_saved_again_is_measured_again(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sentiment.testing import build_model

    folder = build_model(tmp_path / "model", "tiny")
    path = tmp_path / "tune.json"
    tuning.write(path, record_key(folder), record("int8"))
    build_model(folder, "tiny", labels={0: "NEG", 1: "NEU", 2: "POS"})  # a new config.json
    assert tuning.lookup(path, record_key(folder)) is None


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"k": {"precision": "int8"}}'])
def test_a_damaged_record_file_is_no_record(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tune.json"
    path.write_text(content)
    assert tuning.lookup(path, "k") is None


def test_tune_records_the_fastest_precision_that_agrees(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    path = tmp_path / "tune.json"
    monkeypatch.setenv("SENTIMENT_TUNE_FILE", str(path))
    monkeypatch.setenv("SENTIMENT_NUM_THREADS", "1")
    monkeypatch.setenv("SENTIMENT_ONNX_CACHE_DIR", str(tmp_path / "onnx"))
    texts = tmp_path / "texts.txt"
    texts.write_text("a good film\n\nbad plot\nthe cast was wonderful\n" * 8)
    assert tune.main(["--model", str(tiny_model_dir), "--texts", str(texts)]) == 0
    out = capsys.readouterr().out
    for candidate in ("torch fp32", "torch bf16", "torch int8", "onnxruntime int8"):
        assert candidate in out
    (saved,) = json.loads(path.read_text()).values()
    assert saved["agreement"] >= tune.MIN_AGREEMENT and saved["texts"] == 24
    assert f"recorded in {path}: {saved['runtime']} {saved['precision']}" in out
    # Asked again only if missing: nothing is measured.
    assert tune.main(["--model", str(tiny_model_dir), "--texts", str(texts), "--if-missing"]) == 0
    assert "recorded here already" in capsys.readouterr().out
    model = SentimentBertModel(
        str(tiny_model_dir),
        num_threads=1,
        precision="auto",
        runtime="auto",
        tune_file=path,
        cache_dir=tmp_path / "onnx",
    )
    assert (model.precision, model.runtime_name) == (saved["precision"], saved["runtime"])


def test_choose_skips_a_faster_precision_that_disagrees() -> None:
    rows = [
        ("torch", "fp32", 50.0, 1.0, 0.0),
        ("torch", "bf16", 100.0, 0.9995, 0.01),
        ("onnxruntime", "int8", 200.0, 0.99, 0.2),
    ]
    chosen = tune.choose(rows, 2000)
    assert (chosen.runtime, chosen.precision, chosen.speedup) == ("torch", "bf16", 2.0)


def test_tune_says_a_bad_texts_file_in_one_line(tmp_path: Path, capsys) -> None:
    assert tune.main(["--texts", str(tmp_path / "missing.txt")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
