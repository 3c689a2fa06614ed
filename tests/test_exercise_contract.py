"""The contract every exercise check keeps, whatever the chapter.

A learner's answer can be missing, still the stub, raise, or never return. For each of these every ``check_*``
function in ``companion.exercises.*`` must fail with a hint that names the learner's function and says what to do,
within its time limit. The learner's name for each check is read from the chapters' test cells, so the hint names
the function the learner actually wrote; every check must be used by some chapter.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import companion.exercises

ROOT = Path(__file__).resolve().parents[1]


def _checks() -> dict[str, object]:
    """Every check_* function defined in a companion.exercises module, by qualified name."""
    found = {}
    for info in pkgutil.iter_modules(companion.exercises.__path__):
        module = importlib.import_module(f"companion.exercises.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("check_") and fn.__module__ == module.__name__:
                found[f"{info.name}.{name}"] = fn
    return found


def _learner_names() -> dict[str, str]:
    """check function name -> the learner's name it is called with in the chapters' test cells."""
    names: dict[str, set[str]] = {}
    for chapter in sorted((ROOT / "chapters").glob("*.md")):
        for check, learner in re.findall(r"\b(check_\w+)\((\w+)\)", chapter.read_text(encoding="utf-8")):
            names.setdefault(check, set()).add(learner)
    return {check: learners.pop() for check, learners in names.items() if len(learners) == 1}


CHECKS = _checks()
LEARNER = _learner_names()


def test_every_check_is_called_by_a_chapter_with_one_learner_name():
    assert len(CHECKS) >= 30, sorted(CHECKS)
    unused = [q for q in CHECKS if q.split(".")[1] not in LEARNER]
    assert not unused, f"checks no chapter calls with a single learner name: {unused}"


def test_every_check_takes_the_answer_and_a_time_limit():
    for qualified, check in CHECKS.items():
        params = list(inspect.signature(check).parameters.values())
        assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, qualified
        assert "seconds" in inspect.signature(check).parameters, qualified


@pytest.fixture(params=sorted(CHECKS), ids=lambda q: q)
def check(request):
    fn = CHECKS[request.param]
    return fn, LEARNER.get(fn.__name__, "?")


def test_nothing_returned(check):
    fn, _ = check
    with pytest.raises(AssertionError, match=r"returned None: replace the `...` with your code"):
        fn(lambda *args, **kwargs: None)


def test_stub_left(check):
    fn, _ = check
    with pytest.raises(AssertionError, match=r"returned `...`: replace"):
        fn(lambda *args, **kwargs: ...)


def test_missing_function_is_named(check):
    fn, learner = check
    with pytest.raises(AssertionError, match=rf"`{learner}` is not defined: run the cell that defines it"):
        fn(None)


def test_learners_error_is_reported(check):
    fn, learner = check

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch in my code")

    with pytest.raises(AssertionError, match=rf"`{learner}` raised RuntimeError: shape mismatch in my code"):
        fn(broken)


def test_endless_loop_is_stopped(check):
    fn, learner = check

    def endless(*args, **kwargs):
        while True:
            pass

    with pytest.raises(AssertionError, match=rf"`{learner}` took longer than 0.2 s: is there a loop that never ends"):
        fn(endless, seconds=0.2)


def test_not_implemented_is_said(check):
    fn, learner = check

    def unfinished(*args, **kwargs):
        raise NotImplementedError

    with pytest.raises(AssertionError, match=rf"`{learner}` is not implemented yet"):
        fn(unfinished)
