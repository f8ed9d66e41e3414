"""Why predict_batch chunks by length: served-like batches (32 random corpus texts) run as one
padded chunk against the model's length-aware chunks, in-process.

    python -m bench.chunking [--model DIR]     # default: the full-size stand-in (models/full)
"""

import argparse
import random
import sys
import time
from pathlib import Path

from bench.corpus import corpus
from sentiment.model import SentimentBertModel, available_cores
from sentiment.testing import ensure_model

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Time both ways over the same batches and print sentences/s."""
    parser = argparse.ArgumentParser(prog="python -m bench.chunking")
    parser.add_argument("--model", default=str(ROOT / "models" / "full"))
    parser.add_argument("--batches", type=int, default=12)
    args = parser.parse_args(argv)
    ensure_model(args.model)
    model = SentimentBertModel(args.model, num_threads=available_cores())
    texts = corpus(2000)
    ids = model.tokenizer(texts, truncation=True, max_length=model.max_length)["input_ids"]
    rng = random.Random(0)
    batches = [[ids[i] for i in rng.sample(range(len(texts)), 32)] for _ in range(args.batches)]
    model._forward(batches[0])  # warm up
    for name, split in (
        ("one padded chunk", lambda rows: [list(range(len(rows)))]),
        ("length-aware chunks", model._chunks),
    ):
        start = time.perf_counter()
        for rows in batches:
            for chunk in split(rows):
                model._forward([rows[i] for i in chunk])
        rate = 32 * len(batches) / (time.perf_counter() - start)
        print(f"{name:20s} {rate:6.1f} sentences/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
