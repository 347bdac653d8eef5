"""Measure event-loop stalls: a heartbeat task that records how long the loop kept it waiting.

::

    async with LoopStalls() as stalls:
        router.plan(huge_prompt)          # or anything that runs on the loop
        await anyio.sleep(0.01)
    assert stalls.max_s < 0.020

Works on asyncio and trio (anyio). A gap is wall time from one heartbeat to the next, so it
includes the sleep interval and whatever else the machine is doing; compare with a
:class:`LoopStalls` run over an idle stretch to see the noise floor.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

__all__ = ["LoopStalls"]


class LoopStalls:
    """Runs a heartbeat every *interval_s* while the ``async with`` block runs; ``gaps`` holds the
    seconds between consecutive beats and ``max_s`` the longest."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        #: Seconds between consecutive heartbeats, in order.
        self.gaps: list[float] = []
        self._done = anyio.Event()
        self._tg: TaskGroup | None = None

    @property
    def max_s(self) -> float:
        """The longest gap seen, in seconds (0 before the first beat)."""
        return max(self.gaps, default=0.0)

    async def _beat(self) -> None:
        last = time.perf_counter()
        while not self._done.is_set():
            await anyio.sleep(self.interval_s)
            now = time.perf_counter()
            self.gaps.append(now - last)
            last = now

    async def __aenter__(self) -> LoopStalls:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._beat)
        await anyio.lowlevel.checkpoint()  # let the heartbeat start before the block runs
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        self._done.set()
        assert self._tg is not None
        return await self._tg.__aexit__(*exc)
