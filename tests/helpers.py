"""Small helpers the test tiers share."""

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

from bench.harness import wait_for
from sentiment.model import SCORE_TOLERANCE

CLIENTS = 4  # SteadyLoad's client threads


def assert_prediction(answer: dict, text: str | None = None) -> None:
    """Assert the contract's answer shape for one text."""
    assert set(answer) == {"input_text", "label", "score", "scores", "tokens", "truncated", "model"}
    assert set(answer["scores"]) == {"NEGATIVE", "POSITIVE"}
    assert answer["label"] == max(answer["scores"], key=answer["scores"].get)
    assert answer["score"] == answer["scores"][answer["label"]]
    assert abs(sum(answer["scores"].values()) - 1) < 1e-5
    if text is not None:
        assert answer["input_text"] == text


def assert_same_prediction(served: dict, expected: dict, precision: str = "fp32") -> None:
    """Assert a served answer equals the in-process one in the same precision: labels equal,
    scores within that precision's tolerance (batches differ, so the sums' order does)."""
    assert served["input_text"] == expected["input_text"]
    assert served["label"] == expected["label"]
    for label, score in expected["scores"].items():
        assert abs(served["scores"][label] - score) <= SCORE_TOLERANCE[precision], (
            label,
            served,
            expected,
        )


def gone(url: str) -> bool:
    """Say whether `url` no longer answers 200 (a refused connection counts as gone)."""
    try:
        return httpx.get(url, timeout=5).status_code != 200
    except httpx.HTTPError:
        return True


class SteadyLoad:
    """Client threads posting to one URL until stopped (bounded in count and time): one text per
    request to /classify, or `batch` texts per request to /classify/batch; each text `words` longer
    than a few words. A 503 is retried at once, or after its Retry-After (`polite`, capped at 2 s)
    as the README tells clients to."""

    def __init__(
        self,
        url: str,
        clients: int = CLIENTS,
        batch: int = 0,
        warm: int = 20,
        words: int = 0,
        polite: bool = False,
    ) -> None:
        self.url = url
        self.batch = batch
        self.filler = " word" * words
        self.warm = warm  # answers to wait for on entering
        self.polite = polite
        self.outcomes: Counter[str] = Counter()
        self.timeline: list[tuple[float, bool]] = []  # (when a request started, ok)
        self.latencies: list[float] = []  # seconds, of the requests answered 200
        self.answered: list[tuple[float, str]] = []  # (when an answer came, its kind)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def _body(self, n: int, i: int) -> dict:
        """Client n's i-th request body."""
        if self.batch:
            return {
                "texts": [
                    f"client {n} request {i} text {k}{self.filler}" for k in range(self.batch)
                ]
            }
        return {"input_text": f"client {n} request {i}{self.filler}"}

    def _client(self, n: int) -> None:
        deadline = time.monotonic() + 120  # past any test's own waits
        with httpx.Client(timeout=30) as client:
            for i in range(5000):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                started = time.monotonic()
                retry_after = 0.0
                try:
                    answer = client.post(self.url, json=self._body(n, i))
                    status = answer.status_code
                    ok, kind = status == 200, "ok" if status == 200 else f"failed: http {status}"
                    if status == 503 and self.polite:
                        retry_after = min(float(answer.headers.get("Retry-After", 0)), 2.0)
                except httpx.HTTPError as error:
                    ok, kind = False, f"failed: {type(error).__name__}"
                self.outcomes[kind] += 1
                self.timeline.append((started, ok))
                self.answered.append((time.monotonic(), kind))
                if ok:
                    self.latencies.append(time.monotonic() - started)
                self._stop.wait(retry_after)

    def __enter__(self) -> "SteadyLoad":
        for thread in self._threads:
            thread.start()
        try:
            wait_for(lambda: self.outcomes["ok"] >= self.warm, 30, "steady traffic")
        except TimeoutError as error:
            self.__exit__()
            raise TimeoutError(f"{error}; answers so far: {dict(self.outcomes)}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)

    def wait_for_requests_after(self, moment: float, count: int = 20) -> None:
        """Wait until `count` requests have started after `moment` (to judge what came after)."""
        wait_for(lambda: sum(at > moment for at, _ in self.timeline) >= count, 30, "traffic after")

    def failed(self) -> int:
        """Count the requests that did not get a 200."""
        return sum(n for kind, n in self.outcomes.items() if kind != "ok")

    def all_ok_since(self, moment: float) -> bool:
        """Say whether every request started after `moment` succeeded."""
        return all(ok for at, ok in self.timeline if at > moment)


def rayservice() -> dict:
    """Load deploy/kubernetes/rayservice.yaml."""
    return yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "deploy/kubernetes/rayservice.yaml").read_text()
    )
