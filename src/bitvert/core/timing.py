"""Per-stage wall and CPU seconds of library work, collected only when a caller asks for them.

Library functions mark their expensive parts with :func:`timed` (``with timed("solver"): ...``); that
costs one context-variable lookup and does nothing unless a caller opened a
:func:`collect_stage_seconds` block around the work::

    with collect_stage_seconds() as stages:
        prune_model_(model, "moderate-gptq", calibration=batches)
    stages.wall   # {"hessians": 3.1, "solver": 5.2, "greedy": 1.0, ...}

Stages nest *exclusively*: time spent in an inner stage is charged to the inner stage only, so the
stages of one collection add up to at most the collected block's time (the caller names the rest).
CPU seconds are the process's (every thread: torch, numba and BLAS workers), so on a busy machine
``cpu / wall`` shows how much of the machine the stage got.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["StageSeconds", "timed", "collect_stage_seconds"]


@dataclass
class StageSeconds:
    """Seconds per stage name: ``wall`` (``time.perf_counter``) and ``cpu`` (``time.process_time``)."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    _stack: list[list[object]] = field(default_factory=list, repr=False)

    def _charge(self, name: str, wall: float, cpu: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def _enter(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self._stack:  # pause the enclosing stage
            outer = self._stack[-1]
            self._charge(str(outer[0]), now - float(outer[1]), cpu - float(outer[2]))  # type: ignore[arg-type]
        self._stack.append([name, now, cpu])

    def _exit(self) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        name, t0, c0 = self._stack.pop()
        self._charge(str(name), now - float(t0), cpu - float(c0))  # type: ignore[arg-type]
        if self._stack:  # resume the enclosing stage
            self._stack[-1][1], self._stack[-1][2] = now, cpu

    def rounded(self, digits: int = 3) -> dict[str, dict[str, float]]:
        """``{"wall": {...}, "cpu": {...}}`` rounded to ``digits`` decimals (for JSON)."""
        return {"wall": {k: round(v, digits) for k, v in self.wall.items()},
                "cpu": {k: round(v, digits) for k, v in self.cpu.items()}}


_ACTIVE: ContextVar[StageSeconds | None] = ContextVar("bitvert_stage_seconds", default=None)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Charge the ``with`` block's time to ``stage`` of the active :func:`collect_stage_seconds` (if any)."""
    clock = _ACTIVE.get()
    if clock is None:
        yield
        return
    clock._enter(stage)
    try:
        yield
    finally:
        clock._exit()


@contextmanager
def collect_stage_seconds() -> Iterator[StageSeconds]:
    """Collect the :func:`timed` stages of the ``with`` block into a fresh :class:`StageSeconds`.

    An inner collection takes over for its block: its stages go to the inner result only, and an outer
    collection charges the whole block to the stage it was in.
    """
    clock = StageSeconds()
    token = _ACTIVE.set(clock)
    try:
        yield clock
    finally:
        _ACTIVE.reset(token)
