"""The input rules: what a text and a batch may be, and which error of the table refuses them.

No FastAPI, no Ray: the CLI applies the same rules as both apps, and the model-only image has no
web stack.
"""

from sentiment.errors import InvalidInput, TooLarge
from sentiment.settings import Settings


def check_text(text: str | None, field: str, settings: Settings) -> str:
    """Return `text` if it can be classified, else raise the ClientError that says why: the one
    rule for a text, in both apps and the CLI (the README's input rules table)."""
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
