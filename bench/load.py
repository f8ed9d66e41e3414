"""The load side of the benchmark: the project started as a user starts it, its peers, and a load
generator that keeps a number of requests in flight on loopback for a bounded time."""

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
import psutil

from bench.harness import (
    ROOT,
    answers,
    free_port,
    percentile,
    start_head,
    stop_head,
    stop_tree,
    wait_for,
)
from sentiment.settings import available_cores, ray_env
from sentiment_ops.head import processes

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


def replica_memory_mb() -> dict[str, float]:
    """Resident memory of each Serve replica on this machine, by its process title."""
    found = {}
    for pid, argv in processes().items():
        if argv[0].startswith("ray::ServeReplica:"):
            try:
                rss = psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
            found[f"{argv[0].removeprefix('ray::ServeReplica:')} ({pid})"] = rss / (1 << 20)
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


@contextmanager
def served_apps(model_dir: str, env: dict[str, str]) -> Iterator[str]:
    """Start a Ray head and both apps as a user would; stop Ray afterwards, whatever happened."""
    http_port = free_port()
    env = {**env, "SENTIMENT_MODEL": model_dir, "SENTIMENT_HTTP_PORT": str(http_port)}
    head = start_head(
        env, available_cores(), "--include-dashboard=false", f"--metrics-export-port={free_port()}"
    )
    try:
        # Both scripts at once, as a user may run them (each deploys its own app).
        scripts = [
            subprocess.Popen(
                [sys.executable, script],
                cwd=ROOT,
                env=head.env,
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
        wait_for(lambda: answers(f"{url}/healthcheck"), 120, f"{url}/healthcheck")
        yield url
    finally:
        stop_head(head)


@contextmanager
def peer(module: str, model_dir: str, env: dict[str, str], ready: str) -> Iterator[str]:
    """Start a peer server (`python -m MODULE PORT`); stop its process tree afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", module, str(port)],
        cwd=ROOT,
        env={**env, "SENTIMENT_MODEL": model_dir},
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(url + ready), 120, url + ready, server)
        yield url
    finally:
        stop_tree(server)
