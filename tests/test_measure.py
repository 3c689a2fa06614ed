"""The shared measuring helper: medians after warm-up, peak memory in a fresh process, log-log slopes."""

from __future__ import annotations

import math
import time

import pytest

from companion import measure


def test_time_call_warms_up_and_takes_the_median() -> None:
    calls = []

    def fn() -> None:
        calls.append(None)
        time.sleep(0.2 if len(calls) == 1 else 0.01)  # the first (warm-up) run is slow

    seconds = measure.time_call(fn, warmup=1, repeats=3)
    assert len(calls) == 4
    assert 0.005 < seconds < 0.1  # the slow warm-up is not counted


def test_time_call_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure.time_call(lambda: None, repeats=0)
    with pytest.raises(TypeError, match="function"):
        measure.time_call(3)  # type: ignore[arg-type]


def allocate(mb: int) -> None:
    """Touch ``mb`` MiB (a target for peak_memory, imported in the fresh process)."""
    import torch

    x = torch.ones(mb * 2**20 // 4)
    assert x.sum() > 0


def test_peak_memory_sees_what_the_call_allocated() -> None:
    big = measure.peak_memory("tests.test_measure:allocate", mb=256)
    little = measure.peak_memory("tests.test_measure:allocate", mb=16)
    assert 230 < big < 300, big
    assert little < 60, little


_CACHE: list = []


def allocate_after_a_first_call_cache(mb: int) -> None:
    """Like ``allocate``, but the first call also fills a 128 MiB cache, as libraries do."""
    import torch

    if not _CACHE:
        _CACHE.append(torch.ones(128 * 2**20 // 4))
    allocate(mb)


def test_peak_memory_leaves_out_what_the_warm_up_allocated() -> None:
    target = "tests.test_measure:allocate_after_a_first_call_cache"
    assert measure.peak_memory(target, mb=16) > 120
    assert measure.peak_memory(target, warmup=[{"mb": 1}], mb=16) < 60


def test_peak_memory_reports_a_failing_target() -> None:
    with pytest.raises(RuntimeError, match="measuring"):
        measure.peak_memory("tests.test_measure:no_such_function")
    with pytest.raises(ValueError, match="module:function"):
        measure.peak_memory("tests.test_measure.allocate")


def test_loglog_slope_recovers_the_exponent() -> None:
    ns = [256, 512, 1024, 2048]
    assert measure.loglog_slope(ns, [3 * n**2 for n in ns]) == pytest.approx(2.0)
    assert measure.loglog_slope(ns, [5 * n for n in ns]) == pytest.approx(1.0)
    assert measure.loglog_slope(ns, [7.0] * 4) == pytest.approx(0.0, abs=1e-12)
    assert math.isfinite(measure.loglog_slope([1, 2], [1, 3]))
    with pytest.raises(ValueError, match="positive"):
        measure.loglog_slope([1, 2], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        measure.loglog_slope([1, 2, 3], [1, 2])
