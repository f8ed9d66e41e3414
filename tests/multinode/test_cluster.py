"""Several machines, simulated on one: a head and a worker node (ray.cluster_utils.Cluster).

The same app code and builders as on one machine; Serve spreads the replicas and runs a proxy on
every node. Both nodes share this machine, so the worker's proxy gets its own port.
"""

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import ray
import yaml
from ray import serve
from ray.cluster_utils import Cluster

from bench.harness import answers, free_port, wait_for
from sentiment.apps import CLASSIFIER_APP, ROUTE_PREFIXES, Classifier
from sentiment.model import SentimentBertModel
from sentiment.settings import Settings
from sentiment_ops.head import stop_haproxy
from tests.helpers import CLIENTS, SteadyLoad, assert_same_prediction
from tests.integration.deployments import running_replicas

ROOT = Path(__file__).resolve().parents[2]

NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}
# The head has room for both replicas, so the worker's can come back there when the worker dies;
# Serve spreads replicas over nodes, so while both nodes live there is one on each.
HEAD = {**NODE, "num_cpus": 2}


@dataclass
class TwoNodes:
    """A running two-node cluster with the Classifier app on it."""

    head_url: str
    worker_url: str
    node_ids: set[str]
    settings: Settings
    cluster: Cluster
    worker: object  # the worker node, as cluster.add_node returned it


def deploy_classifier(settings: Settings, **options) -> None:
    """Deploy the Classifier app with these options, each replica taking one CPU."""
    deployment = Classifier.options(ray_actor_options={"num_cpus": 1}, **options)
    serve.run(
        deployment.bind(settings), name=CLASSIFIER_APP, route_prefix=ROUTE_PREFIXES[CLASSIFIER_APP]
    )


def replica_nodes(two_nodes: "TwoNodes", asks: int = 20) -> set[str]:
    """The nodes of the Classifier replicas that answer /healthcheck through either proxy."""
    seen = set()
    for n in range(asks):
        url = (two_nodes.head_url, two_nodes.worker_url)[n % 2]
        answer = httpx.get(f"{url}/healthcheck", timeout=10)
        if answer.status_code == 200:
            seen.add(answer.json()["node"])
    return seen


@pytest.fixture(scope="module")
def two_nodes(tiny_model_dir: Path) -> Iterator[TwoNodes]:
    """Start a head and a worker, deploy two replicas; shut all of it down, whatever happened."""
    head_port, worker_port = free_port(), free_port()
    cluster = Cluster(initialize_head=True, head_node_args=HEAD)
    try:
        # Connect on loopback: left alone, the driver swaps 127.0.0.1 for the machine's address.
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1", logging_level="ERROR")
        # Both nodes share this machine: the worker's proxy needs its own ports (HTTP, and
        # HAProxy's stats and metrics listeners).
        worker_env = {
            "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(worker_port),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        }
        worker = cluster.add_node(**{**NODE, "env_vars": worker_env})
        cluster.wait_for_nodes()
        serve.start(http_options={"host": "127.0.0.1", "port": head_port, "location": "EveryNode"})
        settings = Settings(model=str(tiny_model_dir), num_threads=1)
        deploy_classifier(settings, num_replicas=2)
        yield TwoNodes(
            head_url=f"http://127.0.0.1:{head_port}",
            worker_url=f"http://127.0.0.1:{worker_port}",
            node_ids={node["NodeID"] for node in ray.nodes() if node["Alive"]},
            settings=settings,
            cluster=cluster,
            worker=worker,
        )
    finally:
        nodes = [node["NodeID"] for node in ray.nodes()] if ray.is_initialized() else []
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
        stop_haproxy(nodes)


def test_cluster_has_two_nodes_and_a_proxy_on_each(two_nodes: TwoNodes) -> None:
    assert len(two_nodes.node_ids) == 2
    proxies = serve.status().proxies
    assert set(proxies) == two_nodes.node_ids
    assert set(proxies.values()) == {"HEALTHY"}


def test_replicas_on_both_nodes_answer_through_both_proxies(two_nodes: TwoNodes) -> None:
    seen: dict[str, set[str]] = {two_nodes.head_url: set(), two_nodes.worker_url: set()}

    def every_node_seen() -> bool:
        for url, nodes in seen.items():
            response = httpx.get(f"{url}/healthcheck", timeout=10)
            # Just after a deploy, a node's HAProxy may not have loaded the app yet (a 500 from
            # Serve's fallback): poll, as a load balancer's readiness probe would.
            if response.status_code == 200:
                nodes.add(response.json()["node"])
        return set().union(*seen.values()) == two_nodes.node_ids

    # Each proxy may prefer its own node's replica; over both proxies, both replicas answer.
    wait_for(every_node_seen, 60, "a replica on each node to answer")
    assert all(seen.values()), seen


def test_answers_through_either_proxy_equal_in_process(two_nodes: TwoNodes) -> None:
    model = SentimentBertModel.from_settings(two_nodes.settings)
    texts = [f"review {n}: the film was {'great' if n % 2 else 'dull'}" for n in range(40)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            urls = [two_nodes.head_url, two_nodes.worker_url]
            return await asyncio.gather(
                *(
                    client.post(f"{urls[n % 2]}/classify", json={"input_text": text})
                    for n, text in enumerate(texts)
                )
            )

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * len(texts)
    for response, expected in zip(responses, model.predict_batch(texts), strict=True):
        assert_same_prediction(response.json(), expected, model.precision)


def test_a_load_step_scales_out_over_both_nodes_and_back_with_no_failed_request(
    two_nodes: TwoNodes,
) -> None:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (classifier,) = [app for app in config["applications"] if app["name"] == CLASSIFIER_APP]
    autoscaling = classifier["deployments"][0]["autoscaling_config"]
    assert autoscaling["min_replicas"] == 1 and autoscaling["max_replicas"] >= 3
    # The config's policy on this cluster's 3 CPUs, with Ray's own tests' short intervals and
    # delays, and a target that 8 clients exceed.
    fast = {
        "metrics_interval_s": 0.5,
        "look_back_period_s": 2,
        "upscale_delay_s": 1,
        "downscale_delay_s": 3,
    }
    deploy_classifier(
        two_nodes.settings,
        autoscaling_config={**autoscaling, **fast, "max_replicas": 3, "target_ongoing_requests": 2},
    )
    wait_for(lambda: running_replicas(CLASSIFIER_APP) == 1, 60, "one replica at rest")
    url = f"{two_nodes.head_url}/classify"
    try:
        with SteadyLoad(url, clients=8) as step:
            started = time.monotonic()
            wait_for(lambda: running_replicas(CLASSIFIER_APP) == 3, 90, "three replicas under load")
            up_in = time.monotonic() - started
            # Each node's HAProxy takes a moment to route to a replica that just started: look for
            # up to 30 s.
            nodes: set[str] = set()
            deadline = time.monotonic() + 30
            while nodes != two_nodes.node_ids and time.monotonic() < deadline:
                nodes |= replica_nodes(two_nodes)
            step.wait_for_requests_after(time.monotonic())
        # A trickle of requests keeps flowing while the extra replicas drain and stop.
        with SteadyLoad(url, clients=1, warm=5) as trickle:
            started = time.monotonic()
            wait_for(lambda: running_replicas(CLASSIFIER_APP) == 1, 90, "back to one")
            down_in = time.monotonic() - started
            trickle.wait_for_requests_after(time.monotonic(), count=5)
        print(
            f"\nautoscaling: 1 -> 3 replicas in {up_in:.1f} s under 8 clients {dict(step.outcomes)};"
            f" 3 -> 1 in {down_in:.1f} s under 1 client {dict(trickle.outcomes)}"
        )
        assert set(nodes) == two_nodes.node_ids  # at least one replica on each node
        assert step.failed() == 0 and trickle.failed() == 0
    finally:
        # The fixed two replicas, one per node, for the test that follows.
        deploy_classifier(two_nodes.settings, num_replicas=2)
        wait_for(lambda: running_replicas(CLASSIFIER_APP) == 2, 60, "two replicas")
        wait_for(lambda: replica_nodes(two_nodes) == two_nodes.node_ids, 60, "one on each node")


def test_losing_the_worker_node_fails_only_its_in_flight_requests(two_nodes: TwoNodes) -> None:
    # Last in this module: the worker does not come back.
    (head_node,) = two_nodes.node_ids - {two_nodes.worker.node_id}
    with SteadyLoad(f"{two_nodes.head_url}/classify") as load:
        lost_at = time.monotonic()
        two_nodes.cluster.remove_node(two_nodes.worker)

        def both_replicas_on_the_head() -> bool:
            # What answers, not what Serve's status says: that lags the node's death.
            answers = [
                httpx.get(f"{two_nodes.head_url}/healthcheck", timeout=10) for _ in range(20)
            ]
            seen = {
                (a.json()["replica"], a.json()["node"]) for a in answers if a.status_code == 200
            }
            return len(seen) == 2 and {node for _, node in seen} == {head_node}

        wait_for(both_replicas_on_the_head, 120, "the lost replica back on the head")
        back_in = time.monotonic() - lost_at
        recovered_at = time.monotonic()
        load.wait_for_requests_after(recovered_at)
    failed_at = [at - lost_at for at, ok in load.timeline if not ok]
    print(
        f"\nworker node lost: both replicas answer from the head {back_in:.1f} s later;"
        f" {dict(load.outcomes)}, failures sent at {[round(t, 1) for t in failed_at]} s"
    )
    # Only requests caught by the loss fail: those in flight on the lost replica (one per client),
    # and the few routed to it before Serve's health check removed it (HAProxy answers 500 when
    # its retries find no live server). Nothing before the loss, nothing after the recovery.
    assert all(-1 <= t <= back_in for t in failed_at), failed_at  # sent just before: in flight
    assert load.failed() <= 2 * CLIENTS, load.outcomes
    assert load.all_ok_since(recovered_at)
    assert answers(f"{two_nodes.head_url}/healthcheck")
