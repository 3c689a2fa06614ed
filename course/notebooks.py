"""Turn chapter sources into Colab editions, public checks and autograders.

``python -m course.notebooks`` reads every chapter listed in ``_toc.yml``
(``chapters/NN_topic.md``, MyST Markdown read with jupytext), builds an
otter-assign master notebook from the exercise markup of CONTRIBUTING.md, runs
otter assign (without executing anything) and writes (the MyST -> Markdown part is
``course.myst``)

- ``notebooks/<stem>.ipynb``: the Colab edition (solutions blanked, plain Markdown);
- ``companion/exercise_checks/<stem>/<question>.py``: the public checks, shipped with the package;
- ``autograder/<stem>-autograder.zip`` (the Gradescope autograder of ``course.spec``, running
  ``course.grade``) and ``autograder/<stem>-solution.ipynb`` (not committed).

``--check`` writes nothing and fails when the committed files are out of date.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import yaml

from .config import repository
from .myst import (SOLUTION_MARKERS, References, chapter_number, collect_references, myst_to_markdown,
                   parse_blocks)

__all__ = [
    "Generated",
    "Question",
    "References",
    "Ungraded",
    "Unit",
    "book_references",
    "build_master",
    "chapter_references",
    "collect_references",
    "find_root",
    "generate",
    "main",
    "myst_to_markdown",
    "parse_chapter",
    "setup_source",
    "stale_files",
    "toc_chapters",
    "write",
]

OTTER_VERSION = "7.0.0"
CHAPTER_STEM = re.compile(r"^\d\d_[A-Za-z0-9_]+$")

# --------------------------------------------------------------------------- repository layout


def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder at or above ``start`` holding ``_toc.yml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    raise ValueError(f"expected a folder with _toc.yml at or above {here}, found none")


def toc_chapters(root: Path) -> list[str]:
    """Stems of the chapters listed in ``_toc.yml``, in book order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    stems: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            target = node.get("file")
            if isinstance(target, str):
                path = Path(target)
                if path.parent.as_posix() == "chapters" and CHAPTER_STEM.match(path.stem):
                    stems.append(path.stem)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return stems


# --------------------------------------------------------------------------- chapter structure


@dataclass
class Unit:
    """One cell, or a piece of a Markdown cell, of a chapter."""

    kind: str  # "markdown" | "code" | "solution-start" | "solution-end"
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def tags(self) -> list[str]:
        return list(self.metadata.get("tags", []))

    @property
    def is_test(self) -> bool:
        return self.kind == "code" and bool(re.match(r'^\s*"""\s*#\s*BEGIN\s+TEST\s+CONFIG', self.source, re.I))

    @property
    def is_removed(self) -> bool:
        return "remove-cell" in self.tags


@dataclass
class Question:
    """A graded exercise: prompt, solution cells and otter test cells."""

    name: str
    prompt: list[Unit] = field(default_factory=list)
    solution: list[Unit] = field(default_factory=list)
    tests: list[Unit] = field(default_factory=list)
    solved: bool = False


@dataclass
class Ungraded:
    """The solution of an ungraded exercise (left out of the Colab edition)."""

    units: list[Unit]


def split_units(nb: nbformat.NotebookNode) -> list[Unit]:
    """The chapter's cells, with Markdown cells split at ``{solution-start}``/``{solution-end}``."""
    units: list[Unit] = []
    for cell in nb.cells:
        metadata = dict(cell.get("metadata", {}))
        if cell.cell_type == "code":
            units.append(Unit("code", cell.source, metadata))
            continue
        if cell.cell_type != "markdown":
            raise ValueError(f"expected markdown or code cells, got a {cell.cell_type} cell: {cell.source[:60]!r}")
        pending: list[str] = []
        first = True

        def flush() -> None:
            nonlocal pending, first
            text = "\n".join(pending).strip("\n")
            if text.strip():
                units.append(Unit("markdown", text, metadata if first else {}))
                first = False
            pending = []

        for block in parse_blocks(cell.source):
            if block.kind == "directive" and block.name in SOLUTION_MARKERS:
                flush()
                units.append(Unit(block.name, "\n".join(block.raw)))
            else:
                pending.extend(block.raw)
        flush()
    return units


def parse_chapter(nb: nbformat.NotebookNode, stem: str) -> list[Unit | Question | Ungraded]:
    """The chapter as plain cells, graded questions and ungraded solutions; check cells are dropped.

    Raises ``ValueError`` naming the chapter and question when the exercise
    markup does not follow CONTRIBUTING.md.
    """
    entries: list[Unit | Question | Ungraded] = []
    question: Question | None = None
    phase = ""  # for the open question: "prompt", "solution" or "tests"
    ungraded: list[Unit] | None = None
    names: set[str] = set()

    def fail(message: str) -> ValueError:
        where = f"chapter {stem}" + (f", question {question.name!r}" if question else "")
        return ValueError(f"{where}: {message}")

    def close() -> None:
        nonlocal question, phase
        if question is not None:
            _validate_question(question, stem)
            entries.append(question)
        question, phase = None, ""

    for unit in split_units(nb):
        if ungraded is not None:  # inside an ungraded exercise's solution
            if unit.kind == "solution-end":
                entries.append(Ungraded(ungraded))
                ungraded = None
            elif unit.kind == "solution-start":
                raise fail("expected {solution-end} before the next {solution-start}, found none")
            elif unit.is_test:
                raise fail(
                    "expected test cells after a graded exercise's {solution-end}, "
                    "found one inside an ungraded solution"
                )
            else:
                ungraded.append(unit)
            continue
        if question is not None and phase == "solution":
            if unit.kind == "solution-end":
                phase = "tests"
            elif unit.kind == "solution-start":
                raise fail("expected {solution-end} before the next {solution-start}, found none")
            elif unit.is_test:
                raise fail("expected the test cells after {solution-end}, found one inside the solution")
            elif not (unit.kind == "code" and unit.is_removed):
                question.solution.append(unit)
            continue
        if unit.kind == "markdown" and "question" in unit.metadata:
            close()
            name = unit.metadata["question"]
            if not isinstance(name, str) or not name.isidentifier():
                raise fail(f"expected a Python identifier as question name, got {name!r}")
            if name in names:
                raise fail(f"expected unique question names, got {name!r} twice")
            names.add(name)
            question, phase = Question(name, prompt=[unit]), "prompt"
            continue
        if unit.kind == "solution-start":
            if question is not None and phase == "prompt":
                phase = "solution"
                question.solved = True
            else:
                close()
                ungraded = []
            continue
        if unit.kind == "solution-end":
            raise fail("found {solution-end} without a {solution-start} before it")
        if unit.is_test:
            if question is not None and phase == "tests":
                question.tests.append(unit)
                continue
            raise fail(f"expected test cells only right after a graded exercise's solution, got {unit.source[:80]!r}")
        if question is not None and phase == "prompt":
            if not (unit.kind == "code" and unit.is_removed):
                question.prompt.append(unit)
            continue
        close()
        if unit.kind == "code" and unit.is_removed:
            continue  # a check cell: run by the book build, not part of the Colab edition
        entries.append(unit)
    if ungraded is not None or phase == "solution":
        raise fail("expected a {solution-end} for the last {solution-start}, found none")
    close()
    return entries


_MARKER = re.compile(r"#\s*BEGIN SOLUTION|#\s?SOLUTION\s*$", re.M)


def _validate_question(question: Question, stem: str) -> None:
    where = f"chapter {stem}, question {question.name!r}"
    if not any("{exercise}" in u.source for u in question.prompt if u.kind == "markdown"):
        raise ValueError(f"{where}: expected the prompt cell to hold an {{exercise}} directive, got none")
    if not question.solved:
        raise ValueError(f"{where}: expected a solution between {{solution-start}} and {{solution-end}}, got none")
    code = [u for u in question.solution if u.kind == "code"]
    if not code:
        raise ValueError(f"{where}: expected at least one solution code cell, got none")
    for unit in code:
        if not _MARKER.search(unit.source):
            raise ValueError(
                f"{where}: expected '# BEGIN SOLUTION' / '# END SOLUTION' in every solution code cell "
                f"(else the learner gets the answer), got a cell without: {unit.source[:80]!r}"
            )
    hidden = []
    for unit in question.tests:
        if not unit.is_removed:
            raise ValueError(f"{where}: expected every test cell tagged remove-cell, got one without")
        lines = unit.source.split("\n")
        end = next((n for n, l in enumerate(lines) if re.match(r'\s*"""\s*#\s*END\s+TEST\s+CONFIG', l, re.I)), None)
        if end is None:
            raise ValueError(f'{where}: expected a """ # END TEST CONFIG line in the test cell, got none')
        config = yaml.safe_load("\n".join(lines[1:end])) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{where}: expected the test config to be a mapping, got {config!r}")
        hidden.append(bool(config.get("hidden", False)))
        body = ast.parse("\n".join(lines[end + 1 :])).body
        if not body or not isinstance(body[0], ast.FunctionDef) or len(body) > 2:
            raise ValueError(
                f"{where}: expected a test cell to hold one `def test_...(names...)` and its call, "
                f"got {len(body)} statements"
            )
    if not any(not h for h in hidden) or not any(hidden):
        raise ValueError(
            f"{where}: expected at least one public and one hidden test, got {hidden.count(False)} public "
            f"and {hidden.count(True)} hidden"
        )


# --------------------------------------------------------------------------- master notebook

SETUP_TEMPLATE = """\
# Set-up: run this cell first. Where the course's `companion` package or the
# otter-grader checker is missing (on Colab: always), it installs them
# (about a minute, once per session); elsewhere it changes nothing.
import importlib, os, subprocess, sys

try:
    import companion.grading, otter
except ImportError:
    source = os.environ.get("COMPANION_SOURCE", "{source}")
    pip = [sys.executable, "-m", "pip", "install", "-q", source, "otter-grader=={otter}"]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:  # show pip's own message: it says what went wrong
        raise RuntimeError("installing failed:\\n" + done.stderr[-3000:])
    importlib.invalidate_caches()
    import companion.grading, otter

# grader.check("NAME") runs the public checks of the exercise NAME.
grader = otter.Notebook(tests_dir=companion.grading.checks_dir("{stem}"))"""

STUDENT_INSTRUCTIONS = """\
**How to work in this notebook**

1. Run the set-up cell above first.
2. Run the cells in order. In each graded exercise, replace every `...` with your code.
3. Run the `grader.check("...")` cell below your answer: it runs the public checks and, when one \
fails, names the likely mistake. More (hidden) checks count when your work is graded.
4. To submit, save the notebook, download it with **File → Download → Download .ipynb**, and send \
the file to your instructor."""

SOLUTION_INSTRUCTIONS = """\
**Solution edition, for instructors**

Every exercise holds its reference solution between `# BEGIN SOLUTION` and `# END SOLUTION`, \
and the solutions of the ungraded exercises are included. Grade submissions with \
`python -m course.grade SUBMISSION.ipynb`."""


def setup_source(stem: str, source: str) -> str:
    """The Colab edition's first cell: install what is missing, then create ``grader``."""
    return SETUP_TEMPLATE.format(source=source, otter=OTTER_VERSION, stem=stem)


def assignment_config() -> str:
    """otter assign's ``# ASSIGNMENT CONFIG`` cell (exception-based tests in files, no otter autograder:
    grading is ``course.grade``'s, from ``course.spec``)."""
    config: dict[str, Any] = {
        "init_cell": False,
        "check_all_cell": False,
        "export_cell": False,
        "run_tests": False,  # the book build already runs every test on the solutions
        "tests": {"files": True, "ok_format": False},
        "generate": False,
    }
    return "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=True).rstrip()


def _cell(kind: str, source: str, course: dict[str, Any] | None = None) -> nbformat.NotebookNode:
    factory = {
        "markdown": nbformat.v4.new_markdown_cell,
        "code": nbformat.v4.new_code_cell,
        "raw": nbformat.v4.new_raw_cell,
    }
    # otter drops a cell whose first line reads "# ignore ..."; a leading newline (removed again
    # when the editions are written) keeps a chapter's "# Ignore ..." heading or comment.
    if re.match(r"(##\s*ignore\s*##\s*|#\s*ignore\s*)", source, flags=re.I):
        source = "\n" + source
    cell = factory[kind](source)
    if course:
        cell.metadata["course"] = course
    return cell


def build_master(
    stem: str, entries: Sequence[Unit | Question | Ungraded], refs: References, source: str
) -> nbformat.NotebookNode:
    """The otter-assign master notebook of one chapter (Markdown already converted)."""
    cells = [
        nbformat.v4.new_raw_cell(assignment_config()),
        _cell("code", setup_source(stem, source), {"role": "setup"}),
        _cell("markdown", STUDENT_INSTRUCTIONS, {"role": "instructions"}),
    ]

    def convert(unit: Unit, course: dict[str, Any] | None = None) -> list[nbformat.NotebookNode]:
        if unit.kind == "code":
            return [_cell("code", unit.source, course)]
        text = myst_to_markdown(unit.source, refs)
        return [_cell("markdown", text, course)] if text.strip() else []

    for entry in entries:
        if isinstance(entry, Unit):
            cells.extend(convert(entry))
        elif isinstance(entry, Ungraded):
            for unit in entry.units:
                cells.extend(convert(unit, {"role": "ungraded-solution"}))
        else:
            cells.append(nbformat.v4.new_raw_cell(f"# BEGIN QUESTION\nname: {entry.name}"))
            for unit in entry.prompt:
                cells.extend(convert(unit))
            cells.append(nbformat.v4.new_raw_cell("# BEGIN SOLUTION"))
            for unit in entry.solution:
                cells.extend(convert(unit, {"answer": entry.name} if unit.kind == "code" else None))
            cells.append(nbformat.v4.new_raw_cell("# END SOLUTION"))
            cells.append(nbformat.v4.new_raw_cell("# BEGIN TESTS"))
            cells.extend(nbformat.v4.new_code_cell(unit.source) for unit in entry.tests)
            cells.append(nbformat.v4.new_raw_cell("# END TESTS"))
            cells.append(nbformat.v4.new_raw_cell("# END QUESTION"))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# --------------------------------------------------------------------------- editions


def _edition(nb: nbformat.NotebookNode, stem: str, *, student: bool) -> str:
    """Normalise otter's output: deterministic ids and metadata, no outputs, plain cells."""
    cells = []
    for cell in nb.cells:
        course = cell.get("metadata", {}).get("course", {})
        if student and course.get("role") == "ungraded-solution":
            continue
        source = cell.source.lstrip("\n")
        if course.get("role") == "instructions" and not student:
            source = SOLUTION_INSTRUCTIONS
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(source)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source)
        else:
            raise ValueError(f"expected only code and markdown cells in otter's output, got a {cell.cell_type} cell")
        if "answer" in course:
            new.metadata["course"] = {"answer": course["answer"]}
        new["id"] = f"cell-{len(cells):04d}"
        cells.append(new)
    out = nbformat.v4.new_notebook(cells=cells)
    out.nbformat, out.nbformat_minor = 4, 5
    # No "accelerator" key: Colab then opens the notebook on whatever runtime the learner picks,
    # and the code chooses its device with companion.try_gpu().
    out.metadata = {
        "colab": {"provenance": [], "toc_visible": True},
        "course": {
            "chapter": stem,
            "edition": "student" if student else "solution",
            "source": f"chapters/{stem}.md",
        },
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(out)
    return nbformat.writes(out) + "\n"


@dataclass
class Generated:
    """Files generated for some chapters, as repository-relative paths and contents."""

    tracked: dict[str, bytes] = field(default_factory=dict)  # notebooks/ and companion/exercise_checks/
    autograder: dict[str, bytes] = field(default_factory=dict)  # autograder/ (not committed)
    questions: dict[str, list[str]] = field(default_factory=dict)


def _read_chapter(root: Path, stem: str) -> nbformat.NotebookNode:
    path = root / "chapters" / f"{stem}.md"
    if not path.is_file():
        raise ValueError(f"expected the chapter source {path} (listed in _toc.yml), found no file")
    return jupytext.read(path)


def book_references(root: Path, stems: Sequence[str]) -> References:
    """Titles of every chapter, section target and exercise label in the book, for plain-text refs."""
    refs = References()
    for stem in stems:
        path = root / "chapters" / f"{stem}.md"
        if not path.is_file():
            continue
        markdown = [c.source for c in jupytext.read(path).cells if c.cell_type == "markdown"]
        collect_references(markdown, refs, number_equations=False)
        headings = (re.match(r"^# (?P<title>.+)$", line) for text in markdown for line in text.split("\n"))
        refs.docs[stem] = next((m["title"] for m in headings if m), stem)
    return refs


def chapter_references(book: References, nb: nbformat.NotebookNode, stem: str) -> References:
    """``book`` plus the chapter's own equation numbers: (4.1), (4.2), ... in chapter 4,
    as the book numbers them (``_ext/course_book.py``)."""
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    equations = collect_references(markdown, chapter=chapter_number(stem)).equations
    return References(equations=equations, titles=dict(book.titles), docs=dict(book.docs))


def generate(root: Path, stems: Sequence[str] | None = None, *, autograder: bool = True) -> Generated:
    """Build the Colab edition, public checks and (optionally) autograder of each chapter."""
    import otter.assign
    from otter import logging as otter_logging

    from .spec import autograder_zip, chapter_spec

    all_stems = toc_chapters(root)
    stems = list(all_stems if stems is None else stems)
    source = repository(root).pip_source
    result = Generated()
    book = book_references(root, all_stems)
    for stem in stems:
        nb = _read_chapter(root, stem)
        entries = parse_chapter(nb, stem)
        refs = chapter_references(book, nb, stem)
        master = build_master(stem, entries, refs, source)
        result.questions[stem] = [e.name for e in entries if isinstance(e, Question)]
        with tempfile.TemporaryDirectory(prefix=f"assign-{stem}-") as tmp:
            work = Path(tmp)
            nbformat.write(master, work / f"{stem}.ipynb")
            with otter_logging.level_context(otter_logging.WARNING):
                otter.assign.main(str(work / f"{stem}.ipynb"), str(work / "dist"), no_pdfs=True, no_run_tests=True)
            student = nbformat.read(work / "dist" / "student" / f"{stem}.ipynb", as_version=4)
            result.tracked[f"notebooks/{stem}.ipynb"] = _edition(student, stem, student=True).encode()
            for test in sorted((work / "dist" / "student" / "tests").glob("*.py")):
                result.tracked[f"companion/exercise_checks/{stem}/{test.name}"] = test.read_bytes()
            if autograder:
                solution = nbformat.read(work / "dist" / "autograder" / f"{stem}.ipynb", as_version=4)
                edition = _edition(solution, stem, student=False)
                result.autograder[f"autograder/{stem}-solution.ipynb"] = edition.encode()
                zipped = autograder_zip(chapter_spec(root, stem), source)
                result.autograder[f"autograder/{stem}-autograder.zip"] = zipped
    return result


# --------------------------------------------------------------------------- writing and checking


def _existing(root: Path, stems: Sequence[str], full: bool) -> set[str]:
    """Tracked generated files now in the tree: those of ``stems``, and any other when ``full``."""
    found: set[str] = set()
    notebooks, checks = root / "notebooks", root / "companion" / "exercise_checks"
    for stem in stems:
        if (notebooks / f"{stem}.ipynb").is_file():
            found.add(f"notebooks/{stem}.ipynb")
        found.update(f"companion/exercise_checks/{stem}/{p.name}" for p in (checks / stem).glob("*.py"))
    if full:
        found.update(f"notebooks/{p.name}" for p in notebooks.glob("*.ipynb"))
        found.update(p.relative_to(root).as_posix() for p in checks.glob("*/*.py"))
    return found


def stale_files(root: Path, generated: Generated, stems: Sequence[str], full: bool) -> list[tuple[str, str]]:
    """(path, why) for every tracked file that differs from ``generated``: missing, changed or extra."""
    stale = []
    for rel, content in sorted(generated.tracked.items()):
        path = root / rel
        if not path.is_file():
            stale.append((rel, "missing"))
        elif path.read_bytes() != content:
            stale.append((rel, "changed"))
    for rel in sorted(_existing(root, stems, full) - set(generated.tracked)):
        stale.append((rel, "extra"))
    return stale


def write(root: Path, generated: Generated, stems: Sequence[str], full: bool) -> list[str]:
    """Write the generated files (only those that changed) and remove extra ones; return what changed."""
    changed = []
    for rel, why in stale_files(root, generated, stems, full):
        path = root / rel
        if why == "extra":
            path.unlink()
            if path.parent.name != "notebooks" and not any(path.parent.iterdir()):
                path.parent.rmdir()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(generated.tracked[rel])
        changed.append(f"{rel} ({why})")
    for rel, content in generated.autograder.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: regenerate (default) or ``--check`` the Colab editions and checks."""
    parser = argparse.ArgumentParser(prog="python -m course.notebooks", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if notebooks/ or companion/exercise_checks/ are stale"
    )
    parser.add_argument("--chapter", metavar="STEM", help="only this chapter, e.g. 02_nonparametric_pooling")
    parser.add_argument("--no-autograder", action="store_true", help="skip autograder/ (zip and solution edition)")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: the nearest with _toc.yml)")
    args = parser.parse_args(argv)
    try:
        root = find_root(args.root) if args.root is None else args.root.resolve()
        chapters = toc_chapters(root)
        if args.chapter is not None and args.chapter not in chapters:
            raise ValueError(f"expected --chapter to be one of {chapters}, got {args.chapter!r}")
        stems = [args.chapter] if args.chapter else chapters
        full = args.chapter is None
        generated = generate(root, stems, autograder=not (args.check or args.no_autograder))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(root, generated, stems, full)
        for rel, why in stale:
            print(f"stale: {rel} ({why})")
        if stale:
            print("run `python -m course.notebooks` to regenerate them", file=sys.stderr)
            return 1
        print(f"up to date: {len(generated.tracked)} files for {len(stems)} chapter(s)")
        return 0
    for line in write(root, generated, stems, full):
        print(f"wrote {line}")
    for rel in sorted(generated.autograder):
        print(f"built {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
