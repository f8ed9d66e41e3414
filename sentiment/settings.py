"""Every setting of sentiment-serve, in one place: typed, each also the env var SENTIMENT_<FIELD>
(pydantic-settings)."""

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "distilbert-base-uncased-finetuned-sst-2-english"
# The id a request uses for SENTIMENT_MODEL (or gets when it names no model).
DEFAULT_MODEL_ID = "default"
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

ENV_PREFIX = "SENTIMENT_"
# The user_config key, beside the tunable settings, that `python -m sentiment_ops drain` sets
# (see the apps' reconfigure).
DRAINING = "draining"
# Ray Serve's fast-path flags, for the environment of `ray start` (see the file's own comments).
RAY_ENV_FILE = Path(__file__).resolve().parents[1] / "ray.env"
# What this machine keeps between starts: the tune record, ONNX Runtime exports.
CACHE_HOME = Path.home() / ".cache" / "sentiment-serve"


def ray_env(path: Path = RAY_ENV_FILE) -> dict[str, str]:
    """Read ray.env's KEY=VALUE lines (no quoting, # comments), as `set -a; . ./ray.env` would."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def available_cores() -> int:
    """Count the cores this process may run on (not the machine's, under a CPU limit)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class StartupError(RuntimeError):
    """Something to fix before anything can start; the message is one line that says what."""


# A setting a running replica can change without reloading its model (its deployment's
# user_config; see sentiment.replica's reconfigure).
TUNABLE = {"tunable": True}


class Settings(BaseSettings):
    """What the model and the apps need; each field is also the env var SENTIMENT_<FIELD>."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, protected_namespaces=()
    )

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Model hub id or local folder saved with save_pretrained.",
    )
    model_revision: str | None = Field(
        default=None,
        description="Hub revision (branch, tag or commit) to pin; ignored for folders.",
    )
    device: str = Field(
        default="cpu",
        description="Torch device: cpu, or cuda where a GPU is present.",
    )
    # auto: what `python -m sentiment.tune` measured fastest here, checked against fp32; without
    # its record, bf16 where the hardware does it natively (`python -m bench.precision` compares).
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        default="auto",
        description="Weights and math: auto (bf16 on hardware with native bf16, else fp32), fp32,"
        " bf16, fp16, or int8 (dynamic int8 linear layers, CPU only).",
    )
    tune_file: Path = Field(
        default=CACHE_HOME / "tune.json",
        description="Where `python -m sentiment.tune` records the fastest precision per model and"
        " CPU, and where precision auto reads it.",
    )
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        default="auto",
        description="What runs the model: auto (what `python -m sentiment.tune` measured fastest"
        " here, else torch), torch, or onnxruntime (exported once, cached in"
        " SENTIMENT_ONNX_CACHE_DIR; fp32 or int8).",
    )
    onnx_cache_dir: Path = Field(
        default=CACHE_HOME / "onnx",
        description="Where ONNX Runtime exports are cached (`python -m sentiment.ort` prepares one).",
    )
    padding_free: bool = Field(
        default=True,
        description="Run DistilBERT, BERT and RoBERTa models without padding (every text's tokens"
        " in one row, attention per text); false, or any other architecture: padded calls of"
        " texts grouped by length.",
    )
    num_threads: int = Field(
        default=0,
        ge=0,
        description="Torch threads per replica; 0 uses every core this process may run on.",
    )
    # Two: on 2 cores, two calls side by side on a core each served more than one call on both
    # (`python -m bench --concurrency 1,8,32` with 1 and 2; `python -m bench.chunking --lanes 1,2`
    # in-process); a call with nothing beside it still gets every core, so a lone text is as fast.
    max_concurrent_batches: int = Field(
        default=2,
        ge=1,
        description="Most model calls a replica runs at once, each in a thread of its own on a"
        " share of the threads (never more calls than threads).",
    )
    # 256: under load the batch endpoint fills calls this large, and a large call wastes least
    # (`python -m bench.chunking --sizes 32,128,256` compares).
    max_batch_size: int = Field(
        default=256,
        ge=1,
        le=512,
        description="Most queued texts one model call takes (split into forward passes of <= 32).",
        json_schema_extra=TUNABLE,
    )
    # After a batch answers, the next waits up to this long for that batch's callers to come back
    # (sentiment/batching.py); a lone caller never waits (`python -m bench --concurrency 1,8,32`
    # with SENTIMENT_BATCH_WAIT_TIMEOUT_S=0 and 0.02 compares). Traffic that does not come back
    # (many independent callers) pays up to this much per batch.
    batch_wait_timeout_s: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="After a batch answers, how long the next one waits for its callers to come"
        " back before it runs anyway (a lone caller never waits).",
        json_schema_extra=TUNABLE,
    )
    max_text_chars: int = Field(
        default=20_000,
        ge=2,
        description="Longest text accepted (413 above it); shorter long texts are truncated.",
        json_schema_extra=TUNABLE,
    )
    max_batch_texts: int = Field(
        default=256,
        ge=1,
        description="Most texts one POST /classify/batch may carry (413 above it).",
        json_schema_extra=TUNABLE,
    )
    # 10 s: a third of the proxy's request timeout, so what a replica admits is answered in time.
    max_queue_s: float = Field(
        default=10.0,
        gt=0,
        description="Most seconds of queued work (texts, at the replica's measured rate) a replica"
        " admits; past it a request gets 503 with Retry-After.",
        json_schema_extra=TUNABLE,
    )
    # 60 s: far past a full call of the longest texts in fp32; a call this long means a wedged
    # model or device, not a busy one.
    stuck_after_s: float = Field(
        default=60.0,
        gt=0,
        description="A model call running longer than this fails the replica's health check"
        " (Serve then replaces the replica).",
        json_schema_extra=TUNABLE,
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Replica log lines as text, or as one JSON object per line.",
    )
    # 30 s: far past any batch the caps allow, yet a stuck request does not hold a client forever.
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds before Serve's proxy gives up on a request (408) when the scripts start Serve.",
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Where Serve's proxy listens when the entry scripts start Serve.",
    )
    http_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="Port of Serve's proxy when the entry scripts start Serve.",
    )
    # An allow-list, never an id from a client: a request can only name a model listed here.
    models: Annotated[dict[str, str], NoDecode] = Field(
        default={},
        description="More models a request may name, as comma-separated id=folder-or-hub-id pairs"
        f" (the default model, SENTIMENT_MODEL, is always there as id {DEFAULT_MODEL_ID!r}).",
    )
    # 3: Serve's own default; each model's weights are held once per replica (`GET /models`).
    max_models_per_replica: int = Field(
        default=3,
        ge=1,
        description="Most models from SENTIMENT_MODELS one replica holds besides the default"
        " (the least recently used is unloaded).",
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated keys; when set, every classifying route needs"
        " Authorization: Bearer <key>. Empty: no key needed.",
        repr=False,
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A file of keys, one per line (# comments), added to SENTIMENT_API_KEYS.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated browser origins allowed to call the Classifier app (CORS),"
        " or * for any. Empty: no CORS headers.",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        """Read `id=source,id=source` (an env var) into a dict; a dict passes as it is."""
        if not isinstance(value, str):
            return value
        pairs = [pair.strip() for pair in value.split(",") if pair.strip()]
        if bad := [pair for pair in pairs if "=" not in pair]:
            raise ValueError(f"each model must be id=folder-or-hub-id, not {bad[0]!r}")
        return dict(tuple(part.strip() for part in pair.split("=", 1)) for pair in pairs)

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: dict[str, str]) -> dict[str, str]:
        """Model ids travel in headers and URLs: keep them plain, and keep the default's id free."""
        for model_id, source in value.items():
            if not MODEL_ID.fullmatch(model_id):
                raise ValueError(f"model id {model_id!r} must be letters, digits, . _ or -")
            if model_id == DEFAULT_MODEL_ID:
                raise ValueError(f"{DEFAULT_MODEL_ID!r} names SENTIMENT_MODEL; pick another id")
            if not source:
                raise ValueError(f"model {model_id!r} has no folder or hub id")
        return value

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """Read a comma-separated env var into a tuple; a list passes as it is."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def keys(self) -> tuple[str, ...]:
        """Every accepted API key: SENTIMENT_API_KEYS and the lines of SENTIMENT_API_KEYS_FILE."""
        if self.api_keys_file is None:
            return self.api_keys
        try:
            lines = self.api_keys_file.read_text().splitlines()
        except OSError as error:
            raise StartupError(
                f"cannot read SENTIMENT_API_KEYS_FILE {self.api_keys_file}: {error.strerror};"
                " make it readable, or unset it"
            ) from None
        found = (line.strip() for line in lines)
        return self.api_keys + tuple(key for key in found if key and not key.startswith("#"))

    @classmethod
    def from_env(cls) -> "Settings":
        """The settings from SENTIMENT_* env vars, or a StartupError naming each bad one."""
        try:
            return cls()
        except ValidationError as error:
            bad = "; ".join(
                f"{ENV_PREFIX}{str(e['loc'][0]).upper()}={e['input']!r}: {e['msg']}"
                for e in error.errors()
            )
            raise StartupError(f"bad setting: {bad}") from None


# The settings a running replica takes in place (its deployment's user_config).
TUNABLES = tuple(
    name for name, field in Settings.model_fields.items() if field.json_schema_extra == TUNABLE
)
