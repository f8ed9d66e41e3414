"""The Ray Serve deployments and their app builders. Importing this module starts nothing.

    Router      GET /router?txt=...                           (a plain deployment, the tutorial's first app)
    Classifier  GET /test, GET /healthcheck, POST /classify, POST /classify/batch, POST /predict,
                GET /models                                   (FastAPI ingress)

Both classify through BatchedModel: the default model loaded once per replica, and the models of
SENTIMENT_MODELS loaded when a request names them (Serve's multiplexing), each behind its own
batcher (ServedModel).
`serve run sentiment.apps:build_router` and serve_config.yaml use the builders below.
"""

import asyncio
import gc
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Annotated

import ray
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig
from ray.serve.schema import LoggingConfig
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentiment.batching import ContinuousBatcher, lane_threads
from sentiment.inputs import (
    ApiError,
    Draining,
    InvalidInput,
    ModelUnavailable,
    Overloaded,
    TooLarge,
    UnknownModel,
    check_text,
    check_texts,
)
from sentiment.metrics import ModelMetrics
from sentiment.model import Prediction, SentimentBertModel
from sentiment.settings import DEFAULT_MODEL_ID, DRAINING, Settings, StartupError
from sentiment.web import (
    LONG_TEXT_HELP,
    BatchOut,
    BatchRequest,
    ClassifyRequest,
    Health,
    LabelScore,
    LongText,
    ModelId,
    ModelOut,
    ModelsOut,
    PredictionOut,
    PredictRequest,
    check_api_key,
    check_json_body,
    check_query_encoding,
    error_response,
    error_responses,
    validation_error,
)

ROUTER_APP = "router"
CLASSIFIER_APP = "classifier"
ROUTE_PREFIXES = {ROUTER_APP: "/router", CLASSIFIER_APP: "/"}
# What the scripts print once an app is up.
EXAMPLES = {
    ROUTER_APP: ["GET  {url}/router?txt=i+like+you"],
    CLASSIFIER_APP: [
        "GET  {url}/test",
        "GET  {url}/healthcheck",
        "POST {url}/classify?input_text=i+like+you",
        'POST {url}/classify/batch   {{"texts": ["i like you", "i do not"]}}',
        "docs {url}/docs",
    ],
}
# The header Serve routes by, to a replica that holds the model it names (model multiplexing).
SERVE_MODEL_HEADER = "serve_multiplexed_model_id"

# The route whose requests carry several texts (RefuseEarly counts them as a batch).
BATCH_PATH = "/classify/batch"
# The tutorial's /test sentence.
TEST_TEXT = "Ray Serve makes serving models easy, and I love it"
HEALTH_TEXT = "health check"
WARM_UP_TEXTS = 8
# How much each model call moves the measured seconds per text (an exponential moving average
# of the cost, not of the rate: it follows a model that slows down within a few calls).
COST_WEIGHT = 0.3


# Settings a running replica can change without reloading its model (see reconfigure).
TUNABLES = (
    "max_batch_size",
    "batch_wait_timeout_s",
    "max_text_chars",
    "max_batch_texts",
    "max_queue_s",
    "stuck_after_s",
)
# What a draining replica's 503 tells a client: try again soon (another server, or this one restarted).
DRAINING_RETRY_AFTER_S = 1
# What a 503 for a model that failed to load says: a while (a replica may load it once it can).
MODEL_RETRY_AFTER_S = 10


class ModelStuck(RuntimeError):
    """A model call has run far longer than any legitimate one."""


# Serve's replica logger: its handlers write the replica's log file (and JSON when asked).
logger = logging.getLogger("ray.serve")
# The sizes of the batches the current request's texts ran in, for its log line.
_batch_sizes: ContextVar[list[int] | None] = ContextVar("batch_sizes", default=None)


def log_request(request: Request, status: int, started: float, sizes: list[int]) -> None:
    """Write a request's one log line: status, latency, the largest model call its texts ran in."""
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    # The proxy puts the client's X-Request-ID here, or one it made, and returns it to the client.
    request_id = request.headers.get("x-request-id", "-")
    batch_size = max(sizes, default=0)
    logger.info(
        f"{request.method} {request.url.path} {status} {latency_ms}ms"
        f" batch_size={batch_size} request_id={request_id}",
        extra={
            "request_id": request_id,
            "status": status,
            "latency_ms": latency_ms,
            "batch_size": batch_size,
        },
    )


async def answer_and_log(request: Request, respond: Callable[[], Awaitable[Response]]) -> Response:
    """Answer a request (a generic 500 if anything unexpected fails), then log its one line."""
    started = time.perf_counter()
    sizes: list[int] = []
    _batch_sizes.set(sizes)
    try:
        response = await respond()
    except Exception as error:
        response = error_response(error)
    log_request(request, response.status_code, started, sizes)
    return response


class RequestLog:
    """The FastAPI app's answer_and_log, as a plain ASGI middleware: Starlette's
    BaseHTTPMiddleware (`@app.middleware`) runs every request in a task of its own and streams
    its answer through a queue, which cost the event loop measurably per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        sizes: list[int] = []
        _batch_sizes.set(sizes)
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
            log_request(Request(scope), status, started, sizes)


# One answer from a batcher: the prediction, the text's logits, the size of its model call.
Scored = tuple[Prediction, list[float], int]


class ServedModel:
    """One loaded model behind its own continuous batcher: what a model id names on a replica."""

    def __init__(
        self,
        model: SentimentBertModel,
        settings: Settings,
        metrics: ModelMetrics,
        lanes: list[ThreadPoolExecutor],
    ) -> None:
        self.model = model
        self.id = model.id
        self.metrics = metrics
        self.unloaded = False
        tags = {"model": self.id}
        self.batcher = ContinuousBatcher(
            self._run_batch,
            settings.max_batch_size,
            settings.batch_wait_timeout_s,
            observe_wait=lambda seconds: metrics.queue_seconds.observe(seconds, tags=tags),
            lanes=lanes[: min(settings.max_concurrent_batches, model.num_threads)],
            threads=model.num_threads,
            use_threads=model.use_threads,
        )
        # Model seconds per text, the measure of the work budget: first from a warm call (the
        # one before it spares the first request the model's one-time setup), then from traffic.
        warm = [TEST_TEXT] * WARM_UP_TEXTS
        self.batcher.run_now(model.predict_batch, warm)
        started = time.perf_counter()
        self.batcher.run_now(model.predict_batch, warm)
        self.text_seconds = (time.perf_counter() - started) / WARM_UP_TEXTS
        logger.info(
            f"loaded {self.id}: {model.describe()}, up to {len(self.batcher.lanes)} calls at once;"
            f" {1 / self.text_seconds:.0f} texts/s in calls of 8"
        )

    def _run_batch(self, items: list[tuple[str, str]]) -> list[Scored]:
        """Run one model call, record its metrics and cost; answer each item with its prediction,
        logits and the batch size."""
        texts, long_texts = zip(*items, strict=True)
        started = time.perf_counter()
        report = self.model.predict_batch_report(texts, long_texts)
        seconds = time.perf_counter() - started
        self.metrics.record(self.id, report, seconds)
        # The replica's seconds: a call on half the cores leaves the other half to another call.
        share = self.model.threads() / self.model.num_threads
        self.text_seconds += COST_WEIGHT * (seconds * share / len(texts) - self.text_seconds)
        return [
            (prediction, logits, len(texts))
            for prediction, logits in zip(report.predictions, report.logits, strict=True)
        ]

    @property
    def backlog_s(self) -> float:
        """Seconds of work this model holds: texts queued and running, at its measured rate."""
        return (self.batcher.queued + self.batcher.running) * self.text_seconds

    @property
    def lone_backlog_s(self) -> float:
        """Seconds of this model's queued work a lone text would wait for: the lone texts queued
        (the batcher cuts them first; a running call ends, and holds at most max_batch_size)."""
        return self.batcher.queued_lone * self.text_seconds

    def tune(self, settings: Settings) -> None:
        """Apply the batching tunables."""
        self.batcher.max_batch_size = settings.max_batch_size
        self.batcher.wait_s = settings.batch_wait_timeout_s

    def __del__(self) -> None:
        """Serve's multiplexer calls this when it unloads the model (least recently used); the
        requests that hold it still get their answers, then it is freed."""
        self.unloaded = True


class BatchedModel:
    """The default model, loaded once per replica, and the allowed others loaded on demand (Serve's
    model multiplexing): each behind its own batcher."""

    # How long check_health and /healthcheck wait for a real inference.
    health_timeout_s = 10.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = settings.keys()
        self.draining = False
        self.metrics = ModelMetrics()
        # The model threads every model of this replica runs its calls in (see lane_threads).
        self.lanes = lane_threads(settings.max_concurrent_batches)
        self.default = ServedModel(
            SentimentBertModel.from_settings(settings), settings, self.metrics, self.lanes
        )
        # Loaded models of SENTIMENT_MODELS; Serve's multiplexer holds them, this only sees them.
        self.named: weakref.WeakValueDictionary[str, ServedModel] = weakref.WeakValueDictionary()

        async def load(model_id: str) -> ServedModel:
            return await self._load(model_id)

        # Wrapped here, not at class level, so the most models held follows the settings.
        self._named_model = serve.multiplexed(
            max_num_models_per_replica=settings.max_models_per_replica
        )(load)

    @property
    def model(self) -> SentimentBertModel:
        """The default model (health checks run it; tests slow or wedge it)."""
        return self.default.model

    @property
    def batcher(self) -> ContinuousBatcher:
        """The default model's batcher (the one health checks watch)."""
        return self.default.batcher

    def served(self) -> list[ServedModel]:
        """Every model this replica holds now."""
        return [self.default, *(m for m in list(self.named.values()) if not m.unloaded)]

    async def _load(self, model_id: str) -> ServedModel:
        """Load one of SENTIMENT_MODELS, off the event loop (it takes seconds)."""
        gc.collect()  # free the model Serve may just have unloaded before loading another
        try:
            served = await asyncio.to_thread(
                lambda: ServedModel(
                    SentimentBertModel.from_settings(self.settings, model_id),
                    self.settings,
                    self.metrics,
                    self.lanes,
                )
            )
        except StartupError as error:
            raise ModelUnavailable(
                f"model {model_id!r} cannot be loaded on this replica: {error}",
                headers={"Retry-After": str(MODEL_RETRY_AFTER_S)},
            ) from error
        self.named[model_id] = served
        return served

    async def model_for(self, model_id: str | None = None) -> ServedModel:
        """The model a request names (a `model` field, or Serve's serve_multiplexed_model_id
        header), loaded if it is not yet; the default when it names none."""
        header = serve.get_multiplexed_model_id()
        if model_id and header and model_id != header:
            raise InvalidInput(
                f"the request names two models: {model_id!r} in its body or query and {header!r}"
                " in its serve_multiplexed_model_id header; name one"
            )
        model_id = model_id or header or DEFAULT_MODEL_ID
        if model_id == DEFAULT_MODEL_ID:
            return self.default
        if model_id not in self.settings.models:
            allowed = ", ".join([DEFAULT_MODEL_ID, *self.settings.models])
            raise UnknownModel(
                f"no model {model_id!r} here; the models are {allowed} (GET /models)"
            )
        return await self._named_model(model_id)

    def admit(self, served: ServedModel | None = None, count: int = 0, batch: bool = False) -> None:
        """Refuse `count` more texts while draining, or when the work that would run before them,
        on every model of this replica (they share its cores), is past the budget (503 and
        Retry-After). A lone text waits only for a running call and the lone texts queued before
        it, so batches that fill the budget do not refuse it; several texts wait for all the work
        queued and running. With no texts (RefuseEarly): refuse what would be refused whatever the body holds,
        counted as for a lone text unless the route takes a `batch`."""
        if self.draining:
            raise self.draining_error()
        lone = count == 1 or (count == 0 and not batch)
        ahead_s = sum(m.lone_backlog_s if lone else m.backlog_s for m in self.served())
        wait_s = ahead_s + (count * served.text_seconds if served else 0.0)
        # A replica with nothing ahead takes any request the caps allow: it is the fastest it gets.
        if ahead_s and wait_s > self.settings.max_queue_s:
            retry_after = math.ceil(wait_s - self.settings.max_queue_s)
            raise Overloaded(
                f"this replica has {wait_s:.1f} s of work queued, more than its"
                f" {self.settings.max_queue_s:g} s budget (SENTIMENT_MAX_QUEUE_S); retry later",
                headers={"Retry-After": str(retry_after)},
            )

    async def classify(self, text: str) -> Prediction:
        """Classify one text with the default model, or the one Serve's header names."""
        (prediction,) = await self.classify_many([text])
        return prediction

    async def classify_many(
        self, texts: list[str], model_id: str | None = None, long_text: str = "head"
    ) -> list[Prediction]:
        """Classify one request's texts through their model's batcher, beside everyone else's."""
        served = await self.model_for(model_id)
        return [prediction for prediction, _ in await self.score(served, texts, long_text)]

    async def score(
        self, served: ServedModel, texts: list[str], long_text: str = "head"
    ) -> list[tuple[Prediction, list[float]]]:
        """Each text's prediction and logits from `served`, or the refusal of them (admit)."""
        self.admit(served, len(texts))
        answers = await served.batcher.submit_many([(text, long_text) for text in texts])
        sizes = _batch_sizes.get()
        if sizes is not None:
            sizes.extend(size for _, _, size in answers)
        return [(prediction, logits) for prediction, logits, _ in answers]

    @staticmethod
    def draining_error() -> Draining:
        """The answer to a request that arrives while this replica drains."""
        return Draining(
            "this server is shutting down: it answers the requests it took and takes no more;"
            " retry",
            headers={"Retry-After": str(DRAINING_RETRY_AFTER_S)},
        )

    async def reconfigure(self, config: dict) -> None:
        """Apply the deployment's user_config to this running replica: Serve calls this in place
        when only user_config changed, so nothing restarts and no model reloads.

        `draining: true` makes the replica refuse new requests (503) and returns only when the
        ones it took are answered: Serve reports the update done when every replica is idle.
        """
        config = dict(config)
        draining = config.pop(DRAINING, False)
        if unknown := set(config) - set(TUNABLES):
            raise ValueError(
                f"user_config may set only {', '.join(TUNABLES)} and {DRAINING};"
                f" not {sorted(unknown)}"
            )
        if not isinstance(draining, bool):
            raise ValueError(f"user_config {DRAINING} must be true or false, not {draining!r}")
        self.settings = Settings.model_validate({**self.settings.model_dump(), **config})
        for served in self.served():
            served.tune(self.settings)
        self.draining = draining
        # Admitted texts are queued in a batcher at once (no await between admit and submit),
        # so idle batchers mean every request this replica took has its answer.
        while self.draining and any(served.batcher.busy for served in self.served()):
            await asyncio.sleep(0.05)

    async def check_health(self) -> None:
        """Fail when the default model is stuck or broken, not when it is busy (Serve replaces a
        replica whose checks fail, and with it every request it holds)."""
        batcher = self.batcher
        if batcher.running_since is not None:
            running_s = time.monotonic() - batcher.running_since
            if running_s > self.settings.stuck_after_s:
                raise ModelStuck(
                    f"a model call has run for {running_s:.0f} s"
                    f" (SENTIMENT_STUCK_AFTER_S={self.settings.stuck_after_s:g})"
                )
        # Busy, and its last call answered: the traffic is the proof that the model works.
        if batcher.busy and batcher.last_ok:
            return
        # Idle, or its last call failed: a real inference, alone, out of the traffic metrics.
        await batcher.probe(self.model.predict_batch, [HEALTH_TEXT], self.health_timeout_s)


# The one place these options are set: the config files do not repeat them (a unit test checks).
DEPLOYMENT_OPTIONS = {
    # Batches can only hold the texts of the requests a replica holds at once (Serve's default is
    # 5 requests): 128 single texts, or far more texts from batch requests.
    "max_ongoing_requests": 128,
    # Past this many waiting requests, answer at once with 503 and Retry-After instead of queueing
    # without bound (a few seconds of work at the full model's rate on 2 cores).
    "max_queued_requests": 256,
    "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=1),
    # The apps write one line per request themselves (answer_and_log), with the batch size.
    "logging_config": LoggingConfig(enable_access_log=False),
}


@serve.deployment(**DEPLOYMENT_OPTIONS)
class Router(BatchedModel):
    """GET /router?txt=...: the tutorial's plain deployment, with the model built once."""

    async def __call__(self, request: Request) -> Response:
        """Classify the `txt` query parameter."""
        return await answer_and_log(request, lambda: self._answer(request))

    async def _answer(self, request: Request) -> Response:
        """Check the request and classify its text."""
        if request.method != "GET":
            return JSONResponse(
                {"detail": "use GET /router?txt=..."}, status_code=405, headers={"Allow": "GET"}
            )
        check_api_key(request.headers.get("authorization"), self.keys)
        await check_query_encoding(request)
        text = check_text(request.query_params.get("txt"), "txt", self.settings)
        return JSONResponse(await self.classify(text))


api = FastAPI(
    title="sentiment-serve",
    summary="Sentiment of English text (DistilBERT fine-tuned on SST-2), served by Ray Serve.",
    dependencies=[Depends(check_query_encoding)],
    responses=error_responses(),
)


api.add_exception_handler(RequestValidationError, validation_error)


@api.exception_handler(ApiError)
async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    """Answer an error with its status (and headers) from the error table."""
    return error_response(error)


bearer = HTTPBearer(
    auto_error=False, description="An API key, when the server sets SENTIMENT_API_KEYS."
)


def _replica() -> "BatchedModel":
    """The deployment instance serving this request (what Serve passes routes as `self`)."""
    return serve.get_replica_context().servable_object


async def require_key(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> None:
    """Refuse a classifying request without a valid API key (401), when keys are set."""
    check_api_key(request.headers.get("authorization"), _replica().keys)


# What every classifying route takes: a key (when set: the document says the key may be needed,
# with `{}` beside the bearer scheme, as a server without keys needs none), a body declared JSON.
CLASSIFYING = {
    "dependencies": [Depends(require_key), Depends(check_json_body)],
    "openapi_extra": {"security": [{}]},
}


class ReplicaCORS:
    """Starlette's CORS middleware with the origins of the replica's settings (the app is built
    at import, the settings arrive with the replica); no CORS headers when none are set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.cors is None:
            origins = _replica().settings.cors_origins
            self.cors = (
                CORSMiddleware(
                    self.app,
                    allow_origins=list(origins),
                    allow_methods=["GET", "POST"],
                    allow_headers=["authorization", "content-type", SERVE_MODEL_HEADER],
                )
                if origins
                else self.app
            )
        await self.cors(scope, receive, send)


class RefuseEarly:
    """A POST that the replica would refuse whatever its body holds (draining, or the work ahead
    already past the budget) gets its 503 before the body is read: a refused request should take
    no CPU from the model, and reading and validating a large body costs more than a model call."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            try:
                _replica().admit(batch=scope["path"].endswith(BATCH_PATH))
            except ApiError as error:
                return await error_response(error)(scope, receive, send)
        await self.app(scope, receive, send)


# Added innermost first: CORS answers preflights itself; every other request gets its log line,
# the early refusals too.
api.add_middleware(RefuseEarly)
api.add_middleware(RequestLog)
api.add_middleware(ReplicaCORS)


@serve.deployment(**DEPLOYMENT_OPTIONS)
@serve.ingress(api)
class Classifier(BatchedModel):
    """The FastAPI app: the tutorial's routes, a JSON body form, a batch endpoint, Hugging Face's
    text-classification shape, and the models a request may name."""

    @api.get("/test", response_model=PredictionOut, **CLASSIFYING)
    async def test(self) -> Prediction:
        """Classify a fixed sample sentence."""
        return await self.classify(TEST_TEXT)

    @api.get(
        "/healthcheck",
        response_model=Health,
        responses={503: {"description": "The model did not answer, or the server is draining."}},
    )
    async def healthcheck(self) -> Health | JSONResponse:
        """Answer 200 only when the model answers a real inference (503 while draining, so load
        balancers stop sending requests here)."""
        if self.draining:
            raise self.draining_error()
        try:
            await self.check_health()
        except Exception as error:
            reason = str(error) or type(error).__name__
            return JSONResponse(
                {"detail": f"the model is not answering: {reason}"}, status_code=503
            )
        return Health(
            status="ok",
            model=self.settings.model,
            precision=self.model.precision,
            precision_reason=self.model.precision_reason,
            runtime=self.model.runtime,
            replica=serve.get_replica_context().replica_id.unique_id,
            node=ray.get_runtime_context().get_node_id(),
        )

    @api.post("/classify", response_model=PredictionOut, **CLASSIFYING)
    async def classify_text(
        self,
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
        text = check_text(input_text, "input_text", self.settings)
        (prediction,) = await self.classify_many([text], model, long_text or "head")
        return prediction

    @api.post(BATCH_PATH, response_model=BatchOut, **CLASSIFYING)
    async def classify_batch(self, body: BatchRequest) -> dict[str, list[Prediction]]:
        """Classify several texts; answers come back in request order."""
        texts = check_texts(body.texts, self.settings)
        return {"results": await self.classify_many(texts, body.model, body.long_text)}

    @api.post(
        "/predict",
        response_model=list[list[LabelScore]],
        **CLASSIFYING,
    )
    async def predict(self, body: PredictRequest) -> list[list[dict]]:
        """Hugging Face's text-classification shape: one list per input (a lone string is one
        input), every label's score, best first (`huggingface_hub`'s
        InferenceClient(url).text_classification works against it)."""
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        texts = check_texts(texts, self.settings, field="inputs")
        served = await self.model_for(body.model)
        function = "none" if body.raw_scores else body.parameters.function_to_apply
        answers = []
        for n, (prediction, logits) in enumerate(await self.score(served, texts)):
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

    @api.get("/models", response_model=ModelsOut, **CLASSIFYING)
    async def models(self) -> ModelsOut:
        """The models a request may name (SENTIMENT_MODELS and the default), and which of them
        the replica that answers holds now."""
        held = {served.id: served.model for served in self.served()}
        sources = {DEFAULT_MODEL_ID: self.settings.model, **self.settings.models}
        return ModelsOut(
            default=DEFAULT_MODEL_ID,
            max_loaded=self.settings.max_models_per_replica,
            models=[
                ModelOut(
                    id=model_id,
                    source=source,
                    loaded=model_id in held,
                    labels=held[model_id].labels if model_id in held else None,
                    precision=held[model_id].precision if model_id in held else None,
                    precision_reason=(
                        held[model_id].precision_reason if model_id in held else None
                    ),
                    runtime=held[model_id].runtime if model_id in held else None,
                )
                for model_id, source in sources.items()
            ],
        )


def _options(settings: Settings) -> dict:
    """Deployment options that follow the settings: the log encoding, and the tunables as
    user_config (so a config file's `user_config:` can change them without a restart)."""
    return {
        "logging_config": LoggingConfig(
            encoding=settings.log_format.upper(), enable_access_log=False
        ),
        "user_config": {name: getattr(settings, name) for name in TUNABLES},
    }


def _prepare(settings: Settings) -> Settings:
    """Fail the build when a model (the default, or any of SENTIMENT_MODELS) cannot be had or the
    key file cannot be read: before Serve replaces any running replica, so a bad `serve deploy`
    leaves the running version answering, and in seconds, with one line. Return the settings with
    the key file's keys read in, so replicas on other machines need no copy of it."""
    SentimentBertModel.check_available(settings.model, settings.model_revision)
    for source in settings.models.values():
        SentimentBertModel.check_available(source)
    if settings.api_keys_file is None:
        return settings
    return settings.model_copy(update={"api_keys": settings.keys(), "api_keys_file": None})


def build_router(args: Settings) -> Application:
    """Build the Router app (`serve run sentiment.apps:build_router`)."""
    settings = _prepare(args)
    return Router.options(**_options(settings)).bind(settings)


def build_classifier(args: Settings) -> Application:
    """Build the Classifier app (`serve run sentiment.apps:build_classifier`)."""
    settings = _prepare(args)
    return Classifier.options(**_options(settings)).bind(settings)


BUILDERS = {ROUTER_APP: build_router, CLASSIFIER_APP: build_classifier}
