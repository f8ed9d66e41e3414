"""What a server's model call can do: batches of random corpus texts (what a replica holds, not the
whole corpus sorted), in-process, as one padded chunk and as predict_batch's length-aware chunks.

    python -m bench.chunking [--model DIR] [--precision auto] [--sizes 32,64,128,256] [--pads 16]
    python -m bench.chunking --lanes 1,2 --sizes 32,256
    python -m bench.chunking --lanes 1,2 --sizes 32,64,256 --compile
    python -m bench.chunking --budgets 256,512,1024,2048 --sizes 32,256

The figures behind SENTIMENT_MAX_BATCH_SIZE's default, PAD_MULTIPLE (each forward pass padded to a
multiple of it: `--pads 1,16` compares exact widths with it), SENTIMENT_MAX_CONCURRENT_BATCHES
(`--lanes 2`: each batch's texts split in two calls run side by side, each on a share of the
cores, against one call on all of them) and the verdicts of docs/performance.md. Every batch
is drawn fresh, as a server meets them. `--budgets` times padding-free calls cut at each token
budget (TOKEN_BUDGET, sentiment/model.py). `--compile` times the same again after `torch.compile`
(why the service does not compile: docs/speed.md).
"""

import argparse
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.precision import latencies
from sentiment import model as model_module
from sentiment.corpus import corpus
from sentiment.model import SentimentBertModel
from sentiment.settings import available_cores
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
    parser.add_argument("--lanes", default="", help="calls side by side: time predict_batch")
    parser.add_argument("--compile", action="store_true", help="then again, torch.compile'd")
    parser.add_argument("--budgets", default="", help="token budgets of a padding-free call")
    args = parser.parse_args(argv)
    ensure_model(args.model)
    model = SentimentBertModel(args.model, num_threads=available_cores(), precision=args.precision)
    texts = corpus(2000)
    ids = model.tokenizer(texts, truncation=True, max_length=model.max_length)["input_ids"]
    rng = random.Random(0)
    print(f"{model.describe()}; random corpus texts, sentences/s")
    model.predict_batch(texts[:64])  # warm up
    if args.budgets:
        model.chunk_size = max(int(s) for s in args.sizes.split(","))  # the budget alone cuts
        for size in (int(s) for s in args.sizes.split(",")):
            rates = []
            for budget in (int(b) for b in args.budgets.split(",")):
                model.token_budget = budget
                rates.append(f"budget {budget} {random_batches(model, texts, size, 1, rng):6.1f}")
            print(f"calls of {size:3d} texts, padding-free: " + ", ".join(rates))
        return 0
    if args.lanes:
        sizes = [int(s) for s in args.sizes.split(",")]
        counts = [int(n) for n in args.lanes.split(",")]
        lanes(model, texts, sizes, counts, rng)
        if args.compile:
            compiled(model, texts, counts)
            lanes(model, texts, sizes, counts, rng)
        return 0
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


def lanes(
    model: SentimentBertModel,
    texts: list[str],
    sizes: list[int],
    counts: list[int],
    rng: random.Random,
) -> None:
    """Time predict_batch on random batches, each split across `count` calls side by side on a
    share of the cores (a call alone on all of them for 1), as the batcher's lanes run them."""
    for size in sizes:
        rates = []
        for count in counts:
            share = max(1, model.num_threads // count)
            rates.append(
                f"{count} x {share} threads {random_batches(model, texts, size, count, rng):6.1f}"
            )
        print(f"calls of {size:3d} texts: " + ", ".join(rates))
    p50 = statistics.median(latencies(model, texts[:200], seconds=0))
    print(f"one text at a time, all cores: p50 {p50:.1f} ms")


def random_batches(
    model: SentimentBertModel, texts: list[str], size: int, lanes: int, rng: random.Random
) -> float:
    """Sentences/s on fresh random batches of `size` texts, each split over `lanes` calls side by
    side on a share of the cores (one call on all of them for 1), as a replica's batcher runs them."""
    share = max(1, model.num_threads // lanes)
    # Each lane's thread sets its own thread count as it starts.
    with ThreadPoolExecutor(lanes, initializer=model.use_threads, initargs=(share,)) as pool:
        list(pool.map(model.predict_batch, [texts[:8]] * lanes))  # warm up
        batches = [rng.sample(texts, size) for _ in range(max(2, TEXTS_PER_SIZE // size))]
        start = time.perf_counter()
        for batch in batches:
            list(pool.map(model.predict_batch, [batch[n::lanes] for n in range(lanes)]))
        return size * len(batches) / (time.perf_counter() - start)


def compiled(model: SentimentBertModel, texts: list[str], counts: list[int]) -> None:
    """Replace the model's network by its torch.compile'd self, built for every thread count and
    batch kind (one text, many) the timings use, so that none of them pays for compiling."""
    start = time.perf_counter()
    model.model = torch.compile(model.model, dynamic=True)
    for threads in sorted({max(1, model.num_threads // count) for count in counts}):
        with ThreadPoolExecutor(1, initializer=model.use_threads, initargs=(threads,)) as pool:
            pool.submit(model.predict_batch, texts[:1]).result()
            pool.submit(model.predict_batch, texts[:8]).result()
    print(f"torch.compile(dynamic=True), built in {time.perf_counter() - start:.1f} s:")


if __name__ == "__main__":
    sys.exit(main())
