"""The pieces of several models, long texts and API keys that need no server: the settings that
name them, the key check, and the model's windows and score functions."""

import math
from pathlib import Path

import pytest

from sentiment.errors import Unauthorized
from sentiment.http import check_api_key
from sentiment.model import SentimentBertModel
from sentiment.settings import Settings, StartupError
from sentiment.testing import build_model


def test_models_and_keys_come_from_env_vars(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SENTIMENT_MODELS", " emotion=/models/emotion , stars = org/stars-model ")
    monkeypatch.setenv("SENTIMENT_API_KEYS", "key-one,key-two")
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated monthly\nkey-three\n\n")
    monkeypatch.setenv("SENTIMENT_API_KEYS_FILE", str(key_file))
    monkeypatch.setenv("SENTIMENT_CORS_ORIGINS", "https://a.example,https://b.example")
    settings = Settings.from_env()
    assert settings.models == {"emotion": "/models/emotion", "stars": "org/stars-model"}
    assert settings.keys() == ("key-one", "key-two", "key-three")
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert "key-one" not in repr(settings)  # keys stay out of logs and reprs
    assert Settings.model_validate(settings.model_dump()).models == settings.models


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("emotion", "each model must be id=folder-or-hub-id, not 'emotion'"),
        ("default=/models/x", "'default' names SENTIMENT_MODEL"),
        ("a b=/models/x", "model id 'a b' must be letters"),
        ("x=", "model 'x' has no folder or hub id"),
    ],
)
def test_a_bad_model_list_is_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("SENTIMENT_MODELS", value)
    with pytest.raises(StartupError, match="SENTIMENT_MODELS") as error:
        Settings.from_env()
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_an_unreadable_key_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"cannot read SENTIMENT_API_KEYS_FILE .*missing"):
        Settings(api_keys_file=tmp_path / "missing").keys()


def test_the_key_check() -> None:
    check_api_key(None, ())  # no keys set: open
    check_api_key("Bearer two", ("one", "two"))
    check_api_key("bearer  one ", ("one", "two"))
    for header in (None, "", "Bearer", "Bearer ", "Basic one", "one"):
        with pytest.raises(Unauthorized) as missing:
            check_api_key(header, ("one",))
        assert missing.value.headers == {"WWW-Authenticate": 'Bearer realm="sentiment-serve"'}
    with pytest.raises(Unauthorized) as wrong:
        check_api_key("Bearer on", ("one",))
    assert 'error="invalid_token"' in wrong.value.headers["WWW-Authenticate"]
    assert "on" not in wrong.value.detail.split()  # the key is not echoed


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> SentimentBertModel:
    """The tiny model (a 512-token window: 510 text tokens between [CLS] and [SEP])."""
    return SentimentBertModel(str(tiny_model_dir), num_threads=1)


def test_windows_by_strategy(model: SentimentBertModel) -> None:
    ids = list(range(1_200))
    assert model.window == 510
    assert model.windows(ids[:510], "chunks") == [ids[:510]]  # fits: one row, whatever asked
    assert model.windows(ids, "head") == [ids[:510]]
    (head_tail,) = model.windows(ids, "head+tail")
    assert head_tail == ids[:127] + ids[-383:]
    chunks = model.windows(ids, "chunks")
    assert [chunk[0] for chunk in chunks] == [0, 383, 766]  # a quarter of each window overlaps
    assert chunks[-1][-1] == ids[-1] and len(chunks[-1]) == 434
    with pytest.raises(ValueError, match="long_text must be one of"):
        model.windows(ids, "middle")


def test_score_functions(model: SentimentBertModel) -> None:
    logits = [2.0, -1.0]
    softmax = model.scores(logits)
    assert math.isclose(sum(softmax), 1) and softmax[0] > softmax[1]
    assert model.scores(logits, "sigmoid") == [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1))]
    assert model.scores(logits, "none") == logits


def test_a_three_label_model_answers_three_scores(tmp_path: Path) -> None:
    labels = {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}
    three = SentimentBertModel(str(build_model(tmp_path, labels=labels)), num_threads=1)
    answer = three.predict("i like you")
    assert list(answer["scores"]) == ["NEGATIVE", "NEUTRAL", "POSITIVE"]
    assert math.isclose(sum(answer["scores"].values()), 1, rel_tol=1e-6)
    assert (answer["tokens"], answer["truncated"], answer["model"]) == (3, False, "default")
