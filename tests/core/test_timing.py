"""Stage timing (bitvert.timing): exclusive nesting, no-op without a collection, decorator use."""

from __future__ import annotations

import time

from bitvert.timing import collect_stage_seconds, timed


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_nested_stages_are_charged_exclusively() -> None:
    with collect_stage_seconds() as stages:
        with timed("outer"):
            _busy(0.02)
            with timed("inner"):
                _busy(0.05)
            _busy(0.02)
    assert set(stages.seconds) == {"outer", "inner"}
    assert 0.05 <= stages.seconds["inner"] < 0.2
    assert 0.04 <= stages.seconds["outer"] < stages.seconds["inner"] + 0.1  # the inner 0.05 s is not in outer
    assert stages.cpu_seconds["inner"] > 0.0
    assert stages.ordered(2)["inner"] == round(stages.seconds["inner"], 2)


def test_timed_without_a_collection_does_nothing_and_works_as_a_decorator() -> None:
    @timed("work")
    def work(x: int) -> int:
        return 2 * x

    assert work(3) == 6  # no collection active: plain call
    with collect_stage_seconds() as stages:
        assert work(4) == 8
        assert work(5) == 10
    assert set(stages.seconds) == {"work"}


def test_inner_collection_takes_over_its_block() -> None:
    with collect_stage_seconds() as outer:
        with timed("a"):
            with collect_stage_seconds() as inner:
                with timed("b"):
                    _busy(0.01)
            _busy(0.01)
    assert set(inner.seconds) == {"b"} and set(outer.seconds) == {"a"}
    assert outer.seconds["a"] >= inner.seconds["b"]  # the outer charges the whole inner block to its stage


def test_a_stage_closed_by_an_exception_is_still_charged() -> None:
    with collect_stage_seconds() as stages:
        try:
            with timed("failing"):
                raise ValueError("boom")
        except ValueError:
            pass
        with timed("after"):
            pass
    assert set(stages.seconds) == {"failing", "after"}
