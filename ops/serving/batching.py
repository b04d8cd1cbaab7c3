"""Adaptive micro-batching: concurrent small requests to one variant share one predict call.

Like TensorFlow Serving's batching: a request waits at most ``timeout`` (counted from the
moment the OLDEST queued request arrived) for others to join, or less when ``max_batch_rows``
rows are already waiting. While a batch runs in the thread pool, new requests queue up, so
under load the next batch starts at once and is naturally large; at low load the cost is
the window. scikit-learn's fixed per-call overhead (a forest pays about the same for one row
as for a hundred) is then paid once per batch instead of once per request.

A batch goes to the thread pool, so the event loop keeps reading requests meanwhile, unless
the variant's batches cost less CPU than ``inline_below`` on average (a moving average of
each predict call's CPU time, after ``INLINE_AFTER`` of them): such a batch runs on the
event loop, because handing it to a thread and back (a wake-up on each side, the GIL
changing hands) costs about as much as it (~20-40 µs of CPU per batch). Bounds keep the
loop from standing still: a batch with more rows than any batch measured cheap goes to the
pool (one request of 20,000 rows once froze the server for half a second after sixteen
one-row ones); a predict that waits on other threads (OpenMP, BLAS, a lock) costs little CPU
but its wall time is averaged too and must stay under ``INLINE_CAP`` times the bound (wall
time in the pool also counts waits for the GIL, hence the margin); and a batch on the loop
whose CPU or wall time passes that cap sends the variant's next ``INLINE_PAUSE`` batches
back to the pool, measured again (not for good: the machine pausing the process once would
otherwise end it).

The queue is bounded in rows: past ``max_queue_rows`` a request is refused at once with
``Overloaded`` instead of joining a backlog that could only grow. Runners are started on
demand and exit when the queue is empty, so a variant retired by a plan reload finishes its
queued requests and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from ops.serving.exceptions import Overloaded

DEFAULT_TIMEOUT = 0.002
DEFAULT_MAX_BATCH_ROWS = 64
DEFAULT_MAX_QUEUE_ROWS = 1024
EWMA_WEIGHT = 0.2
DEFAULT_IDLE_ROUNDS = 3  # event-loop passes without a new request that end the window early
INLINE_AFTER = 16  # batches measured in the pool before one may run on the event loop
INLINE_CAP = 5  # a batch on the loop costing this many times inline_below pauses inlining
INLINE_PAUSE = 64  # batches then run in the pool (and measured) before inlining again


@dataclass(slots=True)
class _Pending:
    item: Any
    rows: int
    future: asyncio.Future
    enqueued: float


class MicroBatcher:
    """Gathers submitted items and hands them to ``process`` in batches on ``executor``.

    ``process(items) -> results`` runs in a worker thread and returns one result per item,
    in order; a result that is an exception instance is raised to that item's caller only.
    ``on_batch(n_items, n_rows)`` (optional) is called on the event loop for each batch.
    """

    def __init__(self, process: Callable[[list], Sequence], executor: Executor | None, *,
                 timeout: float = DEFAULT_TIMEOUT, max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
                 max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS, concurrency: int = 1,
                 idle_rounds: int = DEFAULT_IDLE_ROUNDS, inline_below: float = 0.0,
                 on_batch: Callable[[int, int], None] | None = None, name: str = "variant"):
        if (max_batch_rows < 1 or max_queue_rows < 1 or concurrency < 1 or timeout < 0
                or idle_rounds < 0 or inline_below < 0):
            raise ValueError("batch sizes and concurrency must be positive, timeout >= 0")
        self.process = process
        self.executor = executor
        self.timeout = timeout
        self.max_batch_rows = max_batch_rows
        self.max_queue_rows = max_queue_rows
        self.concurrency = concurrency
        self.idle_rounds = idle_rounds
        self.inline_below = inline_below
        self.on_batch = on_batch
        self.name = name
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._runners = 0
        self._waiters: set[asyncio.Future] = set()  # runners waiting for a full batch
        self._batch_seconds = 0.0  # moving average of one predict call
        self._cpu_seconds = 0.0  # moving average of its CPU time (no queue or GIL wait)
        self._measured = 0  # predict calls measured, up to INLINE_AFTER
        self._wall_seconds = 0.0  # moving average of its wall time
        self._cheap_rows = 0  # the most rows of a batch measured under inline_below
        self._pool_for = 0  # batches to run in the pool after one on the loop cost too much

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def busy(self) -> bool:
        return self._runners > 0

    async def submit(self, item: Any, rows: int = 1) -> Any:
        """Queue ``item`` (``rows`` rows) and wait for its result."""
        # An empty queue always accepts, so a request larger than the whole queue is served
        # alone instead of being refused forever.
        if self._queued_rows and self._queued_rows + rows > self.max_queue_rows:
            raise Overloaded(f"variant {self.name} is at capacity ({self._queued_rows} rows "
                             "queued); retry later")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append(_Pending(item, rows, future, loop.time()))
        self._queued_rows += rows
        if self._queued_rows >= self.max_batch_rows:
            for waiter in self._waiters:
                _resolve(waiter)
        if self._runners < self.concurrency:
            self._runners += 1
            loop.create_task(self._run(loop))
        return await future

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._queue:
                await self._gather(loop)
                batch = self._take()
                if not batch:
                    continue
                items = [p.item for p in batch]
                rows = sum(p.rows for p in batch)
                if self.on_batch is not None:
                    self.on_batch(len(batch), rows)
                started = time.perf_counter()
                try:
                    if self.executor is None:
                        results = self._measured_process(items, rows)
                    elif self._inline(rows):
                        results, cost = self._timed(items, rows)
                        if cost > INLINE_CAP * self.inline_below:
                            self._pool_for = INLINE_PAUSE
                    else:
                        results = await loop.run_in_executor(self.executor,
                                                             self._measured_process, items,
                                                             rows)
                    elapsed = time.perf_counter() - started
                    self._batch_seconds += EWMA_WEIGHT * (elapsed - self._batch_seconds)
                    if len(results) != len(batch):
                        raise RuntimeError(f"process returned {len(results)} results for "
                                           f"{len(batch)} items")
                except Exception as e:  # the whole batch failed: every caller hears why
                    results = [e] * len(batch)
                for pending, result in zip(batch, results, strict=True):
                    if pending.future.done():  # the caller went away
                        continue
                    if isinstance(result, BaseException):
                        pending.future.set_exception(result)
                    else:
                        pending.future.set_result(result)
        finally:
            self._runners -= 1

    def _inline(self, rows: int) -> bool:
        """Whether a batch of ``rows`` runs on the event loop: when this variant's batches
        cost less than handing them to a thread and back (a wake-up on each side, the GIL
        changing hands), and batches of that many rows were measured so cheap."""
        if self._pool_for:
            self._pool_for -= 1
            return False
        return (self._measured >= INLINE_AFTER
                and self._cpu_seconds < self.inline_below
                and self._wall_seconds < INLINE_CAP * self.inline_below
                and rows <= self._cheap_rows)

    def _measured_process(self, items: list, rows: int = 1) -> Sequence:
        return self._timed(items, rows)[0]

    def _timed(self, items: list, rows: int) -> tuple[Sequence, float]:
        """The results, and the larger of the call's CPU and wall time. CPU time alone
        would call a predict that waits on other threads (OpenMP, BLAS, a lock) cheap, and
        it would then hold the loop for its whole wall time."""
        cpu, wall = time.thread_time(), time.perf_counter()
        results = self.process(items)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        self._cpu_seconds += EWMA_WEIGHT * (cpu - self._cpu_seconds)
        self._wall_seconds += EWMA_WEIGHT * (wall - self._wall_seconds)
        if cpu < self.inline_below and wall < INLINE_CAP * self.inline_below:
            self._cheap_rows = max(self._cheap_rows, rows)
        if self._measured < INLINE_AFTER:
            self._measured += 1
        return results, max(cpu, wall)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the batch is full, the window has passed, or nobody else is arriving."""
        if self._queued_rows >= self.max_batch_rows or not self._queue:
            return
        deadline = self._queue[0].enqueued + self.timeout
        if self.idle_rounds and self._batch_seconds < self.timeout:
            # A batch of this variant costs less than the window: waiting cannot buy much, so
            # the window ends as soon as the requests already here have joined. Each loop
            # pass runs the callbacks of sockets that became readable; when a few passes bring
            # no new request, the other clients are waiting for answers, not sending.
            # (An expensive model, e.g. a forest, waits the window: batch size pays there.)
            seen, quiet = len(self._queue), 0
            while self._queued_rows < self.max_batch_rows and loop.time() < deadline:
                await asyncio.sleep(0)
                if len(self._queue) == seen:
                    quiet += 1
                    if quiet >= self.idle_rounds:
                        return
                else:
                    seen, quiet = len(self._queue), 0
            return
        delay = deadline - loop.time()
        if delay <= 0:
            return
        waiter = loop.create_future()
        self._waiters.add(waiter)
        handle = loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiters.discard(waiter)

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if batch and rows + head.rows > self.max_batch_rows:
                break
            self._queue.popleft()
            self._queued_rows -= head.rows
            if head.future.done():  # cancelled while queued
                continue
            batch.append(head)
            rows += head.rows
        return batch


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
