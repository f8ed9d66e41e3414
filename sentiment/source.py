"""Where a model comes from (a folder saved with save_pretrained, or a model hub id) and whether it
can be had, said in one line within seconds: a missing folder before transformers and torch load
(the CLI, the builders on every deploy, `make up`)."""

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache

from sentiment.settings import DEFAULT_MODEL, StartupError

# How long to try reaching the model hub before saying it cannot be reached.
HUB_TIMEOUT_S = 3.0


class ModelLoadError(StartupError):
    """The model could not be had; the message says what to set."""


# What every "cannot load model" line ends with.
SET_MODEL = (
    "set SENTIMENT_MODEL to a folder saved with save_pretrained"
    " (python -m sentiment.testing tiny DIR makes an untrained one)"
)


def looks_like_path(model: str) -> bool:
    """Say whether `model` names a folder rather than a hub id."""
    return model.startswith((".", "/")) or Path(model).exists()


def hub_offline() -> bool:
    """Say whether HF_HUB_OFFLINE forbids the model hub."""
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def load_failure(model: str, error: Exception) -> ModelLoadError:
    """Turn a from_pretrained failure into one line that says what to set."""
    path = Path(model)
    is_path = looks_like_path(model)
    if is_path and not path.is_dir():
        reason = f"no folder at {model}"
    elif is_path and not (path / "config.json").is_file():
        reason = f"{model} has no config.json, so it is not a model saved with save_pretrained"
    else:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    hint = SET_MODEL
    if not hub_offline() and not is_path:
        hint += ", or make the model hub reachable"
    return ModelLoadError(f"cannot load model {model!r}: {reason}; {hint}")


def check_folder(model: str) -> None:
    """Raise ModelLoadError if `model` is a folder with files this user cannot read."""
    path = Path(model)
    if not path.is_dir():
        return
    unreadable = sorted(p.name for p in path.iterdir() if p.is_file() and not os.access(p, os.R_OK))
    if unreadable:
        raise ModelLoadError(
            f"cannot load model {model!r}: cannot read {', '.join(unreadable)} (file permissions);"
            f" make them readable by uid {os.getuid()}, e.g. chmod a+r {model}/*"
        )


def check_hub(model: str, revision: str | None = None) -> None:
    """Raise ModelLoadError at once if `model` must come from a model hub that cannot be reached
    (huggingface_hub would retry for about 25 s before saying so)."""
    if hub_offline() or looks_like_path(model):
        return
    if isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str):
        return  # in this machine's cache: from_pretrained will not need the hub
    endpoint = urlparse(hub_constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=HUB_TIMEOUT_S).close()
    except OSError as error:
        raise ModelLoadError(
            f"cannot load model {model!r}: the model hub at {hub_constants.ENDPOINT} cannot be"
            f" reached ({error}) and the model is not in this machine's cache; {SET_MODEL}"
        ) from error


def check_source(model: str, revision: str | None = None) -> None:
    """Raise ModelLoadError for what can be said without transformers (it imports torch): no
    folder, not a saved model, unreadable files, or a model hub that cannot be reached."""
    check_folder(model)
    if looks_like_path(model) and not (Path(model) / "config.json").is_file():
        raise load_failure(model, FileNotFoundError(model))
    check_hub(model, revision)


def check_available(model: str = DEFAULT_MODEL, revision: str | None = None) -> None:
    """Raise ModelLoadError unless the model's config can be had (cheap: no weights)."""
    check_source(model, revision)
    # Imported here: seconds (it loads torch), and only a model that may be there needs it.
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model, revision=revision)
    except Exception as error:
        raise load_failure(model, error) from error
