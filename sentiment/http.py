"""HTTP: the Classifier's FastAPI app (built per replica, where Serve expects it), the checks every
request passes (query encoding, API key, JSON body), the one request log both apps write, and the
error table (sentiment.errors) answered as `{"detail": ...}` with its status.

No Ray here: a route reaches its replica through the `ReplicaDep` dependency.
"""

import hmac
import logging
import math
import time
from typing import Annotated, Any
from urllib.parse import parse_qsl

import ray
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from ray import serve
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentiment.answers import Prediction
from sentiment.errors import (
    ApiError,
    BadEncoding,
    InvalidInput,
    NotJson,
    TooLarge,
    Unauthorized,
    Unhealthy,
    error_table,
)
from sentiment.inputs import check_text, check_texts
from sentiment.replica import TEST_TEXT, Replica, batch_sizes
from sentiment.schemas import (
    LONG_TEXT_HELP,
    BatchOut,
    BatchRequest,
    ClassifyRequest,
    ErrorOut,
    Health,
    LabelScore,
    LongText,
    ModelId,
    ModelOut,
    ModelsOut,
    PredictionOut,
    PredictRequest,
)
from sentiment.settings import DEFAULT_MODEL_ID

# The route whose requests carry several texts (RefuseEarly counts them as a batch).
BATCH_PATH = "/classify/batch"
# The header Serve routes by, to a replica that holds the model it names (model multiplexing).
SERVE_MODEL_HEADER = "serve_multiplexed_model_id"
# RFC 6750's challenge: say which scheme a 401 wants.
REALM = 'Bearer realm="sentiment-serve"'

# Serve's replica logger: its handlers write the replica's log file (and JSON when asked).
logger = logging.getLogger("ray.serve")


def error_response(error: Exception) -> JSONResponse:
    """Answer an error: an ApiError with its status, anything else as a 500 that leaks nothing."""
    if isinstance(error, ApiError):
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=error.headers
        )
    logger.error("unexpected error while answering a request", exc_info=error)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The error table as OpenAPI responses, so the document says what each status means."""
    meanings: dict[int | str, list[str]] = {}
    for error in error_table():
        meanings.setdefault(error.status_code, []).append(error.__doc__ or "")
    return {
        status: {"model": ErrorOut, "description": " Or: ".join(docs)}
        for status, docs in meanings.items()
    }


class RequestLine:
    """One request's log line: begun when it arrives, written once with its status, its latency
    and the largest model call its texts ran in (the replica fills `batch_sizes`)."""

    def __init__(self, method: str, path: str, headers: Headers) -> None:
        self.started = time.perf_counter()
        self.method, self.path = method, path
        # The proxy puts the client's X-Request-ID here, or one it made, and returns it to the client.
        self.request_id = headers.get("x-request-id", "-")
        self.sizes: list[int] = []
        batch_sizes.set(self.sizes)

    def write(self, status: int) -> None:
        """Write the line."""
        latency_ms = round((time.perf_counter() - self.started) * 1000, 1)
        batch_size = max(self.sizes, default=0)
        logger.info(
            f"{self.method} {self.path} {status} {latency_ms}ms"
            f" batch_size={batch_size} request_id={self.request_id}",
            extra={
                "request_id": self.request_id,
                "status": status,
                "latency_ms": latency_ms,
                "batch_size": batch_size,
            },
        )


class RequestLog:
    """The FastAPI app's request log, as a plain ASGI middleware: Starlette's BaseHTTPMiddleware
    (`@app.middleware`) runs every request in a task of its own and streams its answer through a
    queue, which cost the event loop measurably per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        line = RequestLine(scope["method"], scope["path"], Headers(scope=scope))
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except Exception as error:
            if status:  # the answer has begun: it cannot become a 500 now
                raise
            response = error_response(error)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            line.write(status)


class RefuseEarly:
    """A POST that the replica would refuse whatever its body holds (draining, or, for a batch,
    the work ahead already past the budget) gets its 503 before the body is read: a refused request
    should take no CPU from the model, and reading a large body costs more than a model call."""

    def __init__(self, app: ASGIApp, replica: Replica) -> None:
        self.app = app
        self.replica = replica

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            try:
                self.replica.admit(batch=scope["path"].endswith(BATCH_PATH))
            except ApiError as error:
                return await error_response(error)(scope, receive, send)
        await self.app(scope, receive, send)


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


async def api_error(request: Request, error: ApiError) -> JSONResponse:
    """Answer an error with its status (and headers) from the error table."""
    return error_response(error)


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


async def current_replica(request: Request) -> Replica:
    """The replica this app was built for (build_api)."""
    return request.app.state.replica


ReplicaDep = Annotated[Replica, Depends(current_replica)]
bearer = HTTPBearer(
    auto_error=False, description="An API key, when the server sets SENTIMENT_API_KEYS."
)


async def require_key(
    request: Request,
    replica: ReplicaDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    """Refuse a classifying request without a valid API key (401), when keys are set."""
    check_api_key(request.headers.get("authorization"), replica.keys)


# What every classifying route takes: a key (when set: the document says the key may be needed,
# with `{}` beside the bearer scheme, as a server without keys needs none), a body declared JSON.
CLASSIFYING = {
    "dependencies": [Depends(require_key), Depends(check_json_body)],
    "openapi_extra": {"security": [{}]},
}
routes = APIRouter()


@routes.get("/test", response_model=PredictionOut, **CLASSIFYING)
async def test(replica: ReplicaDep) -> Prediction:
    """Classify a fixed sample sentence."""
    return await replica.classify(TEST_TEXT)


@routes.get(
    "/healthcheck",
    response_model=Health,
    responses={503: {"description": "The model did not answer, or the server is draining."}},
)
async def healthcheck(replica: ReplicaDep) -> Health:
    """Answer 200 only when the model answers a real inference (503 while draining, so load
    balancers stop sending requests here)."""
    if replica.draining:
        raise replica.draining_error()
    try:
        await replica.check_health()
    except Exception as error:
        reason = str(error) or type(error).__name__
        raise Unhealthy(f"the model is not answering: {reason}") from error
    return Health(
        status="ok",
        model=replica.settings.model,
        precision=replica.model.precision,
        precision_reason=replica.model.precision_reason,
        runtime=replica.model.runtime,
        replica=serve.get_replica_context().replica_id.unique_id,
        node=ray.get_runtime_context().get_node_id(),
    )


@routes.post("/classify", response_model=PredictionOut, **CLASSIFYING)
async def classify(
    replica: ReplicaDep,
    input_text: Annotated[str | None, Query(description="The text, in the query.")] = None,
    model: Annotated[ModelId, Query()] = None,
    long_text: Annotated[LongText | None, Query(description=LONG_TEXT_HELP)] = None,
    body: ClassifyRequest | None = None,
) -> Prediction:
    """Classify one text, given as ?input_text=... or as {"input_text": ...}."""
    if body is not None and (input_text, model, long_text) != (None, None, None):
        raise InvalidInput("give the request in the query or in a JSON body, not both")
    if body is not None:
        input_text, model, long_text = body.input_text, body.model, body.long_text
    if input_text is None:
        raise InvalidInput("input_text is required, as a query parameter or in a JSON body")
    text = check_text(input_text, "input_text", replica.settings)
    (prediction,) = await replica.classify_many([text], model, long_text or "head")
    return prediction


@routes.post(BATCH_PATH, response_model=BatchOut, **CLASSIFYING)
async def classify_batch(replica: ReplicaDep, body: BatchRequest) -> dict[str, list[Prediction]]:
    """Classify several texts; answers come back in request order."""
    texts = check_texts(body.texts, replica.settings)
    return {"results": await replica.classify_many(texts, body.model, body.long_text)}


@routes.post("/predict", response_model=list[list[LabelScore]], **CLASSIFYING)
async def predict(replica: ReplicaDep, body: PredictRequest) -> list[list[dict]]:
    """Hugging Face's text-classification shape: one list per input (a lone string is one
    input), every label's score, best first (`huggingface_hub`'s
    InferenceClient(url).text_classification works against it)."""
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    texts = check_texts(texts, replica.settings, field="inputs")
    served = await replica.model_for(body.model)
    function = "none" if body.raw_scores else body.parameters.function_to_apply
    answers = []
    for n, (prediction, logits) in enumerate(await replica.score(served, texts)):
        if prediction["truncated"] and not body.truncate:
            raise TooLarge(
                f"inputs[{n}] has {prediction['tokens']} tokens, more than the"
                f" {served.model.window} the model reads; send truncate: true to classify"
                " its head, or a shorter text"
            )
        scores = zip(served.model.labels, served.model.scores(logits, function), strict=True)
        ranked = sorted(scores, key=lambda pair: pair[1], reverse=True)
        answers.append([{"label": label, "score": score} for label, score in ranked])
    return [answer[: body.parameters.top_k] for answer in answers]


@routes.get("/models", response_model=ModelsOut, **CLASSIFYING)
async def models(replica: ReplicaDep) -> ModelsOut:
    """The models a request may name (SENTIMENT_MODELS and the default), and which of them
    the replica that answers holds now."""
    held = {served.id: served.model for served in replica.served()}
    sources = {DEFAULT_MODEL_ID: replica.settings.model, **replica.settings.models}
    listed = []
    for model_id, source in sources.items():
        model = held.get(model_id)
        listed.append(
            ModelOut(
                id=model_id,
                source=source,
                loaded=model is not None,
                labels=model.labels if model else None,
                precision=model.precision if model else None,
                precision_reason=model.precision_reason if model else None,
                runtime=model.runtime if model else None,
            )
        )
    return ModelsOut(
        default=DEFAULT_MODEL_ID,
        max_loaded=replica.settings.max_models_per_replica,
        models=listed,
    )


def build_api(replica: Replica) -> FastAPI:
    """The Classifier's app for one replica (Serve builds it once the replica is up)."""
    api = FastAPI(
        title="sentiment-serve",
        summary="Sentiment of English text (DistilBERT fine-tuned on SST-2), served by Ray Serve.",
        dependencies=[Depends(check_query_encoding)],
        responses=error_responses(),
    )
    api.state.replica = replica
    api.include_router(routes)
    api.add_exception_handler(RequestValidationError, validation_error)
    api.add_exception_handler(ApiError, api_error)
    # Added innermost first: CORS answers preflights itself; every other request gets its log
    # line, the early refusals too.
    api.add_middleware(RefuseEarly, replica=replica)
    api.add_middleware(RequestLog)
    if origins := replica.settings.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", SERVE_MODEL_HEADER],
        )
    return api
