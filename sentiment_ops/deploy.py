"""Deploy one app onto the running Ray head (the body of serve_with_rayserve.py and
serve_with_fastapi.py), bring both up with a head (`make up`), and read or drain what runs."""

import argparse
import json
import os
import socket
import sys
import time
import urllib.request

from sentiment.settings import DRAINING, Settings, StartupError
from sentiment_ops import head

# What Serve's status puts before our model's load failures (the class, named where it lives).
MODEL_LOAD_ERROR = "sentiment.source.ModelLoadError: "


# What the scripts print once an app is up.
EXAMPLES = {
    "router": ["GET  {url}/router?txt=i+like+you"],
    "classifier": [
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


def unreachable() -> bool:
    """Say (and print why) when RAY_ADDRESS names a head that does not answer: at once, before
    anything slow is imported."""
    address = os.environ.get("RAY_ADDRESS")
    if head_answers(address):
        return False
    print(f"{NO_HEAD}; nothing answers at RAY_ADDRESS={address}", file=sys.stderr)
    return True


def connect() -> bool:
    """Connect to the running head (RAY_ADDRESS, else this machine's); print why not and say so."""
    import ray  # here, not above: stop and drain need no Ray in this process (see deploy)

    if ray.is_initialized():  # `make up` deploys both apps from one process
        return True
    try:
        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    except ConnectionError:
        print(NO_HEAD, file=sys.stderr)
        return False
    return True


PYTHON_PROXY = (
    "note: this head serves HTTP through Ray's Python proxy (it was started without ray.env):"
    " one more process hop per request, so fewer requests/s and more latency than Ray's HAProxy"
    " ingress; for that: `ray stop`, then `set -a; . ./ray.env; set +a; ray start --head`"
    " (or `make up`), and run this again"
)


def http_options(settings: Settings) -> dict:
    """Serve's proxy options from the settings (what serve_config.yaml's http_options says)."""
    return {
        "host": settings.http_host,
        "port": settings.http_port,
        "request_timeout_s": settings.request_timeout_s,
    }


def deploy(app_name: str) -> int:
    """Deploy (or update in place) one app on the running head, print where it answers, return."""
    if unreachable():
        return 1
    # Imported here, not above: stop and drain (`make down`, the container's `docker stop`) need
    # neither the apps nor torch, which take seconds to import, nor Serve: a drain that starts
    # sooner refuses sooner.
    from ray import serve
    from ray.exceptions import ActorAlreadyExistsError

    from sentiment.apps import BUILDERS, ROUTE_PREFIXES

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
    try:
        serve.start(http_options=http_options(settings))
    except ActorAlreadyExistsError:
        # The other script started Serve at the same moment (both run at once): use that one.
        serve.start(http_options=http_options(settings))
    serve.run(app, name=app_name, route_prefix=ROUTE_PREFIXES[app_name])
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    url = f"http://{host}:{settings.http_port}"
    print(f"{app_name} app is up, model {settings.model}:")
    for line in EXAMPLES[app_name]:
        print("  " + line.format(url=url))
    if head_is_here() and not head.haproxy_binds(settings.http_port):
        print(PYTHON_PROXY, file=sys.stderr)
    return 0


def up(ray_options: list[str]) -> int:
    """`make up`: check the model, time it here once (sentiment.tune), start a head with ray.env's
    flags unless one runs, deploy both apps; a head this started is stopped if a deploy fails."""
    from sentiment.source import check_available

    try:
        settings = Settings.from_env()
        check_available(settings.model, settings.model_revision)
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from sentiment import tune
    from sentiment.apps import BUILDERS

    if tune.main(["--if-missing"]):
        return 1
    started = not os.environ.get("RAY_ADDRESS") and not head.heads_here()
    if started:
        done = head.start(*ray_options)
        if done.returncode:
            print(f"error: ray start failed:\n{done.stdout}{done.stderr}", file=sys.stderr)
            return 1
        print("started a Ray head on this machine (`make down` stops it)")
    if all(deploy(app_name) == 0 for app_name in BUILDERS):
        return 0
    if started:
        print("deploy failed: stopping the head this started", file=sys.stderr)
        head.stop()
    return 1


def head_is_here() -> bool:
    """Say whether the head this connects to runs on this machine (its HAProxy can be seen)."""
    host = os.environ.get("RAY_ADDRESS", "").rpartition(":")[0]
    return host in ("", "auto", "127.0.0.1", "localhost", socket.gethostname())


def reason(message: str) -> str:
    """The last line of a Serve status message: for a failure, the exception itself (Serve puts
    the whole traceback before it), without its class name when it is one of ours."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last.removeprefix(MODEL_LOAD_ERROR)


def status() -> int:
    """Print one line per app on the running head: its status, and why when it is not running."""
    if unreachable():
        return 1
    from ray import serve  # here, not above (see deploy)

    if not connect():
        return 1
    applications = serve.status().applications
    for name, app in applications.items():
        why = f": {reason(app.message)}" if app.status != "RUNNING" and app.message else ""
        print(f"{name}: {app.status.value}{why}")
    if not applications:
        print("no apps: run `make up`, or `serve deploy serve_config.yaml`")
    return 0 if all(app.status == "RUNNING" for app in applications.values()) else 1


def serve_api(method: str, body: dict | None = None) -> dict:
    """Call Serve's REST API on the dashboard (RAY_DASHBOARD_ADDRESS, as the serve CLI reads it)."""
    address = os.environ.get("RAY_DASHBOARD_ADDRESS", "http://127.0.0.1:8265").rstrip("/")
    request = urllib.request.Request(
        f"{address}/api/serve/applications/",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


# Replicas that can hold requests: running, or running and taking a new config.
SERVING = ("RUNNING", "UPDATING")


def asked_to_drain(deployment: dict) -> bool:
    """Say whether Serve has taken the drain as a deployment's new config (its replicas then take
    it, one reconfigure each)."""
    user_config = deployment["deployment_config"].get("user_config") or {}
    return user_config.get(DRAINING) is True


def waits_on_unplaced(deployment: dict) -> bool:
    """Say whether Serve's update of a deployment to the drain waits only on replicas that never
    started (an upscale the cluster cannot place, which holds the update open until the
    autoscaler scales down again). Not before Serve has taken the drain: the update then under
    way may be a rollout whose replicas are still to be replaced."""
    states = {replica["state"] for replica in deployment["replicas"]}
    return (
        asked_to_drain(deployment)
        and deployment["status"] == "UPDATING"
        and "UPDATING" not in states
        and "STARTING" in states
    )


def pinned_size(deployment: dict, options: dict) -> dict:
    """The options (over the config's `options` for the deployment) that hold it at the replicas
    it runs now, so that Serve stops the ones it could not place. Empty when none runs (Serve
    needs at least one)."""
    running = sum(replica["state"] in SERVING for replica in deployment["replicas"])
    if not running:
        return {}
    if not deployment["deployment_config"].get("autoscaling_config"):
        return {"num_replicas": running}
    # Over the config's own autoscaling options, not Serve's filled-in copy: Serve counts an
    # autoscaling policy written in the config as code, and a new one would restart every replica.
    sizes = dict.fromkeys(("min_replicas", "initial_replicas", "max_replicas"), running)
    return {"autoscaling_config": {**options.get("autoscaling_config", {}), **sizes}}


def draining_config(details: dict, pin: bool = False) -> dict:
    """The running config (Serve's REST shape) with `draining: true` in every deployment's
    user_config, beside what that user_config already holds, for all replicas at once; with
    `pin`, each deployment that waits on unplaced replicas held at those it runs."""
    config = {
        key: details[key]
        for key in ("proxy_location", "http_options", "grpc_options", "target_capacity")
        if details.get(key) is not None
    }
    config["applications"] = []
    for app in details["applications"].values():
        app_config = app["deployed_app_config"]
        overrides = {options["name"]: options for options in app_config.get("deployments", [])}
        for name, deployment in app["deployments"].items():
            user_config = deployment["deployment_config"].get("user_config") or {}
            options = overrides.setdefault(name, {"name": name})
            options["user_config"] = {**user_config, DRAINING: True}
            # Every replica at once: Serve rolls a change out to a fifth of them at a time by
            # default, and a replica waiting its turn keeps taking new requests meanwhile.
            options["rolling_update_percentage"] = 1.0
            if pin and waits_on_unplaced(deployment):
                options.update(pinned_size(deployment, options))
        config["applications"].append({**app_config, "deployments": list(overrides.values())})
    return config


def deployment_drained(deployment: dict) -> bool:
    """Say whether a deployment took `draining` on every replica (each is then idle: its
    reconfigure returns only then)."""
    return asked_to_drain(deployment) and deployment["status"] != "UPDATING"


def drained(app: dict) -> bool:
    """Say whether every deployment of an app took `draining` and the app is done deploying."""
    return app["status"] != "DEPLOYING" and all(
        deployment_drained(deployment) for deployment in app["deployments"].values()
    )


def drain(timeout_s: float) -> int:
    """Make every app refuse new requests (503 + Retry-After, /healthcheck 503) and return once
    the requests they took are answered; `serve deploy` of the config again undoes it."""
    started = time.monotonic()
    details = serve_api("GET")
    apps = details["applications"]
    if scripted := sorted(name for name, app in apps.items() if not app["deployed_app_config"]):
        print(
            f"cannot drain {', '.join(scripted)}: deployed by a script, not from a config"
            " (`serve deploy serve_config.yaml` deploys from one)",
            file=sys.stderr,
        )
        return 1
    if apps:
        serve_api("PUT", draining_config(details))
    deadline = started + timeout_s
    seen_waiting = 0
    while time.monotonic() < deadline:
        details = serve_api("GET")
        apps = details["applications"]
        if all(drained(app) for app in apps.values()):
            states = ", ".join(f"{name} {app['status']}" for name, app in apps.items())
            print(f"drained in {time.monotonic() - started:.1f} s: {states or 'no apps'}")
            return 0
        # Pinned only once seen on two looks (two of Serve's 0.1 s control loops apart), after
        # the replicas took `draining`: a pin changes the config again, and Serve applies it
        # only once the unplaced replicas have stopped (up to graceful_shutdown_timeout_s).
        waiting = any(
            waits_on_unplaced(deployment)
            for app in apps.values()
            for deployment in app["deployments"].values()
        )
        seen_waiting = seen_waiting + 1 if waiting else 0
        if seen_waiting == 2:
            serve_api("PUT", draining_config(details, pin=True))
        time.sleep(0.2)
    not_done = "; ".join(
        f"{name}/{deployment_name} {deployment['status']}"
        f" (replicas: {', '.join(replica['state'] for replica in deployment['replicas'])})"
        f"{': ' + deployment['message'] if deployment['message'] else ''}"
        for name, app in apps.items()
        for deployment_name, deployment in app["deployments"].items()
        if not deployment_drained(deployment)
    )
    print(f"error: the apps did not drain within {timeout_s:g} s: {not_done}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """python -m sentiment_ops up|start|stop|status|drain: what `make up`, `make down`, `make status`
    and the container run."""
    parser = argparse.ArgumentParser(prog="python -m sentiment_ops")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "up", help="a head (unless one runs) and both apps; `ray start` options may follow"
    )
    commands.add_parser(
        "start", help="`ray start --head` with ray.env's flags; `ray start` options may follow"
    )
    commands.add_parser("stop", help="stop Ray on this machine, and the HAProxy Ray leaves")
    commands.add_parser("status", help="one line per app on the running head")
    drain_parser = commands.add_parser(
        "drain", help="refuse new requests (503) and wait until those taken are answered"
    )
    drain_parser.add_argument("--timeout", type=float, default=45.0, help="seconds (45)")
    args, ray_options = parser.parse_known_args(argv)
    if ray_options and args.command not in ("up", "start"):
        parser.error(f"unrecognized arguments: {' '.join(ray_options)}")
    if args.command == "up":
        return up(ray_options)
    if args.command == "start":
        done = head.start(*ray_options)
        print(done.stdout + done.stderr, end="", file=sys.stderr if done.returncode else sys.stdout)
        return done.returncode
    if args.command == "drain":
        return drain(args.timeout)
    return head.stop() if args.command == "stop" else status()
