"""``asyncio.run`` for tests that may share a process with Playwright's sync API.

The e2e tests' browser (a session fixture) keeps Playwright's event loop running in the
worker's main thread, so a later ``asyncio.run`` there fails with "cannot be called from a
running event loop". ``run_async`` runs the coroutine in a thread of its own, with its own
loop, and returns its result (or raises its exception).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run_async(coroutine):
    with ThreadPoolExecutor(1, thread_name_prefix="test-asyncio") as pool:
        return pool.submit(asyncio.run, coroutine).result()
