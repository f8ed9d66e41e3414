"""The continuous batcher: batches grow while the model is busy, answers go to their callers."""

import asyncio
import random
import threading
import time
from collections.abc import Callable

import pytest

from sentiment.batching import ContinuousBatcher, lane_threads


def slow_double(items: list[int]) -> list[int]:
    """Stand in for a model call that takes a while."""
    time.sleep(0.05)
    return [2 * item for item in items]


async def until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Wait until `condition()` holds, polling the event loop; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.001)


def test_each_caller_gets_its_own_answer_and_batches_grow_under_load() -> None:
    batcher = ContinuousBatcher(slow_double, max_batch_size=16)

    async def burst() -> list[int]:
        return await asyncio.gather(*(batcher.submit(n) for n in range(50)))

    assert asyncio.run(burst()) == [2 * n for n in range(50)]
    # Everything queued before the model was free: full batches, never more than the cap.
    assert list(batcher.batch_sizes) == [16, 16, 16, 2]


def test_requests_arriving_while_the_model_runs_join_the_next_batch() -> None:
    batcher = ContinuousBatcher(slow_double, max_batch_size=64)

    async def trickle() -> list[int]:
        async def one(n: int) -> int:
            await asyncio.sleep(n * 0.002)  # one arrival every 2 ms, the model takes 50 ms
            return await batcher.submit(n)

        return await asyncio.gather(*(one(n) for n in range(40)))

    assert asyncio.run(trickle()) == [2 * n for n in range(40)]
    assert len(batcher.batch_sizes) <= 4, batcher.batch_sizes


def test_a_failing_batch_fails_its_callers_only() -> None:
    calls: list[list[int]] = []

    def fail_on_negative(items: list[int]) -> list[int]:
        calls.append(items)
        if any(item < 0 for item in items):
            raise ValueError("negative")
        return items

    batcher = ContinuousBatcher(fail_on_negative, max_batch_size=8)

    async def run() -> None:
        with pytest.raises(ValueError, match="negative"):
            await batcher.submit(-1)
        assert await batcher.submit(3) == 3

    asyncio.run(run())
    assert calls == [[-1], [3]]


def test_the_model_runs_off_the_event_loop() -> None:
    seen: list[str] = []
    batcher = ContinuousBatcher(
        lambda items: seen.append(threading.current_thread().name) or items, 4
    )
    asyncio.run(batcher.submit(1))
    assert seen and seen[0] != threading.main_thread().name


def test_a_wrong_count_of_results_fails_every_caller_of_that_batch_and_the_next_batch_runs() -> (
    None
):
    def drops_one(items: list[int]) -> list[int]:
        time.sleep(0.02)
        return items[:-1] if len(items) > 1 else items

    batcher = ContinuousBatcher(drops_one, max_batch_size=8)

    async def run() -> None:
        # Bounded: a stranded caller would wait forever.
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(n) for n in range(4)), return_exceptions=True), 5
        )
        assert all(isinstance(outcome, RuntimeError) for outcome in outcomes), outcomes
        assert "3 results for 4 items" in str(outcomes[0])
        assert await asyncio.wait_for(batcher.submit(7), 5) == 7

    asyncio.run(run())


def test_a_lone_item_is_not_queued_behind_a_big_request() -> None:
    batcher = ContinuousBatcher(slow_double, max_batch_size=16)

    async def run() -> tuple[int, bool]:
        big = asyncio.ensure_future(batcher.submit_many(list(range(160))))
        await until(lambda: batcher.running)  # the first batch of the big request runs
        assert await batcher.submit(1000) == 2000
        return len(batcher.batch_sizes), big.done()

    calls, big_done = asyncio.run(run())
    # It ran in the second call (the worker may have cut a third by now); first come, first
    # served would have run the 160 items first (10 calls of 16).
    assert calls <= 3 and not big_done


def test_a_lone_item_rides_the_next_call_however_many_requests_wait() -> None:
    calls: list[list[int]] = []

    def record(items: list[int]) -> list[int]:
        calls.append(items)
        time.sleep(0.05)
        return items

    batcher = ContinuousBatcher(record, max_batch_size=4)

    async def run() -> tuple[int, int]:
        # Twelve requests of two items: three calls of four before each has had one item.
        requests = [batcher.submit_many([10 * n, 10 * n + 1]) for n in range(12)]
        waiting = asyncio.ensure_future(asyncio.gather(*requests))
        await until(lambda: batcher.running)  # the first call runs
        lone = asyncio.ensure_future(batcher.submit(999))
        await asyncio.sleep(0)  # it is queued
        ahead = batcher.queued_lone, batcher.queued
        assert await lone == 999
        await waiting
        return ahead

    lone, queued = asyncio.run(run())
    # Counted apart from the 20 items of the other requests (what admission counts for a lone text).
    assert (lone, queued) == (1, 21)
    # The call after the one running when it came; round-robin alone ran it fifth (after one
    # item of each of the twelve requests).
    assert 999 in calls[1], calls


def test_a_request_gets_its_results_in_order_and_queue_waits_are_observed() -> None:
    waits: list[float] = []
    batcher = ContinuousBatcher(slow_double, max_batch_size=16, observe_wait=waits.append)

    async def run() -> list[list[int]]:
        return await asyncio.gather(
            batcher.submit_many(list(range(20))), batcher.submit_many([100, 101])
        )

    assert asyncio.run(run()) == [[2 * n for n in range(20)], [200, 202]]
    assert len(waits) == 22
    # The items of the second call waited for the first (50 ms).
    assert max(waits) >= 0.04 and min(waits) >= 0


def test_a_probe_runs_alone_between_batches() -> None:
    running = threading.Semaphore(1)
    overlaps: list[int] = []

    def exclusive(items: list[int]) -> list[int]:
        if not running.acquire(blocking=False):
            overlaps.append(len(items))
            return items
        try:
            time.sleep(0.02)
            return items
        finally:
            running.release()

    batcher = ContinuousBatcher(exclusive, max_batch_size=4)

    async def run() -> list:
        traffic = asyncio.gather(*(batcher.submit(n) for n in range(12)))
        await until(lambda: batcher.running)
        probe = await batcher.probe(exclusive, [-1], timeout_s=5)
        await traffic
        return probe

    assert asyncio.run(run()) == [-1]
    assert overlaps == []
    # The probe is not a batch: it is kept out of what traffic ran.
    assert sum(batcher.batch_sizes) == 12


def test_a_probe_that_times_out_counts_as_a_failed_call_until_one_answers() -> None:
    release = threading.Event()

    def hangs_once(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    batcher = ContinuousBatcher(hangs_once, max_batch_size=4)

    async def run() -> list[bool | None]:
        seen = [batcher.last_ok]
        with pytest.raises(TimeoutError):
            await batcher.probe(hangs_once, [1], timeout_s=0.1)
        seen.append(batcher.last_ok)
        release.set()
        assert await batcher.submit(2) == 2
        seen.append(batcher.last_ok)
        return seen

    assert asyncio.run(run()) == [None, False, True]


def test_a_probe_queued_behind_work_that_answers_is_no_failure_and_a_stale_one_never_runs() -> None:
    calls: list[list[int]] = []

    def slow(items: list[int]) -> list[int]:
        time.sleep(0.3)
        calls.append(list(items))
        return items

    batcher = ContinuousBatcher(slow, max_batch_size=4)

    async def run() -> list[bool | None]:
        seen = []
        # Behind a call that answers while it waits: it times out in its own run, yet the model
        # answered meanwhile, so the replica is not failing.
        traffic = asyncio.create_task(batcher.submit(1))
        await until(lambda: batcher.running)
        with pytest.raises(TimeoutError):
            await batcher.probe(slow, [-1], timeout_s=0.4)
        seen.append(batcher.last_ok)
        await traffic
        await until(lambda: [-1] in calls)  # the started probe finishes
        # Timed out before it started: dropped, not run later in front of traffic.
        traffic = asyncio.create_task(batcher.submit(2))
        await until(lambda: batcher.running)
        with pytest.raises(TimeoutError):
            await batcher.probe(slow, [-2], timeout_s=0.1)
        await traffic
        await asyncio.sleep(0.4)  # longer than a call: what never runs has had its chance
        return seen

    assert asyncio.run(run()) == [True]
    assert calls == [[1], [-1], [2]]


def clients_in_a_loop(
    batcher: ContinuousBatcher, clients: int, rounds: int, come_back_s: tuple[float, float]
) -> list[float]:
    """Run `clients` callers that each submit, get their answer, spend a while between
    `come_back_s` seconds (replying, the next request) and submit again; return each call's
    seconds."""
    rng = random.Random(0)
    seconds: list[float] = []

    async def client(n: int) -> None:
        for _ in range(rounds):
            start = time.monotonic()
            assert await batcher.submit(n) == 2 * n
            seconds.append(time.monotonic() - start)
            await asyncio.sleep(rng.uniform(*come_back_s))

    async def run() -> None:
        await asyncio.gather(*(client(n) for n in range(clients)))

    asyncio.run(run())
    return seconds


def test_the_callers_of_a_batch_ride_the_next_one_together() -> None:
    # Without waiting for them, the callers split into two halves that take turns (here a lone
    # item, then the rest, each paying a model call).
    alone = ContinuousBatcher(slow_double, max_batch_size=64)
    clients_in_a_loop(alone, clients=8, rounds=6, come_back_s=(0.001, 0.008))
    assert min(alone.batch_sizes) < 4, alone.batch_sizes
    together = ContinuousBatcher(slow_double, max_batch_size=64, wait_s=0.2)
    clients_in_a_loop(together, clients=8, rounds=6, come_back_s=(0.001, 0.008))
    assert list(together.batch_sizes) == [8] * 6, together.batch_sizes


def test_a_lone_caller_never_waits_and_callers_who_stay_away_cost_at_most_the_wait() -> None:
    batcher = ContinuousBatcher(slow_double, max_batch_size=64, wait_s=0.5)
    seconds = clients_in_a_loop(batcher, clients=1, rounds=5, come_back_s=(0.0, 0.0))
    assert max(seconds) < 0.3, seconds  # a 50 ms model call each, never the 0.5 s wait

    async def half_come_back() -> float:
        await asyncio.gather(*(batcher.submit(n) for n in range(8)))
        start = time.monotonic()
        await asyncio.gather(*(batcher.submit(n) for n in range(4)))
        return time.monotonic() - start

    assert 0.4 < asyncio.run(half_come_back()) < 1.0
    assert list(batcher.batch_sizes)[-2:] == [8, 4]


class Lanes:
    """Stand in for a model whose calls record their lane, their threads and their overlap."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Condition()
        self.running = 0
        self.calls: list[
            tuple[str, int, int, int]
        ] = []  # lane thread, threads, items, calls at once

    def use_threads(self, threads: int) -> None:
        self.local.threads = threads

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.running += 1
            self.lock.notify_all()
            # A call beside this one starts within this wait (a thread's start can take a while
            # on a busy machine, so the wait ends when it comes, not after a fixed sleep).
            self.lock.wait_for(lambda: self.running > 1, timeout=0.3)
            overlap = self.running
        time.sleep(0.02)
        with self.lock:
            self.running -= 1
            lane = threading.current_thread().name.rsplit("_", 1)[0]
            self.calls.append((lane, self.local.threads, len(items), overlap))
        return [2 * item for item in items]


def test_under_load_calls_run_side_by_side_on_a_share_of_the_cores() -> None:
    model = Lanes()
    batcher = ContinuousBatcher(
        model, max_batch_size=64, lanes=2, threads=4, use_threads=model.use_threads
    )

    async def burst() -> list[int]:
        return await asyncio.gather(*(batcher.submit(n) for n in range(20)))

    assert asyncio.run(burst()) == [2 * n for n in range(20)]
    # The lanes, free together, share what queued: two calls at once, on two cores each.
    assert sorted(model.calls) == [("model-0", 2, 10, 2), ("model-1", 2, 10, 2)], model.calls


def test_a_lone_call_gets_every_core_and_nothing_runs_beside_it() -> None:
    model = Lanes()
    batcher = ContinuousBatcher(
        model, max_batch_size=64, lanes=2, threads=4, use_threads=model.use_threads
    )

    async def lone_then_more() -> list[int]:
        first = asyncio.ensure_future(batcher.submit(1))
        await until(lambda: batcher.running)  # the lone call runs: these arrive beside it
        rest = asyncio.gather(*(batcher.submit(n) for n in range(6)))
        return [await first, *await rest]

    assert asyncio.run(lone_then_more()) == [2, *(2 * n for n in range(6))]
    lone, *rest = model.calls
    assert lone == ("model-0", 4, 1, 1), model.calls
    # What arrived waited for it (no call overlapped the one on every core), then shared the lanes.
    assert sorted(rest) == [("model-0", 2, 3, 2), ("model-1", 2, 3, 2)], model.calls
    # Lone calls, one after another, keep to lane 0 (only it has a team of threads).
    for n in range(3):
        assert asyncio.run(batcher.submit(n)) == 2 * n
    assert model.calls[-3:] == [("model-0", 4, 1, 1)] * 3, model.calls


def test_batchers_given_the_same_lane_threads_run_their_calls_on_them() -> None:
    # A replica's models share its lane threads: one OpenMP team, whichever model runs.
    seen: list[tuple[int, str]] = []

    def record(items: list[int]) -> list[int]:
        seen.append((threading.get_ident(), threading.current_thread().name))
        return items

    shared = lane_threads(2)
    first = ContinuousBatcher(record, max_batch_size=8, lanes=shared)
    second = ContinuousBatcher(record, max_batch_size=8, lanes=shared)
    assert asyncio.run(first.submit(1)) == 1
    assert asyncio.run(second.submit(2)) == 2
    assert first.lanes == second.lanes == shared
    assert seen[0] == seen[1] and seen[0][1].startswith("model-0"), seen
    # Without them, each batcher makes its own.
    assert ContinuousBatcher(record, max_batch_size=8, lanes=2).lanes[0] is not shared[0]
