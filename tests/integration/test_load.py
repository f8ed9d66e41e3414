"""Under load: a busy replica is not a sick one, lone texts do not starve behind batches, and the
work a replica admits is bounded in seconds (503 + Retry-After past it)."""

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
from ray import serve

from bench.harness import percentile, wait_for
from sentiment.settings import Settings
from tests.helpers import SteadyLoad
from tests.integration.deployments import Faulty, deployed, replicas

MODEL_CALL_S = 0.2  # what the slowed model takes per call, whatever its size
LOAD_S = 12


def post_whose_body_never_comes(url: str, timeout_s: float) -> tuple[int, float]:
    """POST headers announcing a large JSON body and send only its start; return the status the
    server answered (0: none within `timeout_s`) and how long it took."""
    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        asked = time.monotonic()
        sock.sendall(head.encode() + b'{"texts": ["')
        try:
            status_line = sock.makefile("rb").readline()
        except TimeoutError:
            return 0, time.monotonic() - asked
    return int(status_line.split()[1]), time.monotonic() - asked


def test_a_busy_replica_stays_healthy_and_lone_texts_do_not_wait_behind_batches(
    base_url: str, settings: Settings
) -> None:
    # Six clients keep 64-text batches queued (24 calls of 16, ~5 s of work at any moment); two
    # clients send one text at a time. Health is checked every second with a 2 s limit: a check
    # that queued behind the work would fail three times and Serve would replace the replica.
    url = f"{base_url}/busy"
    with deployed("busy", settings, Faulty, health_check_period_s=1):
        serve.get_app_handle("busy").slow_down.remote(MODEL_CALL_S).result(timeout_s=30)
        before = replicas("busy")
        health_s: list[float] = []
        with (
            SteadyLoad(f"{url}/classify/batch", clients=6, batch=64, warm=6) as batches,
            SteadyLoad(f"{url}/classify", clients=2, warm=2) as singles,
        ):
            deadline = time.monotonic() + LOAD_S
            while time.monotonic() < deadline:
                asked = time.monotonic()
                health = httpx.get(f"{url}/healthcheck", timeout=30)
                health_s.append(time.monotonic() - asked)
                assert health.status_code == 200, health.text
                time.sleep(0.5)
        after = replicas("busy")
    print(
        f"\nbusy for {LOAD_S} s: batches {dict(batches.outcomes)}, p50"
        f" {percentile(batches.latencies, 50):.2f} s; singles {dict(singles.outcomes)}, p50"
        f" {percentile(singles.latencies, 50):.2f} s, p90 {percentile(singles.latencies, 90):.2f} s;"
        f" /healthcheck p90 {percentile(health_s, 90):.2f} s"
    )
    assert after == before  # never replaced
    assert batches.failed() == 0 and singles.failed() == 0
    # A lone text rides the next model call or two; first come, first served would queue it
    # behind the ~24 calls of batches ahead (seconds).
    assert percentile(singles.latencies, 90) < 6 * MODEL_CALL_S
    assert percentile(batches.latencies, 50) > 10 * MODEL_CALL_S
    # /healthcheck of a busy replica does not wait for the queue.
    assert percentile(health_s, 90) < 2 * MODEL_CALL_S


def test_a_replica_whose_calls_outlast_the_health_timeout_is_not_replaced_while_it_answers(
    base_url: str, settings: Settings
) -> None:
    # Each model call takes longer than a health check may wait (Faulty: 2 s), as a full batch of
    # long texts does on a slow CPU; a check that waited for the model would fail every time.
    url = f"{base_url}/long"
    with deployed("long", settings, Faulty, health_check_period_s=1):
        serve.get_app_handle("long").slow_down.remote(2.5).result(timeout_s=30)
        before = replicas("long")
        with SteadyLoad(f"{url}/classify", clients=2, warm=2) as load:
            time.sleep(LOAD_S)  # a dozen health checks, all while a call runs
            health = httpx.get(f"{url}/healthcheck", timeout=30)
        after = replicas("long")
    print(
        f"\ncalls of 2.5 s for {LOAD_S} s: {dict(load.outcomes)}, /healthcheck {health.status_code}"
    )
    assert after == before
    assert load.failed() == 0
    assert health.status_code == 200


def test_work_past_the_budget_gets_a_fast_503_with_retry_after(
    base_url: str, settings: Settings
) -> None:
    # A budget of 2 s of work; the slowed model takes MODEL_CALL_S per call of up to 16 texts.
    url = f"{base_url}/budget"
    with deployed("budget", settings.model_copy(update={"max_queue_s": 2.0}), Faulty):
        serve.get_app_handle("budget").slow_down.remote(MODEL_CALL_S).result(timeout_s=30)
        # A few lone texts teach the replica what a text costs now (a whole call each).
        for n in range(4):
            httpx.post(f"{url}/classify", json={"input_text": f"learn {n}"}, timeout=30)
        big: dict[str, httpx.Response] = {}
        texts = [f"text {n}" for n in range(64)]
        sender = threading.Thread(
            target=lambda: big.update(
                answer=httpx.post(f"{url}/classify/batch", json={"texts": texts}, timeout=60)
            )
        )
        sender.start()
        try:
            # Nothing ahead of it: the big request is admitted, whatever its size.
            handle = serve.get_app_handle("budget")
            wait_for(lambda: handle.held.remote().result(timeout_s=10) >= 4 + 64, 30, "admitted")
            asked = time.monotonic()
            refused = httpx.post(f"{url}/classify/batch", json={"texts": texts[:16]}, timeout=30)
            refused_in = time.monotonic() - asked
            # The work ahead alone is past the budget: a batch is refused before its body is read.
            early, early_in = post_whose_body_never_comes(f"{url}/classify/batch", 5.0)
            # A lone text is cut before the queued batch texts: they do not count against it.
            lone = httpx.post(f"{url}/classify", json={"input_text": "a lone text"}, timeout=30)
        finally:
            sender.join(timeout=60)
        again = httpx.post(f"{url}/classify", json={"input_text": "drained"}, timeout=30)
    print(
        f"\nover budget: {refused.status_code} in {refused_in * 1000:.0f} ms,"
        f" Retry-After {refused.headers.get('retry-after')}: {refused.json()['detail']};"
        f" a body that never came: {early} in {early_in * 1000:.0f} ms"
    )
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert "SENTIMENT_MAX_QUEUE_S" in refused.json()["detail"]
    assert refused_in < MODEL_CALL_S  # refused at once, not after waiting
    assert lone.status_code == 200, lone.text
    assert early == 503 and early_in < MODEL_CALL_S
    assert big["answer"].status_code == 200
    assert [r["input_text"] for r in big["answer"].json()["results"]] == texts
    assert again.status_code == 200
