"""Tests for companion.exercises.attention_cues: the reference passes, each diagnosed mistake gets its hint."""
import pytest
import torch

from companion.exercises import attention_cues as ex

NORMALIZE_CHECKS = [ex.check_normalize_scores_values, ex.check_normalize_scores_thorough]
TOP_K_CHECKS = [ex.check_top_k_weights_values, ex.check_top_k_weights_thorough]


# --- normalize_scores --------------------------------------------------------------------------------------


def normalize_scores(scores):
    """A learner's correct answer: a softmax over the keys, written with exp and a sum."""
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def normalize_over_queries(scores):
    e = torch.exp(scores - scores.amax(dim=0, keepdim=True))
    return e / e.sum(dim=0, keepdim=True)


def normalize_without_exp(scores):
    return scores / scores.sum(dim=-1, keepdim=True)


def normalize_whole_tensor(scores):
    e = torch.exp(scores)
    return e / e.sum()


def exp_without_sum(scores):
    return torch.exp(scores)


def normalize_negated(scores):
    e = torch.exp(-scores)
    return e / e.sum(dim=-1, keepdim=True)


def normalize_naive(scores):
    """Right formula without the max shift: exact for small scores, NaN once exp overflows."""
    e = torch.exp(scores)
    return e / e.sum(dim=-1, keepdim=True)


def normalize_along_dim1(scores):
    e = torch.exp(scores - scores.amax(dim=1, keepdim=True))
    return e / e.sum(dim=1, keepdim=True)


def normalize_in_place(scores):
    scores -= scores.amax(dim=-1, keepdim=True)
    scores.exp_()
    return scores / scores.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("check", NORMALIZE_CHECKS)
def test_normalize_reference_passes(check):
    check(normalize_scores)


@pytest.mark.parametrize("check", NORMALIZE_CHECKS)
@pytest.mark.parametrize(
    "wrong,hint",
    [
        (normalize_over_queries, r"normalised over the queries \(dim=0\)"),
        (normalize_without_exp, r"forgot torch\.exp"),
        (normalize_whole_tensor, r"normalised over the whole tensor"),
        (exp_without_sum, r"forgot to divide by the sum"),
        (normalize_negated, r"wrong sign"),
        (normalize_in_place, r"changed its input `scores` in place"),
    ],
)
def test_normalize_mistakes_get_their_hint(check, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_normalize_public_check_accepts_the_unshifted_formula_but_hidden_check_catches_overflow():
    ex.check_normalize_scores_values(normalize_naive)  # small scores: the formula is right
    with pytest.raises(AssertionError, match=r"exp overflowed.*Subtract each row's maximum"):
        ex.check_normalize_scores_thorough(normalize_naive)


def test_normalize_hidden_check_catches_dim1_on_batched_scores():
    ex.check_normalize_scores_values(normalize_along_dim1)  # identical to dim=-1 on a matrix
    with pytest.raises(AssertionError, match=r"normalised along dim=1: for batched scores"):
        ex.check_normalize_scores_thorough(normalize_along_dim1)


@pytest.mark.parametrize(
    "ready_made",
    [
        lambda s: torch.softmax(s, dim=-1),
        lambda s: torch.nn.functional.softmax(s, dim=-1),
        lambda s: s.softmax(dim=-1),
        lambda s: torch.special.softmax(s, dim=-1),
    ],
)
def test_normalize_ready_made_softmax_is_refused_and_restored(ready_made):
    with pytest.raises(AssertionError, match=r"raised RuntimeError: .*torch\.softmax is off limits"):
        ex.check_normalize_scores_values(ready_made)
    # the patch is undone afterwards
    torch.testing.assert_close(ready_made(torch.tensor([0.0, 0.0])), torch.tensor([0.5, 0.5]))


def test_normalize_hidden_check_names_the_axis_when_a_batched_input_crashes():
    def matrix_only(scores):
        """Right for (n_k,) and (n_q, n_k); .t() refuses three axes."""
        e = torch.exp(scores.t() - scores.t().amax(dim=0))
        return (e / e.sum(dim=0)).t()

    ex.check_normalize_scores_values(matrix_only)
    with pytest.raises(AssertionError, match=r"raised RuntimeError.*shape \(2, 3, 4\).*dim=-1, the keys' axis"):
        ex.check_normalize_scores_thorough(matrix_only)


# --- top_k_weights -----------------------------------------------------------------------------------------


def top_k_weights(scores, k):
    """A learner's correct answer: 1/k on the k highest scores of each row."""
    idx = scores.topk(k, dim=-1).indices
    return torch.zeros_like(scores).scatter(-1, idx, 1.0 / k)


def top_k_by_threshold(scores, k):
    """Another correct answer: compare with the k-th largest score of the row."""
    kth = scores.sort(dim=-1, descending=True).values[..., k - 1 : k]
    return (scores >= kth).to(scores.dtype) / k


def bottom_k(scores, k):
    idx = scores.topk(k, dim=-1, largest=False).indices
    return torch.zeros_like(scores).scatter(-1, idx, 1.0 / k)


def ones_not_divided(scores, k):
    idx = scores.topk(k, dim=-1).indices
    return torch.zeros_like(scores).scatter(-1, idx, 1.0)


def top_k_over_queries(scores, k):
    idx = scores.topk(k, dim=0).indices
    return torch.zeros_like(scores).scatter(0, idx, 1.0 / k)


def indices_only(scores, k):
    return scores.topk(k, dim=-1).indices


def top_scores_only(scores, k):
    return scores.topk(k, dim=-1).values


def softmax_of_top_k(scores, k):
    top = scores.topk(k, dim=-1)
    return torch.zeros_like(scores).scatter(-1, top.indices, torch.softmax(top.values, dim=-1))


def integer_weights(scores, k):
    idx = scores.topk(k, dim=-1).indices
    return torch.zeros(scores.shape, dtype=torch.long).scatter(-1, idx, 1)


def top_k_in_place(scores, k):
    idx = scores.topk(k, dim=-1).indices
    scores.zero_()
    return scores.scatter(-1, idx, 1.0 / k)


@pytest.mark.parametrize("check", TOP_K_CHECKS)
@pytest.mark.parametrize("right", [top_k_weights, top_k_by_threshold])
def test_top_k_correct_answers_pass(check, right):
    check(right)


@pytest.mark.parametrize("check", TOP_K_CHECKS)
@pytest.mark.parametrize(
    "wrong,hint",
    [
        (bottom_k, r"k lowest scores"),
        (ones_not_divided, r"each row sums to k"),
        (indices_only, r"returned the indices of the top k keys"),
        (top_scores_only, r"returned the top k scores"),
        (softmax_of_top_k, r"count equally"),
        (integer_weights, r"returned a torch\.int64 tensor"),
        (top_k_in_place, r"changed its input `scores` in place"),
    ],
)
def test_top_k_mistakes_get_their_hint(check, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_top_k_over_queries_gets_its_hint_where_it_differs():
    with pytest.raises(AssertionError, match=r"along the queries \(dim=0\)"):
        ex.check_top_k_weights_values(top_k_over_queries)
    with pytest.raises(AssertionError, match=r"along the queries \(dim=0\)"):
        ex.check_top_k_weights_thorough(top_k_over_queries)
