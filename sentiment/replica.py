"""What one Serve replica holds: its models (the default, and the allowed others by id through
Serve's multiplexing), each behind its own continuous batcher; admission by queued work, drain,
health, and the tunables a running replica takes. No FastAPI: sentiment.http serves it over HTTP.
"""

import asyncio
import gc
import logging
import math
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ray import serve

from sentiment.answers import Prediction
from sentiment.batching import ContinuousBatcher, lane_threads
from sentiment.errors import Draining, InvalidInput, ModelUnavailable, Overloaded, UnknownModel
from sentiment.metrics import ModelMetrics
from sentiment.settings import DEFAULT_MODEL_ID, DRAINING, TUNABLES, Settings, StartupError

if TYPE_CHECKING:
    from sentiment.model import SentimentBertModel

# The tutorial's /test sentence.
TEST_TEXT = "Ray Serve makes serving models easy, and I love it"
HEALTH_TEXT = "health check"
WARM_UP_TEXTS = 8
# How much each model call moves the measured seconds per text (an exponential moving average
# of the cost, not of the rate: it follows a model that slows down within a few calls).
COST_WEIGHT = 0.3
# What a draining replica's 503 tells a client: try again soon (another server, or this one restarted).
DRAINING_RETRY_AFTER_S = 1
# What a 503 for a model that failed to load says: a while (a replica may load it once it can).
MODEL_RETRY_AFTER_S = 10

# Serve's replica logger: its handlers write the replica's log file (and JSON when asked).
logger = logging.getLogger("ray.serve")
# The sizes of the model calls the current request's texts ran in, for its log line.
batch_sizes: ContextVar[list[int] | None] = ContextVar("batch_sizes", default=None)


def load_model(settings: Settings, model_id: str = DEFAULT_MODEL_ID) -> "SentimentBertModel":
    """Load a model the settings name, in the replica (seconds)."""
    # Imported here, not above: the builders, the scripts and Serve's build task import this module
    # to deploy, and torch and transformers would cost them seconds for nothing.
    from sentiment.model import SentimentBertModel

    return SentimentBertModel.from_settings(settings, model_id)


class ModelStuck(RuntimeError):
    """A model call has run far longer than any legitimate one."""


# One answer from a batcher: the prediction, the text's logits, the size of its model call.
Scored = tuple[Prediction, list[float], int]


class ServedModel:
    """One loaded model behind its own continuous batcher: what a model id names on a replica."""

    def __init__(
        self,
        model: "SentimentBertModel",
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


class Replica:
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
        self.default = ServedModel(load_model(settings), settings, self.metrics, self.lanes)
        # Loaded models of SENTIMENT_MODELS; Serve's multiplexer holds them, this only sees them.
        self.named: weakref.WeakValueDictionary[str, ServedModel] = weakref.WeakValueDictionary()

        async def load(model_id: str) -> ServedModel:
            return await self._load(model_id)

        # Wrapped here, not at class level, so the most models held follows the settings.
        self._named_model = serve.multiplexed(
            max_num_models_per_replica=settings.max_models_per_replica
        )(load)

    @property
    def model(self) -> "SentimentBertModel":
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
                    load_model(self.settings, model_id),
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
        sizes = batch_sizes.get()
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
