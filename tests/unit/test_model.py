"""SentimentBertModel against a tiny DistilBERT saved and loaded like the real one: no Ray, no HTTP."""

import random
import threading
import time
from pathlib import Path

import pytest
from transformers import pipeline

from sentiment import model as model_module
from sentiment.model import SCORE_TOLERANCE, SentimentBertModel, resolve_precision
from sentiment.source import ModelLoadError, check_available
from sentiment.testing import WORDS
from tests.helpers import assert_prediction, assert_same_prediction

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> SentimentBertModel:
    """Load the tiny model once for this module."""
    return SentimentBertModel(str(tiny_model_dir), num_threads=1)


@pytest.fixture(scope="module")
def padded(tiny_model_dir: Path) -> SentimentBertModel:
    """The tiny model with padded, length-grouped calls (any architecture packing does not know)."""
    return SentimentBertModel(str(tiny_model_dir), num_threads=1, padding_free=False)


def sentences(count: int, seed: int = 0, longest: int = 40) -> list[str]:
    """Make `count` distinct texts of varied length from the test vocabulary."""
    rng = random.Random(seed)
    texts = {" ".join(rng.choices(WORDS, k=rng.randint(1, longest))) for _ in range(count * 2)}
    return sorted(texts)[:count]


def test_predict_has_the_contract_shape(model: SentimentBertModel) -> None:
    answer = model.predict("i like you")
    assert_prediction(answer, "i like you")
    assert model.labels == ["NEGATIVE", "POSITIVE"]


def test_batch_keeps_input_order_and_equals_single_calls(model: SentimentBertModel) -> None:
    texts = sentences(50)
    batch = model.predict_batch(texts)
    assert [a["input_text"] for a in batch] == texts
    for text, answer in zip(texts, batch, strict=True):
        assert_same_prediction(answer, model.predict(text))
    # The tiny model must not answer one label for everything, or label checks prove nothing.
    assert {a["label"] for a in batch} == {"NEGATIVE", "POSITIVE"}


def test_batch_larger_than_a_chunk(tiny_model_dir: Path, model: SentimentBertModel) -> None:
    chunked = SentimentBertModel(str(tiny_model_dir), num_threads=1, chunk_size=4)
    texts = sentences(23, seed=1)
    for served, expected in zip(
        chunked.predict_batch(texts), model.predict_batch(texts), strict=True
    ):
        assert_same_prediction(served, expected)


def test_duplicates_and_empty_batch(model: SentimentBertModel) -> None:
    assert model.predict_batch([]) == []
    twice = model.predict_batch(["same text", "other text", "same text"])
    assert twice[0] == twice[2]


def test_matches_the_transformers_pipeline(tiny_model_dir: Path, model: SentimentBertModel) -> None:
    classifier = pipeline("text-classification", model=str(tiny_model_dir), top_k=None)
    texts = sentences(10, seed=2)
    for text, ours in zip(texts, model.predict_batch(texts), strict=True):
        theirs = {row["label"]: row["score"] for row in classifier([text])[0]}
        assert ours["label"] == max(theirs, key=theirs.get)
        for label, score in theirs.items():
            assert abs(ours["scores"][label] - score) < 1e-4


def test_long_text_is_truncated_to_the_model_limit(model: SentimentBertModel) -> None:
    rng = random.Random(3)
    words = rng.choices([w for w in WORDS if w.isalpha()], k=600)
    long_text = " ".join(words)
    assert model.max_length == 512
    answer = model.predict(long_text)
    assert_prediction(answer, long_text)
    # Each test-vocabulary word is one token: [CLS] + 510 words + [SEP] is what the model saw.
    assert_same_prediction(
        {**answer, "input_text": "prefix"},
        {**model.predict(" ".join(words[:510])), "input_text": "prefix"},
    )


def test_the_batch_report_counts_tokens_and_truncations(model: SentimentBertModel) -> None:
    exact = " ".join(["good"] * 510)  # [CLS] + 510 + [SEP]: fills the window, loses nothing
    texts = ["good movie", " ".join(["bad"] * 600), exact]
    report = model.predict_batch_report(texts, ["head"] * len(texts))
    assert report.predictions == model.predict_batch(texts)
    assert report.input_tokens == [4, 512, 512]
    assert report.truncated == 1
    assert model.predict_batch_report([], []).truncated == 0


def test_unicode_and_control_characters_are_classified(model: SentimentBertModel) -> None:
    texts = ["\x00\x01 nul", "émoji 😀 ok", "中文 text", "\u200b", "tab\tand\nnewline"]
    for text, answer in zip(texts, model.predict_batch(texts), strict=True):
        assert_prediction(answer, text)


def test_missing_folder_is_one_clear_error() -> None:
    for load in (SentimentBertModel, check_available):
        with pytest.raises(ModelLoadError, match=r"no folder at /no/such/model.*SENTIMENT_MODEL"):
            load("/no/such/model")


def test_folder_without_a_model_is_one_clear_error(tmp_path: Path) -> None:
    for load in (SentimentBertModel, check_available):
        with pytest.raises(ModelLoadError, match=r"no config\.json.*SENTIMENT_MODEL"):
            load(str(tmp_path))


def test_unreachable_hub_model_fails_fast_when_offline() -> None:
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="SENTIMENT_MODEL") as caught:
        SentimentBertModel("distilbert-base-uncased-finetuned-sst-2-english")
    assert time.monotonic() - start < 10
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelLoadError):
        check_available("no-such-org/no-such-model")


def test_check_available_accepts_a_saved_model(tiny_model_dir: Path) -> None:
    check_available(str(tiny_model_dir))


def test_saved_models_are_readable_by_every_user(tiny_model_dir: Path) -> None:
    for path in tiny_model_dir.iterdir():
        assert path.stat().st_mode & 0o444 == 0o444, path


def test_chunks_group_similar_lengths_and_cover_every_text(padded: SentimentBertModel) -> None:
    model = padded
    rng = random.Random(5)
    ids = [[0] * rng.randint(3, 120) for _ in range(200)]
    chunks = model._chunks(ids)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(200))
    for chunk in chunks:
        assert len(chunk) <= model.chunk_size
        widths = [len(ids[i]) for i in chunk]
        assert widths == sorted(widths)
        # Padding stays under the cap, except in the few-text chunks the cap may not cut.
        padded = len(widths) * max(widths)
        assert len(chunk) <= 4 or padded - sum(widths) <= 0.2 * padded + max(widths)
    # Far fewer padded tokens than one chunk of everything.
    one_chunk_waste = sum(
        len(chunk) * max(len(ids[i]) for i in chunk) for chunk in [list(range(200))]
    )
    chunked_waste = sum(len(chunk) * max(len(ids[i]) for i in chunk) for chunk in chunks)
    assert chunked_waste < 0.7 * one_chunk_waste


def test_forward_passes_pad_to_a_few_widths_only(padded: SentimentBertModel) -> None:
    model = padded
    widths: list[int] = []
    hook = model.model.register_forward_pre_hook(
        lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        model.predict_batch(sentences(60, seed=3, longest=60))
        model.predict("short")
        model.predict("word " * 2000)  # cut to the model's window
    finally:
        hook.remove()
    pad = model_module.PAD_MULTIPLE
    assert widths and all(w % pad == 0 or w == model.max_length for w in widths), widths
    assert max(widths) == model.max_length


def test_int8_mode_quantizes_and_mostly_agrees(
    tiny_model_dir: Path, model: SentimentBertModel
) -> None:
    int8 = SentimentBertModel(str(tiny_model_dir), num_threads=1, precision="int8")
    linears = [type(m) for m in int8.model.modules() if type(m).__name__ == "Linear"]
    assert linears and all("quantized.dynamic" in kind.__module__ for kind in linears), linears
    texts = sentences(60, seed=9)
    fp32, quantized = model.predict_batch(texts), int8.predict_batch(texts)
    for answer in quantized:
        assert_prediction(answer)
    agree = sum(a["label"] == b["label"] for a, b in zip(fp32, quantized, strict=True))
    assert agree >= 0.8 * len(texts)


def test_auto_precision_follows_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "cpu_flags", lambda: {"avx2", "avx512f", "fma"})
    assert resolve_precision("auto", "cpu")[0] == "fp32"
    for native in ("amx_bf16", "avx512_bf16"):
        monkeypatch.setattr(model_module, "cpu_flags", lambda native=native: {"avx2", native})
        precision, why = resolve_precision("auto", "cpu")
        assert precision == "bf16" and native in why
    assert resolve_precision("int8", "cpu") == ("int8", "asked for")


def test_cpu_flags_are_read_from_this_machine() -> None:
    # Linux CI: the flags line exists; every x86-64 CPU has sse2, every arm64 one fp/asimd.
    flags = model_module.cpu_flags()
    assert {"sse2"} <= flags or {"fp", "asimd"} <= flags, sorted(flags)[:20]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_loads_in_its_dtype_and_batches_within_its_tolerance(
    tiny_model_dir: Path, precision: str
) -> None:
    loaded = SentimentBertModel(str(tiny_model_dir), num_threads=1, precision=precision)
    assert loaded.precision == precision
    assert {p.dtype for p in loaded.model.parameters()} == {model_module.DTYPES[precision]}
    texts = sentences(40, seed=11)
    tolerance = SCORE_TOLERANCE[precision]
    for text, answer in zip(texts, loaded.predict_batch(texts), strict=True):
        alone = loaded.predict(text)
        assert_prediction(answer, text)
        for label, score in alone["scores"].items():
            assert abs(answer["scores"][label] - score) <= tolerance, (precision, text)


def test_a_model_saved_in_bf16_loads_in_the_precision_asked_for(tmp_path: Path) -> None:
    from sentiment.testing import build_model

    folder = build_model(tmp_path / "bf16", "tiny")
    saved = SentimentBertModel(str(folder), num_threads=1, precision="bf16")
    saved.model.save_pretrained(folder)
    fp32 = SentimentBertModel(str(folder), num_threads=1, precision="fp32")
    assert {p.dtype for p in fp32.model.parameters()} == {model_module.DTYPES["fp32"]}


def test_unknown_precision_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="precision must be auto or one of"):
        SentimentBertModel(str(tiny_model_dir), precision="fp8")


def test_the_model_threads_are_set_per_calling_thread(tiny_model_dir: Path) -> None:
    # What lets two batcher lanes run calls side by side on a share of the cores each.
    model = SentimentBertModel(str(tiny_model_dir), num_threads=2)
    assert model.threads() == model.num_threads == 2
    seen: list[int] = []

    def lane() -> None:
        model.use_threads(1)
        model.predict("one core")
        seen.append(model.threads())

    thread = threading.Thread(target=lane)
    thread.start()
    thread.join(30)
    assert seen == [1]
    assert model.threads() == model.num_threads
