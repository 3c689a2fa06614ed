"""Devices, seeds, source display and the argument checks shared by every chapter.

The device and display helpers keep d2l's names (``try_gpu``, ``cpu``, ``gpu``). The
``check_*`` functions are the one place where the common argument checks live: a size
that must be a positive int, a dropout probability, a learning rate.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import random
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = [
    "try_gpu", "cpu", "gpu", "set_seed", "SourceCode", "show_source",
    "progress_enabled", "one_thread_on_cpu",
]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value: object) -> None:
    """Raise ValueError unless value is an int >= 1 (a bool is not an int here)."""
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_non_negative_int(name: str, value: object) -> None:
    """Raise ValueError unless value is an int >= 0 (a bool is not an int here)."""
    if not _is_int(value) or value < 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def _holds(condition: Any, value: object) -> bool:
    try:
        return bool(condition(value))
    except TypeError:  # not a number at all
        return False


def check_dropout(dropout: object) -> None:
    """Raise ValueError unless dropout is a probability in [0, 1)."""
    if not _holds(lambda p: 0 <= p < 1, dropout):
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


def check_lr(lr: object) -> None:
    """Raise ValueError unless the learning rate lr is a number > 0."""
    if not _holds(lambda x: x > 0, lr):
        raise ValueError(f"lr must be > 0, got {lr!r}")


def cpu() -> torch.device:
    """The CPU device (d2l name, used from chapter 1 on)."""
    return torch.device("cpu")


def gpu(i: int = 0) -> torch.device:
    """The i-th CUDA device, whether or not it exists (d2l name, all chapters)."""
    check_non_negative_int("gpu index", i)
    return torch.device(f"cuda:{i}")


def try_gpu(i: int = 0) -> torch.device:
    """cuda:i if that GPU exists, else the CPU: chapter code runs anywhere (d2l)."""
    check_non_negative_int("gpu index", i)
    if torch.cuda.is_available() and torch.cuda.device_count() > i:
        return gpu(i)
    return cpu()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA): chapters give the same output."""
    check_non_negative_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class SourceCode:
    """Source text that renders as a fenced Python block in Jupyter and the book."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_markdown_(self) -> str:
        return f"```python\n{self.text.rstrip()}\n```"

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # IPython's plain-text display (Colab without markdown) shows the code as it
        # is, not quoted.
        p.text(self.text)


def show_source(obj: Any) -> SourceCode:
    """Show the source of a companion function or class in a chapter (all chapters)."""
    try:
        text = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise ValueError(
            "expected a function, class or module defined in Python source, "
            f"got {obj!r} ({err})"
        ) from err
    return SourceCode(textwrap.dedent(text))


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether a training loop shows its progress bar (chapters 3 on).

    ``None`` means on, unless the environment variable COMPANION_PROGRESS is "0": the
    book build sets it, so static pages hold no progress widgets.
    """
    if progress is None:
        return os.environ.get("COMPANION_PROGRESS", "1") != "0"
    return bool(progress)


@contextlib.contextmanager
def one_thread_on_cpu(device: torch.device | str) -> Iterator[None]:
    """Run the block on one CPU thread when ``device`` is the CPU, then restore it.

    The course's models are tiny: at these sizes a second thread costs more in
    synchronisation than it saves, most of all on a busy machine. On a GPU it does
    nothing.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
