"""Small helpers the test tiers share."""

import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from sentiment.model import SCORE_TOLERANCE

CLIENTS = 4  # SteadyLoad's client threads


# Ports free_port handed out: the kernel may hand a port out again as soon as its probe socket
# closes, and two of a Ray head's ports drawn one after the other then clash.
HANDED_OUT: set[int] = set()


def free_port() -> int:
    """Return a loopback port nobody listens on right now, and not one handed out before."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in HANDED_OUT:
            HANDED_OUT.add(port)
            return port
    raise RuntimeError("no loopback port left that was not handed out before")


# Ray's worker processes take ports 10002-19999; the kernel hands out its ephemeral range (32768
# and up on Linux) to anything that binds port 0. Between them, nothing takes a port by chance.
QUIET_PORTS = range(20_000, 32_768)


def quiet_port() -> int:
    """Return a port free on every interface, outside Ray's worker ports and the ephemeral range:
    for a port chosen long before it is bound (a session's HAProxy stats port), which a port from
    free_port() could meanwhile be handed to any process binding port 0."""
    rng = random.Random()
    for _ in range(200):
        port = rng.choice(QUIET_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {QUIET_PORTS}")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds, failing with `what` after `timeout_s` (never a bare sleep)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")


def answers(url: str) -> bool:
    """Say whether a GET of `url` answers 200."""
    return httpx.get(url, timeout=5).status_code == 200


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
