"""Measuring time and memory, the one way every chapter does it (chapters 10-12).

``time_call`` times a function: warm-up runs first, then the median of
``repeats`` runs (the device is synchronised around each run on a GPU).
``peak_memory`` runs a function in a fresh Python process and reports how much
memory it added at its peak: the growth of the process's resident set (CPU)
or of PyTorch's allocator peak (CUDA), beyond what the process held before
the call. ``loglog_slope`` fits the exponent p of y ~ x^p. Chapters report ratios
and slopes of these numbers, never absolute times.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .utils import check_non_negative_int, check_positive_int

__all__ = ["loglog_slope", "peak_memory", "time_call"]


def _synchronize(device: torch.device | str | None) -> None:
    """GPU work is asynchronous: wait for it before reading the clock."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], Any],
    *,
    warmup: int = 1,
    repeats: int = 5,
    device: torch.device | str | None = None,
) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` runs.

    ``fn`` takes no arguments. ``device`` is the device ``fn`` computes on: on
    CUDA each run waits for the device to finish.
    """
    check_non_negative_int("warmup", warmup)
    check_positive_int("repeats", repeats)
    if not callable(fn):
        raise TypeError(f"expected a function to time, got {type(fn).__name__}")
    for _ in range(warmup):
        fn()
    _synchronize(device)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


_CHILD = """\
import importlib, inspect, json, resource, sys
import torch
spec = json.loads(sys.argv[1])
module, _, name = spec["target"].partition(":")
fn = getattr(importlib.import_module(module), name)
params = inspect.signature(fn).parameters
calls = [*spec["warmup"], spec["kwargs"]]
if "device" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
    for kwargs in calls:
        kwargs["device"] = spec["device"]
for kwargs in spec["warmup"]:
    fn(**kwargs)
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cuda = spec["device"].startswith("cuda")
before = torch.cuda.memory_allocated() / 2**20 if cuda else rss_mb()
if cuda:
    torch.cuda.reset_peak_memory_stats()
fn(**spec["kwargs"])
peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb()
print(json.dumps({"before_mb": before, "peak_mb": peak}))
"""


def peak_memory(
    target: str, *, device: str = "cpu", warmup: Sequence[dict[str, Any]] = (),
    timeout: float = 600.0, **kwargs: Any
) -> float:
    """MiB that ``target(**kwargs)`` adds at its peak, measured in a fresh process.

    ``target`` is ``"module:function"``, importable in a fresh
    Python, and ``kwargs`` are JSON values (the function builds its own tensors,
    on ``device``, which it is given when it takes a ``device`` argument). On a CPU
    this is the growth of the peak
    resident set (``VmHWM``) over what the process held after its imports; on
    CUDA, PyTorch's allocator peak. Each entry of ``warmup`` (keyword arguments
    of a small case) calls the target once before that baseline is read, so what
    libraries allocate on their first call (thread pools, kernel caches) is not
    counted.
    """
    if ":" not in target:
        raise ValueError(f"expected target as 'module:function', got {target!r}")
    spec = json.dumps({"target": target, "device": str(device), "kwargs": kwargs,
                       "warmup": [dict(w) for w in warmup]})
    done = subprocess.run([sys.executable, "-c", _CHILD, spec], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {target} failed:\n{done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return max(out["peak_mb"] - out["before_mb"], 0.0)


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of log y against log x: p in y ~ x^p.

    ``xs`` and ``ys`` have the same length, at least two, and positive values.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("expected two sequences of the same length >= 2, "
                         f"got {len(xs)} and {len(ys)}")
    if min(xs) <= 0 or min(ys) <= 0:
        raise ValueError("expected positive values for a log-log fit")
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    var = sum((a - mx) ** 2 for a in lx)
    if var == 0:
        raise ValueError("expected at least two different x values")
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / var
