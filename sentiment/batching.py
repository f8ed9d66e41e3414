"""Continuous batching: model calls that each take what queued meanwhile, fairly, in lanes.

Why not `@serve.batch`: its loop cuts the next batch as soon as the current one starts, then waits
for the running one to finish (max_concurrent_batches=1). Under load, requests that arrive while the
model runs are cut into batches of about one text, which queue behind each other, and batching
never pays (most batches held a single text at 32 concurrent requests: the replica's log line
gives each request's batch size). Here the next batch is cut only when the model is free, so its
size follows the load.

Why wait for the callers just answered: under steady load from a fixed set of clients, the
callers of one batch come back while the next batch runs, so batches alternate between two
halves of the clients (turn about, at 32 concurrent requests), each paying a model call, and the answering of one half competes for the cores with the other half's call. So
after a batch answers, the next one waits, up to `wait_s`, until as many more items are queued as
the last batch held: the replies go out and the requests come back while the model is idle, and the
clients ride one model call together. A lone caller never waits: one item queued is as many as
its last batch held (`python -m bench --concurrency 1,8,32` with SENTIMENT_BATCH_WAIT_TIMEOUT_S=0
and the default compares).

Why lone texts first, then round-robin: a batch is cut by taking every waiting one-item request
first, then one item from each other waiting request in turn. A lone text so joins the next model
call, however many requests wait, instead of queueing behind every text of the big requests ahead
of it (first come, first served starved single-text clients beside batch clients: the integration
test of lone texts under load shows it): it waits for a running call to end (bounded by max_batch_size) and for the lone texts
queued before it (`queued_lone`), which is what a replica's admission counts for it.

Why lanes: under load, calls run side by side in `lanes` threads on a share of the cores each
(one of two), where one call at a time on every core left the cores less busy: in-process, with no
HTTP in the process, two calls of half a batch side by side on a core each ran faster than one
call of the whole batch on both cores (`python -m bench.chunking --lanes 2,1` compares). A call
that starts with nothing else running or queued gets every core (a lone text answers as fast as
the model can), and nothing starts beside it: a call started beside it would take a core from its
threads mid-call. docs/performance.md has the served figures.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Job = tuple[Item, "asyncio.Future[Result]", float]  # an item, its caller's future, when it queued


class ContinuousBatcher(Generic[Item, Result]):
    """Queue the items of many requests; run `fn` on batches of them in up to `lanes` threads at
    once, giving each call its share of `threads` cores through `use_threads`."""

    def __init__(
        self,
        fn: Callable[[list[Item]], Sequence[Result]],
        max_batch_size: int,
        wait_s: float = 0.0,
        observe_wait: Callable[[float], None] | None = None,
        *,
        lanes: int | Sequence[ThreadPoolExecutor] = 1,
        threads: int = 1,
        use_threads: Callable[[int], None] | None = None,
    ) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.observe_wait = observe_wait  # gets each item's seconds in the queue
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # the last sizes run, for tests
        self.queued = 0  # items waiting for a model call
        self.queued_lone = 0  # of them, items of one-item requests (cut first)
        self.threads = threads  # the cores the calls share
        self.use_threads = use_threads  # sets the calling thread's share of them, before a call
        self._running: dict[int, tuple[int, float, int]] = {}  # lane: items, start, threads
        self.last_ok: bool | None = None  # whether the last call (batch or probe) answered
        self.answered_at: float | None = None  # when a call last answered (monotonic)
        self._refill = (0.0, 0)  # when the last batch answered (monotonic), items to wait for
        self._lane_freed: asyncio.Future[None] | None = None  # set when a call ends
        self._arrival: asyncio.Future[None] | None = None  # set when an item queues
        self._requests: deque[deque[Job]] = deque()  # each waiting request's items, in turn
        self._lone: deque[Job] = deque()  # the items of one-item requests, in arrival order
        self._probes: deque[tuple[Callable[[list[Item]], Sequence[Result]], deque[Job]]] = deque()
        # Runs only while there is work: an idle batcher holds no task, so dropping it (an
        # unloaded model) frees it, and its threads when they are its own (see lane_threads).
        self._worker: asyncio.Task[None] | None = None
        # A thread per lane, always the same one: torch's OpenMP keeps a team of threads per
        # calling thread, and a second team (a warm-up on another thread) made each call later
        # slower (`python -m bench --concurrency 1` shows a lone client's p50). Only lane 0
        # runs calls on every core (the lowest free lane is taken), so only it has a team. Given
        # threads (lane_threads) may be shared with other batchers: see there.
        self.lanes = list(lanes) if not isinstance(lanes, int) else lane_threads(lanes)
        self._calls: set[asyncio.Task[None]] = set()  # the running calls' tasks, held

    @property
    def running(self) -> int:
        """Items in the model calls running now."""
        return sum(items for items, _, _ in self._running.values())

    @property
    def running_since(self) -> float | None:
        """When the oldest running call started (monotonic); None when none runs."""
        return min((started for _, started, _ in self._running.values()), default=None)

    @property
    def busy(self) -> bool:
        """Say whether a model call runs or items wait for one."""
        return bool(self._running) or self.queued > 0

    async def submit(self, item: Item) -> Result:
        """Queue one item and return its result once its batch has run."""
        (result,) = await self.submit_many([item])
        return result

    async def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Queue one request's items; return their results, in order, once all have run."""
        jobs = self._jobs(items)
        if len(jobs) == 1:
            self._lone.extend(jobs)
            self.queued_lone += 1
        elif jobs:
            self._requests.append(jobs)
        if jobs:
            self.queued += len(jobs)
            if self._arrival and not self._arrival.done():
                self._arrival.set_result(None)
            self._start()
        return await _results(jobs)

    async def probe(
        self, fn: Callable[[list[Item]], Sequence[Result]], items: list[Item], timeout_s: float
    ) -> list:
        """Run `fn(items)` alone in the model's thread, before the next batch (a health inference);
        one not answered within `timeout_s` counts as a failed call until a later call answers,
        unless a call answered while it waited (it was queued behind work, not stuck)."""
        jobs = self._jobs(items)
        probe, asked_at = (fn, jobs), time.monotonic()
        self._probes.append(probe)
        self._start()
        try:
            return await asyncio.wait_for(_results(jobs), timeout_s)
        except TimeoutError:
            # Not started yet: drop it, so timed-out probes do not pile up in front of traffic.
            with contextlib.suppress(ValueError):
                self._probes.remove(probe)
            if self.answered_at is None or self.answered_at < asked_at:
                self.last_ok = False
            raise

    def run_now(self, fn: Callable[..., Result], *args: object) -> Result:
        """Run `fn(*args)` in lane 0 on every core and wait for it (start-up work, before traffic)."""
        return self.lanes[0].submit(self._in_lane, self.threads, fn, *args).result()

    def _jobs(self, items: Sequence[Item]) -> deque[Job]:
        """Give each item a future for its caller and the time it queued."""
        loop, now = asyncio.get_running_loop(), time.monotonic()
        return deque((item, loop.create_future(), now) for item in items)

    def _start(self) -> None:
        """Start the worker unless it runs (it takes new work before it stops)."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _cut(self, size: int) -> list[Job]:
        """Take up to `size` live items: lone ones first, then one from each waiting request in turn."""
        batch: list[Job] = []
        while (self._lone or self._requests) and len(batch) < size:
            if self._lone:
                job = self._lone.popleft()
                self.queued_lone -= 1
            else:
                jobs = self._requests.popleft()
                job = jobs.popleft()
                if jobs:
                    self._requests.append(jobs)
            self.queued -= 1
            if not job[1].done():  # a cancelled caller's item: do not spend the model on it
                batch.append(job)
        return batch

    async def _run(self) -> None:
        """Start probes and batches, each in a free lane, until none is waiting."""
        while self._lone or self._requests or self._probes:
            free = await self._free_lanes()
            if self._probes:
                fn, jobs = self._probes.popleft()
                self._launch(free[0], fn, list(jobs), traffic=False)
                continue
            await self._fill()
            free = self._free()  # calls may have ended meanwhile
            # Lanes free together share what is queued (a batch request's texts, split in two).
            batch = self._cut(min(self.max_batch_size, -(-self.queued // len(free))))
            if not batch:
                continue
            self.batch_sizes.append(len(batch))
            if self.observe_wait:
                now = time.monotonic()
                for _, _, queued_at in batch:
                    self.observe_wait(now - queued_at)
            self._launch(free[0], self.fn, batch, traffic=True)

    def _free(self) -> list[int]:
        """The lanes running no call, lowest first."""
        return [lane for lane in range(len(self.lanes)) if lane not in self._running]

    async def _free_lanes(self) -> list[int]:
        """Wait until a lane is free and no call runs on every core; return the free lanes."""
        while not self._free() or any(t > self._share() for _, _, t in self._running.values()):
            self._lane_freed = asyncio.get_running_loop().create_future()
            await self._lane_freed
        return self._free()

    def _share(self) -> int:
        """The threads of a call that runs beside others."""
        return max(1, self.threads // len(self.lanes))

    def _launch(self, lane: int, fn: Callable, batch: list[Job], traffic: bool) -> None:
        """Start a call in `lane`: on every core when it is all the work there is, else on a share."""
        alone = not self._running and not self.queued
        threads = self.threads if alone else self._share()
        self._running[lane] = (len(batch), time.monotonic(), threads)
        task = asyncio.get_running_loop().create_task(self._call(lane, threads, fn, batch, traffic))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    def _in_lane(self, threads: int, fn: Callable[..., Result], *args: object) -> Result:
        """Run `fn(*args)` on `threads` cores (in the lane's own thread)."""
        if self.use_threads:
            self.use_threads(threads)
        return fn(*args)

    async def _fill(self) -> None:
        """Wait, up to wait_s after the last batch answered, for its callers to queue again."""
        (answered_at, target), self._refill = self._refill, (0.0, 0)  # for the next cut only
        while self.queued < target:
            left = answered_at + self.wait_s - time.monotonic()
            if left <= 0:
                return
            self._arrival = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival, left)

    async def _call(
        self,
        lane: int,
        threads: int,
        fn: Callable[[list[Item]], Sequence[Result]],
        batch: list[Job],
        traffic: bool,
    ) -> None:
        """Run `fn` on a batch in a lane's thread (the event loop keeps accepting requests
        meanwhile), then give each caller its result; any failure, a wrong count included, fails
        every caller of the batch at once and only them."""
        try:
            loop = asyncio.get_running_loop()
            items = [item for item, _, _ in batch]
            results = await loop.run_in_executor(
                self.lanes[lane], self._in_lane, threads, fn, items
            )
            if len(results) != len(batch):
                raise RuntimeError(
                    f"the model returned {len(results)} results for {len(batch)} items"
                )
        except Exception as error:
            self.last_ok = False
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            del self._running[lane]
            if self._lane_freed and not self._lane_freed.done():
                self._lane_freed.set_result(None)
        self.last_ok, self.answered_at = True, time.monotonic()
        for (_, future, _), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        if traffic:
            # Its callers come back to a queue that already holds what arrived meanwhile.
            self._refill = (time.monotonic(), min(self.queued + len(batch), self.max_batch_size))


def lane_threads(count: int) -> list[ThreadPoolExecutor]:
    """One thread per lane. Batchers of one process (a replica's models) should share them: a
    second model's lane 0 is a second OpenMP team, and with two teams libgomp counts more threads
    than cores and stops spinning between parallel regions, so every model's calls ran slower
    (`python -m bench.models` times a lone text before and after a second model has run). Shared,
    a call of one model waits for the other's on the same thread instead."""
    return [
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{n}") for n in range(count)
    ]


async def _results(jobs: deque[Job]) -> list:
    """Await the jobs' results in order; if the caller goes away, gather cancels the futures and
    the worker skips their items."""
    return list(await asyncio.gather(*(future for _, future, _ in jobs)))
