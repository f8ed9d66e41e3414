"""Continuous batching: one model call at a time, each taking everything that queued meanwhile.

Why not `@serve.batch`: its loop cuts the next batch as soon as the current one starts, then waits
for the running one to finish (max_concurrent_batches=1). Under load, requests that arrive while the
model runs are cut into batches of about one text, which queue behind each other, and batching
never pays (measured with bench/: 240 of 277 batches held a single text at 32 concurrent
requests). Here the next batch is cut only when the model is free, so its size follows the load.
"""

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class ContinuousBatcher(Generic[Item, Result]):
    """Queue items from many coroutines; run `fn` on batches of them in a worker thread."""

    def __init__(
        self,
        fn: Callable[[list[Item]], Sequence[Result]],
        max_batch_size: int,
        wait_s: float = 0.0,
    ) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.batch_sizes: deque[int] = deque(
            maxlen=1000
        )  # the last sizes run, for tests and metrics
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Queue one item and return its result once its batch has run."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue))
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _run(self, queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]]) -> None:
        """Run batches forever: wait for one item, take what else is queued, call `fn` once."""
        while True:
            batch = [await queue.get()]
            if self.wait_s and queue.qsize() < self.max_batch_size - 1:
                await asyncio.sleep(self.wait_s)
            while len(batch) < self.max_batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            # A client that went away cancelled its future: do not spend the model on it.
            live = [(item, future) for item, future in batch if not future.done()]
            if not live:
                continue
            self.batch_sizes.append(len(live))
            try:
                # In a thread, so the event loop keeps accepting requests while the model runs.
                results = await asyncio.to_thread(self.fn, [item for item, _ in live])
            except Exception as error:
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
