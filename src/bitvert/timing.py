"""Wall and CPU time per named stage of a run (:class:`StageTimer`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["StageTimer"]


class StageTimer:
    """Accumulates wall time and process CPU time per named stage (``with timer.stage("prune"): ...``).

    Args:
        order: stage names in the order :meth:`ordered` lists them; other stages follow in first-use order.
    """

    def __init__(self, order: Sequence[str] = ()) -> None:
        self.order = tuple(order)
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block (wall and process CPU time) and add it to ``name``."""
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - c0

    def _keys(self) -> list[str]:
        return [k for k in self.order if k in self.seconds] + [k for k in self.seconds if k not in self.order]

    def ordered(self) -> dict[str, float]:
        """Wall seconds per stage in ``order``, plus any other stage, rounded to milliseconds."""
        return {k: round(self.seconds[k], 3) for k in self._keys()}

    def ordered_cpu(self) -> dict[str, float]:
        """Process CPU seconds (all threads) per stage, in the order of :meth:`ordered`."""
        return {k: round(self.cpu_seconds[k], 3) for k in self._keys()}
