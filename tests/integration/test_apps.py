"""Both apps on a real Ray Serve, over real HTTP: every endpoint, batching, and the answer contract."""

import asyncio
import random

import httpx
import pytest
from ray import serve

from sentiment.model import SentimentBertModel
from sentiment.replica import TEST_TEXT
from sentiment.settings import Settings
from sentiment.testing import WORDS
from tests.helpers import assert_prediction, assert_same_prediction


@pytest.fixture(scope="module")
def in_process(settings: Settings) -> SentimentBertModel:
    """The same model in this process: what every served answer must equal."""
    return SentimentBertModel.from_settings(settings)


def test_router_answers(base_url: str, in_process: SentimentBertModel) -> None:
    response = httpx.get(f"{base_url}/router", params={"txt": "i like you"})
    assert response.status_code == 200
    assert_same_prediction(response.json(), in_process.predict("i like you"), in_process.precision)


def test_test_route(base_url: str, in_process: SentimentBertModel) -> None:
    response = httpx.get(f"{base_url}/test")
    assert response.status_code == 200
    assert_same_prediction(response.json(), in_process.predict(TEST_TEXT), in_process.precision)


def test_healthcheck_runs_the_model(
    base_url: str, settings: Settings, in_process: SentimentBertModel
) -> None:
    response = httpx.get(f"{base_url}/healthcheck")
    assert response.status_code == 200
    health = response.json()
    assert (health["status"], health["model"]) == ("ok", settings.model)
    # The default, auto, resolves on the replica as it does here (bf16 on a CPU with AMX).
    assert health["precision"] == in_process.precision
    assert health["precision_reason"] == in_process.precision_reason
    assert health["runtime"] == in_process.runtime and "padding-free" in health["runtime"]
    assert health["replica"] and health["node"]


def test_classify_by_query_and_by_body_agree(base_url: str, in_process: SentimentBertModel) -> None:
    text = "the plot was dull but the music was wonderful"
    by_query = httpx.post(f"{base_url}/classify", params={"input_text": text})
    by_body = httpx.post(f"{base_url}/classify", json={"input_text": text})
    assert by_query.status_code == by_body.status_code == 200
    assert_same_prediction(by_query.json(), in_process.predict(text), in_process.precision)
    assert_same_prediction(by_body.json(), in_process.predict(text), in_process.precision)


def test_batch_endpoint_answers_in_order(base_url: str, in_process: SentimentBertModel) -> None:
    texts = ["great film", "awful", "i like you", "great film", "not good at all, really"]
    response = httpx.post(f"{base_url}/classify/batch", json={"texts": texts})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["input_text"] for r in results] == texts
    for served, expected in zip(results, in_process.predict_batch(texts), strict=True):
        assert_same_prediction(served, expected, in_process.precision)


def test_long_text_under_the_cap_is_truncated_and_answered(base_url: str) -> None:
    text = " ".join(random.Random(0).choices(WORDS, k=600))
    assert len(text) < 5_000
    for response in (
        httpx.get(f"{base_url}/router", params={"txt": text}),
        httpx.post(f"{base_url}/classify", json={"input_text": text}),
    ):
        assert response.status_code == 200
        assert_prediction(response.json(), text)


def test_openapi_documents_every_route(base_url: str) -> None:
    paths = httpx.get(f"{base_url}/openapi.json").json()["paths"]
    assert {"/test", "/healthcheck", "/classify", "/classify/batch"} <= set(paths)
    assert httpx.get(f"{base_url}/docs").status_code == 200


def test_100_concurrent_distinct_requests_each_get_their_own_answer(
    base_url: str, in_process: SentimentBertModel
) -> None:
    rng = random.Random(7)
    texts = [f"{n} " + " ".join(rng.choices(WORDS, k=rng.randint(2, 40))) for n in range(100)]

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
            calls = [
                client.get("/router", params={"txt": text})
                if n % 2
                else client.post("/classify", json={"input_text": text})
                for n, text in enumerate(texts)
            ]
            return await asyncio.gather(*calls)

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * len(texts)
    expected = in_process.predict_batch(texts)
    for response, want in zip(responses, expected, strict=True):
        assert_same_prediction(response.json(), want, in_process.precision)


def test_both_apps_are_running(base_url: str) -> None:
    applications = serve.status().applications
    assert {name: app.status for name, app in applications.items()} == {
        "router": "RUNNING",
        "classifier": "RUNNING",
    }
