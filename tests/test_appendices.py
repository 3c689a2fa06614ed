"""The appendices stay true to the repository.

``appendices/setup.md`` (A. Set-up) and ``appendices/grading.md`` (D. How grading
works) name commands, options, files and versions. These tests check each name
against the thing itself: the grader's ``--help``, the files of the checkout, the
README's commands, the Colab edition's first cell and the Gradescope autograder.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from course import config, notebooks, sandbox, spec

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO / "appendices" / "setup.md"
GRADING = REPO / "appendices" / "grading.md"
PAGES = {"setup": SETUP, "grading": GRADING}
HEADS = {"setup": ("(appendix-setup)=", "# A. Set-up"), "grading": ("(appendix-grading)=", "# D. How grading works")}

FENCE = re.compile(r"^(`{3,}|~{3,})([^\n]*)\n(.*?)^\1[ \t]*$", re.M | re.S)
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
VERSION = re.compile(r"(?<![\w.])\d+\.\d+(?:\.\d+)*(?![\w.]*\w)")
# Files of the checkout a page may name: the scripts, the CI command, the course's tools, the top-level settings.
REPO_FILE = re.compile(
    r"(?<![\w/.-])(scripts/[\w.-]+\.(?:sh|py)|\.ci/run|course/[\w.-]+\.py"
    r"|requirements\.txt|package(?:-lock)?\.json|_config\.yml|_toc\.yml|pyproject\.toml|CONTRIBUTING\.md|README\.md)"
)
MODULE = re.compile(r"python -m (course\.\w+)")
CHAPTER_STEM = re.compile(r"(?<![\w])(\d\d_[a-z0-9_]+?)(?=\.ipynb|\.md|-solution|-autograder)")


def text(page: str) -> str:
    return PAGES[page].read_text(encoding="utf-8")


def blocks(markdown: str, language: str = "bash") -> list[str]:
    """The contents of the fenced blocks of ``language``, in order."""
    return [m.group(3).strip("\n") for m in FENCE.finditer(markdown) if m.group(2).strip() == language]


def section(markdown: str, heading: str) -> str:
    """The text under the heading line ``heading`` up to the next heading of the same or a higher level
    (headings inside fenced blocks do not count)."""
    level = len(heading) - len(heading.lstrip("#"))
    fences = [(m.start(), m.end()) for m in FENCE.finditer(markdown)]
    lines, out, inside = markdown.splitlines(keepends=True), [], False
    offset = 0
    for line in lines:
        fenced = any(a <= offset < b for a, b in fences)
        offset += len(line)
        stripped = line.rstrip("\n")
        if not fenced and re.match(r"#{1,6} ", stripped):
            this = len(stripped) - len(stripped.lstrip("#"))
            if inside and this <= level:
                break
            if stripped == heading:
                inside = True
                continue
        if inside:
            out.append(line)
    if not inside:
        raise AssertionError(f"expected a heading line {heading!r}, found none")
    return "".join(out)


def commands(block: str) -> list[str]:
    """The command lines of a bash block: continuation lines joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", "", block)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


@lru_cache(maxsize=None)
def help_text(module: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"python -m {module} --help failed:\n{done.stderr}"
    return done.stdout


def help_options(module: str) -> set[str]:
    return set(LONG_OPTION.findall(help_text(module)))


def help_defaults(module: str) -> dict[str, str]:
    """Option -> its default, as ``--help`` states it: ``(default 900)``."""
    entries = re.split(r"\n(?=  -)", help_text(module).split("options:", 1)[1])
    found = {}
    for entry in entries:
        names = LONG_OPTION.findall(re.split(r"\s{2,}", entry.strip())[0])
        default = re.search(r"\(default:? ([^)]*)\)", " ".join(entry.split()))
        if names and default:
            found[names[-1]] = default.group(1)
    return found


def options_table(markdown: str) -> dict[str, str]:
    """Option -> its row, from the table under "### The options of `python -m course.grade`"."""
    rows = {}
    for line in section(markdown, "### The options of `python -m course.grade`").splitlines():
        match = re.match(r"\|\s*`(--[a-z][a-z0-9-]*)[^`]*`\s*\|", line)
        if match:
            rows[match.group(1)] = line
    return rows


# --------------------------------------------------------------------------- both pages


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_starts_with_its_label_and_title(page: str) -> None:
    lines = text(page).splitlines()
    assert tuple(lines[:2]) == HEADS[page], f"appendices/{page}.md starts with {lines[:2]}, expected {HEADS[page]}"
    assert sum(1 for line in lines if line.startswith("# ")) == 1, "expected one title (# ...) on the page"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_is_plain_markdown_not_a_notebook(page: str) -> None:
    source = text(page)
    assert "{code-cell}" not in source, "the appendices hold no executed cells: use fenced ```bash blocks"
    assert not source.startswith("---"), "no notebook front matter (jupytext, kernelspec) on an appendix"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_file_the_page_names_exists(page: str) -> None:
    source = text(page)
    named = set(REPO_FILE.findall(source))
    named |= {m.replace(".", "/") + ".py" for m in MODULE.findall(source)}
    assert named, "expected the page to name scripts or course files"
    missing = sorted(p for p in named if not (REPO / p).is_file())
    assert not missing, f"appendices/{page}.md names files that are not in the checkout: {missing}"
    stems = set(CHAPTER_STEM.findall(source))
    unknown = sorted(s for s in stems if not (REPO / "chapters" / f"{s}.md").is_file())
    assert not unknown, f"appendices/{page}.md names chapters that do not exist: {unknown}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_version_the_page_names_is_the_repositorys(page: str) -> None:
    """A dotted version number on a page must be one the repository itself states (no invented versions)."""
    sources = [REPO / "README.md", REPO / "requirements.txt", REPO / "package.json", REPO / "scripts" / "setup.sh",
               REPO / ".ci" / "run", *sorted((REPO / "course").glob("*.py"))]
    known = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    versions = set(VERSION.findall(text(page)))
    unknown = sorted(v for v in versions if v not in known)
    assert not unknown, f"appendices/{page}.md names versions the repository does not state: {unknown}"


# --------------------------------------------------------------------------- A. Set-up


def readme_build_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return blocks(section(readme, "## Building locally"))


def test_setup_local_commands_are_the_readmes_two_commands() -> None:
    readme = [b for b in readme_build_blocks() if "gpu_check" not in b]
    assert len(readme) == 2, f"expected the README's two set-up/test commands under ## Building locally, got {readme}"
    local = blocks(section(section(text("setup"), "## On your own machine"), "### The two commands"))
    assert local == readme, f"the set-up page's two commands {local} are not the README's {readme}"


def test_setup_gpu_section_runs_the_readmes_gpu_check() -> None:
    readme = [b for b in readme_build_blocks() if "gpu_check" in b]
    assert readme, "expected the README to give the GPU check under ## Building locally"
    gpu = blocks(section(text("setup"), "## On a machine with an NVIDIA GPU"))
    for block in readme:
        assert block in gpu, f"the set-up page's GPU section lacks the README's {block!r}"
    assert "companion.try_gpu" in section(text("setup"), "## On a machine with an NVIDIA GPU")


def test_setup_describes_what_setup_sh_installs() -> None:
    script = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    part = section(section(text("setup"), "## On your own machine"), "### What `scripts/setup.sh` installs")
    pinned = re.search(r'"torch==([\d.]+)"', script).group(1)
    assert f"torch=={pinned}" in part, f"expected the page to name setup.sh's torch=={pinned}"
    assert 'python -c "import torch"' in script and "import torch" in part
    d2l = re.search(r'"d2l==([\d.]+)"', script).group(1)
    assert f"d2l {d2l}" in part and "--no-deps" in script
    assert "-e ." in script and "-e ." in part
    assert "npm ci" in script and "npm ci" in part
    assert "requirements.txt" in script and "requirements.txt" in part
    jb = next(line for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("jupyter-book"))
    assert jb in part and jb in text("setup"), f"expected the page to give requirements.txt's {jb}"


def test_setup_cpu_index_is_the_one_the_autograder_uses() -> None:
    index = "--index-url https://download.pytorch.org/whl/cpu"
    assert index in spec.SETUP_SH
    assert index in section(section(text("setup"), "## On your own machine"), "### Why PyTorch comes first")
    assert index in section(text("setup"), "## Troubles learners meet, and their fixes")


def test_setup_tests_need_the_packages_ci_installs() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    installed = re.search(r"apt-get install -y -qq ([^>\n]+)", ci).group(1).split()
    page = section(section(text("setup"), "## On your own machine"), "### What the tests need besides Python")
    assert f"apt-get install -y {' '.join(installed)}" in page


def test_setup_colab_first_cell_is_described_as_it_is() -> None:
    cell = notebooks.setup_source("01_attention_cues", config.repository(REPO).pip_source)
    colab = section(text("setup"), "## In Google Colab")
    assert config.repository(REPO).pip_source in colab
    assert f"otter-grader=={notebooks.OTTER_VERSION}" in cell and f"otter-grader=={notebooks.OTTER_VERSION}" in colab
    assert "COMPANION_SOURCE" in cell and "COMPANION_SOURCE" in colab
    assert "installing failed:" in cell and "RuntimeError: installing failed:" in colab
    assert "grader = otter.Notebook" in cell and "`grader`" in colab


def test_setup_troubles_each_have_a_fix() -> None:
    troubles = section(text("setup"), "## Troubles learners meet, and their fixes")
    entries = re.split(r"\n(?=\*\*)", troubles.strip())
    assert len(entries) >= 7, f"expected at least seven troubles, got {len(entries)}"
    for entry in entries:
        assert entry.startswith("**"), f"expected each trouble to start with its name in bold: {entry[:60]!r}"
        assert "Fix" in entry or "fix" in entry or "```bash" in entry, f"a trouble without its fix: {entry[:60]!r}"
    # The messages the page quotes are the ones the code raises.
    ext = (REPO / "_ext" / "course_book.py").read_text(encoding="utf-8")
    assert "MathJax is not installed" in ext and "MathJax is not installed" in troubles
    assert "raise_on_error: true" in (REPO / "_config.yml").read_text() and "raise_on_error: true" in troubles
    gpu = (REPO / "scripts" / "gpu_check.sh").read_text(encoding="utf-8")
    assert "no CUDA device here" in gpu and "no CUDA device here" in text("setup")
    assert "COMPANION_PROGRESS" in (REPO / "companion" / "utils.py").read_text() and "COMPANION_PROGRESS" in troubles


# --------------------------------------------------------------------------- D. How grading works


def test_grading_options_are_exactly_the_graders() -> None:
    """Every option the page's table names is in ``python -m course.grade --help``, and every one
    ``--help`` lists is in the table."""
    table = set(options_table(text("grading")))
    real = help_options("course.grade")
    assert table - real == set(), f"the page names options course.grade does not have: {sorted(table - real)}"
    assert real - table == set(), f"options of course.grade the page does not name: {sorted(real - table)}"


def test_grading_page_names_no_option_the_commands_lack() -> None:
    """Every --option anywhere on the page is one of course.grade or course.notebooks."""
    named = set(LONG_OPTION.findall(text("grading")))
    real = help_options("course.grade") | help_options("course.notebooks")
    assert named - real == set(), f"options no course command has: {sorted(named - real)}"


def test_grading_command_lines_use_real_options() -> None:
    source = text("grading")
    lines = [c for b in blocks(source) for c in commands(b) if "-m course." in c]
    assert any("-m course.grade" in c for c in lines) and any("-m course.notebooks" in c for c in lines)
    for line in lines:
        module = re.search(r"-m (course\.\w+)", line).group(1)
        unknown = set(LONG_OPTION.findall(line)) - help_options(module)
        assert not unknown, f"{line!r} uses options python -m {module} does not have: {sorted(unknown)}"


def test_grading_defaults_are_the_graders() -> None:
    rows = options_table(text("grading"))
    defaults = help_defaults("course.grade")
    numeric = {k: v for k, v in defaults.items() if re.fullmatch(r"[\d.]+", v)}
    assert {"--timeout", "--cell-timeout", "--memory-mb"} <= set(numeric), f"parsed defaults: {defaults}"
    for option, value in numeric.items():
        assert f"default {value}" in rows[option], f"the row of {option} lacks its default {value}: {rows[option]}"
    assert "number of cores" in rows["--jobs"] and "grades/" in rows["--out"]
    limits = sandbox.Limits()
    page = text("grading")
    assert f"{limits.scratch_mb} MB" in page and f"processes ({limits.processes})" in page


def test_grading_gives_the_readmes_instructor_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    wanted = [c for b in blocks(section(readme, "## Exercises: for instructors")) for c in commands(b)]
    given = [c for b in blocks(text("grading")) for c in commands(b)]
    assert wanted, "expected the README's instructor commands"
    missing = [c for c in wanted if c not in given]
    assert not missing, f"the grading page lacks the README's commands {missing}"


def test_grading_run_autograder_is_the_zips() -> None:
    script = [line for line in spec.RUN_AUTOGRADER.strip().splitlines() if not line.startswith("#")]
    on_page = [b.splitlines() for b in blocks(section(text("grading"), "### On Gradescope"))]
    assert script in on_page, f"expected the page to show run_autograder as it is:\n{chr(10).join(script)}"
    gradescope = section(text("grading"), "### On Gradescope")
    for name in ("setup.sh", "run_autograder", "spec.json"):
        assert f"`{name}`" in gradescope
    assert "bubblewrap" in spec.SETUP_SH and "/opt/course" in spec.SETUP_SH and "/opt/course" in gradescope


def test_grading_names_what_counts_as_delegating() -> None:
    from companion.exercises import attention_scoring

    learners = section(text("grading"), "## For learners")
    assert "`FORBIDDEN`" in learners
    assert spec.FORBID_EVERYWHERE == ["companion.exercises"] and "`companion.exercises`" in learners
    assert "companion.attention.masked_softmax" in attention_scoring.FORBIDDEN["masked_softmax"]
    assert "torch.nn.functional.scaled_dot_product_attention" in attention_scoring.FORBIDDEN[
        "scaled_dot_product_attention"]
    assert "torch.nn.functional.scaled_dot_product_attention" in learners


def test_grading_writes_what_the_page_says() -> None:
    written = section(text("grading"), "### What it writes")
    source = (REPO / "course" / "grade.py").read_text(encoding="utf-8")
    for name in ("grades.json", "grades.csv"):
        assert f'"{name}"' in source and f"`{name}`" in written
    assert "64 KB" in written and "64 KB" in (REPO / "README.md").read_text(encoding="utf-8")


def test_grading_sandbox_facts_are_the_sandboxs() -> None:
    doc = sandbox.__doc__ or ""
    page = section(text("grading"), "## What the grader protects against, and what it cannot")
    assert "mount, network, PID, IPC and UTS" in " ".join(doc.split()) and "mount, network, PID, IPC and UTS" in page
    assert sandbox.WORKDIR == "/submission" and "`/submission`" in page
    assert "COURSE_GRADER_SANDBOX" in (REPO / "course" / "sandbox.py").read_text() and "COURSE_GRADER_SANDBOX" in page
    assert "sandbox: none (why)" in page
