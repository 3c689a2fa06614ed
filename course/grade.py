"""Grade submitted chapter notebooks: sandboxed, in parallel, from the grader's own copy of the checks.

``python -m course.grade SUBMISSION.ipynb|FOLDER ... [--jobs N] [--json] [--out DIR]``
finds each notebook's chapter (notebook metadata ``course.chapter``, else the
file name), reads that chapter's questions, points and checks from the
course's sources (or ``--spec``/``--autograder``), and grades every submission
in a judge process of its own (``course.judge``), which runs the notebook in
a sandboxed learner process (``course.sandbox``) and never runs the learner's
code itself. It prints one table, writes ``grades.json``, ``grades.csv`` and one
log per submission to ``--out`` (default ``grades/``), and never changes a
submitted file. ``--gradescope RESULTS`` writes Gradescope's ``results.json``
for the one submission in a Gradescope run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from course import sandbox as sandboxes
from course import spec as specs

__all__ = ["SubmissionError", "chapter_of", "grade_batch", "main", "read_notebook"]


class SubmissionError(Exception):
    """A file that cannot be graded: not a notebook, or a notebook of no known chapter."""


def read_notebook(path: Path) -> dict[str, Any]:
    """The notebook's JSON; ``SubmissionError`` in one line when the file is not a notebook."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(nb, dict) and isinstance(nb.get("cells"), list)):
            raise ValueError("no list of cells")
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise SubmissionError(f"not a Jupyter notebook (.ipynb JSON): {str(err)[:120]}") from None
    return nb


def chapter_of(path: Path, chapters: Sequence[str]) -> str:
    """The chapter stem of a submission: notebook metadata first, then the file name."""
    nb = read_notebook(path)
    meta = nb.get("metadata", {}).get("course", {}) if isinstance(nb.get("metadata"), dict) else {}
    stem = meta.get("chapter") if isinstance(meta, dict) else None
    if stem in chapters:
        return stem
    matches = [c for c in chapters if c in path.name]
    if matches:
        return max(matches, key=len)
    raise SubmissionError(f"a notebook of no known chapter: metadata course.chapter={stem!r}, and the file "
                          f"name names none of {list(chapters)}")


def _log_name(index: int, path: Path) -> str:
    return f"{index:03d}-{path.stem[:60]}.log"


def _write_log(path: Path, name: str, result: dict[str, Any]) -> None:
    lines = [f"submission: {name}", f"chapter: {result.get('chapter', '?')}",
             f"sandbox: {result.get('sandbox', '?')}", f"seconds: {result.get('seconds', '?')}",
             f"learner processes started: {result.get('starts', '?')}"]
    if result.get("error"):
        lines.append(f"error: {result['error']}")
    for event in result.get("events", []):
        lines.append(f"event: {event}")
    for cell, error in result.get("cell_errors", {}).items():
        lines.append(f"cell {cell} raised {error}")
    for q, info in result.get("questions", {}).items():
        lines.append(f"\n{q}: {_number(info['score'])} / {_number(info['possible'])}  {info.get('message', '')}")
        for t in info["tests"]:
            mark = "passed" if t["passed"] else "FAILED"
            kind = "hidden" if t["hidden"] else "public"
            lines.append(f"  {mark} {t['name']} ({kind}, {_number(t['points'])} points) {t['message']}")
    lines += ["", "--- what the notebook printed ---", result.get("output", "")]
    path.write_text("\n".join(lines), encoding="utf-8")


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(float(x), 5)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The entry of ``--json`` and ``grades.json`` for one submission."""
    if "questions" not in result:
        return {"error": result["error"]}
    questions = result["questions"]
    out = {
        "chapter": result["chapter"],
        "total": _number(sum(q["score"] for q in questions.values())),
        "possible": _number(sum(q["possible"] for q in questions.values())),
        "questions": {n: {"score": _number(q["score"]), "possible": _number(q["possible"]),
                          **({"message": q["message"]} if q["message"] else {})}
                      for n, q in questions.items()},
        "sandbox": result["sandbox"],
        "seconds": result["seconds"],
        "log": result.get("log"),
    }
    notes = [*result.get("events", []), *(f"cell {c} raised {e}" for c, e in result.get("cell_errors", {}).items())]
    if notes:
        out["notes"] = notes
    return out


def grade_batch(paths: Sequence[Path], spec_for: Any, *, jobs: int, limits: sandboxes.Limits,
                sandbox: sandboxes.Sandbox, out: Path, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Grade every submission, ``jobs`` at a time, each in a judge process of its own; one result per
    path, in the order given. A judge that fails or overruns costs its submission only."""
    import queue
    import threading
    from concurrent.futures import ThreadPoolExecutor

    out.mkdir(parents=True, exist_ok=True)
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    started, done, lock = time.monotonic(), [0], threading.Lock()

    def grade_one(index: int, path: Path) -> dict[str, Any]:
        try:
            chapter_spec = spec_for(path)
        except SubmissionError as err:
            return {"error": str(err)}
        slot = slots.get()
        try:
            job = {"submission": str(path.resolve()), "spec": chapter_spec, "limits": asdict(limits),
                   "sandbox": asdict(sandbox), "uid": sandboxes.learner_uid(slot, sandbox)}
            try:
                proc = subprocess.run([sys.executable, "-m", "course.judge"], input=json.dumps(job),
                                      capture_output=True, text=True, timeout=limits.total_seconds + 120)
                result = json.loads(proc.stdout)
            except subprocess.TimeoutExpired:
                result = {"error": f"grading stopped after {limits.total_seconds + 120:g} s"}
            except ValueError:
                tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no message"]
                result = {"error": f"the grader failed on this submission: {tail[0][:300]}"}
        finally:
            slots.put(slot)
        log = out / _log_name(index, path)
        result["log"] = str(log)
        _write_log(log, str(path), result)
        with lock:
            done[0] += 1
            if progress:
                print(f"graded {done[0]}/{len(paths)} ({time.monotonic() - started:.0f} s): {path.name}",
                      file=sys.stderr, flush=True)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(grade_one, i, p) for i, p in enumerate(paths)]
        return {str(p): f.result() for p, f in zip(paths, futures)}


def _table(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, result in results.items():
        if "questions" not in result:
            rows.append(f"{name}: error: {result['error']}")
            continue
        qs = result["questions"]
        cells = "  ".join(f"{q} {_number(v['score'])}/{_number(v['possible'])}" for q, v in qs.items())
        total = sum(v["score"] for v in qs.values())
        possible = sum(v["possible"] for v in qs.values())
        rows.append(f"{name}  [{result['chapter']}]  total {_number(total)}/{_number(possible)}  |  {cells}")
        for q, v in qs.items():
            if v["message"]:
                rows.append(f"    {q}: {v['message']}")
    return "\n".join(rows)


def _csv(path: Path, results: dict[str, dict[str, Any]]) -> None:
    questions: list[str] = []
    for r in results.values():
        for q in r.get("questions", {}):
            if q not in questions:
                questions.append(q)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "chapter", "total", "possible", *questions, "note"])
        for name, r in results.items():
            qs = r.get("questions", {})
            writer.writerow([name, r.get("chapter", ""),
                             _number(sum(v["score"] for v in qs.values())),
                             _number(sum(v["possible"] for v in qs.values())),
                             *[_number(qs[q]["score"]) if q in qs else "" for q in questions],
                             r.get("error", "")])


def _gradescope(path: Path, results: dict[str, dict[str, Any]], problem: str = "") -> None:
    """Gradescope's results.json: one test per check, the total as the score."""
    tests, score, output = [], 0.0, problem
    for result in results.values():
        if "questions" not in result:
            output = result["error"]
            continue
        output = f"graded in a sandbox: {result['sandbox']}"
        for q, info in result["questions"].items():
            score += info["score"]
            for t in info["tests"]:
                counted = t["points"] if t["passed"] and not info["message"] else 0.0
                tests.append({"name": f"{q}: {t['name']}", "score": counted, "max_score": t["points"],
                              "output": info["message"] or t["message"],
                              "visibility": "after_published" if t["hidden"] else "visible"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"score": score, "output": output, "tests": tests}, indent=1))


def _submissions(names: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for name in names:
        path = Path(name)
        paths.extend(sorted(path.glob("*.ipynb")) if path.is_dir() else [path])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: grade, print the table (or JSON); exit 1 when a file could not be graded."""
    parser = argparse.ArgumentParser(prog="python -m course.grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb|FOLDER")
    parser.add_argument("--json", action="store_true", help="print one JSON object: path -> result")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="submissions graded at once (default: the number of cores)")
    parser.add_argument("--out", type=Path, default=Path("grades"),
                        help="folder for grades.json, grades.csv and one log per submission (default grades/)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for one submission (default 900)")
    parser.add_argument("--cell-timeout", type=float, default=120.0, help="seconds for one cell (default 120)")
    parser.add_argument("--memory-mb", type=int, default=4096, help="memory of a learner's process (default 4096)")
    parser.add_argument("--spec", type=Path, help="the grader's copy of the questions (spec.json)")
    parser.add_argument("--autograder", type=Path, help="an autograder zip to take spec.json from")
    parser.add_argument("--gradescope", type=Path, help="write Gradescope's results.json here")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: the nearest with _toc.yml)")
    args = parser.parse_args(argv)
    for flag in ("jobs", "timeout", "cell_timeout", "memory_mb"):
        if getattr(args, flag) <= 0:
            parser.error(f"expected a positive --{flag.replace('_', '-')}, got {getattr(args, flag)}")
    fixed = (json.loads(args.spec.read_text()) if args.spec else
             specs.spec_from_zip(args.autograder) if args.autograder else None)
    cache: dict[str, dict[str, Any]] = {}
    if fixed is None:
        from course import notebooks

        try:
            root = notebooks.find_root(args.root) if args.root is None else args.root.resolve()
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        chapters = notebooks.toc_chapters(root)

    def spec_for(path: Path) -> dict[str, Any]:
        if fixed is not None:
            read_notebook(path)
            return fixed
        stem = chapter_of(path, chapters)
        if stem not in cache:
            cache[stem] = specs.chapter_spec(root, stem)
        return cache[stem]

    limits = sandboxes.Limits(memory_mb=args.memory_mb, cell_seconds=args.cell_timeout, total_seconds=args.timeout)
    sandbox = sandboxes.probe()
    paths = _submissions(args.submissions)
    if not paths:
        if args.gradescope:
            _gradescope(args.gradescope, {}, "no notebook (.ipynb) was submitted")
        print("error: no submissions found", file=sys.stderr)
        return 1
    print(f"sandbox: {sandbox.describe(limits, None)}", file=sys.stderr)
    results = grade_batch(paths, spec_for, jobs=args.jobs, limits=limits, sandbox=sandbox, out=args.out)
    summaries = {name: _summary(r) for name, r in results.items()}
    (args.out / "grades.json").write_text(json.dumps(summaries, indent=2))
    _csv(args.out / "grades.csv", results)
    if args.gradescope:
        _gradescope(args.gradescope, results)
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print(_table(results))
    for name, r in results.items():
        if "questions" not in r:
            print(f"error: {name}: {r['error']}", file=sys.stderr)
    return 1 if any("questions" not in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
