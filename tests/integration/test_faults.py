"""Faults: a replica killed mid-traffic, a model that stops answering, a redeploy under load."""

import threading
import time

import httpx
import ray
from ray import serve

from bench.harness import wait_for
from sentiment.settings import Settings
from tests.helpers import CLIENTS, SteadyLoad
from tests.integration.conftest import REQUEST_TIMEOUT_S
from tests.integration.deployments import Faulty, deployed, replicas, running_replicas


def test_a_killed_replica_is_replaced_and_only_its_requests_fail(
    base_url: str, settings: Settings
) -> None:
    # Serve finds a dead replica at its next health check: every 10 s by default, every second
    # here to keep the test short.
    with (
        deployed("crash", settings, num_replicas=2, health_check_period_s=1),
        SteadyLoad(f"{base_url}/crash/classify") as load,
    ):
        victim = replicas("crash")[0]
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        # A new name beside the survivor, and Serve counting both as running.
        wait_for(
            lambda: len(set(replicas("crash")) - {victim}) == 2 and running_replicas("crash") == 2,
            60,
            "a replacement replica",
        )
        back_in = time.monotonic() - killed_at
        recovered_at = time.monotonic()
        load.wait_for_requests_after(recovered_at)
    print(
        f"\nreplica killed: back to 2 replicas in {back_in:.1f} s; requests {dict(load.outcomes)}"
    )
    # At most what the killed replica held: one request per client in flight.
    assert load.failed() <= CLIENTS
    assert load.all_ok_since(recovered_at)


def test_a_one_replica_app_comes_back_after_its_replica_dies(
    base_url: str, settings: Settings
) -> None:
    with deployed("lonely", settings, health_check_period_s=1):  # found sooner (see above)
        (victim,) = replicas("lonely")
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        wait_for(
            lambda: httpx.get(f"{base_url}/lonely/healthcheck", timeout=10).status_code == 200,
            60,
            "the app",
        )
        assert replicas("lonely") != [victim]


def test_a_redeploy_with_a_new_batch_size_drops_no_request(
    base_url: str, settings: Settings
) -> None:
    with (
        deployed("rolling", settings) as deployment,
        SteadyLoad(f"{base_url}/rolling/classify") as load,
    ):
        before = replicas("rolling")
        changed = settings.model_copy(update={"max_batch_size": 8})
        serve.run(deployment.bind(changed), name="rolling", route_prefix="/rolling")
        wait_for(
            lambda: replicas("rolling") and not set(replicas("rolling")) & set(before),
            60,
            "the new replica",
        )
        load.wait_for_requests_after(time.monotonic())
    print(f"\nredeploy under load: requests {dict(load.outcomes)}")
    assert load.failed() == 0, load.outcomes


def test_a_replica_whose_model_stops_answering_is_replaced(
    base_url: str, settings: Settings
) -> None:
    url = f"{base_url}/frozen"
    # A call stuck for 3 s counts as stuck (the production 60 s, shortened to keep the test short).
    impatient = settings.model_copy(update={"stuck_after_s": 3.0})
    with deployed("frozen", impatient, Faulty, health_check_period_s=1):
        before = httpx.get(f"{url}/healthcheck", timeout=30).json()["replica"]
        serve.get_app_handle("frozen").freeze.remote().result(timeout_s=30)
        frozen_at = time.monotonic()
        # /healthcheck tells the truth: the process answers, the model does not. At once when its
        # own inference times out (2 s); if Serve's periodic check got there first, a running call
        # is not yet known to be stuck, so within stuck_after_s.
        wait_for(
            lambda: httpx.get(f"{url}/healthcheck", timeout=30).status_code == 503,
            10,
            "/healthcheck to say the model is not answering",
        )
        health = httpx.get(f"{url}/healthcheck", timeout=30)
        assert "not answering" in health.json()["detail"], health.text
        told_in = time.monotonic() - frozen_at
        # A request to the stuck model ends at the configured request timeout, not never.
        sent = time.monotonic()
        stuck = httpx.post(f"{url}/classify", json={"input_text": "anyone home"}, timeout=60)
        waited = time.monotonic() - sent
        assert stuck.status_code == 408, stuck.text
        assert REQUEST_TIMEOUT_S - 1 < waited < REQUEST_TIMEOUT_S + 10

        # check_health failed three times in a row: Serve replaces the replica.
        def replaced() -> bool:
            health = httpx.get(f"{url}/healthcheck", timeout=30)
            return health.status_code == 200 and health.json()["replica"] != before

        wait_for(replaced, 90, "a replacement replica")
        replaced_in = time.monotonic() - frozen_at
        answer = httpx.post(f"{url}/classify", json={"input_text": "back again"}, timeout=30)
        assert answer.status_code == 200
    print(
        f"\nmodel frozen: /healthcheck 503 after {told_in:.1f} s, a request timed out (408) after"
        f" {waited:.1f} s,"
        f" replica replaced in {replaced_in:.1f} s"
    )


def test_deleting_an_app_lets_its_replica_finish_what_it_holds(
    base_url: str, settings: Settings
) -> None:
    texts = [f"in flight {n}" for n in range(8)]
    answers: dict[str, int | str] = {}

    def send(text: str) -> None:
        try:
            response = httpx.post(
                f"{base_url}/leaving/classify", json={"input_text": text}, timeout=60
            )
            answers[text] = response.status_code
        except httpx.HTTPError as error:
            answers[text] = type(error).__name__

    clients = [threading.Thread(target=send, args=(text,)) for text in texts]
    try:
        with deployed("leaving", settings, Faulty):
            handle = serve.get_app_handle("leaving")
            handle.slow_down.remote(2.0).result(timeout_s=30)
            for client in clients:
                client.start()
            # All 8 at the replica (its model calls take 2 s each, so none is answered yet).
            wait_for(lambda: handle.held.remote().result(timeout_s=10) == 8, 30, "8 requests held")
            assert not answers
            started = time.monotonic()
            serve.delete("leaving")  # returns once the replica has stopped
            deleted_in = time.monotonic() - started
    finally:
        for client in clients:
            if client.is_alive():
                client.join(timeout=60)
    print(f"\napp deleted with 8 requests in flight in {deleted_in:.1f} s: {answers}")
    assert answers == dict.fromkeys(texts, 200)
