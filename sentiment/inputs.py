"""The input rules and the error table: what a text may be, and what each refusal answers.

No FastAPI, no Ray: the CLI applies the same rules as both apps (sentiment.web turns these errors
into HTTP answers), and the model-only image has no web stack.
"""

from sentiment.settings import Settings


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
    """Not taken now, with a Retry-After: a load balancer or client retries it."""

    status_code = 503


class Overloaded(Unavailable):
    """More queued work than the replica's budget (SENTIMENT_MAX_QUEUE_S)."""


class Draining(Unavailable):
    """The server is shutting down: it answers the requests it took and takes no more."""


class ModelUnavailable(Unavailable):
    """An allowed model that could not be loaded on this replica just now."""


def check_text(text: str | None, field: str, settings: Settings) -> str:
    """Return `text` if it can be classified, else raise the ClientError that says why: the one
    rule for a text, in both apps and the CLI (the README's input rules)."""
    if text is None:
        raise InvalidInput(f"{field} is required")
    if not text.strip():
        raise InvalidInput(f"{field} is empty or only whitespace")
    if len(text) > settings.max_text_chars:
        raise TooLarge(
            f"{field} has {len(text)} characters; the limit is {settings.max_text_chars}"
            " (SENTIMENT_MAX_TEXT_CHARS)"
        )
    return text


def check_texts(texts: list[str], settings: Settings, field: str = "texts") -> list[str]:
    """Check a batch: not empty, not over the cap, every text classifiable."""
    if not texts:
        raise InvalidInput(f"{field} is empty; send at least one text")
    if len(texts) > settings.max_batch_texts:
        raise TooLarge(
            f"{field} has {len(texts)} items; the limit is {settings.max_batch_texts}"
            " (SENTIMENT_MAX_BATCH_TEXTS)"
        )
    return [check_text(text, f"{field}[{i}]", settings) for i, text in enumerate(texts)]


def error_table(kind: type[ApiError] = ApiError) -> list[type[ApiError]]:
    """The rows of the error table: every subclass of `kind` that has none of its own."""
    return [row for sub in kind.__subclasses__() for row in error_table(sub) or [sub]]
