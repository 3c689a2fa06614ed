"""Grading support: where a chapter's public checks live, and a per-cell time limit.

Otter executes a submitted notebook with no time limit per cell, so one
learner's endless loop would stall the whole grading run. ``CellTimeLimit``
is an otter plugin (listed in every autograder's ``otter_config.json``) that
adds a first cell to the submission; that cell arms a ``SIGALRM`` timer
before each of the learner's cells and disarms it after, so a cell that runs
too long raises ``CellTimeExceeded`` and grading goes on with the next cell.
"""

from __future__ import annotations

import copy
import hashlib
import signal
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import nbformat
from otter.plugins import AbstractOtterPlugin

__all__ = [
    "CELL_SECONDS",
    "CellTimeExceeded",
    "CellTimeLimit",
    "arm_cell_time_limit",
    "cell_key",
    "checks_dir",
]

CELL_SECONDS = 60.0
"""Default limit for one cell of a submission, in seconds (the plugin's ``seconds``)."""

REFIRE_SECONDS = 5.0
"""After a cell was stopped, the alarm rings again this often until the cell ends, so
code that swallows the first exception (a bare ``except:`` in a loop) is stopped too."""

_CHECKS_ROOT = Path(__file__).resolve().parent / "exercise_checks"


def checks_dir(chapter: str) -> str:
    """Folder of the public checks (otter test files) of ``chapter``, in this package.

    ``chapter`` is a chapter stem such as ``"02_nonparametric_pooling"``; the folder
    comes back as a path string.
    """
    folder = _CHECKS_ROOT / chapter
    if not folder.is_dir():
        known = (
            sorted(p.name for p in _CHECKS_ROOT.iterdir() if p.is_dir())
            if _CHECKS_ROOT.is_dir()
            else []
        )
        raise ValueError(
            f"expected a chapter with public checks, one of {known}, got {chapter!r}; "
            "the installed companion package may be older than this notebook: "
            "reinstall it"
        )
    return str(folder)


class CellTimeExceeded(BaseException):
    """Raised in a notebook cell that ran past its time limit.

    A ``BaseException`` (like ``KeyboardInterrupt``), so the learner's own
    ``except Exception:`` cannot swallow it.
    """


def cell_key(source: str) -> str:
    """Fingerprint of a cell's source: 40 hex characters that recognise the learner's
    cells at run time."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()


def arm_cell_time_limit(
    seconds: float, limited: Collection[str], shell: Any = None
) -> None:
    """Limit every later cell whose ``cell_key`` is in ``limited`` to ``seconds``.

    Registers IPython ``pre_run_cell``/``post_run_cell`` hooks on ``shell``
    (default: the running IPython). Cells not in ``limited`` (the grader's own
    cells) run without a limit. The limit is wall-clock time.
    """
    if seconds <= 0:
        raise ValueError(
            f"expected a positive cell time limit in seconds, got {seconds!r}"
        )
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        raise ValueError(
            "expected to run inside IPython (a Jupyter kernel), got no running shell"
        )
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        # No SIGALRM here: the overall time limit of the grading run still applies.
        return
    keys = frozenset(limited)

    def on_alarm(signum: int, frame: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, REFIRE_SECONDS)
        raise CellTimeExceeded(
            f"this cell ran longer than {seconds:g} s and was stopped: is there a loop "
            "that never ends?"
        )

    def before_cell(info: Any = None) -> None:
        source = getattr(info, "raw_cell", None)
        if source is not None and cell_key(source) in keys:
            signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)

    def after_cell(result: Any = None) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if signal.getsignal(signal.SIGALRM) is on_alarm:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)

    shell.events.register("pre_run_cell", before_cell)
    shell.events.register("post_run_cell", after_cell)


_LIMIT_CELL = """\
# Added by the grader: each cell below may run for at most {seconds:g} s.
from companion.grading import arm_cell_time_limit
arm_cell_time_limit({seconds!r}, {keys!r})
"""


class CellTimeLimit(AbstractOtterPlugin):
    """Otter plugin: stop any cell of a submission that runs past ``seconds`` (60).

    Configured in ``otter_config.json`` as
    ``{"companion.grading.CellTimeLimit": {"seconds": 60}}``.
    """

    def _seconds(self) -> float:
        config = self.plugin_config or {}
        seconds = (
            config.get("seconds", CELL_SECONDS)
            if isinstance(config, dict)
            else CELL_SECONDS
        )
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or seconds <= 0
        ):
            raise ValueError(
                "expected a positive number for the plugin's 'seconds', "
                f"got {seconds!r}"
            )
        return float(seconds)

    def before_execution(self, submission: Any) -> Any:
        """Return the submission with a first cell that arms the per-cell limit."""
        if isinstance(submission, str):
            return (
                submission  # a script runs as one cell: only the overall limit applies
            )
        nb = copy.deepcopy(submission)
        keys = sorted({cell_key(c.source) for c in nb.cells if c.cell_type == "code"})
        source = _LIMIT_CELL.format(seconds=self._seconds(), keys=keys)
        nb.cells.insert(0, nbformat.v4.new_code_cell(source))
        return nb
