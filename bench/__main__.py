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
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from bench.chunking import random_batches
from bench.precision import IDLE_S, Figures, cpu_line, fastest_safe, load, percentile
from bench.precision import measure as measure_engines
from sentiment import tune
from sentiment.corpus import corpus
from sentiment.deploy import processes
from sentiment.model import NATIVE_BF16_FLAGS, available_cores, choose_runtime, cpu_flags
from sentiment.settings import Settings, ray_env
from sentiment.testing import ensure_model

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BATCH_TEXTS = 32  # texts per POST /classify/batch request
BESIDE_CLIENTS = 8  # batch clients that keep a replica busy while one client sends lone texts
LONE = "POST /classify beside batch load"


@dataclass
class Run:
    """One target at one concurrency."""

    target: str
    concurrency: int
    seconds: float
    requests: int
    texts: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    loadgen_cpu: float  # cores the load generator itself used
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Answered requests per second."""
        return (self.requests - self.errors) / self.seconds

    @property
    def tps(self) -> float:
        """Texts classified per second."""
        return self.texts / self.seconds


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


def replica_memory_mb() -> dict[str, float]:
    """Resident memory of each Serve replica on this machine, by its process title."""
    found = {}
    for pid, argv in processes().items():
        if argv[0].startswith("ray::ServeReplica:"):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kb = int(status.split("VmRSS:")[1].split()[0])
            found[f"{argv[0].removeprefix('ray::ServeReplica:')} ({pid})"] = kb / 1024
    return found


def bench_env() -> dict[str, str]:
    """The environment the benchmark starts Ray in: ray.env as a user gets it, then this one."""
    return {
        # Serve's fast path as a user gets it by default; a variable set here wins (to compare).
        **ray_env(),
        **os.environ,
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Keep Ray on loopback: otherwise it talks to itself on the machine's network address.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


async def drive(
    make_request: Callable[[aiohttp.ClientSession, int], object],
    texts_per_request: int,
    concurrency: int,
    seconds: float,
) -> tuple[int, int, int, list[float], dict[str, int]]:
    """Keep `concurrency` requests in flight for `seconds`; return counts and latencies."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = {"next": 0, "texts": 0}
    deadline = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                n = counter["next"]
                counter["next"] += 1
                begin = time.perf_counter()
                retry_after = ""
                try:
                    async with make_request(session, n) as response:
                        await response.read()
                        ok = response.status == 200
                        kind = f"http {response.status}"
                        retry_after = response.headers.get("Retry-After", "")
                except (aiohttp.ClientError, TimeoutError) as error:
                    ok, kind = False, type(error).__name__
                if ok:
                    latencies.append((time.perf_counter() - begin) * 1000)
                    counter["texts"] += texts_per_request
                else:
                    errors[kind] = errors.get(kind, 0) + 1
                if retry_after.isdigit():  # wait as a 503 asks, as the README tells clients to
                    left = deadline - time.perf_counter()
                    await asyncio.sleep(max(0.0, min(int(retry_after), left)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counter["next"], counter["texts"], sum(errors.values()), latencies, errors


def requester(target: str, url: str, texts: list[str]) -> tuple[Callable, int]:
    """How one target's requests are made, and how many texts each carries."""
    size = len(texts)
    if target.startswith("POST /classify/batch"):

        def request(session: aiohttp.ClientSession, n: int):
            start = (n * BATCH_TEXTS) % (size - BATCH_TEXTS)
            return session.post(url, json={"texts": texts[start : start + BATCH_TEXTS]})

        return request, BATCH_TEXTS
    if "/predict" in target:  # LitServe: the text in a JSON body

        def request(session: aiohttp.ClientSession, n: int):
            return session.post(url, json={"input_text": texts[n % size]})

        return request, 1
    param = "txt" if target.startswith("GET") else "input_text"
    method = "get" if target.startswith("GET") else "post"

    def request(session: aiohttp.ClientSession, n: int):
        return getattr(session, method)(url, params={param: texts[n % size]})

    return request, 1


def measure(target: str, url: str, texts: list[str], concurrency: int, seconds: float) -> Run:
    """Drive one endpoint at one concurrency and summarise it."""
    (run,) = measure_together([(target, url, concurrency)], texts, seconds)
    return run


def measure_together(
    cells: list[tuple[str, str, int]], texts: list[str], seconds: float
) -> list[Run]:
    """Drive several endpoints at once, each (target, url, concurrency) at its own concurrency,
    and summarise each."""

    async def together() -> list:
        return await asyncio.gather(
            *(
                drive(*requester(target, url, texts), concurrency, seconds)
                for target, url, concurrency in cells
            )
        )

    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    results = asyncio.run(together())
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
    return [
        Run(
            target=target,
            concurrency=concurrency,
            seconds=wall,
            requests=requests,
            texts=done_texts,
            errors=errors,
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
            loadgen_cpu=cpu,
            error_kinds=kinds,
        )
        for (target, _, concurrency), (requests, done_texts, errors, latencies, kinds) in zip(
            cells, results, strict=True
        )
    ]


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail after `timeout_s`, or as soon as `process` exits."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


@contextmanager
def served_apps(model_dir: str, env: dict[str, str]) -> Iterator[str]:
    """Start a Ray head and both apps as a user would; `ray stop` afterwards, whatever happened."""
    temp_dir = tempfile.mkdtemp(prefix="ray-bench-", dir="/tmp")
    gcs_port, http_port = free_port(), free_port()
    env = {**env, "SENTIMENT_MODEL": model_dir, "SENTIMENT_HTTP_PORT": str(http_port)}
    start = [
        str(BIN / "ray"), "start", "--head", f"--num-cpus={available_cores()}",
        "--disable-usage-stats", "--include-dashboard=false", f"--temp-dir={temp_dir}",
        f"--port={gcs_port}", f"--ray-client-server-port={free_port()}",
    ]  # fmt: skip
    try:
        subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
        env["RAY_ADDRESS"] = f"127.0.0.1:{gcs_port}"
        # Both scripts at once, as a user may run them (each deploys its own app).
        scripts = [
            subprocess.Popen(
                [sys.executable, script],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for script in ("serve_with_rayserve.py", "serve_with_fastapi.py")
        ]
        try:
            for script in scripts:
                _, stderr = script.communicate(timeout=300)
                if script.returncode:
                    raise subprocess.CalledProcessError(script.returncode, script.args, b"", stderr)
        finally:
            for script in scripts:
                script.kill()  # nothing to do once it has exited
        url = f"http://127.0.0.1:{http_port}"
        wait_until_up(f"{url}/healthcheck", 120)
        yield url
    finally:
        # `ray stop` and the HAProxy it leaves behind (sentiment.deploy.stop).
        subprocess.run(
            [sys.executable, "-m", "sentiment.deploy", "stop"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(temp_dir, ignore_errors=True)


@contextmanager
def peer(module: str, model_dir: str, env: dict[str, str], ready: str) -> Iterator[str]:
    """Start a peer server (`python -m MODULE PORT`); stop it by PID afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", module, str(port)],
        cwd=ROOT,
        env={**env, "SENTIMENT_MODEL": model_dir},
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # LitServe runs worker processes: stop the whole group
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}{ready}", 120, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def targets_met(limit: dict, runs: list[Run], levels: list[int]) -> list[str]:
    """Check the performance issue's targets; one line per target, with the ratio that decides it."""
    at = {(r.target, r.concurrency): r for r in runs}
    top = 32 if 32 in levels else max(levels)
    best = limit["best_precision"]
    ceilings = {int(size): rate for size, rate in limit.get("replica_ceilings", {}).items()}
    # The served precision's in-process figures.
    served = next(
        (f for f in limit["precisions"] if f["precision"] == limit["served_precision"]),
        {"precision": limit["served_precision"]},
    )
    lines = []
    for target, goal in (
        ("GET /router", 0.85),
        ("POST /classify", 0.85),
        ("POST /classify/batch", 0.95),
    ):
        run = at.get((target, top))
        if run:
            ratio = run.tps / limit["limit_sentences_per_s"]
            ok = ratio >= goal and run.errors == 0
            # What the model itself does on the batches this cell hands a replica.
            size = BATCH_TEXTS if target != "POST /classify/batch" else max(ceilings, default=0)
            ceiling = ceilings.get(size, 0) / limit["limit_sentences_per_s"]
            lines.append(
                f"{'met ' if ok else 'MISS'} {target} at c{top}: {ratio:.2f}x the in-process limit"
                f" ({best}, goal {goal}x), {run.errors} errors"
                + (
                    f"; the model alone on random batches of {size} in {served['precision']}:"
                    f" {ceiling:.2f}x, so the serving path keeps {ratio / ceiling:.2f}x of it"
                    if ceiling
                    else ""
                )
            )
    low = min(levels)
    # What the served precision's lone text costs in-process when calls come apart, as served.
    for target in ("GET /router", "POST /classify"):
        run = at.get((target, low))
        if run:
            extra = run.p50_ms - limit["batch1_p50_ms"]
            apart = served.get("batch1_apart_p50_ms")
            lines.append(
                f"{'met ' if extra <= 3 else 'MISS'} {target} at c{low}: p50 {run.p50_ms:.1f} ms,"
                f" the fastest in-process batch-1 p50 ({limit['batch1_precision']}) + {extra:.1f} ms"
                " (goal +3 ms)"
                + (
                    f"; {served['precision']} in-process with calls {IDLE_S * 1000:g} ms apart"
                    f" {apart:.1f} ms, so the serving path +{run.p50_ms - apart:.1f} ms"
                    if apart
                    else ""
                )
            )
    # A lone text while batch clients keep the replica busy: about two model calls of the
    # configured size (the largest call, as the replica runs it in its lanes).
    lone = at.get((LONE, 1))
    size = max(ceilings, default=0)
    if lone and ceilings.get(size):
        call_ms = 1000 * size / ceilings[size]
        ok = lone.p50_ms <= 2 * call_ms and lone.errors == 0
        lines.append(
            f"{'met ' if ok else 'MISS'} {LONE}: p50 {lone.p50_ms:.0f} ms, p99 {lone.p99_ms:.0f}"
            f" ms, {lone.errors} refused or failed; one model call of {size} texts in-process"
            f" {call_ms:.0f} ms (goal: p50 <= 2x)"
        )
    # Against LitServe as its users run it: a pipeline in torch's fastest precision here.
    same = limit.get("litserve_precision", limit["served_precision"])
    litserve = at.get((f"litserve POST /predict ({same})", top))
    for target in ("GET /router", "POST /classify"):
        run = at.get((target, top))
        if run and litserve and litserve.rps:
            ratio = run.rps / litserve.rps
            lines.append(
                f"{'met ' if ratio >= 2 else 'MISS'} {target} at c{top}: {ratio:.2f}x LitServe's"
                f" requests/s in {same} (goal 2x)"
            )
    errors = sum(r.errors for r in runs)
    lines.append(f"{'met ' if not errors else 'MISS'} errors in every cell: {errors} in all")
    return lines


def table(limit: dict, runs: list[Run], memory: dict[str, float]) -> str:
    """Render the results as markdown: the in-process limits, then every served cell."""
    best = limit["limit_sentences_per_s"]
    rows = [
        f"In-process ({limit['threads']} threads; sentences/s on length-sorted batches of 32 and"
        " on batches of 32 in the corpus's order; batch-1 over the corpus in order):",
        "",
        "| engine | sorted batches | arrival order | batch-1 p50 ms | batch-1 p99 ms"
        f" | batch-1 p50 ms, {IDLE_S * 1000:g} ms apart | labels = fp32 | max score diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in limit["precisions"]:
        rows.append(
            f"| {f['precision']} | {f['sentences_per_s']:.1f} | {f.get('arrival_per_s', 0):.1f} |"
            f" {f['batch1_p50_ms']:.1f} | {f['batch1_p99_ms']:.1f} |"
            f" {f['batch1_apart_p50_ms']:.1f} | {f['agreement']:.2%} | {f['max_score_diff']:.4f} |"
        )
    rows += [
        "",
        f"Limit: {best:.1f} sentences/s ({limit['best_precision']}, the fastest whose labels agree"
        f" with fp32's); fastest batch-1 p50 {limit['batch1_p50_ms']:.1f} ms"
        f" ({limit['batch1_precision']}).",
        "",
        f"The service runs {limit['served_precision']}. What a replica holds under load, in"
        " that engine in-process, random corpus texts run as its batcher runs them (calls side by"
        " side in its lanes): "
        + ", ".join(
            f"batches of {size} {rate:.1f} sentences/s ({rate / best:.2f}x the limit)"
            for size, rate in limit.get("replica_ceilings", {}).items()
        )
        + ".",
        "",
        "| target | conc. | req/s | texts/s | x limit | p50 ms | p95 ms | p99 ms | errors | loadgen CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        rows.append(
            f"| {r.target} | {r.concurrency} | {r.rps:.1f} | {r.tps:.1f} | {r.tps / best:.2f} |"
            f" {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | {r.loadgen_cpu:.2f} |"
        )
    rows += [
        "",
        "Replica memory after the load (RSS): "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(memory.items())),
    ]
    return "\n".join(rows)


def plot(limit: dict, runs: list[Run], path: Path) -> None:
    """Draw texts/s and p99 against concurrency for every target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for target in dict.fromkeys(r.target for r in runs):
        mine = [r for r in runs if r.target == target]
        levels = [r.concurrency for r in mine]
        left.plot(levels, [r.tps for r in mine], marker="o", label=target)
        right.plot(levels, [r.p99_ms for r in mine], marker="o", label=target)
    left.axhline(
        limit["limit_sentences_per_s"], color="grey", linestyle="--", label="in-process limit"
    )
    for axis, title in ((left, "texts/s"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent requests")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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


def write_page(page: Path, markdown: str, figure: Path) -> None:
    """Write the performance page from this run: its tables, verdicts and plot, nothing else."""
    picture = page.with_suffix(".png")
    shutil.copyfile(figure, picture)
    page.write_text(
        "# Performance\n\n"
        "Written by `make bench` (`python -m bench --page docs/performance.md`) from one run on the"
        " machine named below; every figure here comes from that run. The in-process table is the"
        " model alone (`python -m bench.precision` measures the same on your own model); the"
        " served table is the project started as `make up` starts it, driven over loopback.\n\n"
        f"![texts/s and p99 latency against concurrency]({picture.name})\n\n" + markdown
    )
    print(f"wrote {page} and {picture}")


if __name__ == "__main__":
    sys.exit(main())
