"""Exercise checks: compare a learner's answer with the reference and name the mistake.

Each chapter has a module here (``companion.exercises.<chapter topic>``) whose
``check_*`` functions are called by the chapter's otter-grader tests. A check
runs the learner's function on a few inputs, compares the result with the
companion's reference and, when they differ, raises ``AssertionError`` whose
message is a hint that names the likely mistake. The ``*_small`` and
``*_values`` checks are public (``grader.check``); the ``*_thorough`` checks are
hidden and count at grading time.

At grading time a check runs in the judge's process and ``fn`` calls the
learner's function in the learner's process (``course.judge``): arguments and
results cross as data. A model crosses as its recipe, so a check builds one
with ``built(cls, *args, **kwargs)``; any other callable it passes stays in the
judge and is called back. Each module's ``FORBIDDEN`` maps a question to what
its answer may not call (the course's own implementation of it); nothing in
``companion.exercises`` may be called by any answer.

What every check needs lives here: ``call_on_copies`` runs the learner's
function (time limit, torch's errors explained by ``TORCH_HINTS``, inputs that
must come back unchanged), ``expect_close`` names the mistake behind a wrong
result, and ``expect_differentiable`` / ``backpropagate`` check that later
chapters can train through the answer.
"""

from __future__ import annotations

import contextlib
import inspect
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional, Union

import torch

__all__ = [
    "CheckTimeout",
    "TORCH_HINTS",
    "backpropagate",
    "built",
    "call_on_copies",
    "expect_close",
    "expect_differentiable",
    "expect_returned",
    "explain_error",
    "run_limited",
    "time_limit",
]

def built(cls: type, *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)``, remembering how it was built, so the model can cross to the learner's
    process at grading time (rebuilt there from the course's class, with these weights) (all chapters).

    ``cls`` is a class of the course's package or of ``torch.nn``.
    """
    model = cls(*args, **kwargs)
    model._course_recipe = (f"{cls.__module__}:{cls.__qualname__}", args, kwargs)
    return model


class CheckTimeout(Exception):
    """Raised inside code that ran past the time limit of a check (all chapters)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``CheckTimeout`` in the block if it runs past ``seconds`` (all chapters).

    Uses ``SIGALRM``, so it works in the main thread on POSIX systems (a
    Jupyter kernel, pytest) and is a no-op elsewhere. An outer limit is
    restored, with the time it has left, when the block ends.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    usable = hasattr(signal, "setitimer") and in_main_thread
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"took longer than {seconds:g} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    start = _now()
    # An outer limit that ends sooner stays in charge.
    limit = min(seconds, outer_left) if outer_left else seconds
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if outer_left:
            left = outer_left - (_now() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))


def _now() -> float:
    import time

    return time.monotonic()


def run_limited(
    fn: Callable[..., Any], *args: Any, name: str, seconds: float = 10.0, **kwargs: Any
) -> Any:
    """Call a learner's ``fn(*args, **kwargs)``; turn errors and time-outs into hints.

    Shapes: whatever ``fn`` takes and returns.
    Raises ``AssertionError`` naming ``name`` when ``fn`` is missing, raises, or
    runs longer than ``seconds`` (an infinite loop is the usual cause).
    """
    if fn is None:
        raise AssertionError(
            f"`{name}` is not defined: run the cell that defines it first."
        )
    if not callable(fn):
        raise AssertionError(
            f"`{name}` should be a function or class, but it is a {type(fn).__name__}."
        )
    try:
        with time_limit(seconds):
            return fn(*args, **kwargs)
    except CheckTimeout:
        raise AssertionError(
            f"`{name}` took longer than {seconds:g} s: is there a loop that never ends?"
        ) from None
    except NotImplementedError:
        raise AssertionError(f"`{name}` is not implemented yet.") from None
    except Exception as err:  # the learner's error becomes the hint
        raise AssertionError(f"`{name}` raised {type(err).__name__}: {err}") from None


# A hint is a text, or a function of the error message that returns one (None: look further).
Hint = Union[str, Callable[[str], Optional[str]]]

_STAY_IN_TORCH = "Stay in torch (no .detach(), .numpy(), .item() or torch.tensor(...) on the inputs)."
_IN_PLACE_AND_AUTOGRAD = (
    "An in-place change (x += ..., x[...] = ..., a method ending in _) of a tensor that autograd needs: "
    "compute a new tensor instead."
)

# What torch's error messages mean, in a learner's words, keyed by a fragment of the message. A check can put
# entries of its own in front (``hints=``) where its exercise invites a more specific mistake.
TORCH_HINTS: dict[str, Hint] = {
    "cannot be multiplied": (
        "A @ B needs A.shape[-1] == B.shape[-2]: print both shapes; a weight used without .T, or the factors "
        "in the wrong order, is the usual cause."
    ),
    "must match the size of tensor": (
        "An elementwise operation lines the axes of its operands up from the right, and each pair of sizes "
        "must be equal or 1: add the missing axis with .unsqueeze (or None indexing)."
    ),
    "view size is not compatible": (
        "After permute or transpose the tensor is no longer contiguous in memory, so .view cannot fold its "
        "axes: use .reshape (which copies when it must), or .contiguous().view."
    ),
    "is invalid for input of size": (
        "The sizes of a reshape must multiply to the number of elements: print the tensor's shape and check "
        "each size."
    ),
    "is being used in an in-place operation": _IN_PLACE_AND_AUTOGRAD,
    "modified by an inplace operation": _IN_PLACE_AND_AUTOGRAD,
    "does not require grad and does not have a grad_fn": f"The result is cut off from autograd. {_STAY_IN_TORCH}",
    "Can't call numpy() on Tensor that requires grad": _STAY_IN_TORCH,
}


def explain_error(message: str, hints: Mapping[str, Hint] | None = None) -> str:
    """Add the hint of the first fragment found in ``message``: a check's ``hints``, then TORCH_HINTS (all chapters).

    ``message`` is what ``run_limited`` raised; without a match it comes back as it is.
    """
    for table in (hints or {}, TORCH_HINTS):
        for fragment, hint in table.items():
            if fragment in message:
                text = hint(message) if callable(hint) else hint
                if text:
                    return f"{message.rstrip('.')}. {text}"
    return message


def call_on_copies(
    fn: Callable[..., Any],
    *args: Any,
    name: str,
    seconds: float = 10.0,
    hints: Mapping[str, Hint] | None = None,
    **kwargs: Any,
) -> Any:
    """Run a learner's ``fn`` on copies of its tensor arguments; return its result or fail with a hint (all chapters).

    Shapes: whatever ``fn`` takes and returns.

    The call runs under ``run_limited`` (missing function, errors, time limit), and ``explain_error`` adds
    what torch's error means. Tensors (also inside tuples and lists) are passed as clones, so a reference
    computed on the originals afterwards sees what the learner was given; a clone that comes back changed
    means the learner wrote into the caller's tensor.
    """
    given = [_copy(a) for a in args]
    given_kw = {key: _copy(a) for key, a in kwargs.items()}
    try:
        result = run_limited(fn, *given, name=name, seconds=seconds, **given_kw)
    except AssertionError as err:
        raise AssertionError(explain_error(str(err), hints)) from None
    changed = [i for i, (a, b) in enumerate(zip(args, given)) if _changed(a, b)]
    changed_kw = [key for key in kwargs if _changed(kwargs[key], given_kw[key])]
    if changed or changed_kw:
        names = [_parameter_name(fn, i) for i in changed] + changed_kw
        raise AssertionError(_in_place_hint(name, names))
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if type(value) in (tuple, list):  # not a namedtuple or torch.Size: those are passed as they are
        return type(value)(_copy(v) for v in value)
    return value


def _changed(original: Any, given: Any) -> bool:
    if isinstance(original, torch.Tensor):
        a, b = original.detach(), given.detach()
        if a.shape != b.shape:
            return True
        if torch.equal(a, b):
            return False
        # NaN != NaN: an input holding NaN is unchanged when its NaNs and its other entries are.
        return not (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                    and torch.equal(a.nan_to_num(), b.nan_to_num()))
    if type(original) in (tuple, list):
        return any(_changed(a, b) for a, b in zip(original, given))
    return False


def _parameter_name(fn: Callable[..., Any], index: int) -> Optional[str]:
    """The learner's name for the positional parameter ``index`` of ``fn``, or None (``*args``, a builtin)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if index < len(params) and all(p.kind in positional for p in params[: index + 1]):
        return params[index].name
    return None


def _in_place_hint(name: str, names: list[Optional[str]]) -> str:
    if len(names) == 1 and names[0] is not None:
        x = names[0]
        return (f"`{name}` changed its input `{x}` in place (as `{x} += ...`, `{x}[...] = ...` or `{x}.add_(...)` "
                "do): compute a new tensor instead.")
    listed = ", ".join(f"`{x}`" for x in names) + " " if None not in names else ""
    return (f"`{name}` changed its inputs {listed}in place (as `x += ...`, `x[...] = ...` or `x.add_(...)` do): "
            "compute new tensors instead.")


def expect_returned(actual: Any, *, name: str) -> None:
    """Fail with what to do when a learner's function returned None or the stub's ``...`` (all chapters)."""
    if actual is None:
        raise AssertionError(f"`{name}` returned None: replace the `...` with your code, and end it with a "
                             "`return` statement.")
    if actual is Ellipsis:
        raise AssertionError(f"`{name}` returned `...`: replace the `...` with your code.")


def expect_differentiable(actual: Any, *, name: str, needs: str) -> None:
    """Fail unless ``actual`` is a tensor in the autograd graph: later chapters train through it (all chapters).

    Shapes: actual any.
    ``needs`` says, in the exercise's words, what the result must stay connected to.
    """
    if not (isinstance(actual, torch.Tensor) and actual.requires_grad):
        raise AssertionError(f"`{name}` breaks autograd: {needs}. {_STAY_IN_TORCH}")


def backpropagate(
    actual: torch.Tensor,
    upstream: torch.Tensor | None = None,
    *,
    name: str,
    reaches: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Backpropagate ``upstream`` (ones by default) through a learner's result; errors become hints (all chapters).

    Shapes: actual (...), upstream the same shape; reaches maps a label ("the weights") to a leaf tensor.
    Fails too when a leaf in ``reaches`` got no gradient (the learner detached it on the way).
    """
    loss = actual.sum() if upstream is None else (actual * upstream).sum()
    try:
        loss.backward()
    except RuntimeError as err:
        raise AssertionError(explain_error(f"`{name}` breaks autograd: {err}")) from None
    for label, leaf in (reaches or {}).items():
        if leaf.grad is None:
            raise AssertionError(f"`{name}` breaks autograd: no gradient reaches {label}. {_STAY_IN_TORCH}")


def expect_close(
    actual: Any,
    expected: torch.Tensor,
    *,
    name: str,
    mistakes: Mapping[str, torch.Tensor] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """Assert that ``actual`` equals the reference ``expected``, else name the mistake.

    Shapes: actual and expected (...) of the same shape; a mistake's output any shape.

    ``mistakes`` maps a hint (the likely mistake, in words) to the output that
    mistake produces. When ``actual`` matches one of them, that hint is the
    message; otherwise the message says what differs (type, shape, values).
    """
    expect_returned(actual, name=name)
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(
            f"`{name}` should return a torch.Tensor, "
            f"but returned a {type(actual).__name__}."
        )
    if actual.shape != expected.shape:
        for hint, wrong in (mistakes or {}).items():
            if wrong.shape == actual.shape and _close(actual, wrong, atol, rtol):
                raise AssertionError(f"`{name}`: {hint}")
        raise AssertionError(
            f"`{name}` returned shape {tuple(actual.shape)}, "
            f"expected {tuple(expected.shape)}."
        )
    if _close(actual, expected, atol, rtol):
        return
    for hint, wrong in (mistakes or {}).items():
        if wrong.shape == actual.shape and _close(actual, wrong, atol, rtol):
            raise AssertionError(f"`{name}`: {hint}")
    if torch.isnan(actual.detach().float()).any():
        raise AssertionError(
            f"`{name}` returned NaN values: is something divided by zero?"
        )
    a, b = actual.detach().double().cpu(), expected.detach().double().cpu()
    diff = (a - b).abs().max().item()
    raise AssertionError(
        f"`{name}` returned wrong values (largest difference {diff:.3g})."
    )


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    a = a.detach().double().cpu()
    b = b.detach().double().cpu()
    return bool(torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=False))
