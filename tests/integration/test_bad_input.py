"""Bad input gets a clear 4xx with {"detail": ...}: never a 500, never a dead replica."""

import httpx
import pytest
from ray import serve

from tests.integration.conftest import MAX_BATCH_TEXTS, MAX_TEXT_CHARS

OVER_CAP = "word " * (MAX_TEXT_CHARS // 5 + 1)
JSON = {"Content-Type": "application/json"}

# (method, path, request keywords, expected status, words the detail must contain)
CASES = [
    ("GET", "/router", {}, 422, "txt is required"),
    ("GET", "/router?txt=", {}, 422, "empty"),
    ("GET", "/router?txt=%20%20%09", {}, 422, "empty"),
    ("GET", "/router?txt=%FF%FE", {}, 400, "UTF-8"),
    ("GET", "/router", {"params": {"txt": OVER_CAP}}, 413, "SENTIMENT_MAX_TEXT_CHARS"),
    ("POST", "/router?txt=hello", {}, 405, "GET"),
    ("POST", "/classify", {}, 422, "input_text is required"),
    ("POST", "/classify?input_text=i", {}, 422, "at least 2 characters"),
    ("POST", "/classify?input_text=", {}, 422, "at least 2 characters"),
    ("POST", "/classify?input_text=%20%20%20", {}, 422, "empty"),
    ("POST", "/classify?input_text=%FF%FF", {}, 400, "UTF-8"),
    ("POST", "/classify", {"params": {"input_text": OVER_CAP}}, 413, "SENTIMENT_MAX_TEXT_CHARS"),
    ("POST", "/classify", {"json": {"input_text": OVER_CAP}}, 413, "SENTIMENT_MAX_TEXT_CHARS"),
    ("POST", "/classify", {"json": {"input_text": 5}}, 422, "valid string"),
    ("POST", "/classify", {"json": {"input_text": None}}, 422, "valid string"),
    ("POST", "/classify", {"json": {"text": "hello"}}, 422, "input_text"),
    ("POST", "/classify", {"json": ["hello"]}, 422, "valid dictionary"),
    ("POST", "/classify", {"content": b"{not json", "headers": JSON}, 422, "JSON decode error"),
    ("POST", "/classify", {"content": b"\xff\xfe", "headers": JSON}, 422, ""),
    ("POST", "/classify", {"content": b'{"input_text": Infinity}', "headers": JSON}, 422, "inf"),
    ("POST", "/classify/batch", {"content": b'{"texts": [NaN]}', "headers": JSON}, 422, "nan"),
    ("POST", "/classify", {"content": b"input_text=hello"}, 415, "application/json"),
    (
        "POST",
        "/classify?input_text=hello",
        {"json": {"input_text": "hello"}},
        422,
        "not both",
    ),
    ("POST", "/classify/batch", {"json": {"texts": []}}, 422, "empty"),
    (
        "POST",
        "/classify/batch",
        {"json": {"texts": ["ok"] * (MAX_BATCH_TEXTS + 1)}},
        413,
        "SENTIMENT_MAX_BATCH_TEXTS",
    ),
    ("POST", "/classify/batch", {"json": {"texts": ["fine", " "]}}, 422, "texts[1]"),
    ("POST", "/classify/batch", {"json": {"texts": ["fine", OVER_CAP]}}, 413, "texts[1]"),
    ("POST", "/classify/batch", {"json": {"texts": "hello"}}, 422, "valid list"),
    ("POST", "/classify/batch", {"json": {"texts": [1, 2]}}, 422, "valid string"),
    ("POST", "/classify/batch", {}, 422, "Field required"),
    ("GET", "/classify", {}, 405, ""),
    ("GET", "/no/such/route", {}, 404, ""),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "words"), CASES)
def test_bad_input_gets_a_clear_4xx(
    base_url: str, method: str, path: str, kwargs: dict, status: int, words: str
) -> None:
    response = httpx.request(method, base_url + path, timeout=30, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in str(detail), detail
    # The very next good request is answered.
    assert httpx.get(f"{base_url}/router", params={"txt": "still here"}).status_code == 200


def test_no_replica_died_after_all_that(base_url: str) -> None:
    for app in serve.status().applications.values():
        assert app.status == "RUNNING"
        for deployment in app.deployments.values():
            assert deployment.status == "HEALTHY"
            assert deployment.replica_states == {"RUNNING": 1}
