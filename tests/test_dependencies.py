"""Which companion files each chapter depends on (course.dependencies): what re-executes it in an incremental
book build. Read from the sources, without a build."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from course.dependencies import PackageIndex, chapter_dependencies, package_files

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))


@pytest.fixture(scope="module")
def dependencies() -> dict[str, list[str]]:
    return {chapter.stem: chapter_dependencies(ROOT, chapter) for chapter in CHAPTERS}


def test_a_chapter_depends_on_what_it_runs_and_not_on_the_rest(dependencies: dict[str, list[str]]) -> None:
    pooling = dependencies["02_nonparametric_pooling"]
    assert "companion/pooling.py" in pooling and "companion/exercises/nonparametric_pooling.py" in pooling
    assert "companion/__init__.py" in pooling and "companion/exercises/__init__.py" in pooling
    assert "companion/transformer.py" not in pooling and "companion/seq2seq.py" not in pooling
    block = dependencies["08_transformer_block"]
    # transformer imports multihead, which imports attention: followed transitively.
    assert {"companion/transformer.py", "companion/multihead.py", "companion/attention.py"} <= set(block)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_no_chapter_depends_on_tooling_or_generated_checks(chapter: Path, dependencies: dict[str, list[str]]) -> None:
    files = dependencies[chapter.stem]
    assert files, f"{chapter.name} depends on no companion file"
    assert all(path.startswith("companion/") for path in files), files  # never course/, tests/ or scripts/
    assert not [path for path in files if "exercise_checks" in path]
    assert set(files) < {path.relative_to(ROOT).as_posix() for path in package_files(ROOT)}, (
        f"{chapter.name} depends on every companion file: the dependencies were not told apart")


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A companion package under root (file name -> source), for the resolution rules."""
    for name, source in files.items():
        path = root / "companion" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


PACKAGE = {
    "__init__.py": "from . import models, tasks\nfrom .models import *\nfrom .tasks import *\n"
                   "from .utils import helper as assist\n",
    "models.py": """
        from typing import TYPE_CHECKING
        from .utils import helper
        from .tasks.text import Vocab
        if TYPE_CHECKING:
            from .heavy import Heavy
        class Model: ...
        SIZES = (1, 2)
        def later():
            from companion.lazy import lazy  # runs when later() does
    """,
    "utils.py": "def helper(): ...\n",
    "heavy.py": "class Heavy: ...\n",
    "lazy.py": "def lazy(): ...\n",
    "unused.py": "def unused(): ...\n",
    "tasks/__init__.py": "from . import text, dates\nfrom .text import *\nfrom .dates import *\n",
    "tasks/text.py": "class Vocab: ...\n",
    "tasks/dates.py": "from ..utils import helper\ndef make_dates(): ...\n",
    "exercises/__init__.py": "def expect_close(): ...\n",
    "exercises/pooling.py": "from . import expect_close\n",
    "exercise_checks/01_x/q.py": "import companion.unused\n",
}


def reached(tmp_path: Path, *cells: str) -> set[str]:
    """Companion files (without the companion/ prefix) that these code cells depend on."""
    index = PackageIndex(write_package(tmp_path, PACKAGE))
    return {path.removeprefix("companion/") for path in index.files(index.chapter_modules(cells))}


def test_names_resolve_to_their_module_and_imports_are_followed(tmp_path: Path) -> None:
    # companion.Model lives in models.py, which imports utils.py, tasks/text.py and (in a function) lazy.py;
    # its TYPE_CHECKING import never runs, and the package __init__ files count without their imports.
    assert reached(tmp_path, "import companion\nm = companion.Model()") == {
        "__init__.py", "models.py", "utils.py", "lazy.py", "tasks/__init__.py", "tasks/text.py"}
    constant = reached(tmp_path, "import companion\ncompanion.SIZES")
    assert constant == reached(tmp_path, "import companion\ncompanion.Model")
    assert reached(tmp_path, "import companion\ncompanion.assist()") == {"__init__.py", "utils.py"}
    assert reached(tmp_path, "import companion") == {"__init__.py"}


def test_every_import_form_reaches_its_module(tmp_path: Path) -> None:
    dates = {"__init__.py", "tasks/__init__.py", "tasks/dates.py", "utils.py"}
    assert reached(tmp_path, "import companion as c\nc.make_dates()") == dates
    assert reached(tmp_path, "import companion\ncompanion.tasks.make_dates()") == dates
    assert reached(tmp_path, "from companion.tasks import make_dates") == dates
    assert reached(tmp_path, "from companion import tasks\ntasks.dates.make_dates()") == dates
    assert reached(tmp_path, "import companion.tasks.dates") == dates
    exercises = {"__init__.py", "exercises/__init__.py", "exercises/pooling.py"}
    check_cell = "def test(f):\n    from companion.exercises import pooling as ex\n    ex.check(f)"
    assert reached(tmp_path, check_cell) == exercises
    assert reached(tmp_path, "%time import torch\n!echo hi\nfrom companion.utils import helper") == {
        "__init__.py", "utils.py"}


def test_an_unreadable_file_makes_the_chapter_depend_on_every_companion_file(tmp_path: Path) -> None:
    root = write_package(tmp_path, {**PACKAGE, "broken.py": "def broken(:\n"})
    chapter = root / "chapters" / "01_x.md"
    chapter.parent.mkdir()
    chapter.write_text("---\njupytext: {text_representation: {format_name: myst}}\n---\n\n"
                       "```{code-cell} ipython3\nimport companion\ncompanion.Model\n```\n")
    everything = sorted(path.relative_to(root).as_posix() for path in package_files(root))
    assert chapter_dependencies(root, chapter) == everything
    assert not [path for path in everything if "exercise_checks" in path]
