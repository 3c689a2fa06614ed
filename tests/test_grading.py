"""Grading that a submission cannot fool, crash or escape: the hostile corpus, the sandbox, Gradescope.

The corpus (``tests/hostile_corpus.py``) is graded in one batch of
``python -m course.grade`` with two jobs; every case must get exactly its
expected score, the rest of the batch must be graded, no file outside the
sandbox may change, and no process of a learner may outlive the batch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from course import notebooks, sandbox, spec
from hostile_corpus import CASES, QUESTIONS, SOLUTION, Case

REPO = Path(__file__).resolve().parent.parent
STEM = "04_attention_scoring"
BWRAP = sandbox.probe().kind == "bubblewrap"


@pytest.fixture(scope="module")
def editions(generated_editions: notebooks.Generated, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("editions")
    paths = {"student": out / f"{STEM}.ipynb", "solution": out / f"{STEM}-solution.ipynb", "zip": out / "ag.zip"}
    paths["student"].write_bytes(generated_editions.tracked[f"notebooks/{STEM}.ipynb"])
    paths["solution"].write_bytes(generated_editions.autograder[f"autograder/{STEM}-solution.ipynb"])
    paths["zip"].write_bytes(generated_editions.autograder[f"autograder/{STEM}-autograder.zip"])
    return paths


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(case: Case, editions: dict[str, Path], dest: Path, fill: dict[str, str]) -> Path:
    """The Colab edition with the case's answers, extra cells and prefix."""
    solution = {c.metadata["course"]["answer"]: c.source
                for c in nbformat.read(editions["solution"], as_version=4).cells
                if "answer" in c.metadata.get("course", {})}
    nb = nbformat.read(editions["student"], as_version=4)
    fill = dict(fill, submission=str(dest))
    for cell in nb.cells:
        question = cell.metadata.get("course", {}).get("answer")
        if question in case.answers:
            source = case.answers[question]
            cell.source = solution[question] if source == SOLUTION else source.format(**fill)
    nb.cells += [nbformat.v4.new_code_cell(source.format(**fill)) for source in case.after]
    if case.prefix:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.source = case.prefix + cell.source
    nbformat.write(nb, dest)
    return dest


def run_grader(*args: str, env: dict[str, str] | None = None, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course.grade", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def learner_processes() -> list[int]:
    """Processes running as a learner's uid (the grader's BASE_UID and up)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = next(int(l.split()[1]) for l in status.read_text().splitlines() if l.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if sandbox.BASE_UID <= uid < sandbox.BASE_UID + 64:
            found.append(int(status.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not BWRAP, reason="bubblewrap cannot run here: the corpus expects its sandbox")
def test_hostile_corpus_gets_exactly_its_expected_scores(editions: dict[str, Path], tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    marker = tmp_path / "outside-marker"
    fill = {"repo": str(REPO), "marker": str(marker), "port": str(listener.getsockname()[1])}
    folder = tmp_path / "submissions"
    folder.mkdir()
    paths = {case.name: build(case, editions, folder / f"{i:02d}_{STEM}.ipynb", fill) for i, case in enumerate(CASES)}
    essay = folder / "99_essay.ipynb"
    essay.write_text("my answers are in the attachment\n")
    watched = [*paths.values(), essay, REPO / "chapters" / f"{STEM}.md",
               *sorted((REPO / "companion" / "exercise_checks" / STEM).glob("*.py"))]
    before = {p: digest(p) for p in watched}

    result = run_grader(str(folder), "--json", "--jobs", "2", "--cell-timeout", "15", "--out", str(tmp_path / "out"))
    listener.close()

    assert result.returncode == 1, result.stderr  # the essay is not a notebook
    report = json.loads(result.stdout)
    assert set(report) == {str(p) for p in [*paths.values(), essay]}  # one entry per submission
    failures = []
    for case in CASES:
        entry = report[str(paths[case.name])]
        got = {q: entry["questions"][q]["score"] for q in QUESTIONS} if "questions" in entry else entry
        if got != case.expected:
            failures.append(f"{case.name}: expected {case.expected}, got {got}")
            continue
        for q, v in entry["questions"].items():
            assert 0 <= v["score"] <= v["possible"] == 3
        for q, text in case.message.items():
            message = entry["questions"][q].get("message", "")
            assert text in message and "no delegating to the reference" in message, (case.name, message)
        assert entry["sandbox"].startswith("bubblewrap"), entry["sandbox"]
        assert Path(entry["log"]).is_file()
    assert not failures, "\n".join(failures)
    assert report[str(essay)] == {"error": report[str(essay)]["error"]}
    assert "not a Jupyter notebook" in report[str(essay)]["error"]
    assert "Traceback" not in result.stderr
    assert f"error: {essay}: not a Jupyter notebook" in result.stderr
    assert all(digest(p) == h for p, h in before.items()), "grading changed a file it must not change"
    assert not marker.exists()
    assert not learner_processes(), "a learner's process outlived the batch"
    big = Path(report[str(paths["prints 50 MB"])]["log"])
    assert big.stat().st_size < 1_000_000 and "bytes left out" in big.read_text()
    events = " ".join(report[str(paths["kills its kernel in a cell"])]["notes"])
    assert "broke the notebook's process" in events
    events = " ".join(report[str(paths["loops in a cell and in an answer"])]["notes"])
    assert "ran past the limit of 15 s" in events
    grades = (tmp_path / "out" / "grades.csv").read_text().splitlines()
    assert grades[0].startswith("submission,chapter,total,possible,masked_softmax") and len(grades) == len(CASES) + 2


@pytest.mark.slow
def test_without_bubblewrap_the_report_says_so_and_the_boundary_holds(editions: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    solution = build(CASES[0], editions, tmp_path / f"a_{STEM}.ipynb", {})
    patched = build(CASES[1], editions, tmp_path / f"b_{STEM}.ipynb", {})
    result = run_grader(str(solution), str(patched), "--json", "--out", str(tmp_path / "out"),
                        env={"COURSE_GRADER_SANDBOX": "none"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report[str(solution)]["total"] == 9 and report[str(patched)]["total"] == 0
    for entry in report.values():
        assert entry["sandbox"].startswith("none (turned off by COURSE_GRADER_SANDBOX=none)")
    assert "sandbox: none" in result.stderr


@pytest.mark.slow
def test_gradescope_autograder_writes_results_json(editions: dict[str, Path], tmp_path: Path) -> None:
    with zipfile.ZipFile(editions["zip"]) as zf:
        zf.extractall(tmp_path / "source")
    run = (tmp_path / "source" / "run_autograder").read_text()
    assert "--spec spec.json" in run
    submission = tmp_path / "submission"
    submission.mkdir()
    build(Case("mixed", {}, answers={"masked_softmax": SOLUTION, "additive_scores": SOLUTION}), editions,
          submission / "anything.ipynb", {})
    results = tmp_path / "results" / "results.json"
    done = run_grader(str(submission), "--spec", str(tmp_path / "source" / "spec.json"), "--gradescope",
                      str(results), "--out", str(tmp_path / "logs"))
    assert done.returncode == 0, done.stderr
    out = json.loads(results.read_text())
    assert out["score"] == 6
    assert len(out["tests"]) == 6 and sum(t["max_score"] for t in out["tests"]) == 9
    hidden = [t for t in out["tests"] if "thorough" in t["name"]]
    assert hidden and all(t["visibility"] == "after_published" for t in hidden)
    assert "bubblewrap" in out["output"] or "none (" in out["output"]
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert run_grader(str(empty), "--spec", str(tmp_path / "source" / "spec.json"), "--gradescope",
                      str(results)).returncode == 1
    assert json.loads(results.read_text()) == {"score": 0.0, "output": "no notebook (.ipynb) was submitted",
                                               "tests": []}


@pytest.mark.slow
def test_grader_check_still_gives_the_learner_the_hint_at_once(editions: dict[str, Path], tmp_path: Path) -> None:
    from nbclient import NotebookClient

    student = nbformat.read(editions["student"], as_version=4)
    setup = student.cells[0]
    check = next(c for c in student.cells if c.source == 'grader.check("masked_softmax")')
    off_by_one = ("import torch\ndef masked_softmax(X, valid_lens):\n"
                  "    lens = valid_lens[:, None] if valid_lens.dim() == 1 else valid_lens\n"
                  "    mask = torch.arange(X.shape[-1]) <= lens[..., None]\n"
                  "    return torch.softmax(X.masked_fill(~mask, -1e9), dim=-1) * mask\n")
    nb = nbformat.v4.new_notebook(cells=[setup, nbformat.v4.new_code_cell(off_by_one), check])
    nb.metadata = copy.deepcopy(student.metadata)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "off by one" in json.dumps(nb.cells[-1].outputs)


def test_every_question_declares_what_it_forbids() -> None:
    for stem in notebooks.toc_chapters(REPO):
        chapter = spec.chapter_spec(REPO, stem)
        assert chapter["forbid_everywhere"] == ["companion.exercises"]
        for question in chapter["questions"]:
            modules = {m for t in question["tests"] for m in spec._CHECKS_MODULE.findall(t["source"])}
            for module in modules:
                assert question["name"] in spec.forbidden_table(module), (stem, question["name"])
    for module in ("attention_scoring", "bahdanau_attention"):
        keys = set(spec.forbidden_table(module))
        names = {q["name"] for stem in notebooks.toc_chapters(REPO) for q in spec.chapter_spec(REPO, stem)["questions"]}
        assert keys <= names, f"{module}.FORBIDDEN names questions that do not exist: {keys - names}"


def test_spec_points_and_hidden_tests_come_from_the_chapter() -> None:
    chapter = spec.chapter_spec(REPO, STEM)
    assert [q["name"] for q in chapter["questions"]] == list(QUESTIONS)
    masked = chapter["questions"][0]
    assert [(t["name"], t["points"], t["hidden"]) for t in masked["tests"]] == [
        ("test_masked_softmax_small", 1.0, False), ("test_masked_softmax_thorough", 2.0, True)]
    assert masked["forbid"] == ["companion.attention.masked_softmax"]
    assert masked["tests"][1]["source"].startswith("def test_masked_softmax_thorough(masked_softmax):")
