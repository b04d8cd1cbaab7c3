"""ops.serving.batching: concurrent requests share one predict call; a full queue says so."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ops.serving.batching import MicroBatcher
from ops.serving.exceptions import Overloaded


class FakeModel:
    """Records each call's batch; doubles every item; optionally slow."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[list] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, items):
        with self.lock:
            self.calls.append(list(items))
        if self.delay:
            time.sleep(self.delay)
        return [item * 2 if item != "boom" else ValueError("bad row") for item in items]


def run(coroutine):
    # In its own thread: the browser tests keep Playwright's event loop running in the main
    # thread for the whole session, and asyncio.run refuses to nest in it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def test_concurrent_requests_are_predicted_in_one_call(executor):
    model = FakeModel()

    async def scenario():
        batcher = MicroBatcher(model, executor, timeout=0.05, max_batch_rows=64, idle_rounds=0)
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    assert run(scenario()) == [i * 2 for i in range(10)]
    assert model.calls == [list(range(10))]


def test_batches_never_exceed_max_rows_and_keep_order(executor):
    model = FakeModel(delay=0.01)

    async def scenario():
        batcher = MicroBatcher(model, executor, timeout=0.01, max_batch_rows=4)
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    assert run(scenario()) == [i * 2 for i in range(10)]
    assert all(len(call) <= 4 for call in model.calls)
    assert [i for call in model.calls for i in call] == list(range(10))


def test_rows_not_requests_fill_a_batch(executor):
    model = FakeModel()

    async def scenario():
        batcher = MicroBatcher(model, executor, timeout=0.05, max_batch_rows=10, idle_rounds=0)
        return await asyncio.gather(batcher.submit(1, rows=6), batcher.submit(2, rows=6))

    run(scenario())
    assert model.calls == [[1], [2]]


def test_a_lone_request_waits_at_most_the_window(executor):
    model = FakeModel()

    async def scenario():
        batcher = MicroBatcher(model, executor, timeout=0.02, idle_rounds=0)
        started = time.perf_counter()
        await batcher.submit(1)
        return time.perf_counter() - started

    elapsed = run(scenario())
    assert 0.015 < elapsed < 0.5


def test_a_lone_request_does_not_wait_when_nobody_else_is_coming(executor):
    model = FakeModel()

    async def scenario():
        batcher = MicroBatcher(model, executor, timeout=1.0, idle_rounds=3)
        started = time.perf_counter()
        await batcher.submit(1)
        return time.perf_counter() - started

    assert run(scenario()) < 0.2


def test_a_full_batch_does_not_wait_for_the_window(executor):
    model = FakeModel()

    async def scenario():
        batcher = MicroBatcher(model, executor, timeout=5.0, max_batch_rows=3, idle_rounds=0)
        started = time.perf_counter()
        await asyncio.gather(*(batcher.submit(i) for i in range(3)))
        return time.perf_counter() - started

    assert run(scenario()) < 1.0


def test_full_queue_refuses_at_once_and_recovers(executor):
    model = FakeModel(delay=0.2)

    async def scenario():
        batcher = MicroBatcher(model, executor, timeout=0.0, max_batch_rows=1,
                               max_queue_rows=2, name="slow")
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)  # the first is now being predicted; the queue is empty
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3)]
        await asyncio.sleep(0)
        started = time.perf_counter()
        with pytest.raises(Overloaded) as caught:
            await batcher.submit(4)
        refused_in = time.perf_counter() - started
        results = await asyncio.gather(first, *queued)
        again = await batcher.submit(5)
        return refused_in, caught.value, results, again, batcher.queued_rows

    refused_in, error, results, again, left = run(scenario())
    assert refused_in < 0.05
    assert error.status == 503 and error.code == "overloaded" and "slow" in error.detail
    assert results == [2, 4, 6] and again == 10 and left == 0


def test_a_request_larger_than_the_queue_is_served_when_the_queue_is_empty(executor):
    async def scenario():
        batcher = MicroBatcher(FakeModel(), executor, max_queue_rows=2)
        return await batcher.submit(7, rows=50)

    assert run(scenario()) == 14


def test_one_failing_item_only_fails_its_caller(executor):
    model = FakeModel()

    async def scenario():
        batcher = MicroBatcher(model, executor, timeout=0.05, idle_rounds=0)
        return await asyncio.gather(batcher.submit(1), batcher.submit("boom"), batcher.submit(3),
                                    return_exceptions=True)

    one, boom, three = run(scenario())
    assert (one, three) == (2, 6) and isinstance(boom, ValueError)


def test_a_crashing_predict_fails_the_batch_but_not_the_batcher(executor):
    calls = []

    def flaky(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return items

    async def scenario():
        batcher = MicroBatcher(flaky, executor, timeout=0.0)
        with pytest.raises(RuntimeError):
            await batcher.submit(1)
        return await batcher.submit(2)

    assert run(scenario()) == 2


def test_batch_sizes_are_reported(executor):
    seen = []

    async def scenario():
        batcher = MicroBatcher(FakeModel(), executor, timeout=0.05, idle_rounds=0,
                               on_batch=lambda items, rows: seen.append((items, rows)))
        await asyncio.gather(*(batcher.submit(i, rows=2) for i in range(5)))

    run(scenario())
    assert seen == [(5, 10)]


def test_cheap_batches_run_on_the_event_loop_once_measured(executor):
    from ops.serving.batching import INLINE_AFTER

    def where(inline_below):
        threads = []

        def process(items):
            threads.append(threading.current_thread())
            return [item * 2 for item in items]

        async def scenario():
            batcher = MicroBatcher(process, executor, timeout=0.0, inline_below=inline_below)
            answers = [await batcher.submit(i) for i in range(INLINE_AFTER + 3)]
            return answers, threading.current_thread()

        answers, loop_thread = run(scenario())
        assert answers == [i * 2 for i in range(INLINE_AFTER + 3)]
        return [t is loop_thread for t in threads]

    # The first INLINE_AFTER batches are measured in the pool, then they cost less than 1 s.
    assert where(1.0) == [False] * INLINE_AFTER + [True] * 3
    assert where(0.0) == [False] * (INLINE_AFTER + 3)  # 0: always in the pool
    assert where(1e-12) == [False] * (INLINE_AFTER + 3)  # dearer than the bound


def test_a_batch_too_dear_on_the_loop_sends_the_next_ones_back_to_the_pool_for_a_while():
    from ops.serving.batching import INLINE_AFTER, INLINE_CAP, INLINE_PAUSE

    executor = ThreadPoolExecutor(max_workers=1)
    threads, slow = [], set()
    bound = 0.005

    def process(items):
        threads.append(threading.current_thread())
        if items[0] in slow:
            time.sleep(INLINE_CAP * bound * 2)  # the machine paused it, or a dear batch
        return [item * 2 for item in items]

    async def scenario():
        batcher = MicroBatcher(process, executor, timeout=0.0, inline_below=bound)
        slow.add(INLINE_AFTER + 1)
        for i in range(INLINE_AFTER + 2 + INLINE_PAUSE + 2):
            await batcher.submit(i)
        return threading.current_thread()

    loop_thread = run(scenario())
    on_loop = [t is loop_thread for t in threads]
    assert on_loop[:INLINE_AFTER] == [False] * INLINE_AFTER  # measured first
    assert on_loop[INLINE_AFTER:INLINE_AFTER + 2] == [True, True]  # the second one too dear
    pause = on_loop[INLINE_AFTER + 2:INLINE_AFTER + 2 + INLINE_PAUSE]
    assert pause == [False] * INLINE_PAUSE  # measured again in the pool
    assert on_loop[-2:] == [True, True]  # then cheap again: back on the loop
    executor.shutdown()
