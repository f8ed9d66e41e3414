"""The project as a user runs it: `ray start --head`, the two scripts, the HTTP check script,
`serve deploy` and `serve run` of serve_config.yaml, and `ray stop` at the end, whatever happened.

The head is isolated: its own temp dir and ports, on loopback only.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from bench.harness import answers, free_port, start_head, stop_head, wait_for
from sentiment.testing import build_model
from sentiment_ops.deploy import PYTHON_PROXY
from sentiment_ops.head import haproxy_binds, heads_here
from tests.helpers import SteadyLoad, gone

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's ray and serve commands
COMMAND_TIMEOUT_S = 180
SCRIPTS = ("serve_with_rayserve.py", "serve_with_fastapi.py")
SERIES = [
    "ray_sentiment_texts_total",
    "ray_sentiment_truncated_texts_total",
    "ray_sentiment_batch_size_bucket",
    "ray_sentiment_inference_seconds_count",
    "ray_sentiment_input_tokens_bucket",
]


@dataclass
class Head:
    """A running Ray head started with `ray start --head`."""

    env: dict[str, str]
    http_url: str
    dashboard_url: str
    http_port: int
    metrics_url: str
    logs: Path  # the session's log folder


def run(
    args: list[str], env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """Run a command as a user would, from the repository root, bounded in time."""
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def run_scripts(env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Run both entry scripts at once, as from two terminals: each deploys only its own app."""
    with ThreadPoolExecutor(len(SCRIPTS)) as pool:
        return list(pool.map(lambda script: run([sys.executable, script], env), SCRIPTS))


def user_env(tiny_model_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose model is a local folder (no hub here)."""
    env = {**os.environ, "SENTIMENT_MODEL": str(tiny_model_dir), "SENTIMENT_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    return {**env, **extra}


def test_scripts_without_a_head_say_what_to_run(tiny_model_dir: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    for script in ("serve_with_rayserve.py", "serve_with_fastapi.py"):
        done = run([sys.executable, script], user_env(tiny_model_dir, RAY_ADDRESS=dead), timeout=60)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "ray start --head" in done.stderr.strip().splitlines()[-1]


def test_scripts_without_a_model_say_what_to_set(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = user_env(tiny_model_dir, SENTIMENT_MODEL=str(tmp_path / "missing"))
    done = run([sys.executable, "serve_with_fastapi.py"], env, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "SENTIMENT_MODEL" in done.stderr.strip().splitlines()[-1]


def test_make_up_without_a_model_fails_in_seconds_and_leaves_no_head(tmp_path: Path) -> None:
    before = heads_here()
    env = user_env(Path("/no/such/model"), VENV=str(BIN.parent))
    started = time.monotonic()
    try:
        done = run(["make", "--no-print-directory", "up"], env, timeout=120)
        took = time.monotonic() - started
        left = heads_here() - before
    finally:
        if heads_here() - before:  # what a broken `make up` left: stop it as `make down` does
            run([sys.executable, "-m", "sentiment_ops", "stop"], env, timeout=120)
    assert not left
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0].startswith("error: cannot load model '/no/such/model'")
    assert took < 20, took


@pytest.fixture(scope="module")
def ray_head(tiny_model_dir: Path) -> Iterator[Head]:
    """`ray start --head` in its own temp dir and ports; `make down`'s stop afterwards, whatever
    happened, which says one line."""
    dashboard_port, http_port, metrics_port = (free_port() for _ in range(3))
    # The builders read SENTIMENT_* where they run: on the head, for serve deploy and serve run.
    env = user_env(tiny_model_dir, SENTIMENT_HTTP_PORT=str(http_port))
    ray_head = start_head(
        env, 3, "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        f"--metrics-export-port={metrics_port}",
    )  # fmt: skip
    try:
        yield Head(
            env=ray_head.env,
            http_url=f"http://127.0.0.1:{http_port}",
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            http_port=http_port,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            logs=ray_head.temp_dir / "session_latest" / "logs",
        )
    finally:
        stopped = stop_head(ray_head)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("ray stop: ") and stopped.stdout.count("\n") == 1, (
        stopped.stdout
    )


def check_both_apps(head: Head) -> None:
    """Run the user's HTTP check script against both apps; it must exit 0."""
    done = run(
        [sys.executable, "test_local_http_endpoint.py", "--url", head.http_url, "-n", "4"], head.env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout


@pytest.fixture
def head(ray_head: Head) -> Head:
    """The head with both apps up as the scripts deploy them: deployed again only where a test
    before this one took them down, drained them or locked them with keys, so each test stands
    alone and in any order."""
    head = ray_head
    router, healthy = f"{head.http_url}/router?txt=hi", f"{head.http_url}/healthcheck"
    with contextlib.suppress(httpx.HTTPError):
        if answers(router) and answers(healthy):
            return head
    for done in run_scripts(head.env):
        assert done.returncode == 0, done.stderr
    wait_for(lambda: answers(router) and answers(healthy), 60, "both apps")
    return head


def test_the_two_scripts_deploy_both_apps(ray_head: Head) -> None:
    head = ray_head
    router, fastapi = run_scripts(head.env)
    assert router.returncode == 0, router.stderr
    assert f"{head.http_url}/router?txt=i+like+you" in router.stdout
    assert fastapi.returncode == 0, fastapi.stderr
    assert f"{head.http_url}/classify" in fastapi.stdout
    # The scripts have exited; the apps stay up.
    check_both_apps(head)


def test_the_head_serves_through_haproxy_by_default(head: Head) -> None:
    # ray.env, as `make up` loads it: Ray's HAProxy binds the head's HTTP port, not its Python proxy.
    assert haproxy_binds(head.http_port), (
        "no HAProxy binds it: was the head started without ray.env?"
    )
    assert not haproxy_binds(free_port(), wait_s=0)
    assert answers(f"{head.http_url}/healthcheck")


def replica_log_lines(head: Head, app: str) -> list[str]:
    """Read every line the app's replicas have logged so far."""
    return [
        line
        for path in sorted((head.logs / "serve").glob(f"replica_{app}_*.log"))
        for line in path.read_text(errors="replace").splitlines()
    ]


def series(metrics: str, name: str) -> dict[str, float]:
    """Sum a metric's samples by their label sets' `label`, `le` or nothing (Prometheus text)."""
    sums: dict[str, float] = {}
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels, value = line[len(name) + 1 :].rsplit("} ", 1)
        key = next(
            (
                part.split("=", 1)[1].strip('"')
                for part in labels.split(",")
                if part.startswith(("label=", "le="))
            ),
            "",
        )
        sums[key] = sums.get(key, 0.0) + float(value)
    return sums


def test_requests_are_logged_and_counted(head: Head) -> None:
    texts = ["a fine film", "dull and slow", " ".join(["long"] * 700)]
    with httpx.Client(base_url=head.http_url, timeout=30) as client:
        for n, text in enumerate(texts):
            answer = client.post(
                "/classify", json={"input_text": text}, headers={"X-Request-ID": f"e2e-{n}"}
            )
            assert answer.status_code == 200
            assert answer.headers["x-request-id"] == f"e2e-{n}"
        batch = client.post(
            "/classify/batch", json={"texts": texts}, headers={"X-Request-ID": "e2e-b"}
        )
        assert batch.status_code == 200
        assert (
            client.post(
                "/classify", json={"input_text": ""}, headers={"X-Request-ID": "e2e-bad"}
            ).status_code
            == 422
        )
        unnamed = client.get("/test")

    # One line per request: its id (the client's, or the one returned to it), status, latency, batch.
    def logged(request_id: str) -> list[str]:
        lines = replica_log_lines(head, "classifier")
        return [line for line in lines if line.endswith(f" request_id={request_id}")]

    ids = ("e2e-0", "e2e-b", "e2e-bad", unnamed.headers["x-request-id"])
    wait_for(lambda: all(len(logged(i)) == 1 for i in ids), 30, "one log line per request")
    # Only there: not also on the workers' stderr, for Ray's log monitor to read and publish
    # (RAY_SERVE_LOG_TO_STDERR=0 in ray.env).
    for err in head.logs.glob("worker-*.err"):
        assert "request_id=e2e-0" not in err.read_text(errors="replace"), err.name
    (bad,) = logged("e2e-bad")
    assert " POST /classify 422 " in bad and " batch_size=0 " in bad
    (whole,) = logged("e2e-b")
    assert " POST /classify/batch 200 " in whole
    assert 1 <= int(whole.split("batch_size=")[1].split()[0]) <= len(texts)

    def counted() -> bool:
        # Ray exports every few seconds: wait for this test's long texts, sent last but one, and
        # for Serve's own series, which are there too, on the same port.
        metrics = httpx.get(head.metrics_url, timeout=10).text
        truncated = series(metrics, "ray_sentiment_truncated_texts_total").get("", 0)
        return truncated >= 2 and "ray_serve_num_http_requests_total" in metrics

    wait_for(counted, 60, "the custom and Serve's metrics on the metrics port")
    metrics = httpx.get(head.metrics_url, timeout=10).text
    print("\n" + "\n".join(f"{name}: {series(metrics, name)}" for name in SERIES))
    assert set(series(metrics, "ray_sentiment_texts_total")) <= {"POSITIVE", "NEGATIVE"}
    assert sum(series(metrics, "ray_sentiment_texts_total").values()) >= 2 * len(texts)
    tokens = series(metrics, "ray_sentiment_input_tokens_bucket")
    assert tokens["512.0"] - tokens["256.0"] >= 2  # the long text, cut to 512 tokens, twice
    assert series(metrics, "ray_sentiment_batch_size_count")[""] >= 1
    assert series(metrics, "ray_sentiment_inference_seconds_count")[""] >= 1
    assert "ray_serve_num_http_requests_total" in metrics


def test_running_a_script_again_updates_its_app_in_place(head: Head) -> None:
    # New settings for the Router: smaller model calls, and its log lines in JSON.
    again = run(
        [sys.executable, "serve_with_rayserve.py"],
        {**head.env, "SENTIMENT_MAX_BATCH_SIZE": "4", "SENTIMENT_LOG_FORMAT": "json"},
    )
    assert again.returncode == 0, again.stderr
    # HAProxy serves this head (ray.env): no word of the Python proxy (a head without it gets one).
    assert PYTHON_PROXY not in again.stderr
    check_both_apps(head)
    answer = httpx.get(
        f"{head.http_url}/router",
        params={"txt": "json please"},
        headers={"X-Request-ID": "e2e-json"},
    )
    assert answer.status_code == 200

    def entry() -> dict | None:
        for line in replica_log_lines(head, "router"):
            if line.startswith("{") and "e2e-json" in line:
                return json.loads(line)
        return None

    wait_for(lambda: entry() is not None, 30, "a JSON log line")
    logged = entry()
    assert logged["request_id"] == "e2e-json"
    assert logged["status"] == 200 and logged["batch_size"] == 1 and logged["latency_ms"] > 0


def config_for(head: Head, tmp_path: Path) -> Path:
    """Copy serve_config.yaml with the head's port: the only change a user on port 8000 skips."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"]["port"] = head.http_port
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def config_variant(
    head: Head, tmp_path: Path, app_name: str, change: Callable[[dict], None]
) -> Path:
    """config_for's file with one app changed by `change`, beside it."""
    config = yaml.safe_load(config_for(head, tmp_path).read_text())
    (app,) = [app for app in config["applications"] if app["name"] == app_name]
    change(app)
    path = tmp_path / f"{app_name}-changed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def classifier_user_config(head: Head, tmp_path: Path, **values: object) -> Path:
    """config_for's file with the Classifier's user_config set to `values`."""
    return config_variant(
        head, tmp_path, "classifier", lambda app: app["deployments"][0].update(user_config=values)
    )


def app_statuses(head: Head) -> dict[str, str]:
    """Each app's status as `serve status` says it, from Serve's REST API on the dashboard (polled
    without starting a process each time)."""
    apps = httpx.get(f"{head.dashboard_url}/api/serve/applications/", timeout=30).json()
    return {name: app["status"] for name, app in apps["applications"].items()}


def deploy_config(head: Head, config: Path) -> None:
    """`serve deploy` a config file to the head and wait until both its apps run it and answer."""
    deployed = run([str(BIN / "serve"), "deploy", str(config), "-a", head.dashboard_url], head.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    def both_running() -> bool:
        statuses = app_statuses(head)
        return all(statuses.get(name) == "RUNNING" for name in ("router", "classifier"))

    wait_for(both_running, 120, f"both apps of {config.name} to be RUNNING")
    wait_for(lambda: answers(f"{head.http_url}/healthcheck"), 60, "the Classifier to answer")


def test_serve_deploy_of_the_config(head: Head, tmp_path: Path) -> None:
    deploy_config(head, config_for(head, tmp_path))
    check_both_apps(head)


def test_serve_deploy_of_a_missing_model_leaves_the_running_version_answering(
    head: Head, tmp_path: Path
) -> None:
    good = config_for(head, tmp_path)
    bad = config_variant(
        head, tmp_path, "router", lambda app: app.update(args={"model": "/no/such/dir"})
    )
    deployed = run([str(BIN / "serve"), "deploy", str(bad), "-a", head.dashboard_url], head.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    statuses: list[int] = []

    def router_failed() -> bool:
        statuses.append(httpx.get(f"{head.http_url}/router?txt=still+here", timeout=30).status_code)
        return app_statuses(head)["router"] == "DEPLOY_FAILED"

    started = time.monotonic()
    wait_for(router_failed, 120, "the bad deploy to fail")
    failed_in = time.monotonic() - started
    for _ in range(8):  # and after it failed
        statuses.append(httpx.get(f"{head.http_url}/router?txt=still+here", timeout=30).status_code)
        time.sleep(0.25)
    # One line per app, the reason first, where Serve's own status buries it in a traceback.
    summary = run([sys.executable, "-m", "sentiment_ops", "status"], head.env, timeout=60)
    print(f"\nbad deploy failed in {failed_in:.1f} s; /router meanwhile {set(statuses)}")
    print(summary.stdout)
    assert set(statuses) == {200}
    assert summary.returncode == 1
    lines = summary.stdout.splitlines()
    assert "classifier: RUNNING" in lines
    (router,) = [line for line in lines if line.startswith("router: ")]
    assert router.startswith("router: DEPLOY_FAILED: cannot load model '/no/such/dir': no folder")
    # Put the good config back for the tests that follow.
    restored = run([str(BIN / "serve"), "deploy", str(good), "-a", head.dashboard_url], head.env)
    assert restored.returncode == 0, restored.stdout + restored.stderr


def test_a_tunable_in_user_config_changes_without_a_restart(head: Head, tmp_path: Path) -> None:
    good = config_for(head, tmp_path)
    # The apps as the config deploys them (a scripts' deploy differs, and would be replaced).
    deploy_config(head, good)
    tuned = classifier_user_config(head, tmp_path, max_batch_texts=2)
    health = f"{head.http_url}/healthcheck"
    before = httpx.get(health, timeout=30).json()["replica"]
    three = {"texts": ["one", "two", "three"]}
    assert httpx.post(f"{head.http_url}/classify/batch", json=three, timeout=30).status_code == 200
    deployed = run([str(BIN / "serve"), "deploy", str(tuned), "-a", head.dashboard_url], head.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    def refused() -> bool:
        answer = httpx.post(f"{head.http_url}/classify/batch", json=three, timeout=30)
        return answer.status_code == 413 and "the limit is 2" in answer.json()["detail"]

    wait_for(refused, 60, "the new cap")
    assert httpx.get(health, timeout=30).json()["replica"] == before  # the same replica
    restored = run([str(BIN / "serve"), "deploy", str(good), "-a", head.dashboard_url], head.env)
    assert restored.returncode == 0, restored.stdout + restored.stderr


def test_drain_refuses_new_requests_and_returns_once_the_taken_ones_are_answered(
    head: Head, tmp_path: Path
) -> None:
    good = config_for(head, tmp_path)
    # The apps as the config deploys them: from a scripts' deploy, the change below would replace
    # a replica rather than reconfigure both, and the head has room for only one more.
    deploy_config(head, good)

    def slow_and_too_big(app: dict) -> None:
        # One text per model call, so the requests of long texts the clients keep in the replica
        # take seconds; a budget none of them passes, so what the replica holds is every client's
        # request (not a 503 storm of clients refused before the drain). And more replicas than
        # the head places (3 CPUs, one replica each: room for 2 Classifiers), as an autoscaler's
        # upscale on a full cluster makes: the drain must reach both running replicas, and not
        # wait for the one it cannot place. Serve waits graceful_shutdown_timeout_s (20 s by
        # default) before it stops that one; 2 s here, to keep the suite short.
        (classifier,) = app["deployments"]
        classifier["user_config"] = {"max_batch_size": 1, "max_queue_s": 120}
        classifier["autoscaling_config"]["min_replicas"] = 3
        classifier["graceful_shutdown_timeout_s"] = 2

    slow = config_variant(head, tmp_path, "classifier", slow_and_too_big)
    deployed = run([str(BIN / "serve"), "deploy", str(slow), "-a", head.dashboard_url], head.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    health = f"{head.http_url}/healthcheck"
    wait_for(
        lambda: answers(health) and answers(f"{head.http_url}/router?txt=hi"), 120, "both apps"
    )
    env = {**head.env, "RAY_DASHBOARD_ADDRESS": head.dashboard_url}
    drain = [sys.executable, "-m", "sentiment_ops", "drain"]

    def classifier() -> dict:
        apps = httpx.get(f"{head.dashboard_url}/api/serve/applications/", timeout=30).json()
        deployments = apps["applications"]["classifier"]["deployments"]
        # None yet while Serve builds the app the config replaces (the scripts' app, run alone).
        return deployments.get("Classifier", {"replicas": []})

    def replicas() -> list[dict]:
        return classifier()["replicas"]

    def states() -> list[str]:
        return [replica["state"] for replica in replicas()]

    with SteadyLoad(
        f"{head.http_url}/classify/batch", clients=8, batch=64, words=150, warm=8, polite=True
    ) as load:
        wait_for(
            lambda: states().count("RUNNING") == 2 and "STARTING" in states(),
            90,
            "two Classifier replicas running and a third the head cannot place",
        )
        running = {replica["replica_id"] for replica in replicas() if replica["state"] == "RUNNING"}
        started = time.monotonic()
        taking_at_once = 0  # replicas taking the drain (Serve's UPDATING) at the same moment
        command = subprocess.Popen(
            drain, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            while command.poll() is None and time.monotonic() < started + 90:
                taking_at_once = max(taking_at_once, states().count("UPDATING"))
                time.sleep(0.1)
        finally:
            if command.poll() is None:
                command.kill()
        stdout, stderr = command.communicate(timeout=30)
        returned = time.monotonic()
        refused = httpx.post(f"{head.http_url}/classify", json={"input_text": "late"}, timeout=30)
        statuses = {
            "healthcheck": httpx.get(health, timeout=30).status_code,
            "router": httpx.get(f"{head.http_url}/router?txt=late", timeout=30).status_code,
        }
    answered_while_draining = [kind for at, kind in load.answered if started < at < returned]
    answered_after = [kind for at, kind in load.answered if at > returned and kind == "ok"]
    print(
        f"\ndrain: {stdout.strip()} (command {returned - started:.1f} s);"
        f" answered 200 while draining: {answered_while_draining.count('ok')};"
        f" replicas taking it at once: {taking_at_once}; requests {dict(load.outcomes)}"
    )
    assert command.returncode == 0, stdout + stderr
    # Both replicas at once (Serve's default rolls a change out to a fifth of them at a time).
    assert taking_at_once == 2
    # What was taken is answered (200) before drain returns; what came later got a 503 to retry.
    assert answered_while_draining.count("ok") > 0
    assert answered_after == []
    assert set(load.outcomes) <= {"ok", "failed: http 503"}, load.outcomes
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "shutting down" in refused.json()["detail"]
    assert statuses == {"healthcheck": 503, "router": 503}
    # `serve deploy` of the config undoes it, on the same replicas (once Serve has reached both).
    restored = run([str(BIN / "serve"), "deploy", str(good), "-a", head.dashboard_url], head.env)
    assert restored.returncode == 0, restored.stdout + restored.stderr

    def undone() -> bool:
        details = classifier()
        user_config = details["deployment_config"].get("user_config") or {}
        return "draining" not in user_config and details["status"] == "HEALTHY"

    wait_for(undone, 60, "the apps to take requests again")
    answered_by = {httpx.get(health, timeout=30).json()["replica"] for _ in range(8)}
    assert answered_by <= running


def models_and_keys_answer(head: Head, key: str) -> bool:
    """Say whether both apps want `key` and the Classifier serves the 3-label model `three`."""
    router = f"{head.http_url}/router"
    if httpx.get(router, params={"txt": "hi"}, timeout=30).status_code != 401:
        return False
    auth = {"Authorization": f"Bearer {key}"}
    if httpx.get(router, params={"txt": "hi"}, headers=auth, timeout=30).status_code != 200:
        return False
    body = {"inputs": "i like you", "model": "three"}
    answer = httpx.post(f"{head.http_url}/predict", json=body, headers=auth, timeout=30)
    return answer.status_code == 200 and len(answer.json()[0]) == 3


def test_models_and_keys_through_the_scripts_and_the_config(ray_head: Head, tmp_path: Path) -> None:
    head = ray_head  # whatever apps it has: the scripts deploy both
    three = build_model(tmp_path / "three", labels={0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"})
    # The scripts: from the environment, as `make up` passes it.
    env = {**head.env, "SENTIMENT_API_KEYS": "script-key", "SENTIMENT_MODELS": f"three={three}"}
    for done in run_scripts(env):
        assert done.returncode == 0, done.stderr
    assert models_and_keys_answer(head, "script-key")
    checked = run(
        [
            sys.executable,
            "test_local_http_endpoint.py",
            "--url",
            head.http_url,
            "--api-key",
            "script-key",
        ],
        head.env,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # serve_config.yaml: from each app's `args:`.
    config = yaml.safe_load(config_for(head, tmp_path).read_text())
    for app in config["applications"]:
        app["args"] = {"api_keys": ["config-key"], "models": {"three": str(three)}}
    locked = tmp_path / "locked.yaml"
    locked.write_text(yaml.safe_dump(config))
    deployed = run([str(BIN / "serve"), "deploy", str(locked), "-a", head.dashboard_url], head.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    wait_for(lambda: models_and_keys_answer(head, "config-key"), 120, "the config's key and models")
    # The head's apps stay locked: the `head` fixture deploys them again for any test after this.


def test_serve_run_of_the_config(ray_head: Head, tmp_path: Path) -> None:
    head = ray_head  # whatever apps it has: this starts from none
    config = config_for(head, tmp_path)
    # Start from no apps, so what answers below is what serve run deployed.
    down = run([str(BIN / "serve"), "shutdown", "-y", "-a", head.dashboard_url], head.env)
    assert down.returncode == 0, down.stdout + down.stderr
    wait_for(lambda: gone(f"{head.http_url}/healthcheck"), 60, "the old apps to go")
    # `serve run` stays in the foreground, as a user runs it in a terminal; Ctrl-C ends it.
    server = subprocess.Popen(
        [str(BIN / "serve"), "run", str(config)],
        cwd=ROOT,
        env=head.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: answers(f"{head.http_url}/healthcheck"), 120, "serve run to answer")
        check_both_apps(head)
        assert (
            httpx.get(f"{head.http_url}/router", params={"txt": "serve run works"}).status_code
            == 200
        )
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            # Its shutdown of the apps sometimes hangs for a minute; last in this module, the
            # head's stop takes them down anyway.
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
