"""The Docker images, built and run for real: `python -m pytest tests/container -s` (or `make test-container`).

Needs a Docker engine and CPU torch for the build: a wheel in
docker/wheels/ or TORCH_INDEX_URL. Skipped, with the reason, where no engine answers. Containers use
host networking and loopback ports of their own; every container is removed in a finally.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.harness import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCKER = shutil.which("docker", path="/usr/bin") or shutil.which("docker") or "docker"
SERVING_IMAGE = "sentiment-serve:test"
MODEL_IMAGE = "sentiment-model:test"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run a docker command, bounded in time."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def engine_answers() -> bool:
    """Say whether a Docker engine answers here."""
    try:
        return docker("info", timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(
    not engine_answers(),
    reason="no Docker engine answers here (start one, then run make test-container)",
)


@pytest.fixture(scope="module")
def images() -> dict[str, float]:
    """Build both images; return their build times in seconds."""
    args = ["--network", "host"]
    if os.environ.get("TORCH_INDEX_URL"):
        args += ["--build-arg", f"TORCH_INDEX_URL={os.environ['TORCH_INDEX_URL']}"]
    times = {}
    for tag, dockerfile in (
        (SERVING_IMAGE, "Dockerfile"),
        (MODEL_IMAGE, "sentiment/Dockerfile.sentiment"),
    ):
        start = time.monotonic()
        docker("build", *args, "-f", str(ROOT / dockerfile), "-t", tag, str(ROOT), timeout=1800)
        times[tag] = time.monotonic() - start
    return times


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    """The tiny model, where the container's user may read it."""
    return tiny_model_dir


def run_serving(name: str, model_dir: Path, http_port: int, **env: str) -> None:
    """Start the serving container in the background, on its own loopback ports."""
    settings = {
        "SENTIMENT_MODEL": "/models/tiny",
        "SENTIMENT_HTTP_PORT": str(http_port),
        "RAY_PORT": str(free_port()),
        "RAY_DASHBOARD_PORT": str(free_port()),
        "RAY_METRICS_EXPORT_PORT": str(free_port()),
        # Keep Ray inside the container on loopback (host networking shares this machine's).
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        **env,
    }
    flags = [arg for key, value in settings.items() for arg in ("-e", f"{key}={value}")]
    docker(
        "run", "-d", "--name", name, "--network", "host", "--shm-size=1g",
        "-v", f"{model_dir}:/models/tiny:ro", *flags, SERVING_IMAGE,
    )  # fmt: skip


@pytest.fixture
def container(model_dir: Path, images: dict[str, float]) -> Iterator[tuple[str, int]]:
    """A serving container with the tiny model mounted; removed afterwards, whatever happened."""
    name, port = f"sentiment-test-{free_port()}", free_port()
    try:
        run_serving(name, model_dir, port)
        wait_for(lambda: healthy(port), 180, "the container's /healthcheck")
        yield name, port
    finally:
        docker("rm", "-f", name, check=False)


def healthy(port: int) -> bool:
    """Say whether the Classifier app answers its health check."""
    return httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=5).status_code == 200


def listening(name: str, port: int) -> set[str]:
    """Return the addresses the container listens on for `port` (from /proc/net/tcp)."""
    script = (
        "import socket,struct\n"
        "for line in open('/proc/net/tcp').readlines()[1:]:\n"
        "    local, state = line.split()[1], line.split()[3]\n"
        "    host, port = local.split(':')\n"
        f"    if state == '0A' and int(port, 16) == {port}:\n"
        "        print(socket.inet_ntoa(struct.pack('<I', int(host, 16))))\n"
    )
    return set(docker("exec", name, "python", "-c", script).stdout.split())


# Measured: serving 1.98 GB, model-only 1.53 GB (most of both is CPU torch). A CUDA torch, a
# build toolchain left in, or a baked cache would each add a gigabyte or more.
MAX_IMAGE_GB = 2.5


def test_images_build_small_and_cpu_only(images: dict[str, float]) -> None:
    for tag, seconds in images.items():
        size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
        print(f"\n{tag}: built in {seconds:.0f} s, {size / 1e9:.2f} GB")
        assert size / 1e9 < MAX_IMAGE_GB, f"{tag} is {size / 1e9:.2f} GB"
        packages = docker("run", "--rm", "--network", "host", tag, "pip", "list").stdout.lower()
        assert "torch " in packages and "nvidia" not in packages


def test_model_only_image_classifies_and_exits(images: dict[str, float], model_dir: Path) -> None:
    done = docker(
        "run", "--rm", "--network", "host", "-v", f"{model_dir}:/models/tiny:ro",
        "-e", "SENTIMENT_MODEL=/models/tiny", MODEL_IMAGE,
    )  # fmt: skip
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == 3
    assert all(a["label"] in ("NEGATIVE", "POSITIVE") for a in answers)


def test_container_serves_both_apps_as_a_non_root_user(container: tuple[str, int]) -> None:
    name, port = container
    check = subprocess.run(
        [sys.executable, str(ROOT / "test_local_http_endpoint.py"), "--url", f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert docker("exec", name, "id", "-u").stdout.strip() != "0"
    # The apps' metrics on Ray's metrics port, and Serve started with the config's request timeout.
    metrics_port = docker("exec", name, "printenv", "RAY_METRICS_EXPORT_PORT").stdout.strip()
    wait_for(
        lambda: (
            "ray_sentiment_texts_total{"
            in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        ),
        60,
        "the apps' metrics",
    )
    dashboard_port = docker("exec", name, "printenv", "RAY_DASHBOARD_PORT").stdout.strip()
    serve_state = httpx.get(f"http://127.0.0.1:{dashboard_port}/api/serve/applications/").json()
    assert serve_state["http_options"]["request_timeout_s"] == 30
    health = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
    print(
        f"\ncontainer user {docker('exec', name, 'id', '-un').stdout.strip()}, docker health {health}"
    )


def test_dashboard_listens_only_on_loopback_unless_asked(
    container: tuple[str, int], model_dir: Path
) -> None:
    name, port = container
    assert listening(name, port) == {"0.0.0.0"}  # the API answers from outside
    dashboard_port = int(docker("exec", name, "printenv", "RAY_DASHBOARD_PORT").stdout)
    assert listening(name, dashboard_port) == {"127.0.0.1"}
    opened, opened_port = f"sentiment-open-{free_port()}", free_port()
    try:
        run_serving(opened, model_dir, opened_port, RAY_DASHBOARD_HOST="0.0.0.0")
        opened_dashboard = int(docker("exec", opened, "printenv", "RAY_DASHBOARD_PORT").stdout)
        wait_for(lambda: bool(listening(opened, opened_dashboard)), 120, "the opened dashboard")
        assert listening(opened, opened_dashboard) == {"0.0.0.0"}
    finally:
        docker("rm", "-f", opened, check=False)


def test_docker_stop_drains_in_flight_requests(container: tuple[str, int]) -> None:
    name, port = container
    outcomes: Counter[str] = Counter()
    stop_sent = threading.Event()
    deadline = time.monotonic() + 90

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            for n in range(400):
                if time.monotonic() > deadline:
                    return
                try:
                    response = http.post(
                        f"http://127.0.0.1:{port}/classify", json={"input_text": f"request {n}"}
                    )
                    retry_after = response.headers.get("retry-after")
                    kind = "ok" if response.status_code == 200 else f"http {response.status_code}"
                    outcomes[f"{kind} retry-after {retry_after}" if retry_after else kind] += 1
                except httpx.ConnectError:
                    outcomes["refused (after shutdown)"] += 1
                    if stop_sent.is_set():
                        return
                except httpx.HTTPError as error:
                    outcomes[f"failed in flight: {type(error).__name__}"] += 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: outcomes["ok"] >= 40, 60, "steady traffic")
    start = time.monotonic()
    stop_sent.set()
    docker("stop", "-t", "60", name, timeout=120)
    stopped_in = time.monotonic() - start
    for thread in threads:
        thread.join(timeout=60)
    exit_code = docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    print(
        f"\ndocker stop took {stopped_in:.1f} s, exit code {exit_code}; requests: {dict(outcomes)}"
    )
    assert exit_code == "0"  # the trap ran: not killed at the timeout
    # Nothing taken is lost: every request is answered, refused with a 503 that says when to retry
    # (while the apps drain), or refused a connection (once HAProxy stopped listening): all three a
    # load balancer retries elsewhere. No 404, no 5xx, nothing cut in flight.
    assert outcomes["http 503 retry-after 1"] > 0, outcomes
    assert set(outcomes) <= {"ok", "http 503 retry-after 1", "refused (after shutdown)"}, outcomes


def test_unreadable_model_is_one_clear_line(
    images: dict[str, float], tmp_path: Path, model_dir: Path
) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "locked"))
    (copy / "model.safetensors").chmod(0o600)
    done = docker(
        "run", "--rm", "--network", "host", "-v", f"{copy}:/models/tiny:ro",
        "-e", "SENTIMENT_MODEL=/models/tiny", SERVING_IMAGE, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "cannot read model.safetensors" in last and "Traceback" not in done.stderr
