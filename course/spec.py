"""The grader's own copy of a chapter's graded questions, and the Gradescope autograder built from it.

``chapter_spec`` reads a chapter's source: for every graded question, its
tests (name, points, public or hidden, the test function's source) and what
its answer may not call (the ``FORBIDDEN`` table next to its checks in
``companion.exercises``). The judge scores from this copy only, never from a
file the learner's process can reach. ``autograder_zip`` packs it with a
``setup.sh`` and a ``run_autograder`` that runs this grader on Gradescope.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FORBID_EVERYWHERE", "autograder_zip", "chapter_spec", "forbidden_table", "spec_from_zip"]

FORBID_EVERYWHERE = ["companion.exercises"]
_CHECKS_MODULE = re.compile(r"(?:from\s+companion\.exercises\s+import\s+|companion\.exercises\.)(\w+)")


def _test_of(source: str, where: str) -> dict[str, Any]:
    lines = source.split("\n")
    end = next(n for n, line in enumerate(lines) if re.match(r'\s*"""\s*#\s*END\s+TEST\s+CONFIG', line, re.I))
    config = yaml.safe_load("\n".join(lines[1:end])) or {}
    body = "\n".join(lines[end + 1:])
    tree = ast.parse(body)
    fn = tree.body[0]
    if not isinstance(fn, ast.FunctionDef):
        raise ValueError(f"{where}: expected a test function, got {type(fn).__name__}")
    points = config.get("points", 1)
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
        raise ValueError(f"{where}: expected non-negative points, got {points!r}")
    return {"name": fn.name, "points": float(points), "hidden": bool(config.get("hidden", False)),
            "source": ast.get_source_segment(body, fn) + "\n"}


def _checks_file(module: str) -> Path | None:
    """``companion/exercises/<module>.py``, or None when ``module`` names no checks module there."""
    found = importlib.util.find_spec("companion")
    if found is None or not found.submodule_search_locations:
        raise ValueError("expected the companion package to be installed, found none")
    path = Path(list(found.submodule_search_locations)[0]) / "exercises" / f"{module}.py"
    return path if path.is_file() else None


def forbidden_table(module: str) -> dict[str, list[str]]:
    """``companion.exercises.<module>.FORBIDDEN``, read from the source (nothing imported)."""
    path = _checks_file(module)
    if path is None:
        raise ValueError(f"expected a checks module companion/exercises/{module}.py, found no file")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "FORBIDDEN" for t in targets):
                table = ast.literal_eval(node.value)
                return {str(q): [str(n) for n in names] for q, names in table.items()}
    raise ValueError(f"expected {path} to declare FORBIDDEN (what each answer may not call), found none")


def chapter_spec(root: Path, stem: str) -> dict[str, Any]:
    """The graded questions of chapter ``stem``: tests, points and forbidden calls."""
    from course import notebooks

    entries = notebooks.parse_chapter(notebooks._read_chapter(root, stem), stem)
    questions = []
    for entry in entries:
        if not isinstance(entry, notebooks.Question):
            continue
        tests = [_test_of(u.source, f"chapter {stem}, question {entry.name!r}") for u in entry.tests]
        modules = sorted({m for t in tests for m in _CHECKS_MODULE.findall(t["source"]) if _checks_file(m)})
        forbid: list[str] = []
        for module in modules:
            forbid += forbidden_table(module).get(entry.name, [])
        questions.append({"name": entry.name, "tests": tests, "forbid": sorted(set(forbid))})
    return {"chapter": stem, "questions": questions, "forbid_everywhere": list(FORBID_EVERYWHERE)}


SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope builds the grading image with this: Python, bubblewrap (the sandbox), the course's packages.
set -euo pipefail
apt-get update -q
apt-get install -y -q python3 python3-pip python3-venv bubblewrap
python3 -m venv /opt/course
/opt/course/bin/pip install -q torch --index-url https://download.pytorch.org/whl/cpu
/opt/course/bin/pip install -q "attention-companion[grading] @ {source}"
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission: the course's grader, sandboxed, writes results.json.
cd /autograder/source
exec /opt/course/bin/python -m course.grade /autograder/submission --spec spec.json \\
    --gradescope /autograder/results/results.json --out /autograder/results/logs
"""


def autograder_zip(spec: dict[str, Any], source: str) -> bytes:
    """The Gradescope autograder of one chapter: ``setup.sh``, ``run_autograder`` and ``spec.json``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in (("setup.sh", SETUP_SH.format(source=source)), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o755 << 16
            zf.writestr(info, text)
        info = zipfile.ZipInfo("spec.json", date_time=(2020, 1, 1, 0, 0, 0))
        zf.writestr(info, json.dumps(spec, indent=1, sort_keys=True) + "\n")
    return out.getvalue()


def spec_from_zip(path: Path) -> dict[str, Any]:
    """The spec inside an autograder zip."""
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("spec.json"))
