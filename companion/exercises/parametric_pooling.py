"""Checks for the exercises of chapter 3 (parametric attention pooling): batched weighted sums, leave-one-out keys.

Each ``check_*`` function calls the learner's code under a time limit, compares
it with the reference and raises ``AssertionError`` with a hint that names the
likely mistake. ``*_small`` checks are public (``grader.check``); ``*_thorough``
checks are hidden and try more shapes, seeds and edge cases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..pooling import leave_one_out
from . import expect_close, run_limited

__all__ = [
    "reference_batched_weighted_sum",
    "reference_leave_one_out_keys",
    "check_batched_weighted_sum_small",
    "check_batched_weighted_sum_thorough",
    "check_leave_one_out_keys_small",
    "check_leave_one_out_keys_thorough",
]

_BWS = "batched_weighted_sum"
_LOO = "leave_one_out_keys"


# ---------------------------------------------------------------------------------------------------------------------
# batched_weighted_sum
# ---------------------------------------------------------------------------------------------------------------------


def reference_batched_weighted_sum(weights: Tensor, values: Tensor) -> Tensor:
    """Row-wise sums sum_j weights[i, j] values[i, j] by torch.bmm, chapter 3.  Shapes: (n, m), (n, m) -> (n,)."""
    # (n, 1, m) @ (n, m, 1) -> (n, 1, 1): one 1x1 product per row
    return torch.bmm(weights.unsqueeze(1), values.unsqueeze(-1)).reshape(-1)


def _bws_mistakes(weights: Tensor, values: Tensor) -> dict[str, Tensor]:
    """The outputs of the usual wrong answers, each keyed by its hint."""
    n, m = weights.shape
    expected = reference_batched_weighted_sum(weights, values)
    return {
        "the result has shape (n, 1, 1), the raw output of torch.bmm: reshape it to (n,) with .reshape(-1).":
            expected.reshape(n, 1, 1),
        "the result has shape (n, 1): flatten it to (n,) with .reshape(-1).": expected.reshape(n, 1),
        "the result has shape (1, n): flatten it to (n,) with .reshape(-1).": expected.reshape(1, n),
        "weights @ values.T multiplies every row of weights with every row of values, an (n, n) matrix "
        "whose diagonal is the answer; torch.bmm pairs row i of weights with row i of values only: "
        "(n, 1, m) @ (n, m, 1) -> (n, 1, 1).": weights @ values.T,
        "(n, m, 1) @ (n, 1, m) is an outer product per row, (n, m, m): put the weights first as (n, 1, m) "
        "(unsqueeze(1)) and the values second as (n, m, 1) (unsqueeze(-1)).":
            torch.bmm(weights.unsqueeze(-1), values.unsqueeze(1)),
        "the sum runs over dim 0 (the queries); each query sums over its own m keys (the last dim).":
            (weights * values).sum(dim=0),
        "that is a weighted mean, divided by m: the weights already sum to one where they come from a softmax, "
        "so just sum weights times values.": (weights * values).mean(dim=-1),
        "do not normalise the weights again: this function is a plain weighted sum, whatever the weights are.":
            reference_batched_weighted_sum(weights / weights.sum(dim=-1, keepdim=True), values),
        "do not apply a softmax to the weights: they are attention weights already; this function only sums.":
            reference_batched_weighted_sum(torch.softmax(weights, dim=-1), values),
    }


def _call_bws(fn: Any, weights: Tensor, values: Tensor, seconds: float) -> Any:
    """Run the learner's function on copies; turn torch.bmm's shape errors into hints."""
    try:
        return run_limited(fn, weights.clone(), values.clone(), name=_BWS, seconds=seconds)
    except AssertionError as err:
        message = str(err).rstrip(".")
        if "3D" in message or "3-D" in message:
            raise AssertionError(
                f"{message}. torch.bmm multiplies batches of matrices, so both inputs must be 3-D: "
                "weights.unsqueeze(1) is (n, 1, m) and values.unsqueeze(-1) is (n, m, 1)."
            ) from None
        if "batch2" in message or "batch1" in message:
            raise AssertionError(
                f"{message}. The inner sizes must match: (n, 1, m) @ (n, m, 1); "
                "did you unsqueeze the values at dim 1 instead of at the end (-1)?"
            ) from None
        raise


def _expect_bws(fn: Any, weights: Tensor, values: Tensor, seconds: float) -> Tensor:
    actual = _call_bws(fn, weights, values, seconds)
    expected = reference_batched_weighted_sum(weights, values)
    expect_close(actual, expected, name=_BWS, mistakes=_bws_mistakes(weights, values))
    return actual


def check_batched_weighted_sum_small(fn: Callable[[Tensor, Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: a hand-made (2, 3) case and a small random one.  Shapes: fn (n, m), (n, m) -> (n,)."""
    weights = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])  # (2, 3), rows sum to one
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (2, 3)
    _expect_bws(fn, weights, values, seconds)  # expected [1.5, 5.6]

    gen = torch.Generator().manual_seed(3)
    weights = torch.softmax(torch.randn(4, 6, generator=gen), dim=-1)  # (4, 6)
    values = torch.randn(4, 6, generator=gen)  # (4, 6)
    _expect_bws(fn, weights, values, seconds)


def check_batched_weighted_sum_thorough(fn: Callable[[Tensor, Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: random shapes, n = 1 or m = 1, unnormalised weights, float64, autograd.  Shapes: as basic."""
    gen = torch.Generator().manual_seed(11)
    for n, m in [(5, 5), (9, 4), (3, 12), (1, 5), (7, 1)]:  # general shapes first: their hints are sharper
        weights = torch.softmax(torch.randn(n, m, generator=gen), dim=-1)  # (n, m)
        values = torch.randn(n, m, generator=gen)  # (n, m)
        _expect_bws(fn, weights, values, seconds)

    # Any weights, not only softmax outputs: the function must not normalise them.
    weights = torch.rand(6, 4, generator=gen) * 3  # (6, 4), rows do not sum to one
    values = torch.randn(6, 4, generator=gen)
    _expect_bws(fn, weights, values, seconds)

    weights = torch.softmax(torch.randn(5, 8, generator=gen, dtype=torch.float64), dim=-1)
    values = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    actual = _expect_bws(fn, weights, values, seconds)
    if actual.dtype != torch.float64:
        raise AssertionError(
            f"`{_BWS}` returned {actual.dtype} for float64 inputs: compute with the tensors you are given "
            "instead of building new ones."
        )

    # The chapter trains through this sum, so the result must keep the autograd graph.
    weights = torch.softmax(torch.randn(3, 4, generator=gen), dim=-1).requires_grad_()
    values = torch.randn(3, 4, generator=gen)
    try:
        out = run_limited(fn, weights, values, name=_BWS, seconds=seconds)
        if not isinstance(out, Tensor) or not out.requires_grad:
            raise RuntimeError("no gradient")
        out.sum().backward()
    except (AssertionError, RuntimeError):
        raise AssertionError(
            f"`{_BWS}` breaks autograd: gradients cannot flow back to the weights. Stay in torch "
            "(no .numpy(), .item(), .detach() or torch.tensor(...) on the inputs)."
        ) from None
    expect_close(weights.grad, values.detach(), name=f"the gradient of {_BWS} with respect to the weights")


# ---------------------------------------------------------------------------------------------------------------------
# leave_one_out_keys
# ---------------------------------------------------------------------------------------------------------------------


def reference_leave_one_out_keys(x: Tensor) -> Tensor:
    """Row i holds x without its i-th element, in order (chapter 3's leave_one_out).  Shapes: (n,) -> (n, n-1)."""
    keys, _ = leave_one_out(x, x)
    return keys


def _left_out_position(row: Tensor, x: Tensor) -> int | None:
    """The position j such that row equals x with element j removed, or None."""
    n = x.shape[0]
    for j in range(n):
        if torch.equal(row, torch.cat([x[:j], x[j + 1:]])):
            return j
    return None


def _diagnose_loo(actual: Tensor, x: Tensor) -> None:
    """Name the mistake of an (n, n-1) answer whose values are wrong; x has distinct values."""
    n = x.shape[0]
    actual = actual.detach().to(device=x.device, dtype=x.dtype)
    left_out = [_left_out_position(actual[i], x) for i in range(n)]
    if all(j is not None for j in left_out):
        if len(set(left_out)) == 1:
            j = left_out[0]
            raise AssertionError(
                f"`{_LOO}`: every row leaves out the same element x[{j}]; row i must leave out its own "
                "element x[i] (the diagonal of the (n, n) grid of pairs)."
            )
        i = next(i for i, j in enumerate(left_out) if j != i)
        raise AssertionError(
            f"`{_LOO}`: row {i} leaves out x[{left_out[i]}] instead of x[{i}]: row i must leave out its own "
            "element, i.e. remove the diagonal (mask ~torch.eye(n, dtype=torch.bool))."
        )
    expected = reference_leave_one_out_keys(x)
    same_sets = torch.equal(actual.sort(dim=-1).values, expected.sort(dim=-1).values)
    if same_sets:
        raise AssertionError(
            f"`{_LOO}`: each row holds the right elements but in another order; keep the original order, "
            "so that the keys stay paired with the values cut the same way."
        )


def _expect_loo(fn: Any, x: Tensor, seconds: float, duplicates: bool = False) -> Tensor:
    n = x.shape[0]
    try:
        actual = run_limited(fn, x.clone(), name=_LOO, seconds=seconds)
    except AssertionError as err:
        if duplicates:
            raise AssertionError(
                f"{err} (on an x with repeated values: remove element i by its position, not by its value; "
                "x[x != x[i]] removes every copy)"
            ) from None
        raise
    expected = reference_leave_one_out_keys(x)
    full = x.expand(n, n)  # (n, n): every row holds every element
    mistakes = {
        "row i still holds x[i]: remove the diagonal so that each row holds the n-1 OTHER elements, "
        "shape (n, n-1).": full,
        "the result has shape (n-1, n), the transpose: one row per element of x is wanted, (n, n-1).":
            expected.T,
        "the result is flat: reshape the kept elements to (n, n-1).": expected.reshape(-1),
    }
    try:
        # The answer copies elements of x, so it must match exactly (rtol only forgives a float32 round trip).
        expect_close(actual, expected, name=_LOO, mistakes=mistakes, atol=0, rtol=1e-6)
    except AssertionError as err:
        if isinstance(actual, Tensor) and actual.shape == expected.shape and not duplicates:
            _diagnose_loo(actual, x)
        if duplicates:
            raise AssertionError(
                f"{err} (on an x with repeated values: remove element i by its position, not by its value; "
                "x[x != x[i]] removes every copy)"
            ) from None
        raise
    if actual.dtype != x.dtype:
        raise AssertionError(
            f"`{_LOO}` returned {actual.dtype} for a {x.dtype} input: index x itself instead of building "
            "a new tensor, so the dtype (and the device) stay those of x."
        )
    return actual


def check_leave_one_out_keys_small(fn: Callable[[Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: x = [0, 1, 2, 3] and a random sorted x of length 6.  Shapes: fn (n,) -> (n, n-1)."""
    _expect_loo(fn, torch.arange(4.0), seconds)  # rows [1,2,3], [0,2,3], [0,1,3], [0,1,2]
    gen = torch.Generator().manual_seed(5)
    x = torch.sort(torch.rand(6, generator=gen) * 5).values  # (6,)
    _expect_loo(fn, x, seconds)


def check_leave_one_out_keys_thorough(fn: Callable[[Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: n = 2, unsorted and larger x, repeated values, float64.  Shapes: as basic."""
    _expect_loo(fn, torch.tensor([2.0, -1.0]), seconds)  # the smallest case: (2, 1)
    gen = torch.Generator().manual_seed(17)
    for n in (3, 10, 50):
        _expect_loo(fn, torch.randn(n, generator=gen), seconds)  # unsorted, distinct values
    _expect_loo(fn, torch.randn(7, generator=gen, dtype=torch.float64), seconds)
    x = torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0, 3.0])  # repeated values: removal must be by position
    _expect_loo(fn, x, seconds, duplicates=True)
