"""What the benchmark and the tests share to run the project for real: loopback ports, waiting for a
condition with a deadline, a Ray head started as a user starts it and stopped again, and stopping a
server's whole process tree."""

import contextlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from sentiment_ops.head import start as ray_start

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Ports free_port handed out: the kernel may hand a port out again as soon as its probe socket
# closes, and two of a Ray head's ports drawn one after the other then clash.
HANDED_OUT: set[int] = set()
# Ray's worker processes take ports 10002-19999; the kernel hands out its ephemeral range (32768
# and up on Linux) to anything that binds port 0. Between them, nothing takes a port by chance.
QUIET_PORTS = range(20_000, 32_768)


def free_port() -> int:
    """Return a loopback port nobody listens on right now, and not one handed out before."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in HANDED_OUT:
            HANDED_OUT.add(port)
            return port
    raise RuntimeError("no loopback port left that was not handed out before")


def quiet_port() -> int:
    """Return a port free on every interface, outside Ray's worker ports and the ephemeral range:
    for a port chosen long before it is bound (a session's HAProxy stats port), which a port from
    free_port() could meanwhile be handed to any process binding port 0."""
    rng = random.Random()
    for _ in range(200):
        port = rng.choice(QUIET_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {QUIET_PORTS}")


def wait_for(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    process: subprocess.Popen | None = None,
) -> None:
    """Poll `condition` until it holds, failing with `what` after `timeout_s`, or at once if
    `process` (the server it waits for) has exited. Never a bare sleep."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the server exited with {process.returncode}")
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")


def answers(url: str) -> bool:
    """Say whether a GET of `url` answers 200."""
    return httpx.get(url, timeout=5).status_code == 200


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100), nearest-rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Head:
    """A Ray head started with `ray start --head` in a temp dir and on ports of its own."""

    env: dict[str, str]  # the environment it was started with, and RAY_ADDRESS to reach it
    temp_dir: Path
    gcs_port: int


def start_head(env: dict[str, str], num_cpus: int, *options: str) -> Head:
    """A Ray head started as `make up` starts one (sentiment_ops.head, with `env`), in a temp dir
    and on loopback ports of its own; stop it with stop_head."""
    # Short: Ray's unix sockets live under the temp dir and their paths are capped near 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    gcs_port = free_port()
    started = ray_start(
        f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}", f"--ray-client-server-port={free_port()}", *options, env=env,
    )  # fmt: skip
    # With a custom temp dir, `address="auto"` finds the head only through RAY_ADDRESS.
    head = Head({**env, "RAY_ADDRESS": f"127.0.0.1:{gcs_port}"}, temp_dir, gcs_port)
    if started.returncode:
        stop_head(head)
        raise RuntimeError(f"ray start failed: {started.stdout}{started.stderr}")
    return head


def stop_head(head: Head) -> subprocess.CompletedProcess:
    """Stop Ray and the HAProxy it leaves behind, as `make down` does; remove the temp dir."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "sentiment_ops", "stop"],
            cwd=ROOT,
            env=head.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(head.temp_dir, ignore_errors=True)


def stop_tree(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop a server and every process it started (LitServe runs workers): SIGTERM, then SIGKILL
    what is still there after `timeout_s`."""
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(tree, timeout=timeout_s)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=timeout_s)
    process.wait(timeout=timeout_s)
