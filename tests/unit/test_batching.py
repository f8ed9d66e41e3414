"""The continuous batcher: batches grow while the model is busy, answers go to their callers."""

import asyncio
import threading
import time

import pytest

from sentiment.batching import ContinuousBatcher


def slow_double(items: list[int]) -> list[int]:
    """Stand in for a model call that takes a while."""
    time.sleep(0.05)
    return [2 * item for item in items]


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
