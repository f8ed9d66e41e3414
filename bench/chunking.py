"""What a server's model call can do: batches of random corpus texts (what a replica holds, not the
whole corpus sorted), in-process, as one padded chunk and as predict_batch's length-aware chunks.

    python -m bench.chunking [--model DIR] [--precision auto] [--sizes 32,64,128,256] [--pads 16]

The figures behind SENTIMENT_MAX_BATCH_SIZE's default, PAD_MULTIPLE (each forward pass padded to a
multiple of it: `--pads 1,16` compares exact widths with it) and the README's "why the targets are
missed". Every batch is drawn fresh, as a server meets them.
"""

import argparse
import random
import sys
import time
from pathlib import Path

from bench.corpus import corpus
from sentiment import model as model_module
from sentiment.model import SentimentBertModel, available_cores
from sentiment.testing import ensure_model

ROOT = Path(__file__).resolve().parents[1]
TEXTS_PER_SIZE = 512  # texts timed per batch size (at least 2 batches)


def main(argv: list[str] | None = None) -> int:
    """Time both ways for each batch size over the same random batches and print sentences/s."""
    parser = argparse.ArgumentParser(prog="python -m bench.chunking")
    parser.add_argument("--model", default=str(ROOT / "models" / "full"))
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--sizes", default="32,64,128,256", help="texts per model call")
    parser.add_argument("--pads", default=str(model_module.PAD_MULTIPLE), help="pad multiples")
    args = parser.parse_args(argv)
    ensure_model(args.model)
    model = SentimentBertModel(args.model, num_threads=available_cores(), precision=args.precision)
    texts = corpus(2000)
    ids = model.tokenizer(texts, truncation=True, max_length=model.max_length)["input_ids"]
    rng = random.Random(0)
    print(f"{model.describe()}; random corpus texts, sentences/s")
    model.predict_batch(texts[:64])  # warm up
    for size in (int(s) for s in args.sizes.split(",")):
        for pad in (int(p) for p in args.pads.split(",")):
            model.pad_multiple = pad
            rates = {}
            for name, split in (
                ("one padded chunk", lambda rows: [list(range(len(rows)))]),
                ("length-aware chunks", model._chunks),
            ):
                batches = [rng.sample(ids, size) for _ in range(max(2, TEXTS_PER_SIZE // size))]
                start = time.perf_counter()
                for rows in batches:
                    for chunk in split(rows):
                        model._forward([rows[i] for i in chunk])
                rates[name] = size * len(batches) / (time.perf_counter() - start)
            print(
                f"calls of {size:3d} texts, padded to {pad:2d}: "
                + ", ".join(f"{k} {v:6.1f}" for k, v in rates.items())
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
