"""pytest plugin: hand every chapter notebook that nbval executed cleanly to the book build of the same test run.

With ``COURSE_EXECUTED_CACHE`` naming a folder (scripts/test.sh makes a fresh one per run), each chapter whose
cells all passed under nbval is stored there with its outputs, in the jupyter-cache that myst-nb reads in its
"cache" execution mode; ``_ext/course_book.py`` switches that mode on when the same variable is set, so the
strict book build takes these outputs instead of executing the chapter a second time.

myst-nb finds a stored notebook by a hash of its code cells (sources and metadata) and kernel, so the notebook
is stored as myst-nb reads ``chapters/<stem>.md``, with nbval's outputs put into its code cells in order. A
chapter that failed or was run in part, whose code cells differ from the notebook nbval ran, or that ran in an
environment the book build would not give it, is not stored: the book build executes it itself.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

EXECUTED_CACHE_VARIABLE = "COURSE_EXECUTED_CACHE"  # the name _ext/course_book.py reads
CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # what IPython kernels draw with by default

_seconds: dict[str, float] = defaultdict(float)  # notebook node id -> seconds nbval spent on it
_unclean: set[str] = set()  # notebook node ids with a cell that failed or was skipped
_stored: dict[str, str] = {}  # stem -> the chapter source as it was when stored in this run


def stored_chapters() -> set[str]:
    """Stems of the chapters stored for the book build in this run and not edited since."""
    # tests/test_browser.py checks that the build executed none of them; an edited chapter must be executed.
    return {stem for stem, text in _stored.items() if (CHAPTERS / f"{stem}.md").read_text(encoding="utf-8") == text}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _seconds[path] += report.duration
        if not report.passed:
            _unclean.add(path)


def _environment_problem() -> str | None:
    """Why nbval's kernels (which inherit this environment) would not run a chapter as the book build does."""
    # _ext/course_book.py sets both before the book build executes anything.
    if os.environ.get("COMPANION_PROGRESS") != "0":
        return "COMPANION_PROGRESS is not 0: the training loops would draw progress bars into the pages"
    if os.environ.get("MPLBACKEND", INLINE_BACKEND) != INLINE_BACKEND:
        return f"MPLBACKEND={os.environ['MPLBACKEND']}: the figures would not be drawn into the outputs"
    return None


def _executed_notebook(source: Path, text: str, cells: list) -> nbformat.NotebookNode | None:
    """The chapter ``text`` as myst-nb reads it, with the outputs nbval's cells produced; None if they differ."""
    from myst_nb.core.read import read_myst_markdown_notebook

    notebook = read_myst_markdown_notebook(text, add_source_map=True, path=str(source))
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if [cell.source for cell in code] != [item.cell.source for item in cells]:
        return None  # the chapter changed since it was converted, or not every cell was collected
    count = 0
    for cell, item in zip(code, cells):
        cell.outputs = item.test_outputs
        if cell.source.strip():  # as nbclient does, an empty cell is not executed and gets no count
            count += 1
            cell.execution_count = count
    return notebook


def _store(stem: str, cells: list, folder: Path) -> None:
    """Put the chapter's executed notebook into the jupyter-cache in ``folder`` (replacing an older one)."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    source = CHAPTERS / f"{stem}.md"
    if not source.is_file():
        return  # a notebook that is no chapter
    text = source.read_text(encoding="utf-8")
    notebook = _executed_notebook(source, text, cells)
    if notebook is None:
        return
    # myst-nb reports the stored seconds as the chapter's execution time.
    data = {"execution_seconds": _seconds[cells[0].parent.nodeid]}
    bundle = CacheBundleIn(notebook, str(source.resolve()), data=data)
    # Execution counts are not checked: nbval, like nbclient, gives none to an empty cell.
    get_cache(str(folder)).cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
    _stored[stem] = text


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last cell of a chapter notebook, store the notebook if every cell passed."""
    folder = os.environ.get(EXECUTED_CACHE_VARIABLE)
    notebook = item.parent
    if not folder or not str(notebook.nodeid).endswith(".ipynb") or (nextitem and nextitem.parent is notebook):
        return
    cells = [other for other in item.session.items if other.parent is notebook]
    if notebook.nodeid in _unclean or any(cell.test_outputs is None for cell in cells):
        return
    problem = _environment_problem()
    if problem is not None:
        warnings.warn(f"executed chapters are not stored for the book build: {problem}")
        return
    _store(Path(notebook.nodeid).stem, cells, Path(folder))
