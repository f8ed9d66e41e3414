"""What the FastAPI app does around every request: its log (sentiment.http.RequestLog, a plain
ASGI middleware: one line with the status and batch size, a generic 500 for anything unexpected),
and no hop to a thread pool."""

import inspect
import logging

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from sentiment.http import CLASSIFYING, RequestLog, check_query_encoding
from sentiment.replica import batch_sizes


class Lines(logging.Handler):
    """Keep the records Serve's replica logger gets."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines():
    logger = logging.getLogger("ray.serve")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def client():
    app = FastAPI()
    app.add_middleware(RequestLog)

    @app.get("/ok")
    async def ok() -> dict:
        sizes = batch_sizes.get()  # what the replica's score fills in
        sizes.extend([3, 7])
        return {"ok": True}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret detail of the failure")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_each_request_gets_one_line_with_its_status_and_largest_batch(client, lines):
    response = client.get("/ok", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 200
    assert client.get("/nowhere").status_code == 404
    (first, second) = lines
    assert first.getMessage().startswith("GET /ok 200 ")
    assert first.getMessage().endswith(" batch_size=7 request_id=r-1")
    assert (first.status, first.batch_size, first.request_id) == (200, 7, "r-1")
    assert second.getMessage().startswith("GET /nowhere 404 ")
    assert second.batch_size == 0


def test_an_unexpected_error_is_a_generic_500_and_still_logged(client, lines):
    response = client.get("/boom", headers={"X-Request-ID": "r-2"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "secret" not in response.text
    logged = [record for record in lines if getattr(record, "request_id", None) == "r-2"]
    assert [record.status for record in logged] == [500]


def test_every_dependency_runs_on_the_event_loop():
    """FastAPI runs a plain `def` dependency in its thread pool: a thread hop on every request,
    which cost /classify about a tenth of its rate on 2 cores (docs/speed.md)."""
    declared = [Depends(check_query_encoding), *CLASSIFYING["dependencies"]]
    assert declared
    for depends in declared:
        assert inspect.iscoroutinefunction(depends.dependency), depends.dependency.__name__
