"""The Ray Serve deployments and their app builders. Importing this module starts nothing.

    Router      GET /router?txt=...                           (a plain deployment, the tutorial's first app)
    Classifier  GET /test, GET /healthcheck, POST /classify, POST /classify/batch   (FastAPI ingress)

Both classify through BatchedModel: the model loaded once per replica, behind one batcher.
`serve run sentiment.apps:build_router` and serve_config.yaml use the builders below.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Annotated

import ray
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig
from ray.serve.schema import LoggingConfig

from sentiment.batching import ContinuousBatcher
from sentiment.inputs import (
    ApiError,
    Draining,
    InvalidInput,
    Overloaded,
    check_text,
    check_texts,
)
from sentiment.metrics import ModelMetrics
from sentiment.model import Prediction, SentimentBertModel
from sentiment.settings import Settings
from sentiment.web import (
    BatchOut,
    BatchRequest,
    ClassifyRequest,
    Health,
    PredictionOut,
    check_json_body,
    check_query_encoding,
    error_response,
    error_responses,
    validation_error,
)

ROUTER_APP = "router"
CLASSIFIER_APP = "classifier"
ROUTE_PREFIXES = {ROUTER_APP: "/router", CLASSIFIER_APP: "/"}

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
# The user_config key beside them that `python -m sentiment.deploy drain` sets (see reconfigure).
DRAINING = "draining"
# What a draining replica's 503 tells a client: try again soon (another server, or this one restarted).
DRAINING_RETRY_AFTER_S = 1


class ModelStuck(RuntimeError):
    """A model call has run far longer than any legitimate one."""


# Serve's replica logger: its handlers write the replica's log file (and JSON when asked).
logger = logging.getLogger("ray.serve")
# The sizes of the batches the current request's texts ran in, for its log line.
_batch_sizes: ContextVar[list[int] | None] = ContextVar("batch_sizes", default=None)


async def answer_and_log(request: Request, respond: Callable[[], Awaitable[Response]]) -> Response:
    """Answer a request (a generic 500 if anything unexpected fails), then log its one line."""
    started = time.perf_counter()
    sizes: list[int] = []
    _batch_sizes.set(sizes)
    try:
        response = await respond()
    except Exception as error:
        response = error_response(error)
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    # The proxy puts the client's X-Request-ID here, or one it made, and returns it to the client.
    request_id = request.headers.get("x-request-id", "-")
    batch_size = max(sizes, default=0)
    logger.info(
        f"{request.method} {request.url.path} {response.status_code} {latency_ms}ms"
        f" batch_size={batch_size} request_id={request_id}",
        extra={
            "request_id": request_id,
            "status": response.status_code,
            "latency_ms": latency_ms,
            "batch_size": batch_size,
        },
    )
    return response


class BatchedModel:
    """The model, loaded once per replica, behind one continuous batcher that both deployments share."""

    # How long check_health and /healthcheck wait for a real inference.
    health_timeout_s = 10.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.draining = False
        self.model = SentimentBertModel.from_settings(settings)
        self.metrics = ModelMetrics()
        self.batcher = ContinuousBatcher(
            self._run_batch,
            settings.max_batch_size,
            settings.batch_wait_timeout_s,
            observe_wait=self.metrics.queue_seconds.observe,
        )
        # Model seconds per text, the measure of the work budget: first from a warm call (the
        # one before it spares the first request the model's one-time setup), then from traffic.
        warm = [TEST_TEXT] * WARM_UP_TEXTS
        self.batcher.run_now(self.model.predict_batch, warm)
        started = time.perf_counter()
        self.batcher.run_now(self.model.predict_batch, warm)
        self.text_seconds = (time.perf_counter() - started) / WARM_UP_TEXTS
        logger.info(
            f"loaded {self.model.describe()}; {1 / self.text_seconds:.0f} texts/s in calls of 8"
        )

    def _run_batch(self, texts: list[str]) -> list[tuple[Prediction, int]]:
        """Run one model call, record its metrics and cost, and pair each answer with the batch size."""
        started = time.perf_counter()
        report = self.model.predict_batch_report(texts)
        seconds = time.perf_counter() - started
        self.metrics.record(report, seconds)
        self.text_seconds += COST_WEIGHT * (seconds / len(texts) - self.text_seconds)
        return [(prediction, len(texts)) for prediction in report.predictions]

    def admit(self, count: int) -> None:
        """Refuse `count` more texts while draining, or when the work ahead of them is past the
        budget (503 and Retry-After, both)."""
        if self.draining:
            raise self.draining_error()
        ahead = self.batcher.queued + self.batcher.running
        wait_s = (ahead + count) * self.text_seconds
        # A replica with nothing ahead takes any request the caps allow: it is the fastest it gets.
        if ahead and wait_s > self.settings.max_queue_s:
            retry_after = math.ceil(wait_s - self.settings.max_queue_s)
            raise Overloaded(
                f"this replica has {wait_s:.1f} s of work queued, more than its"
                f" {self.settings.max_queue_s:g} s budget (SENTIMENT_MAX_QUEUE_S); retry later",
                headers={"Retry-After": str(retry_after)},
            )

    async def classify(self, text: str) -> Prediction:
        """Classify one text through the batcher."""
        (prediction,) = await self.classify_many([text])
        return prediction

    async def classify_many(self, texts: list[str]) -> list[Prediction]:
        """Classify one request's texts through the batcher, beside everyone else's, or refuse them."""
        self.admit(len(texts))
        answers = await self.batcher.submit_many(texts)
        sizes = _batch_sizes.get()
        if sizes is not None:
            sizes.extend(size for _, size in answers)
        return [prediction for prediction, _ in answers]

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
        self.batcher.max_batch_size = self.settings.max_batch_size
        self.batcher.wait_s = self.settings.batch_wait_timeout_s
        self.draining = draining
        # Admitted texts are queued in the batcher at once (no await between admit and submit),
        # so an idle batcher means every request this replica took has its answer.
        while self.draining and self.batcher.busy:
            await asyncio.sleep(0.05)

    async def check_health(self) -> None:
        """Fail when the model is stuck or broken, not when it is busy (Serve replaces a replica
        whose checks fail, and with it every request it holds)."""
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
        check_query_encoding(request)
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


@api.middleware("http")
async def _log(request: Request, call_next) -> Response:
    """Log one line per request; anything unexpected becomes a generic 500, not a stack trace."""
    return await answer_and_log(request, lambda: call_next(request))


@serve.deployment(**DEPLOYMENT_OPTIONS)
@serve.ingress(api)
class Classifier(BatchedModel):
    """The FastAPI app: the tutorial's routes, a JSON body form, and a batch endpoint."""

    @api.get("/test", response_model=PredictionOut)
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
            replica=serve.get_replica_context().replica_id.unique_id,
            node=ray.get_runtime_context().get_node_id(),
        )

    @api.post("/classify", response_model=PredictionOut, dependencies=[Depends(check_json_body)])
    async def classify_text(
        self,
        input_text: Annotated[str | None, Query(description="The text, in the query.")] = None,
        body: ClassifyRequest | None = None,
    ) -> Prediction:
        """Classify one text, given as ?input_text=... or as {"input_text": ...}."""
        if input_text is not None and body is not None:
            raise InvalidInput("give input_text once: in the query or in the JSON body, not both")
        text = input_text if body is None else body.input_text
        if text is None:
            raise InvalidInput("input_text is required, as a query parameter or in a JSON body")
        return await self.classify(check_text(text, "input_text", self.settings))

    @api.post("/classify/batch", response_model=BatchOut, dependencies=[Depends(check_json_body)])
    async def classify_batch(self, body: BatchRequest) -> dict[str, list[Prediction]]:
        """Classify several texts; answers come back in request order."""
        texts = check_texts(body.texts, self.settings)
        return {"results": await self.classify_many(texts)}


def _options(settings: Settings) -> dict:
    """Deployment options that follow the settings: the log encoding, and the tunables as
    user_config (so a config file's `user_config:` can change them without a restart)."""
    return {
        "logging_config": LoggingConfig(
            encoding=settings.log_format.upper(), enable_access_log=False
        ),
        "user_config": {name: getattr(settings, name) for name in TUNABLES},
    }


def _check_model(settings: Settings) -> None:
    """Fail the build when the model cannot be had: before Serve replaces any running replica, so
    a bad `serve deploy` leaves the running version answering, and in seconds, with one line."""
    SentimentBertModel.check_available(settings.model, settings.model_revision)


def build_router(args: Settings) -> Application:
    """Build the Router app (`serve run sentiment.apps:build_router`)."""
    _check_model(args)
    return Router.options(**_options(args)).bind(args)


def build_classifier(args: Settings) -> Application:
    """Build the Classifier app (`serve run sentiment.apps:build_classifier`)."""
    _check_model(args)
    return Classifier.options(**_options(args)).bind(args)


BUILDERS = {ROUTER_APP: build_router, CLASSIFIER_APP: build_classifier}
