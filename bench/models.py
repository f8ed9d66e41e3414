"""What a second model on a replica costs the first: lone-text latency before and after.

    python -m bench.models                      # full-size stand-in, 300 requests a step

It starts the project as `make bench` does, with SENTIMENT_MODELS naming a second model (the same
folder under another id), and sends POST /classify one at a time: to the default model, then to
the second (loading it), then to each again. It prints each step's p50 in milliseconds.
"""

import argparse
import sys
import time

import httpx

from bench.harness import ROOT, percentile
from bench.load import bench_env, served_apps
from sentiment.corpus import corpus
from sentiment.testing import ensure_model


def lone_texts(client: httpx.Client, url: str, texts: list[str], model: str | None) -> float:
    """Send each text alone to `model` (None: the default); return the p50 in milliseconds."""
    latencies = []
    for text in texts:
        body = {"input_text": text, **({"model": model} if model else {})}
        started = time.perf_counter()
        answer = client.post(f"{url}/classify", json=body)
        latencies.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return percentile(latencies, 50)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the four steps."""
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__)
    parser.add_argument("--model", help="model folder (default: the full-size stand-in)")
    parser.add_argument("--requests", type=int, default=300, help="requests per step")
    args = parser.parse_args(argv)
    model_dir = args.model or ensure_model(ROOT / "models" / "full", "full")
    texts = corpus(2000)[: args.requests]
    env = {**bench_env(), "SENTIMENT_MODELS": f"second={model_dir}"}
    with served_apps(model_dir, env) as url, httpx.Client(timeout=60) as client:
        lone_texts(client, url, texts[:50], None)  # warm up
        alone = lone_texts(client, url, texts, None)
        lone_texts(client, url, texts[:50], "second")  # loads it
        second = lone_texts(client, url, texts, "second")
        default = lone_texts(client, url, texts, None)
    print(
        f"POST /classify, one at a time, p50 ms: the default model alone {alone:.1f}; after a"
        f" second model was loaded: the second {second:.1f}, the default {default:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
