"""The settings object: defaults, env vars, builder args, refusals."""

import pytest
from pydantic import ValidationError

from sentiment.settings import DEFAULT_MODEL, Settings


def test_settings_defaults_env_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTIMENT_MODEL", raising=False)
    assert Settings().model == DEFAULT_MODEL
    monkeypatch.setenv("SENTIMENT_MODEL", "/models/x")
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_SIZE", "16")
    settings = Settings()
    assert (settings.model, settings.max_batch_size) == ("/models/x", 16)
    # Builder args (serve_config.yaml; Serve validates them with model_validate) win over the
    # environment, which still gives the fields they leave out.
    built = Settings.model_validate({"max_batch_size": 4})
    assert (built.max_batch_size, built.model) == (4, "/models/x")


def test_settings_refuse_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_SIZE", "lots")
    with pytest.raises(ValidationError, match="max_batch_size"):
        Settings()
    with pytest.raises(ValidationError, match="no_such_setting"):
        Settings.model_validate({"no_such_setting": 1})
    with pytest.raises(ValidationError, match="log_format"):
        Settings.model_validate({"log_format": "xml"})
    with pytest.raises(ValidationError, match="request_timeout_s"):
        Settings.model_validate({"request_timeout_s": 0})
