"""Exercise checks: compare a learner's answer with the reference and name the mistake.

Each chapter has a module here (``companion.exercises.<chapter topic>``) whose
``check_*`` functions are called by the chapter's otter-grader tests. A check
raises ``AssertionError`` whose message is a hint for the learner.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

__all__ = ["CheckTimeout", "expect_close", "run_limited", "time_limit"]


class CheckTimeout(Exception):
    """Raised inside code that ran past the time limit of a check (all chapters).

    Shapes: none.
    """


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``CheckTimeout`` in the block if it runs past ``seconds`` (all chapters).

    Shapes: none.

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
    if actual is None:
        raise AssertionError(
            f"`{name}` returned None: replace the `...` with your code, "
            "and end it with a `return` statement."
        )
    if actual is Ellipsis:
        raise AssertionError(
            f"`{name}` returned `...`: replace the `...` with your code."
        )
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
