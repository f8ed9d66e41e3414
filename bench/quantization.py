"""int8 against fp32, in-process on the benchmark corpus: speed, label agreement, score difference.

python -m bench.quantization [--model DIR]     # default: the full-size stand-in (models/full)
"""

import argparse
import sys
import time
from pathlib import Path

from bench.corpus import corpus
from sentiment.model import SentimentBertModel, available_cores
from sentiment.testing import ensure_model

ROOT = Path(__file__).resolve().parents[1]


def speed(model: SentimentBertModel, texts: list[str]) -> float:
    """Sentences/s over `texts` in length-sorted batches, after one warm-up batch."""
    model.predict_batch(texts[:32])
    start = time.perf_counter()
    model.predict_batch(texts)
    return len(texts) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Compare int8 with fp32 and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.quantization")
    parser.add_argument("--model", default=str(ROOT / "models" / "full"))
    parser.add_argument("--texts", type=int, default=1000)
    args = parser.parse_args(argv)
    ensure_model(args.model)
    texts = corpus(args.texts)
    fp32 = SentimentBertModel(args.model, num_threads=available_cores())
    int8 = SentimentBertModel(args.model, num_threads=available_cores(), quantization="int8")
    fp32_speed, int8_speed = speed(fp32, texts), speed(int8, texts)
    a, b = fp32.predict_batch(texts), int8.predict_batch(texts)
    agree = sum(x["label"] == y["label"] for x, y in zip(a, b, strict=True)) / len(texts)
    diff = max(
        abs(x["scores"][label] - y["scores"][label])
        for x, y in zip(a, b, strict=True)
        for label in x["scores"]
    )
    print(f"{len(texts)} texts, {available_cores()} threads, {args.model}")
    print(
        f"fp32 {fp32_speed:.1f} sentences/s, int8 {int8_speed:.1f} sentences/s:"
        f" {int8_speed / fp32_speed:.2f}x"
    )
    print(f"labels agree on {agree:.1%}; largest score difference {diff:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
