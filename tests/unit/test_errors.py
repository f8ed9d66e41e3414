"""The error table: every error status the service sends is one row of sentiment.errors."""

from sentiment.errors import ApiError, MethodNotAllowed, Unhealthy, error_table
from sentiment.http import error_responses


def test_every_status_the_service_sends_is_in_the_table() -> None:
    statuses = {row.status_code for row in error_table()}
    assert statuses == {400, 401, 404, 405, 413, 415, 422, 503}
    assert MethodNotAllowed in error_table() and Unhealthy in error_table()
    # Each row says what it means: the OpenAPI document lists it under its status.
    assert all(row.__doc__ for row in error_table())
    assert set(error_responses()) == statuses


def test_a_row_carries_its_detail_and_headers() -> None:
    error = MethodNotAllowed("use GET /router?txt=...", headers={"Allow": "GET"})
    assert isinstance(error, ApiError)
    assert (error.status_code, error.detail, error.headers) == (
        405,
        "use GET /router?txt=...",
        {"Allow": "GET"},
    )
