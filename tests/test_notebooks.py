"""The chapter -> Colab edition pipeline: deterministic, checked for staleness, no solutions leak out."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from course import notebooks
from course.config import repository
from course.notebooks import collect_references, myst_to_markdown, parse_chapter

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "minibook"
STEM = "01_toy_pooling"


@pytest.fixture()
def book(tmp_path: Path) -> Path:
    """A scratch copy of the fixture book (one chapter: two graded questions, one ungraded)."""
    root = tmp_path / "book"
    shutil.copytree(FIXTURE, root)
    return root


@pytest.fixture(scope="module")
def fixture_outputs() -> notebooks.Generated:
    return notebooks.generate(FIXTURE, autograder=True)


def read_nb(data: bytes) -> nbformat.NotebookNode:
    return nbformat.reads(data.decode(), as_version=4)


# --------------------------------------------------------------------------- generation


def test_generation_is_deterministic_and_check_mode_agrees(fixture_outputs: notebooks.Generated) -> None:
    again = notebooks.generate(FIXTURE, autograder=False)  # what --check compares with
    assert again.tracked == fixture_outputs.tracked
    assert set(fixture_outputs.tracked) == {
        f"notebooks/{STEM}.ipynb",
        f"companion/exercise_checks/{STEM}/mean_pool.py",
        f"companion/exercise_checks/{STEM}/weighted_pool.py",
    }
    third = notebooks.generate(FIXTURE, autograder=True)
    solution = f"autograder/{STEM}-solution.ipynb"
    assert third.autograder[solution] == fixture_outputs.autograder[solution]


def test_write_then_check_then_stale_after_edits(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert notebooks.main(["--root", str(book)]) == 0
    assert (book / "autograder" / f"{STEM}-autograder.zip").is_file()
    assert (book / "autograder" / f"{STEM}-solution.ipynb").is_file()
    edition = book / "notebooks" / f"{STEM}.ipynb"
    first = edition.read_bytes()
    assert notebooks.main(["--root", str(book), "--no-autograder"]) == 0
    assert edition.read_bytes() == first  # regenerating gives byte-identical files
    capsys.readouterr()
    assert notebooks.main(["--root", str(book), "--check"]) == 0

    # A chapter edit makes the edition stale.
    chapter = book / "chapters" / f"{STEM}.md"
    source = chapter.read_text()
    chapter.write_text(source.replace("Average pooling gives every query", "Average pooling hands every query"))
    capsys.readouterr()
    assert notebooks.main(["--root", str(book), "--check"]) == 1
    out = capsys.readouterr().out
    assert f"notebooks/{STEM}.ipynb (changed)" in out
    assert "exercise_checks" not in out  # the tests did not change
    chapter.write_text(source)

    # A hand-edited edition, a removed check and a stray check file are all reported.
    edition.write_bytes(first.replace(b"Toy pooling", b"Toy pooling!"))
    (book / "companion" / "exercise_checks" / STEM / "mean_pool.py").unlink()
    (book / "companion" / "exercise_checks" / STEM / "old_question.py").write_text("name = 'old'\n")
    assert notebooks.main(["--root", str(book), "--check", "--chapter", STEM]) == 1
    out = capsys.readouterr().out
    assert f"notebooks/{STEM}.ipynb (changed)" in out
    assert f"companion/exercise_checks/{STEM}/mean_pool.py (missing)" in out
    assert f"companion/exercise_checks/{STEM}/old_question.py (extra)" in out
    assert edition.read_bytes() != first  # --check wrote nothing

    assert notebooks.main(["--root", str(book), "--no-autograder"]) == 0
    assert edition.read_bytes() == first
    assert not (book / "companion" / "exercise_checks" / STEM / "old_question.py").exists()
    assert notebooks.main(["--root", str(book), "--check"]) == 0


def test_check_command_line_exit_codes(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = [sys.executable, "-m", "course.notebooks", "--root", str(book), "--check"]
    missing = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 1
    assert f"stale: notebooks/{STEM}.ipynb (missing)" in missing.stdout
    assert notebooks.main(["--root", str(book), "--check", "--chapter", "07_nothing"]) == 2
    assert "07_nothing" in capsys.readouterr().err


NO_TORCH = """
import runpy, sys
sys.argv = ["course.notebooks", "--root", {root!r}, "--check"]
try:
    runpy.run_module("course.notebooks", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
import course.grade
heavy = sorted(m for m in ("torch", "matplotlib", "companion") if m in sys.modules)
assert not heavy, f"the course tools imported {{heavy}}"
"""


def test_course_tools_import_no_torch(book: Path) -> None:
    # The instructor's tools read and write notebooks: they start without loading torch or the companion.
    done = subprocess.run([sys.executable, "-c", NO_TORCH.format(root=str(book))], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stale: notebooks/" in done.stdout  # --check ran on the fixture book (nothing generated yet)


def test_repository_is_read_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/someone/book.git\n")
    repo = repository(tmp_path)
    assert (repo.owner, repo.name, repo.branch, repo.path_to_book) == ("someone", "book", "main", "")
    assert repo.pip_source == "git+https://github.com/someone/book.git@main"
    for url in ("https://gitlab.com/someone/book", "https://github.com/someone", ""):
        (tmp_path / "_config.yml").write_text(f"repository:\n  url: {url!r}\n  branch: dev\n")
        with pytest.raises(ValueError, match="https://github.com/<owner>/<repo>"):
            repository(tmp_path)


def test_committed_editions_are_up_to_date(generated_editions: notebooks.Generated) -> None:
    # What `python -m course.notebooks --check` checks, on the editions this test run generated once.
    stale = notebooks.stale_files(REPO, generated_editions, notebooks.toc_chapters(REPO), full=True)
    listing = "\n".join(f"  {rel} ({why})" for rel, why in stale)
    assert not stale, f"generated files out of date with chapters/:\n{listing}\nrun `python -m course.notebooks`"


# --------------------------------------------------------------------------- the Colab edition


def test_student_edition_has_no_solutions_and_keeps_the_checks(fixture_outputs: notebooks.Generated) -> None:
    raw = fixture_outputs.tracked[f"notebooks/{STEM}.ipynb"].decode()
    nb = nbformat.reads(raw, as_version=4)
    for leaked in [
        "BEGIN SOLUTION",
        "values.sum() / len(values)",  # mean_pool's reference line
        "(weights * values).sum()",  # weighted_pool's reference line
        "test_mean_pool_hidden",  # a hidden test
        "torch.arange(10.0)",
        "assert values.mean().item() == 2.0",  # a remove-cell check cell
        "do not depend on $q$",  # the ungraded exercise's solution
        "solution-start",
        "```{",
        "{eq}",
        "(sec-toy-maths)=",
    ]:
        assert leaked not in raw, leaked
    sources = [c.source for c in nb.cells]
    assert sources.count('grader.check("mean_pool")') == 1
    assert sources.count('grader.check("weighted_pool")') == 1
    answers = {c.metadata["course"]["answer"]: i for i, c in enumerate(nb.cells) if "course" in c.metadata}
    assert set(answers) == {"mean_pool", "weighted_pool"}
    for name, i in answers.items():
        assert nb.cells[i].source.rstrip().endswith("...")
        assert nb.cells[i + 1].source == f'grader.check("{name}")'
    assert "Why the mean?" in raw  # the ungraded exercise's prompt stays

    setup, instructions = nb.cells[0], nb.cells[1]
    assert setup.cell_type == "code"
    compile(setup.source, "set-up cell", "exec")
    assert 'COMPANION_SOURCE", "git+https://github.com/attention-course/attention-course@main"' in setup.source
    assert '"pip", "install", "-q"' in setup.source and "otter-grader==7.0.0" in setup.source
    assert f'grader = otter.Notebook(tests_dir=companion.grading.checks_dir("{STEM}"))' in setup.source
    assert instructions.cell_type == "markdown" and "File → Download" in instructions.source

    assert [c.id for c in nb.cells] == [f"cell-{i:04d}" for i in range(len(nb.cells))]
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["course"]["chapter"] == STEM
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "accelerator" not in nb.metadata and "colab" in nb.metadata
    nbformat.validate(nb)


def test_public_checks_hold_only_public_tests(fixture_outputs: notebooks.Generated) -> None:
    check = fixture_outputs.tracked[f"companion/exercise_checks/{STEM}/mean_pool.py"].decode()
    assert "def test_mean_pool_small(mean_pool)" in check
    assert "test_mean_pool_hidden" not in check and "hidden=True" not in check
    assert "OK_FORMAT = False" in check


def test_solution_edition_keeps_solutions(fixture_outputs: notebooks.Generated) -> None:
    nb = read_nb(fixture_outputs.autograder[f"autograder/{STEM}-solution.ipynb"])
    text = "\n".join(c.source for c in nb.cells)
    assert "values.sum() / len(values)" in text and "do not depend on $q$" in text
    assert nb.cells[0].source == read_nb(fixture_outputs.tracked[f"notebooks/{STEM}.ipynb"]).cells[0].source
    assert "test_mean_pool_hidden" not in text  # tests live in the autograder zip
    assert nb.metadata["course"]["edition"] == "solution"


def test_autograder_zip_runs_the_course_grader_from_its_own_spec(
    fixture_outputs: notebooks.Generated, tmp_path: Path
) -> None:
    import zipfile

    path = tmp_path / "ag.zip"
    path.write_bytes(fixture_outputs.autograder[f"autograder/{STEM}-autograder.zip"])
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["run_autograder", "setup.sh", "spec.json"]
        spec = json.loads(zf.read("spec.json"))
        setup = zf.read("setup.sh").decode()
        run = zf.read("run_autograder").decode()
        assert zf.getinfo("run_autograder").external_attr >> 16 & 0o111  # executable
    assert "attention-companion[grading] @ git+https://github.com/attention-course/attention-course@main" in setup
    assert "bubblewrap" in setup
    assert "python -m course.grade /autograder/submission --spec spec.json" in run
    assert "--gradescope /autograder/results/results.json" in run
    assert spec["chapter"] == STEM
    tests = {q["name"]: [(t["name"], t["points"], t["hidden"]) for t in q["tests"]] for q in spec["questions"]}
    assert tests["mean_pool"] == [("test_mean_pool_small", 1.0, False), ("test_mean_pool_hidden", 2.0, True)]
    assert spec["forbid_everywhere"] == ["companion.exercises"]


def solution_lines(unit: notebooks.Unit) -> list[str]:
    """The non-blank lines between # BEGIN SOLUTION and # END SOLUTION of a solution cell."""
    lines, inside, out = unit.source.split("\n"), False, []
    for line in lines:
        if "END SOLUTION" in line:
            inside = False
        elif inside and line.strip():
            out.append(line.strip())
        elif "BEGIN SOLUTION" in line:
            inside = True
    return out


@pytest.mark.parametrize("stem", notebooks.toc_chapters(REPO))
def test_committed_real_edition_hides_every_solution(stem: str) -> None:
    path = REPO / "notebooks" / f"{stem}.ipynb"
    assert path.is_file(), "run `python -m course.notebooks`"
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    source = jupytext.read(REPO / "chapters" / f"{stem}.md")
    entries = parse_chapter(source, stem)
    checks = [c.source for c in source.cells if "remove-cell" in c.metadata.get("tags", [])]
    assert checks and not any(check in text for check in checks)  # check cells and tests stay out
    questions = [e for e in entries if isinstance(e, notebooks.Question)]
    assert len(questions) >= 2
    # Lines the chapter itself shows outside any solution (a worked example) may appear in the edition.
    shown = "\n".join(
        u.source for e in entries for u in ([e] if isinstance(e, notebooks.Unit) else getattr(e, "prompt", []))
    )
    assert "BEGIN SOLUTION" not in text and "{solution-start}" not in text and "```{" not in text
    for q in questions:
        for unit in q.solution:
            for line in solution_lines(unit):
                assert line not in text or line in shown, f"{q.name}: reference line {line!r} leaked"
        for test in q.tests:
            name = re.search(r"def (test_\w+)", test.source)[1]
            hidden = "hidden: true" in test.source
            check = REPO / "companion" / "exercise_checks" / stem / f"{q.name}.py"
            assert (name in check.read_text()) != hidden
            assert name not in text
        answer = next(i for i, c in enumerate(nb.cells) if c.metadata.get("course", {}).get("answer") == q.name)
        assert nb.cells[answer + 1].source == f'grader.check("{q.name}")'
    for ungraded in (e for e in entries if isinstance(e, notebooks.Ungraded)):
        for unit in ungraded.units:
            assert unit.source not in text
    assert "checks_dir(" in nb.cells[0].source and nb.metadata["course"]["chapter"] == stem


# --------------------------------------------------------------------------- MyST -> Markdown


def test_admonitions_become_blockquotes_with_a_bold_title() -> None:
    text = "```{admonition} Learning objectives\n:class: tip\n\n- one\n- two\n```"
    assert myst_to_markdown(text) == "> **Learning objectives**\n>\n> - one\n> - two"
    assert myst_to_markdown("```{warning}\nCareful.\n```") == "> **Warning**\n>\n> Careful."
    assert myst_to_markdown("```{note} Inline body.\n```") == "> **Note**\n>\n> Inline body."
    assert myst_to_markdown(":::{seealso}\nChapter 4.\n:::") == "> **See also**\n>\n> Chapter 4."


def test_exercise_becomes_a_bold_heading_and_nested_directives_convert() -> None:
    text = "````{exercise} Kernels\n:label: ex-k\n\nDo it.\n\n```{tip}\nUse `torch.exp`.\n```\n````"
    assert myst_to_markdown(text) == "**Exercise: Kernels**\n\nDo it.\n\n> **Tip**\n>\n> Use `torch.exp`."


def test_labelled_math_loses_its_label_and_refs_become_text() -> None:
    source = "(sec-a)=\n## Section A\n\n$$\nx = 1\n$$ (eq-x)\n\n$$ y = 2 $$ (eq-y)"
    assert collect_references([source], chapter=4).equations == {"eq-x": "4.1", "eq-y": "4.2"}
    refs = collect_references([source])
    refs.docs["02_nonparametric_pooling"] = "2. Non-parametric attention pooling"
    assert refs.equations == {"eq-x": "1", "eq-y": "2"}
    text = (
        "(sec-a)=\n## Section A\n\n$$\nx = 1\n$$ (eq-x)\n\n$$ y = 2 $$ (eq-y)\n\n"
        "By {eq}`eq-y` and {ref}`sec-a`, see {ref}`the start <sec-a>`, {numref}`sec-a`, "
        "{doc}`../chapters/02_nonparametric_pooling` and the {term}`keys <key>`; $a$ stays."
    )
    assert myst_to_markdown(text, refs) == (
        "## Section A\n\n$$\nx = 1 \\tag{1}\n$$\n\n$$ y = 2 \\tag{2} $$\n\n"
        "By (2) and Section A, see the start, Section A, "
        "2. Non-parametric attention pooling and the keys; $a$ stays."
    )
    # Without a known number the label is simply dropped; environments that number themselves get no \tag.
    assert myst_to_markdown("$$\\begin{align}a\\end{align}$$ (eq-z)", refs) == "$$\\begin{align}a\\end{align}$$"
    assert myst_to_markdown("$$ z $$ (eq-unknown)") == "$$ z $$"


def test_code_blocks_are_left_alone() -> None:
    text = "```python\nx = {eq}`not-a-role`\n```"
    assert myst_to_markdown(text) == text


def test_unknown_markup_is_refused_with_the_allowed_set() -> None:
    with pytest.raises(ValueError, match=r"\{figure\}.*only these"):
        myst_to_markdown("```{figure} a.png\n```")
    with pytest.raises(ValueError, match=r"\{math\}"):
        myst_to_markdown("See {math}`x`.")
    with pytest.raises(ValueError, match="closing"):
        myst_to_markdown("```{note}\nnever closed")


def test_exercise_titles_resolve_for_references() -> None:
    refs = collect_references(["```{exercise} The Gaussian kernel\n:label: ex-g\n\nDo it.\n```"])
    assert refs.titles == {"ex-g": "Exercise: The Gaussian kernel"}
    assert myst_to_markdown("(see {ref}`ex-g`)", refs) == "(see Exercise: The Gaussian kernel)"


# --------------------------------------------------------------------------- exercise markup errors

GRADED = """\
+++ {{"question": "q"}}

```{{exercise}} Q
:label: ex-q

Do it.
```

```{{solution-start}} ex-q
:class: dropdown
```

```{{code-cell}} ipython3
{solution}
```

```{{solution-end}}
```
{tests}
"""
TEST = """
```{{code-cell}} ipython3
:tags: [remove-cell]

\"\"\" # BEGIN TEST CONFIG
points: 1{hidden}
\"\"\" # END TEST CONFIG
def test_{name}(f):
    assert f() == 1
test_{name}(f)
```
"""
SOLUTION = "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION"
BOTH_TESTS = TEST.format(name="public", hidden="") + TEST.format(name="hidden", hidden="\nhidden: true")


def chapter(text: str) -> nbformat.NotebookNode:
    return jupytext.reads("# T\n\n" + text, fmt="md:myst")


def test_parse_chapter_finds_question_solution_and_tests() -> None:
    entries = parse_chapter(chapter(GRADED.format(solution=SOLUTION, tests=BOTH_TESTS)), "00_t")
    (question,) = [e for e in entries if isinstance(e, notebooks.Question)]
    assert question.name == "q" and len(question.tests) == 2
    assert [u.kind for u in question.solution] == ["code"]


@pytest.mark.parametrize(
    "solution, tests, message",
    [
        ("def f():\n    return 1", BOTH_TESTS, "BEGIN SOLUTION"),
        (SOLUTION, TEST.format(name="public", hidden=""), "one public and one hidden"),
        (SOLUTION, "", "one public and one hidden"),
    ],
)
def test_parse_chapter_rejects_markup_that_would_leak_or_grade_nothing(solution: str, tests: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_chapter(chapter(GRADED.format(solution=solution, tests=tests)), "00_t")


def test_parse_chapter_rejects_unbalanced_solutions_and_duplicate_names() -> None:
    unclosed = GRADED.format(solution=SOLUTION, tests=BOTH_TESTS).replace("```{solution-end}\n```\n", "")
    with pytest.raises(ValueError, match="solution-end"):
        parse_chapter(chapter(unclosed), "00_t")
    twice = GRADED.format(solution=SOLUTION, tests=BOTH_TESTS) * 2
    with pytest.raises(ValueError, match="unique"):
        parse_chapter(chapter(twice), "00_t")
    stray = TEST.format(name="stray", hidden="")
    with pytest.raises(ValueError, match="right after a graded exercise"):
        parse_chapter(chapter(stray), "00_t")


def test_cells_otter_would_ignore_survive(fixture_outputs: notebooks.Generated) -> None:
    # otter assign drops a cell whose first line reads "# ignore ..."; the pipeline keeps it.
    nb = read_nb(fixture_outputs.tracked[f"notebooks/{STEM}.ipynb"])
    assert "# Ignore the first value: the mean of the others.\nvalues[1:].mean()" in [c.source for c in nb.cells]
