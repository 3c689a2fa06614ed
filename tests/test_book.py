"""The strict book build: a chapter cell that raises fails the build; the same chapter without the error passes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

CHAPTER = """\
---
jupytext:
  text_representation: {{extension: .md, format_name: myst, format_version: 0.13}}
kernelspec: {{display_name: Python 3, language: python, name: python3}}
---

# 1. A one-cell chapter

Some maths, $a^2 + b^2 = c^2$.

```{{code-cell}} ipython3
:tags: [remove-cell]

value = 1 + 1
assert value == {expected}, "the check cell's key result drifted"
```
"""


def build_book(tmp_path: Path, expected: int) -> subprocess.CompletedProcess:
    """Build a one-chapter book with the course's configuration and extension."""
    book = tmp_path / "book"
    book.mkdir()
    for name in ("_config.yml", "_ext", "_static", "package.json"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, book / name)
    (book / "node_modules").symlink_to(ROOT / "node_modules")
    (book / "intro.md").write_text("# A test book\n\nThe landing page.\n")
    (book / "chapters").mkdir()
    (book / "chapters" / "01_one_cell.md").write_text(CHAPTER.format(expected=expected))
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/01_one_cell\n"
    )
    return subprocess.run(
        ["jupyter-book", "build", ".", "-W", "-n", "--keep-going"],
        cwd=book, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def mathjax_installed() -> None:
    if not (ROOT / "node_modules" / "mathjax").is_dir():
        pytest.fail("MathJax is not installed: run `npm ci` (scripts/setup.sh does)")


def test_strict_build_passes_when_every_cell_runs(tmp_path, mathjax_installed):
    done = build_book(tmp_path, expected=2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "book" / "_build" / "html" / "chapters" / "01_one_cell.html").is_file()


def test_strict_build_fails_when_a_check_cell_raises(tmp_path, mathjax_installed):
    done = build_book(tmp_path, expected=3)
    assert done.returncode != 0
    assert "the check cell's key result drifted" in done.stdout + done.stderr
