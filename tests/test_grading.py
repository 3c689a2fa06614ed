"""Grading with the generated autograder: full marks for the solution, partial marks for mistakes, no hangs.

The grading cases use chapter 2 (three graded questions), generated fresh from
its source, so each broken answer can sit beside correct ones. Submissions are
combined where possible: every otter run executes the whole chapter.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from course import grade, notebooks
from companion.grading import CellTimeLimit, cell_key

REPO = Path(__file__).resolve().parent.parent
STEM = "02_nonparametric_pooling"

# What a learner might write. Each diagnosed mistake is one that companion.exercises names.
KERNEL_OK = "def gaussian_kernel(u):\n    return torch.exp(-u**2 / 2)\n"
KERNEL_NO_HALF = "def gaussian_kernel(u):\n    return torch.exp(-u**2)\n"
KERNEL_RAISES = "1 / 0  # the cell fails before the function is defined\n" + KERNEL_OK
KERNEL_GARBAGE = (
    "print('#@!' * 2000)\n"
    "def gaussian_kernel(u):\n    print('garbage', u)\n    return 'garbage'\n"
)
NW_OK = (
    "def nadaraya_watson_predict(queries, keys, values, bandwidth):\n"
    "    scores = -(((queries[:, None] - keys[None, :]) / bandwidth) ** 2) / 2\n"
    "    return torch.softmax(scores, dim=-1) @ values\n"
)
# The literal ratio: right for h = 0.5 (the public check), 0/0 = NaN for h = 0.005 (a hidden check only).
NW_LITERAL = (
    "def nadaraya_watson_predict(queries, keys, values, bandwidth):\n"
    "    k = torch.exp(-(((queries[:, None] - keys[None, :]) / bandwidth) ** 2) / 2)\n"
    "    return (k / k.sum(dim=-1, keepdim=True)) @ values\n"
)
LOO_OK = (
    "def loo_mse(x, y, bandwidth):\n"
    "    keys, values = companion.leave_one_out(x, y)\n"
    "    y_hat, _ = companion.nadaraya_watson(x, keys, values, bandwidth=bandwidth)\n"
    "    return ((y_hat - y) ** 2).mean()\n"
)
LOO_LOOPS = "while True:  # never ends: the cell time limit must stop it\n    pass\n"


@pytest.fixture(scope="module")
def built(generated_editions: notebooks.Generated, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The chapter's autograder, solution and Colab editions, as this test run generated them from the source."""
    out = tmp_path_factory.mktemp("built")
    paths = {
        "zip": out / f"{STEM}-autograder.zip",
        "solution": out / f"{STEM}-solution.ipynb",
        "student": out / f"{STEM}.ipynb",
    }
    paths["zip"].write_bytes(generated_editions.autograder[f"autograder/{STEM}-autograder.zip"])
    paths["solution"].write_bytes(generated_editions.autograder[f"autograder/{STEM}-solution.ipynb"])
    paths["student"].write_bytes(generated_editions.tracked[f"notebooks/{STEM}.ipynb"])
    # `python -m course.grade` without --autograder grades with autograder/ of the checkout, building a zip there
    # when it is missing or older than the chapter: the one generated here saves it generating the chapter again.
    (REPO / "autograder").mkdir(exist_ok=True)
    shutil.copyfile(paths["zip"], REPO / "autograder" / paths["zip"].name)
    # The same autograder with a short cell limit, so the endless loop costs seconds, not a minute.
    paths["fast_zip"] = out / f"{STEM}-fast.zip"
    with zipfile.ZipFile(paths["zip"]) as src, zipfile.ZipFile(paths["fast_zip"], "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "otter_config.json":
                config = json.loads(data)
                config["plugins"] = [{"companion.grading.CellTimeLimit": {"seconds": 5}}]
                data = json.dumps(config).encode()
            dst.writestr(name, data)
    return paths


def answered(student: Path, answers: dict[str, str], dest: Path) -> Path:
    """A copy of the Colab edition with the given questions' answer cells replaced."""
    nb = nbformat.read(student, as_version=4)
    found = set()
    for cell in nb.cells:
        question = cell.metadata.get("course", {}).get("answer")
        if question in answers:
            cell.source = answers[question]
            found.add(question)
    assert found == set(answers), f"answer cells not found for {set(answers) - found}"
    nbformat.write(nb, dest)
    return dest


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_grader(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "course.grade", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_grades_solution_untouched_and_wrong_answers(built: dict[str, Path], tmp_path: Path) -> None:
    wrong = answered(
        built["student"],
        {"gaussian_kernel": KERNEL_RAISES, "nadaraya_watson_predict": NW_LITERAL, "loo_mse": LOO_OK},
        tmp_path / "wrong.ipynb",
    )
    not_a_notebook = tmp_path / "essay.ipynb"
    not_a_notebook.write_text("my answers are in the attachment\n")
    unknown = tmp_path / "homework.ipynb"
    nb = nbformat.read(built["student"], as_version=4)
    nb.metadata["course"]["chapter"] = "99_unknown"
    nbformat.write(nb, unknown)
    submissions = [built["solution"], built["student"], wrong, not_a_notebook, unknown]
    before = {p: digest(p) for p in submissions}

    result = run_grader(*map(str, submissions), "--json")

    assert result.returncode == 1, result.stderr  # two files could not be graded
    report = json.loads(result.stdout)
    assert set(report) == {str(p) for p in submissions}
    possible = {"gaussian_kernel": 2, "nadaraya_watson_predict": 3, "loo_mse": 3}
    for path in (built["solution"], built["student"], wrong):
        entry = report[str(path)]
        assert set(entry) == {"total", "possible", "questions"}
        assert entry["possible"] == sum(possible.values())
        assert {q: v["possible"] for q, v in entry["questions"].items()} == possible
    scores = {
        p: {q: v["score"] for q, v in report[str(p)]["questions"].items()}
        for p in (built["solution"], built["student"], wrong)
    }
    assert scores[built["solution"]] == possible
    assert report[str(built["solution"])]["total"] == 8
    assert scores[built["student"]] == {q: 0 for q in possible}  # untouched: `...` everywhere
    # The literal ratio passes the public check (1 point) and fails the hidden one (2 points) only;
    # a cell that raises scores 0; the other question keeps its full marks.
    assert scores[wrong] == {"gaussian_kernel": 0, "nadaraya_watson_predict": 1, "loo_mse": 3}
    assert "Jupyter notebook" in report[str(not_a_notebook)]["error"]
    assert "99_unknown" in report[str(unknown)]["error"]
    assert f"error: {not_a_notebook}" in result.stderr
    assert all(digest(p) == h for p, h in before.items()), "grading changed a submitted file"


@pytest.mark.slow
def test_garbage_and_endless_loop_score_zero_and_the_rest_is_graded(built: dict[str, Path], tmp_path: Path) -> None:
    broken = answered(
        built["student"],
        {"gaussian_kernel": KERNEL_GARBAGE, "nadaraya_watson_predict": NW_OK, "loo_mse": LOO_LOOPS},
        tmp_path / "broken.ipynb",
    )
    before = digest(broken)
    start = time.monotonic()
    result = run_grader(str(broken), "--autograder", str(built["fast_zip"]), "--timeout", "600")
    elapsed = time.monotonic() - start

    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert lines["gaussian_kernel"][1:] == ["0", "/", "2"]
    assert lines["nadaraya_watson_predict"][1:] == ["3", "/", "3"]
    assert lines["loo_mse"][1:] == ["0", "/", "3"]
    assert lines["total"][1:] == ["3", "/", "8"]
    assert elapsed < 300, f"grading took {elapsed:.0f} s: the endless loop was not stopped by the cell limit"
    assert digest(broken) == before


def test_overall_time_limit_scores_zero_with_a_message(built: dict[str, Path], tmp_path: Path) -> None:
    # Two seconds cannot even start otter and its kernel: the run is stopped and scores 0.
    result = grade.grade_submission(built["solution"], REPO, timeout=2, autograder=built["zip"])
    assert result.total == 0 and result.possible == 8
    assert "stopped after 2 s" in result.message
    assert result.to_json()["message"] == result.message


def test_run_with_timeout_kills_the_process_and_its_kernel(tmp_path: Path) -> None:
    # The child starts a grandchild in its own session, as jupyter_client starts a kernel.
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n"
    )
    start = time.monotonic()
    finished = grade.run_with_timeout([sys.executable, "-c", script], 3, cwd=tmp_path, log=tmp_path / "log")
    assert not finished
    assert time.monotonic() - start < 30
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # killed processes disappear once reaped by init
        if not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {grandchild} started by the graded run is still alive")
    assert grade.run_with_timeout([sys.executable, "-c", "pass"], 30, cwd=tmp_path, log=tmp_path / "log")


@pytest.mark.slow
def test_grader_check_names_the_mistake_in_the_learners_notebook(built: dict[str, Path], tmp_path: Path) -> None:
    from nbclient import NotebookClient

    student = nbformat.read(built["student"], as_version=4)
    setup = student.cells[0]
    check = next(c for c in student.cells if c.source == 'grader.check("gaussian_kernel")')
    nb = nbformat.v4.new_notebook(
        cells=[setup, nbformat.v4.new_code_cell("import torch\n" + KERNEL_NO_HALF), check]
    )
    nb.metadata = copy.deepcopy(student.metadata)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = json.dumps(nb.cells[-1].outputs)
    assert "the exponent needs the factor 1/2" in shown
    assert "Test case failed" in shown or "failed" in shown


def test_question_points_and_chapter_lookup(built: dict[str, Path], tmp_path: Path) -> None:
    points = {"gaussian_kernel": 2.0, "loo_mse": 3.0, "nadaraya_watson_predict": 3.0}
    assert grade.question_points(built["zip"]) == points
    chapters = notebooks.toc_chapters(REPO)
    nb = nbformat.read(built["student"], as_version=4)
    assert grade.chapter_of(Path("anything.ipynb"), nb, chapters) == STEM
    bare = nbformat.v4.new_notebook()
    assert grade.chapter_of(Path(f"alice_{STEM} (1).ipynb"), bare, chapters) == STEM
    with pytest.raises(grade.SubmissionError, match="names none"):
        grade.chapter_of(Path("alice.ipynb"), bare, chapters)


def test_cell_time_limit_plugin_inserts_a_limit_cell_for_the_learners_cells() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("hi")])
    plugin = CellTimeLimit("submission.ipynb", {}, {"seconds": 7})
    out = plugin.before_execution(nb)
    assert len(out.cells) == 3 and len(nb.cells) == 2  # the submission itself is left alone
    first = out.cells[0].source
    assert "arm_cell_time_limit(7.0" in first and cell_key("x = 1") in first
    assert CellTimeLimit("s", {}, {})._seconds() == 60.0
    with pytest.raises(ValueError, match="positive number"):
        CellTimeLimit("s", {}, {"seconds": -1})._seconds()


def test_cell_time_limit_stops_a_looping_cell_in_a_kernel(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    loop = "while True:\n    try:\n        pass\n    except Exception:\n        pass  # swallows ordinary errors"
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(loop), nbformat.v4.new_code_cell("after = 'ran'\nprint(after)")]
    )
    limited = CellTimeLimit("submission.ipynb", {}, {"seconds": 1}).before_execution(nb)
    start = time.monotonic()
    NotebookClient(limited, timeout=120, kernel_name="python3", allow_errors=True).execute()
    assert time.monotonic() - start < 60
    errors = [o for o in limited.cells[1].outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "CellTimeExceeded"
    assert limited.cells[2].outputs[0].text == "ran\n"  # the next cell ran, without a limit hit


def test_missing_autograder_is_built(tmp_path: Path) -> None:
    root = tmp_path / "book"
    shutil.copytree(Path(__file__).resolve().parent / "fixtures" / "minibook", root)
    path = grade.autograder_for(root, "01_toy_pooling")
    assert path == root / "autograder" / "01_toy_pooling-autograder.zip" and path.is_file()
    assert (root / "autograder" / "01_toy_pooling-solution.ipynb").is_file()
    assert grade.question_points(path) == {"mean_pool": 3.0, "weighted_pool": 2.0}
    assert not (root / "notebooks").exists()  # grading builds only the instructor's files
    # A chapter edited after the build makes the zip stale: it is rebuilt with the new tests.
    chapter = root / "chapters" / "01_toy_pooling.md"
    chapter.write_text(chapter.read_text().replace("points: 2\nhidden: true", "points: 4\nhidden: true"))
    os.utime(path, (path.stat().st_atime, chapter.stat().st_mtime - 10))
    assert grade.question_points(grade.autograder_for(root, "01_toy_pooling")) == {"mean_pool": 5.0, "weighted_pool": 2.0}
