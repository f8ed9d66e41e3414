"""Overload: a burst far past what a small deployment holds gets fast 503s with Retry-After for the
excess; every accepted request is answered correctly; service is normal right after."""

import asyncio
import threading
import time
from collections import Counter

import httpx
import psutil
from ray import serve

from sentiment.apps import Classifier
from sentiment.model import SentimentBertModel
from sentiment.settings import Settings
from tests.helpers import assert_same_prediction
from tests.integration.deployments import replica_process

HOLDS = 2  # max_ongoing_requests
QUEUE = 4  # max_queued_requests
BURST = 120
MB = 1024 * 1024


class PeakMemory:
    """Sample a process's resident memory every 20 ms while in the `with` block."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.before = self.peak = process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        for _ in range(30_000):  # at most 10 minutes
            if self._stop.wait(0.02):
                return
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_a_burst_gets_fast_503s_and_every_accepted_request_is_answered(
    base_url: str, settings: Settings
) -> None:
    small = Classifier.options(
        name="SmallClassifier", max_ongoing_requests=HOLDS, max_queued_requests=QUEUE
    )
    serve.run(small.bind(settings), name="small", route_prefix="/small")
    model = SentimentBertModel.from_settings(settings)
    texts = [f"burst request number {n}" for n in range(BURST)]
    try:

        async def burst() -> tuple[list[httpx.Response], float]:
            limits = httpx.Limits(max_connections=BURST)
            async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
                start = time.monotonic()
                responses = await asyncio.gather(
                    *(client.post("/small/classify", json={"input_text": t}) for t in texts)
                )
                return responses, time.monotonic() - start

        with PeakMemory(replica_process("small")) as memory:
            responses, seconds = asyncio.run(burst())
        statuses = Counter(r.status_code for r in responses)
        print(
            f"\nburst of {BURST}: {dict(statuses)} in {seconds:.1f} s; replica memory"
            f" {memory.before / MB:.0f} MB before, peak {memory.peak / MB:.0f} MB"
        )
        # The excess is refused at the proxy: the replica holds only what it was allowed to.
        assert memory.peak - memory.before < 100 * MB
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[503] > 0 and statuses[200] >= HOLDS
        for text, response in zip(texts, responses, strict=True):
            if response.status_code == 503:
                assert response.headers["retry-after"] == "1"
            else:
                assert_same_prediction(response.json(), model.predict(text), model.precision)
        after = httpx.post(
            f"{base_url}/small/classify", json={"input_text": "calm again"}, timeout=30
        )
        assert after.status_code == 200
    finally:
        serve.delete("small")
