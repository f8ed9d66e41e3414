"""HTTP contract shared by both apps: request and answer schemas, HTTP-level checks, and errors as
answers (the rules and the error table themselves are sentiment.inputs).

No Ray here: the deployments in sentiment.apps use these so that both apps reject the same input the
same way, with FastAPI's body shape {"detail": ...}.
"""

import hmac
import logging
import math
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from sentiment.inputs import ApiError, BadEncoding, NotJson, Unauthorized, error_table
from sentiment.model import FUNCTIONS, LONG_TEXT

logger = logging.getLogger("sentiment")


def error_response(error: Exception) -> JSONResponse:
    """Answer an error: an ApiError with its status, anything else as a 500 that leaks nothing."""
    if isinstance(error, ApiError):
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=error.headers
        )
    logger.error("unexpected error while answering a request", exc_info=error)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def json_safe(value: Any) -> Any:
    """Replace what strict JSON cannot carry (NaN, Infinity) with its text, at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """Answer 422 in FastAPI's shape, even for input such as `Infinity` that JSON cannot echo."""
    return JSONResponse({"detail": json_safe(jsonable_encoder(error.errors()))}, status_code=422)


async def check_query_encoding(request: Request) -> None:
    """Reject a query string whose percent-escapes are not UTF-8 (Starlette would silently replace them).
    Async though it never waits: FastAPI would run a plain function in its thread pool, a thread
    hop per request."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    try:
        parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as error:
        raise BadEncoding("the query string is not valid UTF-8 after percent-decoding") from error


async def check_json_body(request: Request) -> None:
    """Reject a body that is not declared JSON (FastAPI would otherwise answer a puzzling 422)."""
    if not await request.body():
        return
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise NotJson(
            f"the body must be JSON sent with Content-Type: application/json, not {media_type!r}"
        )


# RFC 6750's challenge: say which scheme a 401 wants.
REALM = 'Bearer realm="sentiment-serve"'


def check_api_key(authorization: str | None, keys: tuple[str, ...]) -> None:
    """Refuse a request without `Authorization: Bearer <one of keys>` (401) when keys are set.
    Each key is compared in constant time, and all of them, so timing tells nothing."""
    if not keys:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "this server needs an API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": REALM},
        )
    given = token.strip().encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    if not matched:
        raise Unauthorized(
            "the API key is not valid",
            headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )


class ErrorOut(BaseModel):
    """Every error's body: what was wrong (FastAPI's own 422s give a list of field errors)."""

    detail: str | list[dict[str, Any]]


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The error table as OpenAPI responses, so the document says what each status means."""
    meanings: dict[int | str, list[str]] = {}
    for error in error_table():
        meanings.setdefault(error.status_code, []).append(error.__doc__ or "")
    return {
        status: {"model": ErrorOut, "description": " Or: ".join(docs)}
        for status, docs in meanings.items()
    }


# In a query string `head+tail` arrives as "head tail" (a + is a space there): read it as meant.
LongText = Annotated[
    Literal[LONG_TEXT],
    BeforeValidator(lambda value: value.replace(" ", "+") if isinstance(value, str) else value),
]
LONG_TEXT_HELP = (
    "Past the model's window (512 tokens): keep the text's head, its head and tail, or classify"
    " overlapping windows (chunks) and combine them by length."
)
ModelId = Annotated[
    str | None,
    Field(
        description="The model to use, an id from GET /models (or the serve_multiplexed_model_id"
        " header); none: the default model.",
    ),
]


class ClassifyRequest(BaseModel):
    """One text to classify."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"input_text": "i like you"}]}
    )

    input_text: str = Field(description="The text to classify.")
    model: ModelId = None
    long_text: LongText = Field("head", description=LONG_TEXT_HELP)


class BatchRequest(BaseModel):
    """Several texts to classify in one call."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"texts": ["i like you", "i do not"]}]},
    )

    texts: list[str] = Field(description="The texts to classify, answered in the same order.")
    model: ModelId = None
    long_text: LongText = Field("head", description=LONG_TEXT_HELP)


class PredictionOut(BaseModel):
    """The answer for one text."""

    input_text: str
    label: str = Field(description="The most likely label, from the model's own id2label.")
    score: float = Field(description="The probability of `label`.")
    scores: dict[str, float] = Field(description="The probability of every label.")
    tokens: int = Field(description="The text's tokens (without the model's special tokens).")
    truncated: bool = Field(description="Whether part of the text was left unread.")
    model: str = Field(description="The id of the model that answered.")


class BatchOut(BaseModel):
    """The answers for a batch, in request order."""

    results: list[PredictionOut]


class Health(BaseModel):
    """A replica that answered a real inference, and where it runs."""

    status: str
    model: str
    precision: str = Field(description="What the model runs in: fp32, bf16, fp16 or int8.")
    precision_reason: str = Field(
        description="Why: asked for, measured by sentiment.tune, or auto's rule."
    )
    runtime: str = Field(description="What runs the model, and whether its calls are padding-free.")
    replica: str = Field(description="The Serve replica that answered.")
    node: str = Field(description="The Ray node that replica runs on.")


class PredictParameters(BaseModel):
    """Hugging Face's text-classification parameters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    top_k: int | None = Field(None, ge=1, description="Only the k best labels; none: every label.")
    function_to_apply: Literal[FUNCTIONS] | None = Field(
        None,
        description="softmax, sigmoid or none (logits); none given: the model's own (softmax"
        " for single-label models).",
    )


class PredictRequest(BaseModel):
    """Hugging Face's text-classification request (and text-embeddings-inference's /predict)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"inputs": "i like you"}, {"inputs": ["i like you", "i do not"]}]
        },
    )

    inputs: str | list[str] = Field(description="One text, or several.")
    parameters: PredictParameters = Field(default_factory=PredictParameters)
    truncate: bool = Field(
        True,
        description="Cut texts past the model's window to their head; false: refuse them (413).",
    )
    raw_scores: bool = Field(
        False, description="Logits instead of scores (text-embeddings-inference)."
    )
    model: ModelId = None


class LabelScore(BaseModel):
    """One label's score."""

    label: str
    score: float


class ModelOut(BaseModel):
    """A model a request may name, and what this replica holds of it."""

    id: str
    source: str = Field(description="The folder or hub id it loads from.")
    loaded: bool = Field(description="Whether the replica that answered holds it now.")
    labels: list[str] | None = Field(None, description="Its labels, when loaded.")
    precision: str | None = Field(None, description="What it runs in, when loaded.")
    precision_reason: str | None = Field(None, description="Why that precision, when loaded.")
    runtime: str | None = Field(None, description="What runs it, when loaded.")


class ModelsOut(BaseModel):
    """The allow-list, and what the replica that answered holds."""

    default: str = Field(description="The id used when a request names no model.")
    max_loaded: int = Field(description="Most models a replica holds besides the default.")
    models: list[ModelOut]
