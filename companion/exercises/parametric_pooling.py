"""Checks for the exercises of chapter 3 (parametric attention pooling): batched weighted sums, leave-one-out keys.

How a check works: companion.exercises.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..pooling import leave_one_out
from . import backpropagate, call_on_copies, expect_close, expect_differentiable

__all__ = [
    "FORBIDDEN",
    "reference_batched_weighted_sum",
    "reference_leave_one_out_keys",
    "check_batched_weighted_sum_small",
    "check_batched_weighted_sum_thorough",
    "check_leave_one_out_keys_small",
    "check_leave_one_out_keys_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "batched_weighted_sum": [],
    "leave_one_out_keys": ["companion.pooling.leave_one_out"],
}

_BWS = "batched_weighted_sum"
_LOO = "leave_one_out_keys"


# ---------------------------------------------------------------------------------------------------------------------
# batched_weighted_sum
# ---------------------------------------------------------------------------------------------------------------------


def reference_batched_weighted_sum(weights: Tensor, values: Tensor) -> Tensor:
    """Per query, the weighted sum of its value vectors (chapter 3, torch.bmm).  Shapes: (n, m), (n, m, d) -> (n, d)."""
    # (n, 1, m) @ (n, m, d) -> (n, 1, d): one row-times-matrix product per query; squeeze(1) keeps d even if d == 1
    return torch.bmm(weights.unsqueeze(1), values).squeeze(1)


def _bws_mistakes(weights: Tensor, values: Tensor) -> dict[str, Tensor]:
    """The outputs of the usual wrong answers keyed by their hints (first match wins).  Shapes: (n, m), (n, m, d)."""
    n, m, d = values.shape
    expected = reference_batched_weighted_sum(weights, values)  # (n, d)
    products = weights.unsqueeze(-1) * values  # (n, m, d): weights[i, j] * values[i, j, :]
    mistakes: dict[str, Tensor] = {}
    # Edge cases first: when d == 1 or n == 1 several mistakes give the same tensor, and these hints are sharper.
    if d == 1:
        mistakes[
            "for d = 1 the result must still be (n, 1), one vector of size 1 per query, but yours lost the d axis: "
            "`.squeeze()` removes every size-1 axis (and `.reshape(-1)` flattens); remove only the row axis "
            "of the (n, 1, d) product with `.squeeze(1)`."
        ] = expected.reshape(n)
    if n == 1:
        mistakes[
            "for n = 1 the result must still be (1, d), one row per query, but yours lost the query axis: "
            "`.squeeze()` removes every size-1 axis (and `.reshape(-1)` flattens); remove only the row axis "
            "of the (n, 1, d) product with `.squeeze(1)`."
        ] = expected.reshape(d)
    if n == 1 and d == 1:
        mistakes[
            "for n = 1 and d = 1 the result must still be (1, 1), but yours is a 0-d tensor: `.squeeze()` removes "
            "every size-1 axis; remove only the row axis of the (n, 1, d) product with `.squeeze(1)`."
        ] = expected.reshape(())
    mistakes.update({
        "the result has shape (n, 1, d), the raw output of torch.bmm: remove the size-1 row axis with "
        ".squeeze(1) to get (n, d).": expected.unsqueeze(1),
        "the result has shape (n, d, 1): remove the size-1 axis at the end with .squeeze(-1) to get (n, d).":
            expected.unsqueeze(-1),
        "weights @ values broadcasts the whole (n, m) weight matrix against every query's (m, d) values: "
        "(n, n, d), every query's weights with every query's values, n times the work. Give each query its own "
        "row instead, weights.unsqueeze(1) is (n, 1, m), and let torch.bmm pair it with that query's values: "
        "(n, 1, m) @ (n, m, d) -> (n, 1, d).": weights @ values,
        "the result is flat, (n*d,): .reshape(-1) runs the d components of all queries together; "
        "keep one row per query, (n, d), with .squeeze(1).": expected.reshape(-1),
        "the result has shape (d, n), the transpose: one row per query is wanted, (n, d).": expected.T,
        "the sum runs over dim 0 (the queries), giving (m, d); each query sums over its own m keys, dim 1 "
        "of the values.": products.sum(dim=0),
        "the sum runs over the last dim (the d components of each value vector), giving (n, m); the weighted sum "
        "runs over the m keys, dim 1 of the values, and keeps the d components.": products.sum(dim=-1),
        "that is a weighted mean, divided by m: the weights already sum to one where they come from a softmax, "
        "so just sum weights times values.": products.mean(dim=1),
        "do not normalise the weights again: this function is a plain weighted sum, whatever the weights are.":
            reference_batched_weighted_sum(weights / weights.sum(dim=-1, keepdim=True), values),
        "do not apply a softmax to the weights: they are attention weights already; this function only sums.":
            reference_batched_weighted_sum(torch.softmax(weights, dim=-1), values),
    })
    if m == d:  # otherwise this mistake cannot run: torch.bmm raises, and _call_bws names it
        mistakes[
            "the weights were multiplied with the d components of each value vector instead of with the m keys: "
            "values are (n, m, d) with the keys on dim 1, just what (n, 1, m) @ (n, m, d) needs; do not "
            "transpose them, and put the weights first."
        ] = torch.bmm(weights.unsqueeze(1), values.transpose(1, 2)).squeeze(1)
    return mistakes


_BMM_SIZES = re.compile(r"batch2 tensor to be: \[(\d+), (\d+)\] but got: \[(\d+), (\d+)\]")


def _bmm_size_hint(message: str, n: int, m: int, d: int) -> str:
    """Name the mistake behind torch.bmm's 'Expected size for first two dimensions of batch2' error."""
    general = (
        "torch.bmm multiplies (n, a, b) by (n, b, c): the weights go first as rows, weights.unsqueeze(1) is "
        "(n, 1, m), and the values second, as they are, (n, m, d)."
    )
    match = _BMM_SIZES.search(message)
    if match is None:
        return general
    expected, got = tuple(map(int, match.group(1, 2))), tuple(map(int, match.group(3, 4)))
    if expected == (n, m) and got == (n, d):
        return (
            "The values reached torch.bmm as (n, d, m): they come as (n, m, d), with the keys on dim 1, which is "
            "already what (n, 1, m) @ (n, m, d) needs; do not transpose them."
        )
    if got == (n, m) and expected in {(n, 1), (n, d)}:
        return (
            "torch.bmm got the weights as a column (n, m, 1), or after the values: put the weights first, as "
            "rows (weights.unsqueeze(1) is (n, 1, m)), then the values (n, m, d)."
        )
    return general


def _call_bws(fn: Any, weights: Tensor, values: Tensor, seconds: float) -> Any:
    """Run the learner's function on copies; name the mistake behind torch's shape errors."""
    n, m, d = values.shape
    hints = {
        "batch1 must be a 3D": "torch.bmm multiplies batches of matrices, so the weights (n, m) need a new axis: "
                               "weights.unsqueeze(1) is (n, 1, m), a row of weights per query.",
        "batch2 must be a 3D": "The values (n, m, d) already are a batch of matrices, one (m, d) per query: pass "
                               "them to torch.bmm as they are; only the weights need a new axis, "
                               "weights.unsqueeze(1).",
        "batch2 tensor to be": lambda message: _bmm_size_hint(message, n, m, d),
        "must match the size of tensor": "weights (n, m) times values (n, m, d) lines the axes up from the right, "
                                         "m against d. With torch.bmm, weights.unsqueeze(1) is (n, 1, m); for an "
                                         "elementwise product, weights.unsqueeze(-1) is (n, m, 1).",
    }
    return call_on_copies(fn, weights, values, name=_BWS, seconds=seconds, hints=hints)


def _expect_bws(fn: Any, weights: Tensor, values: Tensor, seconds: float) -> Tensor:
    actual = _call_bws(fn, weights, values, seconds)
    expected = reference_batched_weighted_sum(weights, values)
    expect_close(actual, expected, name=_BWS, mistakes=_bws_mistakes(weights, values))
    return actual


def _random_case(
    gen: torch.Generator, n: int, m: int, d: int, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Softmax weights and normal values.  Shapes: -> (n, m), (n, m, d)."""
    weights = torch.softmax(torch.randn(n, m, generator=gen, dtype=dtype), dim=-1)
    return weights, torch.randn(n, m, d, generator=gen, dtype=dtype)


def check_batched_weighted_sum_small(fn: Callable[[Tensor, Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: a hand-made (2, 3, 2) case and a small random one.  Shapes: fn (n, m), (n, m, d) -> (n, d)."""
    weights = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])  # (2, 3), rows sum to one
    values = torch.tensor(
        [[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]], [[4.0, -1.0], [5.0, 0.0], [6.0, 1.0]]]
    )  # (2, 3, 2): query i has 3 value vectors of size 2
    _expect_bws(fn, weights, values, seconds)  # expected [[1.5, 15.0], [5.6, 0.6]]

    gen = torch.Generator().manual_seed(3)
    _expect_bws(fn, *_random_case(gen, 4, 6, 3), seconds)


def check_batched_weighted_sum_thorough(fn: Callable[[Tensor, Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: random shapes, d = 1, n = 1, m = 1, unnormalised weights, float64, autograd.  Shapes: as basic."""
    gen = torch.Generator().manual_seed(11)
    # General shapes first (their hints are sharper), then the size-1 edge cases: d = 1 before n = 1.
    for n, m, d in [(5, 7, 3), (9, 4, 6), (3, 12, 5), (4, 4, 4), (6, 5, 1), (1, 5, 4), (7, 1, 3), (1, 3, 1)]:
        _expect_bws(fn, *_random_case(gen, n, m, d), seconds)

    # Any weights, not only softmax outputs: the function must not normalise them.
    weights = torch.rand(6, 4, generator=gen) * 3  # (6, 4), rows do not sum to one
    values = torch.randn(6, 4, 2, generator=gen)
    _expect_bws(fn, weights, values, seconds)

    actual = _expect_bws(fn, *_random_case(gen, 5, 8, 3, dtype=torch.float64), seconds)
    if actual.dtype != torch.float64:
        raise AssertionError(
            f"`{_BWS}` returned {actual.dtype} for float64 inputs: compute with the tensors you are given "
            "instead of building new ones."
        )

    # Later chapters train through this sum, so the result must keep the autograd graph.
    weights, values = _random_case(gen, 3, 4, 2)
    weights.requires_grad_()
    values.requires_grad_()
    out = _call_bws(fn, weights, values, seconds)
    expect_differentiable(out, name=_BWS, needs="gradients must flow back to the weights and the values")
    backpropagate(out, name=_BWS, reaches={"the weights": weights, "the values": values})
    # d(sum of all outputs)/d weights[i, j] = sum_k values[i, j, k];  d/d values[i, j, k] = weights[i, j]
    expect_close(weights.grad, values.detach().sum(-1), name=f"the gradient of {_BWS} with respect to the weights")
    expect_close(
        values.grad, weights.detach().unsqueeze(-1).expand(3, 4, 2),
        name=f"the gradient of {_BWS} with respect to the values",
    )


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
    try:
        actual = call_on_copies(fn, x, name=_LOO, seconds=seconds)
        _expect_loo_values(actual, x, diagnose=not duplicates)
    except AssertionError as err:
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


def _expect_loo_values(actual: Any, x: Tensor, diagnose: bool) -> None:
    """Compare with the reference; ``diagnose``: name which element each row left out (x has distinct values)."""
    n = x.shape[0]
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
    except AssertionError:
        if diagnose and isinstance(actual, Tensor) and actual.shape == expected.shape:
            _diagnose_loo(actual, x)
        raise


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
