"""Wall and CPU seconds per named stage of a run: one accumulator, :class:`StageTimer`.

A caller that owns the run times its stages explicitly (``with timer.stage("prune"): ...``). Library
functions deep inside a run mark their expensive parts with :func:`timed` (``with timed("solver"): ...``
or ``@timed("solver")``); that costs one context-variable lookup and does nothing unless a caller opened
a :func:`collect_stage_seconds` block around the work::

    with collect_stage_seconds() as stages:
        prune_model_(model, "moderate-gptq", calibration=batches)
    stages.seconds   # {"hessians": 3.1, "solver": 5.2, "greedy": 1.0, ...}

Stages nest *exclusively*: time spent in an inner stage is charged to the inner stage only, so the
stages of one timer add up to at most the timed block's time. CPU seconds are the process's (every
thread: torch, numba and BLAS workers), so on a busy machine ``cpu / wall`` shows how much of the
machine a stage got.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["StageTimer", "collect_stage_seconds", "timed"]


class StageTimer:
    """Accumulates wall time and process CPU time per named stage.

    Args:
        order: stage names in the order :meth:`ordered` lists them; other stages follow in first-use order.
    """

    def __init__(self, order: Sequence[str] = ()) -> None:
        self.order = tuple(order)
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._stack: list[tuple[str, float, float]] = []

    def _charge(self, name: str, wall: float, cpu: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + wall
        self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Charge the ``with`` block's wall and CPU time to ``name`` (an enclosing stage pauses meanwhile)."""
        now, cpu = time.perf_counter(), time.process_time()
        if self._stack:  # pause the enclosing stage
            outer, t0, c0 = self._stack[-1]
            self._charge(outer, now - t0, cpu - c0)
        self._stack.append((name, now, cpu))
        try:
            yield
        finally:
            now, cpu = time.perf_counter(), time.process_time()
            _, t0, c0 = self._stack.pop()
            self._charge(name, now - t0, cpu - c0)
            if self._stack:  # resume the enclosing stage
                self._stack[-1] = (self._stack[-1][0], now, cpu)

    def _keys(self) -> list[str]:
        return [k for k in self.order if k in self.seconds] + [k for k in self.seconds if k not in self.order]

    def ordered(self, digits: int = 3) -> dict[str, float]:
        """Wall seconds per stage in ``order``, plus any other stage, rounded to ``digits`` decimals."""
        return {k: round(self.seconds[k], digits) for k in self._keys()}

    def ordered_cpu(self, digits: int = 3) -> dict[str, float]:
        """Process CPU seconds (all threads) per stage, in the order of :meth:`ordered`."""
        return {k: round(self.cpu_seconds[k], digits) for k in self._keys()}


_ACTIVE: ContextVar[StageTimer | None] = ContextVar("bitvert_stage_timer", default=None)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Charge the ``with`` block's (or decorated call's) time to ``stage`` of the active
    :func:`collect_stage_seconds` timer; without one, do nothing."""
    timer = _ACTIVE.get()
    if timer is None:
        yield
        return
    with timer.stage(stage):
        yield


@contextmanager
def collect_stage_seconds(order: Sequence[str] = ()) -> Iterator[StageTimer]:
    """Collect the :func:`timed` stages of the ``with`` block into a fresh :class:`StageTimer`.

    An inner collection takes over for its block: its stages go to the inner timer only, and an outer
    collection charges the whole block to the stage it was in.
    """
    timer = StageTimer(order)
    token = _ACTIVE.set(timer)
    try:
        yield timer
    finally:
        _ACTIVE.reset(token)
