"""pytest plugin: time each chapter notebook run by nbval and hold it to its execution budget.

A chapter's budget is `course: budget_s` in the front matter of chapters/<stem>.md (default 30 s). The summary
prints every chapter's time; a chapter over its budget fails the session.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

DEFAULT_BUDGET_S = 30.0
CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"

_seconds: dict[str, float] = defaultdict(float)
_failed: set[str] = set()


def chapter_budget(stem: str) -> float:
    """The execution budget in seconds from the chapter's front matter."""
    source = CHAPTERS / f"{stem}.md"
    if not source.exists():
        return DEFAULT_BUDGET_S
    front = source.read_text(encoding="utf-8").split("---", 2)[1]
    match = re.search(r"^\s*budget_s:\s*([0-9.]+)", front, flags=re.MULTILINE)
    return float(match.group(1)) if match else DEFAULT_BUDGET_S


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if not path.endswith(".ipynb"):
        return
    stem = Path(path).stem
    _seconds[stem] += report.duration
    if report.failed:
        _failed.add(stem)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _seconds:
        return
    tr = terminalreporter
    tr.section("chapter execution times (nbval)")
    over = []
    for stem in sorted(_seconds):
        budget = chapter_budget(stem)
        status = "failed" if stem in _failed else ("OVER BUDGET" if _seconds[stem] > budget else "ok")
        if _seconds[stem] > budget:
            over.append(stem)
        tr.write_line(f"{stem:40s} {_seconds[stem]:7.1f} s  (budget {budget:.0f} s)  {status}")
    if over:
        tr.write_line(f"chapters over their execution budget: {', '.join(over)}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if any(_seconds[stem] > chapter_budget(stem) for stem in _seconds) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
