"""deploy/kubernetes/rayservice.yaml applied the way the KubeRay operator applies it, on this machine.

No Kubernetes here; what the operator does is reproduced step by step from the manifest itself: a
head started with the head group's `rayStartParams` and container env, a worker with the worker
group's (and `--num-cpus` from the pod's CPU limit, as KubeRay adds it), then `serveConfigV2` sent as
JSON with PUT /api/serve/applications/ on the dashboard (KubeRay's UpdateDeployments), and the apps'
status read back from GET /api/serve/applications/ (its GetServeDetails). The pods become node
addresses on loopback (127.0.0.2 to 127.0.0.4), the dashboard listens on 127.0.0.1, every port is the
test's own, and all traffic goes to loopback.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from bench.harness import answers, free_port, wait_for
from sentiment_ops.head import stop_haproxy
from tests.helpers import SteadyLoad, assert_prediction, rayservice

BIN = Path(sys.executable).parent
# Two pods, two addresses, both on loopback (`ray start` rewrites 127.0.0.1 itself to this
# machine's network address).
HEAD_IP = "127.0.0.2"
# Two worker pods: one replica each (the worker group's num-cpus), and two apps.
WORKER_IPS = ("127.0.0.3", "127.0.0.4")


def pod_env(group: dict, model_dir: Path) -> dict[str, str]:
    """The container env of a group's pod, with the test's model (no hub here)."""
    (container,) = group["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    return {**os.environ, **env, "SENTIMENT_MODEL": str(model_dir), "SENTIMENT_NUM_THREADS": "1"}


def start_params(params: dict[str, str]) -> list[str]:
    """`ray start` flags from rayStartParams, as KubeRay writes them; addresses kept on loopback."""
    return [
        f"--{key}={'127.0.0.1' if key.endswith('-host') else value}"
        for key, value in params.items()
    ]


def start_pod(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Run a pod's `ray start --block`, its output in `log`."""
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def alive_nodes(dashboard: str) -> int:
    """Count the cluster's live nodes (Ray's state API on the dashboard)."""
    answer = httpx.get(f"{dashboard}/api/v0/nodes", params={"limit": 100}, timeout=30)
    nodes = answer.json()["data"]["result"]["result"] if answer.status_code == 200 else []
    return sum(node["state"] == "ALIVE" for node in nodes)


@dataclass
class Cluster:
    """The RayService's Ray cluster: a head pod and worker pods, as processes."""

    dashboard: str
    head_http: str
    worker_http: list[str]  # each worker pod's port 8000
    config: dict  # serveConfigV2, with the test's port


@pytest.fixture(scope="module")
def cluster(tiny_model_dir: Path) -> Iterator[Cluster]:
    """Start the head and two worker pods from the manifest (the two the autoscaler starts for the
    apps' first replicas); `ray stop` afterwards, whatever happened."""
    spec = rayservice()["spec"]
    head_group = spec["rayClusterConfig"]["headGroupSpec"]
    (worker_group,) = spec["rayClusterConfig"]["workerGroupSpecs"]
    config = yaml.safe_load(spec["serveConfigV2"])
    head_http = free_port()
    # The manifest's host (0.0.0.0: each node's HAProxy reaches replicas on the others by the
    # node's address); only the port is the test's own.
    config["http_options"]["port"] = head_http
    temp_dir = tempfile.mkdtemp(prefix="ray-kuberay-", dir="/tmp")
    gcs_port, dashboard_port = free_port(), free_port()
    common = ["--disable-usage-stats", "--block"]
    head = [
        str(BIN / "ray"), "start", "--head", *start_params(head_group["rayStartParams"]), *common,
        f"--node-ip-address={HEAD_IP}",
        f"--temp-dir={temp_dir}", f"--port={gcs_port}", f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]  # fmt: skip
    # KubeRay: --num-cpus from the container's CPU limit unless rayStartParams says.
    worker_limits = worker_group["template"]["spec"]["containers"][0]["resources"]["limits"]
    worker_params = {"num-cpus": str(worker_limits["cpu"]), **worker_group["rayStartParams"]}
    pods: list[subprocess.Popen] = []
    head_env = pod_env(head_group, tiny_model_dir)
    try:
        pods.append(start_pod(head, head_env, Path(temp_dir) / "head-pod.log"))
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        wait_for(lambda: answers(f"{dashboard}/api/gcs_healthz"), 90, "the head's dashboard")
        worker_urls = []
        for ip in WORKER_IPS:
            worker = [
                str(BIN / "ray"), "start", f"--address={HEAD_IP}:{gcs_port}", f"--node-ip-address={ip}",
                *start_params(worker_params), *common,
                f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
            ]  # fmt: skip
            # The pods share this machine: each worker's HAProxy gets ports of its own.
            http_port = free_port()
            worker_env = {
                **pod_env(worker_group, tiny_model_dir),
                "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(http_port),
                "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            }
            # The tests' guard against `ray start --address` (tests/conftest.py): these workers
            # join the head on loopback.
            worker_env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
            pods.append(start_pod(worker, worker_env, Path(temp_dir) / f"worker-{ip}.log"))
            worker_urls.append(f"http://127.0.0.1:{http_port}")
            joined = len(worker_urls) + 1
            wait_for(lambda n=joined: alive_nodes(dashboard) == n, 120, f"pod {ip} to join")
        yield Cluster(dashboard, f"http://127.0.0.1:{head_http}", worker_urls, config)
    finally:
        # Every Ray process of the three pods at once (a pod's own graceful stop on SIGTERM took
        # ~30 s); each `ray start --block` then exits with its node.
        subprocess.run(
            [str(BIN / "ray"), "stop", "--force"], env=head_env, capture_output=True, timeout=120
        )
        for pod in pods:
            pod.terminate()
        for pod in pods:
            try:
                pod.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pod.kill()
                pod.wait(timeout=30)
        stop_haproxy()
        shutil.rmtree(temp_dir, ignore_errors=True)


def apply(cluster: Cluster, config: dict) -> None:
    """Send a serveConfigV2 as KubeRay does: PUT /api/serve/applications/ with it as JSON."""
    response = httpx.put(f"{cluster.dashboard}/api/serve/applications/", json=config, timeout=60)
    assert response.status_code == 200, response.text


def apps_running(cluster: Cluster) -> bool:
    """Say whether every app of the config is RUNNING, as KubeRay reads it."""
    details = httpx.get(
        f"{cluster.dashboard}/api/serve/applications/",
        params={"api_type": "declarative"},
        timeout=30,
    ).json()
    apps = details["applications"]
    return {app["name"] for app in cluster.config["applications"]} <= set(apps) and all(
        app["status"] == "RUNNING" for app in apps.values()
    )


def test_the_operators_steps_bring_both_apps_up_behind_both_pods_proxies(cluster: Cluster) -> None:
    started = time.monotonic()
    apply(cluster, cluster.config)
    wait_for(lambda: apps_running(cluster), 180, "both apps RUNNING")
    print(f"\nserveConfigV2 applied: both apps RUNNING in {time.monotonic() - started:.1f} s")
    # The worker pod's readiness probe, and the serve Service's endpoints: each pod's port 8000.
    for url in (cluster.head_http, *cluster.worker_http):
        wait_for(lambda url=url: answers(f"{url}/-/healthz"), 60, f"{url}/-/healthz")
        router = httpx.get(f"{url}/router", params={"txt": "i like it"}, timeout=30)
        assert router.status_code == 200, router.text
        assert_prediction(router.json(), "i like it")
        health = httpx.get(f"{url}/healthcheck", timeout=30)
        assert health.status_code == 200 and health.json()["precision"], health.text


def test_an_edited_serve_config_rolls_out_under_load_with_no_failed_request(
    cluster: Cluster,
) -> None:
    wait_for(lambda: apps_running(cluster), 180, "both apps RUNNING")
    edited = yaml.safe_load(yaml.safe_dump(cluster.config))
    (classifier,) = [app for app in edited["applications"] if app["name"] == "classifier"]
    classifier["args"] = {**classifier.get("args", {}), "max_batch_size": 8}
    before = httpx.get(f"{cluster.head_http}/healthcheck", timeout=30).json()["replica"]
    with SteadyLoad(f"{cluster.head_http}/classify") as load:
        started = time.monotonic()
        apply(cluster, edited)

        def rolled_out() -> bool:
            health = httpx.get(f"{cluster.head_http}/healthcheck", timeout=30)
            return health.status_code == 200 and health.json()["replica"] != before

        wait_for(rolled_out, 120, "the edited app's new replica")
        wait_for(lambda: apps_running(cluster), 120, "both apps RUNNING again")
        rolled_in = time.monotonic() - started
        load.wait_for_requests_after(time.monotonic())
    print(f"\nedited serveConfigV2 rolled out in {rolled_in:.1f} s; requests {dict(load.outcomes)}")
    assert load.failed() == 0, load.outcomes
