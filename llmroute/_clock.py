"""Clocks and sleeps, injected so tests can run in virtual time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["Clock", "Sleep", "monotonic", "sleep"]

#: Returns seconds from an arbitrary origin; only differences matter.
Clock = Callable[[], float]
#: Waits the given number of seconds.
Sleep = Callable[[float], Awaitable[None]]

monotonic: Clock = time.perf_counter


async def sleep(seconds: float) -> None:
    """The default sleep: ``anyio.sleep`` (works under asyncio and trio)."""
    await anyio.sleep(seconds)
