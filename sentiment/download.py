"""Save a model (hub id or folder) into a folder, for offline use or to bake into an image.

python -m sentiment.download DIR                 # SENTIMENT_MODEL, or the SST-2 default
python -m sentiment.download DIR --model ID --revision REV
"""

import argparse
import sys
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sentiment.settings import Settings, StartupError
from sentiment.source import ModelLoadError, load_failure


def make_readable(folder: Path) -> None:
    """Let every user read a saved model: weights are saved 0600, which a container's user cannot read."""
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o444)


def download(model: str, folder: str | Path, revision: str | None = None) -> Path:
    """Fetch `model` and save its tokenizer and weights into `folder`; return the folder."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        weights = AutoModelForSequenceClassification.from_pretrained(model, revision=revision)
    except Exception as error:
        raise load_failure(model, error) from error
    folder = Path(folder)
    tokenizer.save_pretrained(folder)
    weights.save_pretrained(folder)
    make_readable(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Download from the command line."""
    try:
        settings = Settings.from_env()
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog="python -m sentiment.download",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", help="where to save it (created if missing)")
    parser.add_argument("--model", default=settings.model, help="hub id or folder")
    parser.add_argument("--revision", default=settings.model_revision, help="hub revision")
    args = parser.parse_args(argv)
    try:
        folder = download(args.model, args.folder, args.revision)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"saved {args.model} to {folder}; use it with SENTIMENT_MODEL={folder.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
