"""The load benchmark: served throughput and latency against the in-process limit, in one run.

    python -m bench                 # full-size model (built if missing)
    python -m bench --smoke         # tiny model, about a second a step: checks the harness works
    python -m bench --model DIR --seconds 20 --concurrency 1,8,32,64
    python -m bench --page docs/performance.md      # what `make bench` runs

It measures the in-process limit of every engine (bench/precision.py: torch and ONNX Runtime,
fp32, int8 and this CPU's native 16-bit formats, the served one padded too; length-sorted batches
of 32, batches in arrival order, batch-1 latency, agreement with fp32), starts the project as a user
would (`make up`'s tune record, `ray start --head` with ray.env, both entry scripts, default
settings), drives each endpoint on loopback at each concurrency for a bounded time, then one client
of lone texts beside batch clients, does the same to a plain FastAPI peer (bench/baseline.py) and to
LitServe as its users run it (bench/litserve_peer.py: a transformers pipeline) in fp32 and in
torch's fastest precision, and writes results.json, results.md and results.png to --out (and the
performance page with --page), printing the table last.
"""

import argparse
import json
import random
import sys
from dataclasses import asdict
from pathlib import Path

from bench.chunking import random_batches
from bench.harness import ROOT
from bench.load import (
    BATCH_TEXTS,
    BESIDE_CLIENTS,
    LONE,
    Run,
    bench_env,
    measure,
    measure_together,
    peer,
    replica_memory_mb,
    served_apps,
)
from bench.precision import Figures, cpu_line, fastest_safe, load
from bench.precision import measure as measure_engines
from bench.report import plot, table, targets_met, write_page
from sentiment import tune
from sentiment.corpus import corpus
from sentiment.model import NATIVE_BF16_FLAGS, choose_runtime, cpu_flags
from sentiment.settings import Settings, available_cores, ray_env
from sentiment.testing import ensure_model


def engines_to_measure(served: str) -> list[str]:
    """torch in fp32, int8 and the 16-bit formats this CPU does in hardware (the others only
    emulate them), the served engine padded (what padding-free saves), and ONNX Runtime's."""
    flags = cpu_flags()
    native = {"bf16": NATIVE_BF16_FLAGS, "fp16": {"amx_fp16", "avx512_fp16"}}
    precisions = ["fp32", *(p for p, needs in native.items() if flags & needs), "int8"]
    engines = [f"torch-{precision}" for precision in precisions]
    if served.startswith("torch-"):
        engines.append(f"{served}-padded")
    return list(dict.fromkeys([*engines, "onnxruntime-fp32", "onnxruntime-int8", served]))


def served_engine(model_dir: str) -> str:
    """The engine the service runs by default here, as `make up` leaves it: with runtime and
    precision auto, sentiment.tune measures this machine first unless it has already."""
    settings = Settings()
    if settings.runtime == settings.precision == "auto":
        tune.main(["--model", model_dir, "--if-missing"])
    runtime, precision, _ = choose_runtime(
        model_dir,
        None,
        settings.device,
        settings.precision,
        settings.runtime,
        settings.tune_file,
        settings.num_threads or available_cores(),
    )
    return f"{runtime}-{precision}"


def torch_fastest(figures: list[Figures]) -> str:
    """torch's fastest precision here whose labels agree with fp32's (what a LitServe user runs)."""
    plain = [f for f in figures if f.precision.startswith("torch-") and f.precision.count("-") == 1]
    return fastest_safe(plain).precision.removeprefix("torch-")


def limit_of(figures: list[Figures], served_precision: str) -> dict:
    """The in-process limit the targets are measured against, and what each engine did."""
    best = fastest_safe(figures)
    quickest = min((f for f in figures if f.safe), key=lambda f: f.batch1_p50_ms)
    return {
        "threads": available_cores(),
        "precisions": [asdict(f) for f in figures],
        "best_precision": best.precision,
        "limit_sentences_per_s": best.sentences_per_s,
        "batch1_p50_ms": quickest.batch1_p50_ms,
        "batch1_precision": quickest.precision,
        "served_precision": served_precision,  # the engine the service runs by default here
        "litserve_precision": torch_fastest(figures),
    }


def replica_ceilings(model_dir: str, engine: str, texts: list[str]) -> dict[int, float]:
    """The model's own sentences/s on what a replica holds at 32 clients of one text (random
    batches of 32) and of 32 texts (random batches of the largest model call), run in the
    batcher's lanes as the replica runs them under load: the served cells' ceilings."""
    settings = Settings()
    lanes = min(settings.max_concurrent_batches, available_cores())
    model = load(model_dir, engine)
    rng = random.Random(0)
    return {
        size: random_batches(model, texts, size, lanes, rng)
        for size in dict.fromkeys([BATCH_TEXTS, settings.max_batch_size])
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: build the full-size stand-in)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, short steps")
    parser.add_argument("--seconds", type=float, help="seconds per step (default 15, smoke 1)")
    parser.add_argument("--concurrency", help="comma-separated levels (default 1,8,32,64)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results folder")
    parser.add_argument("--no-peers", action="store_true", help="skip FastAPI and LitServe")
    parser.add_argument(
        "--engines",
        help="in-process RUNTIME-PRECISION[-padded] (default: torch and ONNX Runtime, fp32, int8"
        " and this CPU's native 16-bit formats, the served one padded)",
    )
    parser.add_argument("--page", help="also write the performance page here (docs/performance.md)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.smoke else 15.0)
    levels = [
        int(c) for c in (args.concurrency or ("1,4" if args.smoke else "1,8,32,64")).split(",")
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = bench_env()
    kind = "tiny" if args.smoke else "full"
    model_dir = args.model or ensure_model(ROOT / "models" / kind, kind)
    texts = corpus(300 if args.smoke else 2000)

    served = served_engine(model_dir)
    print(f"in-process limits ({model_dir}) ...", flush=True)
    figures = measure_engines(
        model_dir,
        args.engines.split(",") if args.engines else engines_to_measure(served),
        texts[: 300 if args.smoke else 1000],
        seconds,
        log=lambda line: print(f"  {line}", flush=True),
    )
    limit = limit_of(figures, served)
    print(f"  {served}, random batches as a replica runs them ...", flush=True)
    limit["replica_ceilings"] = replica_ceilings(model_dir, served, texts)
    runs: list[Run] = []
    with served_apps(model_dir, env) as url:
        for target, path in (
            ("GET /router", "/router"),
            ("POST /classify", "/classify"),
            ("POST /classify/batch", "/classify/batch"),
        ):
            for level in levels:
                print(f"{target} at concurrency {level} ...", flush=True)
                runs.append(measure(target, url + path, texts, level, seconds))
        print(f"{LONE}: 1 client, {BESIDE_CLIENTS} batch clients ...", flush=True)
        beside = [
            (LONE, f"{url}/classify", 1),
            ("POST /classify/batch (the load)", f"{url}/classify/batch", BESIDE_CLIENTS),
        ]
        runs += measure_together(beside, texts, seconds)
        memory = replica_memory_mb()
    if not args.no_peers:
        # The plain FastAPI server runs what the service runs; LitServe as its users run it (a
        # transformers pipeline) in fp32 and in torch's fastest precision here.
        runtime, precision = served.split("-", 1)
        peer_env = {"SENTIMENT_RUNTIME": runtime, "SENTIMENT_PRECISION": precision}
        peers = [("baseline POST /classify", "bench.baseline", "/docs", "/classify", peer_env)]
        for precision in dict.fromkeys(["fp32", limit["litserve_precision"]]):
            name = f"litserve POST /predict ({precision})"
            peers.append(
                (
                    name,
                    "bench.litserve_peer",
                    "/health",
                    "/predict",
                    {"SENTIMENT_PRECISION": precision},
                )
            )
        for name, module, ready, path, settings in peers:
            with peer(module, model_dir, {**env, **settings}, ready) as url:
                for level in levels:
                    print(f"{name} at concurrency {level} ...", flush=True)
                    runs.append(measure(name, url + path, texts, level, seconds))

    verdicts = targets_met(limit, runs, levels)
    markdown = (
        f"{model_dir}; {cpu_line()}\n\n"
        + table(limit, runs, memory)
        + "\n\n"
        + "\n".join(f"- {line}" for line in verdicts)
        + "\n"
    )
    results = {
        "model": model_dir,
        "cpu": cpu_line(),
        "cores": available_cores(),
        "seconds_per_step": seconds,
        "ray_env": {name: env[name] for name in ray_env()},
        "in_process": limit,
        "runs": [{**asdict(r), "rps": r.rps, "tps": r.tps} for r in runs],
        "replica_memory_mb": memory,
        "targets": verdicts,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown)
    plot(limit, runs, out / "results.png")
    print(f"\nwrote {out}/results.json, results.md, results.png\n")
    if args.page:
        write_page(Path(args.page), markdown, out / "results.png")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
