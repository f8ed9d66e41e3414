"""A capacity model from a benchmark run: what one replica holds, what a load needs, what to autoscale on.

    python -m bench.capacity                                     # bench/results/results.json
    python -m bench.capacity --results FILE --p99-ms 300 --loads 100,1000,10000 --target "POST /classify"

`make bench` measures one replica (on this machine's cores) at several concurrency levels. For each
endpoint this takes the level with the most requests per second whose p99 stays within --p99-ms: that
rate is what one replica holds, and that level is the number of requests it has in hand there, which
is what Serve's `target_ongoing_requests` counts (a closed-loop client at concurrency C keeps C requests
ongoing). A stated load then needs load / rate replicas, each on a pod (or node) like the benchmark's,
with --headroom kept free for spikes and for the replicas still starting while the autoscaler reacts.
"""

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def operating_point(runs: list[dict], target: str, p99_ms: float) -> dict | None:
    """The run of `target` with the most requests per second whose p99 is within `p99_ms`."""
    fitting = [
        run
        for run in runs
        if run["target"] == target and run["errors"] == 0 and run["p99_ms"] <= p99_ms
    ]
    return max(fitting, key=lambda run: run["rps"], default=None)


def plan(rate: float, load: float, headroom: float) -> int:
    """Replicas that serve `load` requests/s at `rate` each, with `headroom` of each kept free."""
    return max(1, math.ceil(load / (rate * (1 - headroom))))


def report(
    results: dict, p99_ms: float, loads: list[float], headroom: float, targets: list[str]
) -> str:
    """The capacity table, as Markdown."""
    runs = results["runs"]
    lines = [
        f"From {results.get('cpu', 'a benchmark run')}: one replica per {results.get('cores', '?')}"
        f" cores; p99 within {p99_ms:g} ms; {headroom:.0%} headroom.",
        "",
        "| endpoint | one replica holds | at concurrency (target_ongoing_requests) | p99 ms | "
        + " | ".join(f"replicas for {load:g} req/s" for load in loads)
        + " |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in loads) + " |",
    ]
    for target in targets:
        point = operating_point(runs, target, p99_ms)
        if point is None:
            lines.append(
                f"| {target} | no level within {p99_ms:g} ms | | | "
                + " | ".join("" for _ in loads)
                + " |"
            )
            continue
        needs = [str(plan(point["rps"], load, headroom)) for load in loads]
        lines.append(
            f"| {target} | {point['rps']:.0f} req/s ({point['tps']:.0f} texts/s) | {point['concurrency']}"
            f" | {point['p99_ms']:.0f} | " + " | ".join(needs) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the capacity table for a benchmark's results."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--results", default=str(ROOT / "bench" / "results" / "results.json"))
    parser.add_argument("--p99-ms", type=float, default=300.0, help="latency objective (300)")
    parser.add_argument("--loads", default="100,1000,10000", help="requests/s to plan for")
    parser.add_argument(
        "--headroom", type=float, default=0.2, help="share of a replica kept free (0.2)"
    )
    parser.add_argument(
        "--target", action="append", help="endpoint(s), as the benchmark names them"
    )
    args = parser.parse_args(argv)
    path = Path(args.results)
    if not path.exists():
        print(f"error: no benchmark results at {path}: run `make bench` first", file=sys.stderr)
        return 1
    results = json.loads(path.read_text())
    targets = args.target or list(dict.fromkeys(
        run["target"] for run in results["runs"] if not run["target"].startswith(("baseline", "litserve"))
    ))  # fmt: skip
    loads = [float(load) for load in args.loads.split(",")]
    print(report(results, args.p99_ms, loads, args.headroom, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
