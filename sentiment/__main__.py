"""Classify texts from the command line: python -m sentiment "text" ... (or one text per stdin line)."""

import argparse
import json
import sys

from sentiment.errors import ClientError
from sentiment.inputs import check_text
from sentiment.settings import Settings, StartupError
from sentiment.source import check_available, check_source


def main(argv: list[str] | None = None) -> int:
    """Print one JSON answer per text."""
    parser = argparse.ArgumentParser(
        prog="python -m sentiment",
        description="Classify texts; the model comes from SENTIMENT_MODEL (hub id or folder).",
    )
    parser.add_argument("texts", nargs="*", help="texts to classify; none reads one per stdin line")
    parser.add_argument(
        "--check", action="store_true", help="only check that the model can be had (no weights)"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        texts: list[str] = []
        if not args.check:
            given = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
            # The same rule as the HTTP apps: an empty text is refused, not classified.
            texts = [check_text(text, f"text {n}", settings) for n, text in enumerate(given, 1)]
        if args.check:
            check_available(settings.model, settings.model_revision)
            print(f"model {settings.model} is available")
            return 0
        # What can be said of the model before torch and transformers load (seconds), so that a
        # bad setting, text or model is said at once.
        check_source(settings.model, settings.model_revision)
        from sentiment.model import SentimentBertModel

        model = SentimentBertModel.from_settings(settings)
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ClientError as error:
        print(f"error: {error.detail}", file=sys.stderr)
        return 2
    for answer in model.predict_batch(texts):
        print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
