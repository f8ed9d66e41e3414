"""Build untrained DistilBERT classifiers for machines with no model hub: tests, benchmarks, demos.

Their labels mean nothing (random weights); they load through the same from_pretrained path as the
real model, and the full-size one costs exactly what the real model costs to run.

    python -m sentiment.testing tiny DIR    # dim 32, 2 layers: builds in well under a second
    python -m sentiment.testing full DIR    # the real architecture (66M parameters, 257 MB)
"""

import argparse
import sys
from pathlib import Path

import torch
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
)

from sentiment.download import make_readable

LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FULL_VOCAB_SIZE = 30522

# Whole words, so English-like text tokenizes to about one piece per word, as with the real vocabulary.
WORDS = """
a about after again all also always an and any are as at awful bad be beautiful because been
before best better between big boring both brilliant but by can cast character characters cinema
could day did do does dull each end enough even ever every excellent fan feel felt few film
films final first for from fun funny good great had has have he her here him his how i if in
into is it its just kind last least like little long look lost love loved made make makes many
me mess might more most movie movies much music must my never new nice no not nothing now of off
old on once one only or other our out over own part people perfect performance plot poor pretty
quite rather really right said same scene scenes screen see seen she should show so some
something still story such than that the their them then there these they thing think this those
though through time to too two up us very want was waste watch watching way we well were what
when where which while who why will with without wonderful work world worst would year years yet
you your serve ray makes easy hate terrible amazing adaptation although audience book camera
clever dialogue director dragged early effects ending expected family far go happens honestly hour
humour kids latest laughed left lets middle minute moving night pacing s saw screening season sequel
silly slow somehow soundtrack steals thought throughout villain watched weak whole works worth
""".split()
PUNCTUATION = list(".,!?;:'\"()-")
LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789")


def vocabulary(size: int | None = None) -> list[str]:
    """Make a WordPiece vocabulary: specials, words, characters, then fillers up to `size`."""
    pieces = [*SPECIAL_TOKENS, *PUNCTUATION, *LETTERS, *(f"##{c}" for c in LETTERS)]
    pieces += [w for w in dict.fromkeys(WORDS) if w not in pieces]
    if size is not None:
        pieces += [f"[unused{n}]" for n in range(size - len(pieces))]
    return pieces


def build_model(
    folder: str | Path, kind: str = "tiny", seed: int = 0, labels: dict[int, str] = LABELS
) -> Path:
    """Save an untrained DistilBERT classifier (`labels`, by default sentiment's two) and its
    tokenizer into `folder`; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(FULL_VOCAB_SIZE if kind == "full" else None)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores vocab_file= given by keyword (everything becomes [UNK]): pass it by position.
    tokenizer = DistilBertTokenizerFast(str(vocab_file), do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(folder)
    shape = {} if kind == "full" else {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
    config = DistilBertConfig(
        vocab_size=len(vocab),
        id2label=labels,
        label2id={label: i for i, label in labels.items()},
        # A wide initialisation spreads the tiny model's scores away from a coin flip, so its
        # labels are stable under batching; the full model keeps the real initialisation.
        initializer_range=0.02 if kind == "full" else 0.5,
        **shape,
    )
    torch.manual_seed(seed)
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    make_readable(folder)
    return folder


def ensure_model(folder: str | Path, kind: str = "full") -> str:
    """Return `folder`, building a model of `kind` there first unless one is saved there already."""
    if not (Path(folder) / "config.json").is_file():
        build_model(folder, kind)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    """Build a model from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m sentiment.testing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "kind", choices=["tiny", "full"], help="tiny for tests, full for benchmarks"
    )
    parser.add_argument("folder", help="where to save it (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = build_model(args.folder, args.kind, args.seed)
    print(f"saved an untrained {args.kind} DistilBERT to {folder} (its labels mean nothing)")
    print(f"use it with: SENTIMENT_MODEL={folder.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
