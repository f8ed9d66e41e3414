"""Every error status the service sends, one class a row: what went wrong, its status, its headers.

Code raises these; sentiment.http answers each with its status and `{"detail": ...}` (FastAPI's
shape), and the OpenAPI document lists them. No FastAPI, no Ray: the CLI and the model-only image
use them too. Anything else that escapes a request is a 500 that leaks nothing.
"""


class ApiError(Exception):
    """An answer that says what went wrong; each leaf subclass is one row of the error table."""

    status_code = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class ClientError(ApiError):
    """Something the client got wrong."""

    status_code = 400


class BadEncoding(ClientError):
    """The query string is not valid UTF-8."""

    status_code = 400


class Unauthorized(ClientError):
    """No API key, or a wrong one, on a server with SENTIMENT_API_KEYS set."""

    status_code = 401


class UnknownModel(ClientError):
    """A model id not in the server's allow-list (SENTIMENT_MODELS)."""

    status_code = 404


class MethodNotAllowed(ClientError):
    """A method the route does not take (POST /router)."""

    status_code = 405


class TooLarge(ClientError):
    """A text or a batch over its configured cap."""

    status_code = 413


class NotJson(ClientError):
    """A request body sent without a JSON content type."""

    status_code = 415


class InvalidInput(ClientError):
    """Missing, empty or malformed input (FastAPI's own validation errors are 422 too)."""

    status_code = 422


class Unavailable(ApiError):
    """Not served now: a load balancer or client retries it (with Retry-After, when it says when)."""

    status_code = 503


class Overloaded(Unavailable):
    """More queued work than the replica's budget (SENTIMENT_MAX_QUEUE_S)."""


class Draining(Unavailable):
    """The server is shutting down: it answers the requests it took and takes no more."""


class ModelUnavailable(Unavailable):
    """An allowed model that could not be loaded on this replica just now."""


class Unhealthy(Unavailable):
    """The model did not answer a real inference (GET /healthcheck)."""


def error_table(kind: type[ApiError] = ApiError) -> list[type[ApiError]]:
    """The rows of the error table: every subclass of `kind` that has none of its own."""
    return [row for sub in kind.__subclasses__() for row in error_table(sub) or [sub]]
