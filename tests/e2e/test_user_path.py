"""The project as a user runs it: `ray start --head`, the two scripts, the HTTP check script,
`serve deploy` and `serve run` of serve_config.yaml, and `ray stop` at the end, whatever happened.

The head is isolated: its own temp dir and ports, on loopback only.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import answers, free_port, gone, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's ray and serve commands
COMMAND_TIMEOUT_S = 180


@dataclass
class Head:
    """A running Ray head started with `ray start --head`."""

    env: dict[str, str]
    http_url: str
    dashboard_url: str
    http_port: int


def run(
    args: list[str], env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """Run a command as a user would, from the repository root, bounded in time."""
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


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


@pytest.fixture(scope="module")
def head(tiny_model_dir: Path) -> Iterator[Head]:
    """`ray start --head` in its own temp dir and ports; `ray stop` afterwards, whatever happened."""
    # Short: Ray's unix sockets live under the temp dir and their paths are capped near 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray-e2e-", dir="/tmp")
    gcs_port, dashboard_port, http_port = free_port(), free_port(), free_port()
    # The builders read SENTIMENT_* where they run: on the head, for serve deploy and serve run.
    env = user_env(tiny_model_dir, SENTIMENT_HTTP_PORT=str(http_port))
    start = [
        str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--disable-usage-stats",
        f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
        f"--ray-client-server-port={free_port()}", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
    ]  # fmt: skip
    try:
        started = run(start, env)
        assert started.returncode == 0, started.stdout + started.stderr
        # With a custom temp dir, `address="auto"` finds the head only through RAY_ADDRESS.
        yield Head(
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{gcs_port}"},
            http_url=f"http://127.0.0.1:{http_port}",
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            http_port=http_port,
        )
    finally:
        run([str(BIN / "ray"), "stop", "--force"], env, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def check_both_apps(head: Head) -> None:
    """Run the user's HTTP check script against both apps; it must exit 0."""
    done = run(
        [sys.executable, "test_local_http_endpoint.py", "--url", head.http_url, "-n", "4"], head.env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout


def test_the_two_scripts_deploy_both_apps(head: Head) -> None:
    router = run([sys.executable, "serve_with_rayserve.py"], head.env)
    assert router.returncode == 0, router.stderr
    assert f"{head.http_url}/router?txt=i+like+you" in router.stdout
    fastapi = run([sys.executable, "serve_with_fastapi.py"], head.env)
    assert fastapi.returncode == 0, fastapi.stderr
    assert f"{head.http_url}/classify" in fastapi.stdout
    # The scripts have exited; the apps stay up.
    check_both_apps(head)


def test_running_a_script_again_updates_its_app_in_place(head: Head) -> None:
    again = run(
        [sys.executable, "serve_with_rayserve.py"], {**head.env, "SENTIMENT_MAX_BATCH_SIZE": "4"}
    )
    assert again.returncode == 0, again.stderr
    check_both_apps(head)


def config_for(head: Head, tmp_path: Path) -> Path:
    """Copy serve_config.yaml with the head's port: the only change a user on port 8000 skips."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"]["port"] = head.http_port
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_serve_deploy_of_the_config(head: Head, tmp_path: Path) -> None:
    config = config_for(head, tmp_path)
    deployed = run([str(BIN / "serve"), "deploy", str(config), "-a", head.dashboard_url], head.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    def both_running() -> bool:
        status = run([str(BIN / "serve"), "status", "-a", head.dashboard_url], head.env, timeout=60)
        apps = yaml.safe_load(status.stdout)["applications"]
        return all(
            apps.get(name, {}).get("status") == "RUNNING" for name in ("router", "classifier")
        )

    wait_for(both_running, 120, "both apps of serve_config.yaml to be RUNNING")
    check_both_apps(head)


def test_serve_run_of_the_config(head: Head, tmp_path: Path) -> None:
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
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
