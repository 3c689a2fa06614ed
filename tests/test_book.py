"""The strict book build: a chapter cell that raises fails the build; the same chapter without the error passes."""

from __future__ import annotations

import re
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


def _book(tmp_path: Path, chapters: dict[str, str]) -> Path:
    """A book with the course's configuration and extension, and these chapters (stem -> source)."""
    book = tmp_path / "book"
    book.mkdir()
    for name in ("_config.yml", "_ext", "_static", "package.json"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, book / name)
    (book / "node_modules").symlink_to(ROOT / "node_modules")
    (book / "intro.md").write_text("# A test book\n\nThe landing page.\n")
    (book / "chapters").mkdir()
    for stem, source in chapters.items():
        (book / "chapters" / f"{stem}.md").write_text(source)
    entries = "".join(f"  - file: chapters/{stem}\n" for stem in chapters)
    (book / "_toc.yml").write_text(f"format: jb-book\nroot: intro\nchapters:\n{entries}")
    return book


def build_book(tmp_path: Path, expected: int) -> subprocess.CompletedProcess:
    """Build a one-chapter book with the course's configuration and extension."""
    book = _book(tmp_path, {"01_one_cell": CHAPTER.format(expected=expected)})
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


EQUATIONS = """\
---
jupytext:
  text_representation: {{extension: .md, format_name: myst, format_version: 0.13}}
kernelspec: {{display_name: Python 3, language: python, name: python3}}
---

# {n}. Chapter {n}

$$ a = {n} $$ (eq-a{n})

$$ u = 0 $$

$$ b = {n} $$ (eq-b{n})

See {{eq}}`eq-b{n}` and {{eq}}`eq-a1`.
"""


def test_equations_are_numbered_per_chapter_and_references_agree(tmp_path, mathjax_installed):
    """(1.1), (1.2) in chapter 1 and (2.1), (2.2) in chapter 2, as the Colab editions number them (Sphinx
    alone would number chapter 2's from (3)); a reference shows the number of the equation it points at."""
    book = _book(tmp_path, {"01_first": EQUATIONS.format(n=1), "02_second": EQUATIONS.format(n=2)})
    done = subprocess.run(["jupyter-book", "build", ".", "-W", "-n", "--keep-going"],
                          cwd=book, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for n, stem in [(1, "01_first"), (2, "02_second")]:
        page = (book / "_build" / "html" / "chapters" / f"{stem}.html").read_text(encoding="utf-8")
        assert re.findall(r'<span class="eqno">\(([^()<]+)\)', page) == [f"{n}.1", f"{n}.2"], stem
        refs = re.findall(r'href="([^"]*)#equation-([\w-]+)"[^>]*>(?:<span[^>]*>)?\(([^()<]+)\)', page)
        assert ("", f"eq-b{n}", f"{n}.2") in refs, refs
        assert any(label == "eq-a1" and number == "1.1" for _, label, number in refs), refs
    from course.myst import collect_references

    assert collect_references([EQUATIONS.format(n=2)], chapter=2).equations == {"eq-a2": "2.1", "eq-b2": "2.2"}
