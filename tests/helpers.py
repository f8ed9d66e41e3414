"""Small helpers the test tiers share."""

import socket
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    assert set(answer) == {"input_text", "label", "score", "scores"}
    assert set(answer["scores"]) == {"NEGATIVE", "POSITIVE"}
    assert answer["label"] == max(answer["scores"], key=answer["scores"].get)
    assert answer["score"] == answer["scores"][answer["label"]]
    assert abs(sum(answer["scores"].values()) - 1) < 1e-5
    if text is not None:
        assert answer["input_text"] == text


def assert_same_prediction(served: dict, expected: dict) -> None:
    """Assert a served answer equals the in-process one: labels equal, scores within 1e-4."""
    assert served["input_text"] == expected["input_text"]
    assert served["label"] == expected["label"]
    for label, score in expected["scores"].items():
        assert abs(served["scores"][label] - score) < 1e-4, (label, served, expected)


def gone(url: str) -> bool:
    """Say whether `url` no longer answers 200 (a refused connection counts as gone)."""
    try:
        return httpx.get(url, timeout=5).status_code != 200
    except httpx.HTTPError:
        return True
