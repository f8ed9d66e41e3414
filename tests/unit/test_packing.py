"""Padding-free calls answer as padded ones do, for every family they know: no Ray, no HTTP."""

import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    PreTrainedModel,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from sentiment import packing
from sentiment.model import SCORE_TOLERANCE, SentimentBertModel
from sentiment.testing import WORDS
from tests.helpers import assert_prediction

VOCAB = 120
SHAPE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
FAMILIES = {
    "distilbert": lambda: DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    ),
    "bert": lambda: BertForSequenceClassification(BertConfig(vocab_size=VOCAB, **SHAPE)),
    "roberta": lambda: RobertaForSequenceClassification(
        RobertaConfig(vocab_size=VOCAB, pad_token_id=1, max_position_embeddings=130, **SHAPE)
    ),
}
# Logits, not scores: a little looser than SCORE_TOLERANCE, which bounds probabilities.
LOGIT_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "int8": 5e-2}


def build(family: str, precision: str) -> PreTrainedModel:
    """A tiny untrained classifier of `family` in `precision`, ready for packed calls."""
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    if precision == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    assert packing.prepare(model)
    return model


def rows(count: int, seed: int = 0) -> list[list[int]]:
    """Token rows of 1 to 100 ids, each starting with a [CLS]-like id (pads never appear)."""
    rng = random.Random(seed)
    return [
        [0] + [rng.randint(3, VOCAB - 1) for _ in range(rng.randint(1, 100))] for _ in range(count)
    ]


def padded_logits(model: PreTrainedModel, batch: list[list[int]], pad_id: int) -> torch.Tensor:
    """The model's own forward on a padded batch with its attention mask."""
    width = max(len(row) for row in batch)
    ids = torch.full((len(batch), width), pad_id)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for n, row in enumerate(batch):
        ids[n, : len(row)] = torch.tensor(row)
        mask[n, : len(row)] = 1
    return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_packed_logits_equal_padded_ones(family: str, precision: str) -> None:
    model = build(family, precision)
    batch = rows(12, seed=len(family))
    pad_id = model.config.pad_token_id or 0
    with torch.inference_mode():
        packed = packing.packed_logits(model, batch).float()
        padded = padded_logits(model, batch, pad_id).float()
        alone = torch.cat([packing.packed_logits(model, [row]).float() for row in batch])
    assert packed.shape == (len(batch), model.config.num_labels)
    tolerance = LOGIT_TOLERANCE[precision]
    assert (packed - padded).abs().max().item() <= tolerance, (family, precision)
    # A text answers the same whatever it is packed with (int8 scales activations per call).
    assert (packed - alone).abs().max().item() <= tolerance, (family, precision)
    assert torch.equal(packed.argmax(1), padded.argmax(1)) or precision != "fp32"


def test_packed_attention_keeps_texts_apart() -> None:
    # Changing one text must not move another's answer: attention stays inside each text.
    model = build("distilbert", "fp32")
    batch = rows(4, seed=3)
    changed = [batch[0], [0] + [5] * 90, batch[2], batch[3]]
    with torch.inference_mode():
        before = packing.packed_logits(model, batch)
        after = packing.packed_logits(model, changed)
    assert torch.allclose(before[[0, 2, 3]], after[[0, 2, 3]], atol=1e-5)
    assert not torch.allclose(before[1], after[1], atol=1e-5)


def test_other_architectures_are_not_packed() -> None:
    electra = ElectraForSequenceClassification(ElectraConfig(vocab_size=VOCAB, **SHAPE))
    assert packing.family(electra) is None
    assert not packing.prepare(electra)


def sentences(count: int, seed: int = 0) -> list[str]:
    """Texts of 1 to 60 words from the test vocabulary, some past the tiny model's window."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 60))) for _ in range(count)]


def test_the_model_answers_padding_free_as_it_does_padded(tiny_model_dir: Path) -> None:
    # fp32 here: the tiny model's wide weights magnify bf16 and int8 rounding past their
    # tolerances in either path; test_packed_logits_equal_padded_ones covers those precisions.
    precision = "fp32"
    free = SentimentBertModel(str(tiny_model_dir), num_threads=1, precision=precision)
    padded = SentimentBertModel(
        str(tiny_model_dir), num_threads=1, precision=precision, padding_free=False
    )
    assert free.padding_free and not padded.padding_free
    assert "padding-free" in free.describe()
    texts = [*sentences(40, seed=2), "word " * 1500]  # one text in several windows
    for long_text in ("head", "chunks"):
        ours = free.predict_batch(texts, long_text)
        theirs = padded.predict_batch(texts, long_text)
        for text, a, b in zip(texts, ours, theirs, strict=True):
            assert_prediction(a, text)
            assert a["tokens"] == b["tokens"] and a["truncated"] == b["truncated"]
            for label, score in a["scores"].items():
                assert abs(score - b["scores"][label]) <= SCORE_TOLERANCE[precision], (text, label)


def test_packs_keep_order_and_the_token_budget(model_dir_budget: SentimentBertModel) -> None:
    model = model_dir_budget
    rng = random.Random(1)
    ids = [[0] * rng.randint(3, 120) for _ in range(300)] + [[0] * 400]
    packs = model._packs(ids)
    assert [i for pack in packs for i in pack] == list(range(len(ids)))
    for pack in packs:
        tokens = sum(len(ids[i]) for i in pack)
        assert len(pack) == 1 or tokens <= model.token_budget
        assert len(pack) <= model.chunk_size
    assert [len(ids[i]) for i in packs[-1]] == [400]


@pytest.fixture
def model_dir_budget(tiny_model_dir: Path) -> SentimentBertModel:
    """The tiny model with a small token budget, so packs close on it."""
    model = SentimentBertModel(str(tiny_model_dir), num_threads=1, chunk_size=64)
    model.token_budget = 300
    return model


def test_an_architecture_packing_does_not_know_runs_padded(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "electra"
    shutil.copytree(tiny_model_dir, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / "config.json").unlink()
    vocab = len((folder / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    labels = {0: "NEGATIVE", 1: "POSITIVE"}
    config = ElectraConfig(vocab_size=vocab, id2label=labels, **SHAPE)
    ElectraForSequenceClassification(config).save_pretrained(folder)
    model = SentimentBertModel(str(folder), num_threads=1)
    assert not model.padding_free
    assert "padded" in model.describe()
    for text, answer in zip(
        ["good film", "bad"], model.predict_batch(["good film", "bad"]), strict=True
    ):
        assert_prediction(answer, text)
