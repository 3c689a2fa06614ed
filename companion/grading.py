"""Grading support in a learner's notebook: where a chapter's public checks live.

The Colab edition's set-up cell creates
``grader = otter.Notebook(tests_dir=checks_dir(stem))``, so that
``grader.check("question")`` runs the public checks of ``companion.exercises`` at
once, with their hints. Grades are not made here: an instructor's
``python -m course.grade`` runs the hidden checks in a judge process of its own,
outside the learner's notebook.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["checks_dir"]

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
