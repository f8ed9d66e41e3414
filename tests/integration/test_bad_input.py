"""Bad input gets a clear 4xx with {"detail": ...}: never a 500, never a dead replica."""

import httpx
import pytest
from ray import serve

from tests.helpers import assert_prediction
from tests.integration.conftest import MAX_BATCH_TEXTS, MAX_TEXT_CHARS
from tests.integration.deployments import replicas

OVER_CAP = "word " * (MAX_TEXT_CHARS // 5 + 1)
JSON = {"Content-Type": "application/json"}

# (method, path, request keywords, expected status, words the error's detail must contain)
CASES = [
    ("GET", "/router", {}, 422, "txt is required"),
    ("GET", "/router?txt=", {}, 422, "empty"),
    ("GET", "/router?txt=%20%20%09", {}, 422, "empty"),
    ("GET", "/router?txt=%FF%FE", {}, 400, "UTF-8"),
    ("GET", "/router", {"params": {"txt": OVER_CAP}}, 413, "SENTIMENT_MAX_TEXT_CHARS"),
    ("POST", "/router?txt=hello", {}, 405, "GET"),
    ("POST", "/classify", {}, 422, "input_text is required"),
    ("POST", "/classify?input_text=", {}, 422, "empty"),
    ("POST", "/classify?input_text=%20%20%20", {}, 422, "empty"),
    ("POST", "/classify?input_text=%FF%FF", {}, 400, "UTF-8"),
    ("POST", "/classify", {"params": {"input_text": OVER_CAP}}, 413, "SENTIMENT_MAX_TEXT_CHARS"),
    ("POST", "/classify", {"json": {"input_text": OVER_CAP}}, 413, "SENTIMENT_MAX_TEXT_CHARS"),
    ("POST", "/classify", {"json": {"input_text": 5}}, 422, "valid string"),
    ("POST", "/classify", {"json": {"input_text": None}}, 422, "valid string"),
    ("POST", "/classify", {"json": {"text": "hello"}}, 422, "input_text"),
    ("POST", "/classify", {"json": ["hello"]}, 422, "valid dictionary"),
    ("POST", "/classify", {"content": b"{not json", "headers": JSON}, 422, "JSON decode error"),
    ("POST", "/classify", {"content": b"\xff\xfe", "headers": JSON}, 422, "JSON decode error"),
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
    # As the OpenAPI document says: no true for a number, no "yes" for a boolean (schemathesis).
    ("POST", "/predict", {"json": {"inputs": "x", "parameters": {"top_k": True}}}, 422, "integer"),
    ("POST", "/predict", {"json": {"inputs": "x", "raw_scores": "yes"}}, 422, "valid boolean"),
    ("POST", "/classify/batch", {"json": {"texts": ["x"], "model": 1}}, 422, "valid string"),
    ("GET", "/router?txt=i", {}, 200, ""),  # one character is a text, in both apps
    ("POST", "/classify?input_text=i", {}, 200, ""),
    ("GET", "/classify", {}, 405, "Method Not Allowed"),
    ("GET", "/no/such/route", {}, 404, "Not Found"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "words"), CASES)
def test_bad_input_gets_a_clear_4xx(
    base_url: str, method: str, path: str, kwargs: dict, status: int, words: str
) -> None:
    response = httpx.request(method, base_url + path, timeout=30, **kwargs)
    assert response.status_code == status, response.text
    if status == 200:
        assert_prediction(response.json(), "i")
    else:
        assert words and words in str(response.json()["detail"]), response.text
    # The very next good request to the app that got the bad one is answered.
    if path.startswith("/router"):
        again = httpx.get(f"{base_url}/router", params={"txt": "still here"}, timeout=30)
    else:
        again = httpx.post(f"{base_url}/classify", json={"input_text": "still here"}, timeout=30)
    assert again.status_code == 200, again.text


def test_no_replica_died_after_all_that(
    base_url: str, first_replicas: dict[str, list[str]]
) -> None:
    # The same replicas as when the apps were deployed: none crashed and was replaced meanwhile.
    assert {app: replicas(app) for app in first_replicas} == first_replicas
    for app in serve.status().applications.values():
        assert app.status == "RUNNING"
