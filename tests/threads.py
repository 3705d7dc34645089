"""Run a call in a thread of its own.

The browser tests drive Chromium through Playwright's sync API, whose session lasts until the test session ends
and keeps, in the main thread, a running asyncio event loop and greenlet switches that CPython 3.11's recursion
counters do not follow. A later test that starts an event loop (``asyncio.run``) or parses source with ``ast``
in the main thread can then fail for that reason alone; a fresh thread has neither.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def in_fresh_thread(call: Callable[..., T], *args: object) -> T:
    """``call(*args)`` in a new thread; its result, or its exception raised here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call, *args).result()
