"""Tests of chapter 3's exercise checks: the reference passes, each diagnosed mistake fails with its hint."""

from __future__ import annotations

import time

import pytest
import torch

from companion import leave_one_out
from companion.exercises import parametric_pooling as ex

BWS_CHECKS = [ex.check_batched_weighted_sum_small, ex.check_batched_weighted_sum_thorough]
LOO_CHECKS = [ex.check_leave_one_out_keys_small, ex.check_leave_one_out_keys_thorough]


# ---------------------------------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------------------------------


def test_reference_batched_weighted_sum_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    weights, values = torch.rand(5, 7, generator=gen), torch.randn(5, 7, 3, generator=gen)
    loop = torch.stack([sum(weights[i, j] * values[i, j] for j in range(7)) for i in range(5)])  # (5, 3)
    torch.testing.assert_close(ex.reference_batched_weighted_sum(weights, values), loop)


def test_reference_batched_weighted_sum_keeps_size_one_axes():
    assert ex.reference_batched_weighted_sum(torch.rand(4, 3), torch.randn(4, 3, 1)).shape == (4, 1)
    assert ex.reference_batched_weighted_sum(torch.rand(1, 3), torch.randn(1, 3, 5)).shape == (1, 5)
    assert ex.reference_batched_weighted_sum(torch.rand(1, 3), torch.randn(1, 3, 1)).shape == (1, 1)


def test_reference_leave_one_out_keys_drops_own_element():
    x = torch.tensor([3.0, 1.0, 4.0, 1.5])
    expected = torch.tensor([[1.0, 4.0, 1.5], [3.0, 4.0, 1.5], [3.0, 1.0, 1.5], [3.0, 1.0, 4.0]])
    assert torch.equal(ex.reference_leave_one_out_keys(x), expected)
    assert torch.equal(ex.reference_leave_one_out_keys(x), leave_one_out(x, x)[1])


# ---------------------------------------------------------------------------------------------------------------------
# batched_weighted_sum
# ---------------------------------------------------------------------------------------------------------------------


def bws_solution(weights, values):
    return torch.bmm(weights.unsqueeze(1), values).squeeze(1)  # (n, 1, m) @ (n, m, d) -> (n, 1, d) -> (n, d)


def bws_elementwise(weights, values):
    # Correct without bmm: the checks grade the result, not the route to it.
    return (weights.unsqueeze(-1) * values).sum(dim=1)


def bws_values_transposed_first(weights, values):
    # Correct too: (n, d, m) @ (n, m, 1) -> (n, d, 1), the same products in the other order.
    return torch.bmm(values.transpose(1, 2), weights.unsqueeze(-1)).squeeze(-1)


def bws_einsum(weights, values):
    return torch.einsum("nm,nmd->nd", weights, values)


@pytest.mark.parametrize("check", BWS_CHECKS)
@pytest.mark.parametrize(
    "fn", [bws_solution, bws_elementwise, bws_values_transposed_first, bws_einsum, ex.reference_batched_weighted_sum]
)
def test_bws_correct_answers_pass(check, fn):
    check(fn)


BWS_MISTAKES = {
    "weights_not_unsqueezed": (lambda w, v: torch.bmm(w, v).squeeze(1), r"batch1 must be.*weights.unsqueeze\(1\)"),
    "values_unsqueezed_like_the_example": (
        lambda w, v: torch.bmm(w.unsqueeze(1), v.unsqueeze(-1)).squeeze(1),
        r"already are a batch of matrices.*as they are",
    ),
    "weights_as_column": (
        lambda w, v: torch.bmm(w.unsqueeze(-1), v).squeeze(1),
        r"weights as a column.*put the weights first",
    ),
    "values_first": (
        lambda w, v: torch.bmm(v, w.unsqueeze(-1)).squeeze(-1),
        r"weights as a column \(n, m, 1\), or after the values",
    ),
    "values_transposed": (
        lambda w, v: torch.bmm(w.unsqueeze(1), v.transpose(1, 2)).squeeze(1),
        r"The values reached torch.bmm as \(n, d, m\).*do not transpose",
    ),
    "not_squeezed": (lambda w, v: torch.bmm(w.unsqueeze(1), v), r"shape \(n, 1, d\).*\.squeeze\(1\)"),
    "column_route_not_squeezed": (
        lambda w, v: torch.bmm(v.transpose(1, 2), w.unsqueeze(-1)),
        r"shape \(n, d, 1\).*\.squeeze\(-1\)",
    ),
    "flattened": (lambda w, v: torch.bmm(w.unsqueeze(1), v).reshape(-1), r"flat, \(n\*d,\)"),
    "transposed_result": (lambda w, v: bws_solution(w, v).T, r"shape \(d, n\), the transpose"),
    "matmul_broadcasts": (lambda w, v: w @ v, r"weights @ values broadcasts.*\(n, n, d\)"),
    "elementwise_without_unsqueeze": (
        lambda w, v: (w * v).sum(dim=1),
        r"must match the size.*weights.unsqueeze\(-1\)",
    ),
    "sum_over_queries": (lambda w, v: (w.unsqueeze(-1) * v).sum(dim=0), r"over dim 0 \(the queries\)"),
    "sum_over_components": (lambda w, v: (w.unsqueeze(-1) * v).sum(dim=-1), r"over the last dim.*the m keys"),
    "mean": (lambda w, v: (w.unsqueeze(-1) * v).mean(dim=1), r"weighted mean"),
}


@pytest.mark.parametrize("check", BWS_CHECKS)
@pytest.mark.parametrize("mistake", sorted(BWS_MISTAKES))
def test_bws_mistakes_get_their_hint(check, mistake):
    fn, hint = BWS_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(fn)


def test_bws_values_transposed_with_m_equal_d_gets_its_hint():
    # With m == d the transposed values fit torch.bmm and give wrong numbers instead of an error.
    gen = torch.Generator().manual_seed(0)
    weights, values = torch.softmax(torch.randn(3, 4, generator=gen), dim=-1), torch.randn(3, 4, 4, generator=gen)
    wrong = torch.bmm(weights.unsqueeze(1), values.transpose(1, 2)).squeeze(1)
    mistakes = ex._bws_mistakes(weights, values)
    hints = [hint for hint, out in mistakes.items() if out.shape == wrong.shape and torch.allclose(out, wrong)]
    assert len(hints) == 1 and "d components" in hints[0]
    with pytest.raises(AssertionError, match="do not transpose"):
        ex.check_batched_weighted_sum_thorough(
            lambda w, v: torch.bmm(w.unsqueeze(1), v.transpose(1, 2)).squeeze(1) if v.shape[1] == v.shape[2]
            else bws_solution(w, v)
        )


def test_bws_squeezing_away_d_is_caught_by_the_hidden_check():
    def squeeze_all(w, v):
        return torch.bmm(w.unsqueeze(1), v).squeeze()  # (n, 1, d) -> (n, d), but (n,) when d == 1

    ex.check_batched_weighted_sum_small(squeeze_all)  # the public cases have n > 1 and d > 1
    with pytest.raises(AssertionError, match=r"for d = 1 the result must still be \(n, 1\).*\.squeeze\(1\)"):
        ex.check_batched_weighted_sum_thorough(squeeze_all)


def test_bws_squeezing_away_n_is_caught_by_the_hidden_check():
    def drop_queries_if_one(w, v):
        out = bws_solution(w, v)
        return out[0] if out.shape[0] == 1 else out

    ex.check_batched_weighted_sum_small(drop_queries_if_one)
    with pytest.raises(AssertionError, match=r"for n = 1 the result must still be \(1, d\)"):
        ex.check_batched_weighted_sum_thorough(drop_queries_if_one)


@pytest.mark.parametrize(("n", "d", "hint"), [(5, 1, "for d = 1"), (1, 4, "for n = 1"), (1, 1, "0-d tensor")])
def test_bws_squeeze_hints_on_each_edge_case(n, d, hint):
    gen = torch.Generator().manual_seed(1)
    weights, values = torch.rand(n, 3, generator=gen), torch.randn(n, 3, d, generator=gen)
    with pytest.raises(AssertionError, match=hint):
        ex._expect_bws(lambda w, v: torch.bmm(w.unsqueeze(1), v).squeeze(), weights, values, seconds=10.0)


def test_bws_renormalising_is_caught_by_the_hidden_check():
    def renormalise(w, v):
        return bws_solution(w / w.sum(dim=-1, keepdim=True), v)

    ex.check_batched_weighted_sum_small(renormalise)  # the public cases use weights that sum to one
    with pytest.raises(AssertionError, match="do not normalise the weights"):
        ex.check_batched_weighted_sum_thorough(renormalise)


def test_bws_softmax_on_weights_gets_its_hint():
    with pytest.raises(AssertionError, match="do not apply a softmax"):
        ex.check_batched_weighted_sum_small(lambda w, v: bws_solution(torch.softmax(w, dim=-1), v))


def test_bws_float32_cast_fails_hidden_check():
    with pytest.raises(AssertionError, match="float32 for float64"):
        ex.check_batched_weighted_sum_thorough(lambda w, v: bws_solution(w.float(), v.float()))


@pytest.mark.parametrize(
    "fn",
    [
        lambda w, v: bws_solution(w.detach(), v),
        lambda w, v: bws_solution(w, v.detach()),
        lambda w, v: bws_solution(w, v).detach(),
    ],
    ids=["weights", "values", "result"],
)
def test_bws_detached_fails_hidden_check(fn):
    with pytest.raises(AssertionError, match="breaks autograd"):
        ex.check_batched_weighted_sum_thorough(fn)


def test_bws_numpy_route_fails_hidden_check():
    def via_numpy(w, v):
        return torch.from_numpy((w.detach().numpy()[:, :, None] * v.detach().numpy()).sum(1))

    ex.check_batched_weighted_sum_small(via_numpy)  # right values
    with pytest.raises(AssertionError, match="breaks autograd"):
        ex.check_batched_weighted_sum_thorough(via_numpy)


@pytest.mark.parametrize("check", BWS_CHECKS)
def test_bws_missing_return_and_ellipsis(check):
    def no_return(w, v):
        bws_solution(w, v)

    with pytest.raises(AssertionError, match="returned None.*return"):
        check(no_return)
    with pytest.raises(AssertionError, match=r"returned `\.\.\.`"):
        check(lambda w, v: ...)
    with pytest.raises(AssertionError, match="not implemented yet"):
        check(lambda w, v: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(AssertionError, match="is not defined"):
        check(None)
    with pytest.raises(AssertionError, match="should return a torch.Tensor"):
        check(lambda w, v: bws_solution(w, v).tolist())


@pytest.mark.parametrize("check", BWS_CHECKS)
def test_bws_endless_loop_times_out(check):
    def forever(w, v):
        while True:
            pass

    start = time.monotonic()
    with pytest.raises(AssertionError, match="longer than 0.2 s.*loop"):
        check(forever, seconds=0.2)
    assert time.monotonic() - start < 5


# ---------------------------------------------------------------------------------------------------------------------
# leave_one_out_keys
# ---------------------------------------------------------------------------------------------------------------------


def loo_solution(x):
    n = x.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool)  # (n, n), False on the diagonal
    return x.expand(n, n)[keep].reshape(n, n - 1)


def loo_by_loop(x):
    return torch.stack([torch.cat([x[:i], x[i + 1:]]) for i in range(x.shape[0])])


@pytest.mark.parametrize("check", LOO_CHECKS)
@pytest.mark.parametrize("fn", [loo_solution, loo_by_loop, ex.reference_leave_one_out_keys])
def test_loo_correct_answers_pass(check, fn):
    check(fn)


LOO_MISTAKES = {
    "kept_diagonal": (lambda x: x.expand(x.shape[0], x.shape[0]).clone(), r"row i still holds x\[i\]"),
    "same_element_every_row": (
        lambda x: x[:-1].expand(x.shape[0], x.shape[0] - 1).clone(),
        r"every row leaves out the same element x\[\d+\]",
    ),
    "off_by_one": (
        lambda x: torch.stack([torch.cat([x[:j], x[j + 1:]]) for j in [(i + 1) % len(x) for i in range(len(x))]]),
        r"row 0 leaves out x\[1\] instead of x\[0\]",
    ),
    "anti_diagonal": (
        lambda x: loo_solution(x).flip(0),
        r"row 0 leaves out x\[\d+\] instead of x\[0\]",
    ),
    "transposed": (lambda x: loo_solution(x).T, r"shape \(n-1, n\), the transpose"),
    "flat": (lambda x: x.expand(len(x), len(x))[~torch.eye(len(x), dtype=torch.bool)], r"is flat"),
    "shuffled_rows": (lambda x: loo_solution(x).flip(-1), r"another order"),
}


@pytest.mark.parametrize("check", LOO_CHECKS)
@pytest.mark.parametrize("mistake", sorted(LOO_MISTAKES))
def test_loo_mistakes_get_their_hint(check, mistake):
    fn, hint = LOO_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(fn)


def test_loo_removal_by_value_fails_on_repeated_values():
    def by_value(x):
        return torch.stack([x[x != x[i]] for i in range(x.shape[0])])

    ex.check_leave_one_out_keys_small(by_value)  # distinct values: indistinguishable from the right answer
    with pytest.raises(AssertionError, match="by its position, not by its value"):
        ex.check_leave_one_out_keys_thorough(by_value)


def test_loo_new_float32_tensor_fails_hidden_check():
    def via_list(x):
        rows = [[float(v) for j, v in enumerate(x) if j != i] for i in range(len(x))]
        return torch.tensor(rows)

    ex.check_leave_one_out_keys_small(via_list)
    with pytest.raises(AssertionError, match="float32 for a torch.float64 input"):
        ex.check_leave_one_out_keys_thorough(via_list)


@pytest.mark.parametrize("check", LOO_CHECKS)
def test_loo_missing_return_and_ellipsis(check):
    def no_return(x):
        loo_solution(x)

    with pytest.raises(AssertionError, match="returned None.*return"):
        check(no_return)
    with pytest.raises(AssertionError, match=r"returned `\.\.\.`"):
        check(lambda x: ...)
    with pytest.raises(AssertionError, match="should return a torch.Tensor"):
        check(lambda x: loo_solution(x).tolist())


@pytest.mark.parametrize("check", LOO_CHECKS)
def test_loo_endless_loop_times_out(check):
    def forever(x):
        while True:
            pass

    with pytest.raises(AssertionError, match="longer than 0.2 s.*loop"):
        check(forever, seconds=0.2)
