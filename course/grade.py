"""Grade submitted chapter notebooks locally with otter-grader (no Docker).

``python -m course.grade SUBMISSION.ipynb [...] [--json] [--timeout S]``
finds each notebook's chapter (notebook metadata ``course.chapter``, else the
file name), runs ``otter run`` with that chapter's autograder from
``autograder/`` (built when missing) on a copy of the file, under an overall
time limit, and prints the points per question and the total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nbformat

from course import notebooks

__all__ = [
    "GradeResult",
    "SubmissionError",
    "autograder_for",
    "chapter_of",
    "grade_submission",
    "main",
    "question_points",
    "run_with_timeout",
]

DEFAULT_TIMEOUT = 600.0


class SubmissionError(Exception):
    """A submission that cannot be graded (not a notebook, unknown chapter, grader crash)."""


@dataclass
class GradeResult:
    """Points of one graded submission, per question."""

    chapter: str
    questions: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (score, possible)
    message: str = ""

    @property
    def total(self) -> float:
        return sum(score for score, _ in self.questions.values())

    @property
    def possible(self) -> float:
        return sum(possible for _, possible in self.questions.values())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total": _number(self.total),
            "possible": _number(self.possible),
            "questions": {
                name: {"score": _number(score), "possible": _number(possible)}
                for name, (score, possible) in self.questions.items()
            },
        }
        if self.message:
            out["message"] = self.message
        return out


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(float(x), 5)


def chapter_of(path: Path, nb: nbformat.NotebookNode, chapters: Sequence[str]) -> str:
    """The chapter stem of a submission: notebook metadata first, then the file name."""
    meta = nb.metadata.get("course", {})
    stem = meta.get("chapter") if isinstance(meta, dict) else None
    if stem in chapters:
        return stem
    matches = [c for c in chapters if c in path.name]
    if matches:
        return max(matches, key=len)
    raise SubmissionError(
        f"expected a notebook of one of the chapters {list(chapters)}, got metadata course.chapter="
        f"{stem!r} and a file name ({path.name}) that names none"
    )


def autograder_for(root: Path, chapter: str) -> Path:
    """``autograder/<chapter>-autograder.zip``, (re)built when missing or older than the chapter."""
    path = root / "autograder" / f"{chapter}-autograder.zip"
    source = root / "chapters" / f"{chapter}.md"
    if not path.is_file() or (source.is_file() and source.stat().st_mtime > path.stat().st_mtime):
        generated = notebooks.generate(root, [chapter], autograder=True)
        for rel, content in generated.autograder.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content)
    return path


def question_points(autograder: Path) -> dict[str, float]:
    """Points possible per question, read from the test files inside an autograder zip."""
    from otter.test_files import ExceptionTestFile

    points: dict[str, float] = {}
    with zipfile.ZipFile(autograder) as zf:
        for name in sorted(zf.namelist()):
            if name.startswith("tests/") and name.endswith(".py"):
                test = ExceptionTestFile.from_string(zf.read(name).decode("utf-8"), path=name)
                points[test.name] = float(sum(tc.points for tc in test.test_cases))
    if not points:
        raise SubmissionError(f"expected test files in {autograder}, found none")
    return points


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc); the kernel otter starts runs in its own session."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_with_timeout(cmd: Sequence[str], timeout: float, *, cwd: Path, log: Path) -> bool:
    """Run ``cmd`` with output to ``log``; on timeout kill it and every process it started.

    Returns True when it finished in time.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            victims = _descendants(proc.pid)
            for pid in [proc.pid, *victims]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            return False


def grade_submission(
    path: Path, root: Path, *, timeout: float = DEFAULT_TIMEOUT, autograder: Path | None = None
) -> GradeResult:
    """Grade one submitted notebook on a copy of it; the file itself is never written."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several types for files that are not notebooks
        raise SubmissionError(f"expected a Jupyter notebook (.ipynb JSON), could not read it: {err}") from None
    chapter = chapter_of(path, nb, notebooks.toc_chapters(root)) if autograder is None else (
        nb.metadata.get("course", {}).get("chapter") or path.stem
    )
    zip_path = (autograder or autograder_for(root, chapter)).resolve()
    possible = question_points(zip_path)
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        work = Path(tmp)
        copy = work / "submission.ipynb"
        shutil.copyfile(path, copy)
        (work / "results").mkdir()
        cmd = [sys.executable, "-m", "otter", "run", "-a", str(zip_path), "-o", str(work / "results")]
        cmd += ["--no-logo", str(copy)]
        start = time.monotonic()
        finished = run_with_timeout(cmd, timeout, cwd=work, log=work / "otter.log")
        if not finished:
            return GradeResult(
                chapter,
                {name: (0.0, p) for name, p in possible.items()},
                f"grading stopped after {timeout:g} s (the notebook ran too long): scored 0",
            )
        results = work / "results" / "results.json"
        if not results.is_file():
            tail = (work / "otter.log").read_text(errors="replace")[-2000:]
            raise SubmissionError(f"otter produced no results after {time.monotonic() - start:.0f} s:\n{tail}")
        report = json.loads(results.read_text())
    scores = {t["name"]: float(t["score"]) for t in report.get("tests", []) if "max_score" in t and "score" in t}
    result = GradeResult(chapter, {name: (scores.get(name, 0.0), p) for name, p in possible.items()})
    if not scores:
        failure = next((t.get("output", "") for t in report.get("tests", [])), "")
        result.message = f"the notebook could not be graded, scored 0: {failure}".strip()
    return result


def _report(path: str, result: GradeResult) -> str:
    width = max([len(name) for name in result.questions] + [5])
    lines = [f"{path} ({result.chapter})"]
    lines += [f"  {name:<{width}}  {_number(s):>5} / {_number(p)}" for name, (s, p) in result.questions.items()]
    lines.append(f"  {'total':<{width}}  {_number(result.total):>5} / {_number(result.possible)}")
    if result.message:
        lines.append(f"  note: {result.message}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: grade each submission and print its points; non-zero if any could not be graded."""
    parser = argparse.ArgumentParser(prog="python -m course.grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb")
    parser.add_argument("--json", action="store_true", help="print one JSON object: path -> total, possible, questions")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds allowed for one notebook (default 600)"
    )
    parser.add_argument(
        "--autograder", type=Path, default=None, help="zip to use (default: autograder/<chapter>-autograder.zip)"
    )
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: the nearest with _toc.yml)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"expected a positive --timeout, got {args.timeout}")
    try:
        root = notebooks.find_root(args.root) if args.root is None else args.root.resolve()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = 0
    results: dict[str, Any] = {}
    for name in args.submissions:
        try:
            result = grade_submission(Path(name), root, timeout=args.timeout, autograder=args.autograder)
        except (SubmissionError, OSError, ValueError) as err:
            failed += 1
            results[name] = {"error": str(err)}
            print(f"error: {name}: {err}", file=sys.stderr)
            continue
        results[name] = result.to_json()
        if not args.json:
            print(_report(name, result), flush=True)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
