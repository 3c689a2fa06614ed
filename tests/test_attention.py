"""Masked softmax, additive and scaled dot-product attention (chapter 4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from companion.attention import (
    AdditiveAttention,
    DotProductAttention,
    fused_dot_product_attention,
    masked_softmax,
    valid_lens_to_mask,
)
from conftest import rand


# --------------------------------------------------------------------------- masked_softmax


def test_masked_softmax_without_mask_is_softmax():
    X = rand(2, 3, 5)
    assert torch.equal(masked_softmax(X), F.softmax(X, dim=-1))
    assert torch.equal(masked_softmax(X, None), F.softmax(X, dim=-1))


def test_masked_softmax_ignores_padding_per_sequence():
    X = rand(2, 3, 5)
    w = masked_softmax(X, torch.tensor([2, 4]))
    assert (w[0, :, 2:] == 0).all() and (w[1, :, 4:] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    # The visible part is the softmax of the visible scores alone.
    torch.testing.assert_close(w[0, :, :2], F.softmax(X[0, :, :2], dim=-1))
    torch.testing.assert_close(w[1, :, :4], F.softmax(X[1, :, :4], dim=-1))


def test_masked_softmax_lengths_per_query():
    X = rand(2, 3, 4)
    lens = torch.tensor([[1, 2, 4], [3, 3, 1]])
    w = masked_softmax(X, lens)
    for b in range(2):
        for i in range(3):
            n = int(lens[b, i])
            torch.testing.assert_close(w[b, i, :n], F.softmax(X[b, i, :n], dim=-1))
            assert (w[b, i, n:] == 0).all()


def test_masked_softmax_bool_mask_equals_lengths():
    X = rand(3, 2, 6)
    lens = torch.tensor([1, 6, 3])
    mask = torch.arange(6)[None, None, :] < lens[:, None, None]  # (3, 1, 6), broadcasts over queries
    torch.testing.assert_close(masked_softmax(X, mask), masked_softmax(X, lens), rtol=0, atol=0)
    torch.testing.assert_close(masked_softmax(X, mask.expand(3, 2, 6)), masked_softmax(X, lens), rtol=0, atol=0)


def test_masked_softmax_bool_mask_may_have_holes():
    # A mask is not only a prefix: key 1 hidden, keys 0 and 2 visible.
    X = rand(1, 1, 3)
    w = masked_softmax(X, torch.tensor([[[True, False, True]]]))
    expected = F.softmax(X[0, 0, [0, 2]], dim=-1)
    torch.testing.assert_close(w[0, 0, [0, 2]], expected)
    assert w[0, 0, 1] == 0


def test_masked_softmax_fully_masked_row_gives_zero_weights_not_nan():
    X = rand(2, 3, 4, dtype=torch.float32).requires_grad_()
    w = masked_softmax(X, torch.tensor([[0, 2, 4], [0, 0, 1]]))
    assert torch.isfinite(w).all()
    assert (w[0, 0] == 0).all() and (w[1, :2] == 0).all()
    torch.testing.assert_close(w[0, 1:].sum(-1), torch.ones(2))
    (w * rand(2, 3, 4, seed=1, dtype=torch.float32)).sum().backward()
    assert torch.isfinite(X.grad).all()
    assert (X.grad[0, 0] == 0).all() and (X.grad[1, :2] == 0).all()
    # A bool mask with a row of False behaves the same.
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[1, 2] = False
    assert (masked_softmax(X, mask)[1, 2] == 0).all()


def test_masked_softmax_gradient_matches_finite_differences():
    X = rand(2, 3, 4).requires_grad_()
    lens = torch.tensor([[0, 2, 4], [1, 3, 2]])
    assert torch.autograd.gradcheck(lambda t: masked_softmax(t, lens), (X,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_masked_softmax_large_scores_and_low_precision(dtype):
    X = (torch.tensor([[[1e4, -1e4, 3.0], [5.0, 5.0, 5.0]]]) if dtype != torch.float16
         else torch.tensor([[[6e4, -6e4, 3.0], [5.0, 5.0, 5.0]]])).to(dtype)
    w = masked_softmax(X, torch.tensor([[2, 0]]))
    assert w.dtype == dtype and torch.isfinite(w).all()
    torch.testing.assert_close(w.float(), torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]))


def test_masked_softmax_differs_from_uniform_on_empty_rows():
    # The d2l convention fills masked scores with -1e6, so an empty row becomes uniform: ours is zero.
    X = rand(1, 1, 5)
    d2l_style = F.softmax(X.masked_fill(torch.ones_like(X, dtype=torch.bool), -1e6), dim=-1)
    torch.testing.assert_close(d2l_style, torch.full_like(X, 0.2))
    assert (masked_softmax(X, torch.tensor([0])) == 0).all()


@pytest.mark.parametrize(
    "X, valid_lens, message",
    [
        (torch.zeros(3, 4), torch.tensor([1, 2, 3]), r"X must be 3-D, got shape \(3, 4\)"),
        (torch.zeros(2, 3, 4), torch.tensor([1, 2, 3]), r"batch size 2 .* got valid_lens \(3,\)"),
        (torch.zeros(2, 3, 4), torch.tensor([[1, 2], [3, 4]]), r"shape \(B, n_q\) with n_q = 3, got \(2, 2\)"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 3, 1, dtype=torch.long),
         r"\(B,\) or \(B, n_q\), got \(2, 3, 1\)"),
        (torch.zeros(2, 3, 4), torch.tensor([1, -1]), r"\[0, n_k\] = \[0, 4\], got values from -1 to 1"),
        (torch.zeros(2, 3, 4), torch.tensor([1, 5]), r"\[0, 4\], got values from 1 to 5"),
        (torch.zeros(2, 3, 4), torch.tensor([1.0, 2.0]), r"must hold integers .* torch.float32"),
        (torch.zeros(2, 3, 4), torch.ones(2, 2, 4, dtype=torch.bool),
         r"broadcast to the scores' shape \(2, 3, 4\) .* got mask \(2, 2, 4\)"),
        # (batch, n_k) would silently broadcast as (n_q, n_k) when batch == n_q: refused.
        (torch.zeros(3, 3, 4), torch.ones(3, 4, dtype=torch.bool), r"must be 3-D .* got mask \(3, 4\)"),
        (torch.zeros(2, 3, 4), torch.ones(2, 3, 4, 1, dtype=torch.bool), r"got mask \(2, 3, 4, 1\)"),
        (torch.zeros(2, 3, 4), [1, 2], r"None or a torch.Tensor, got list"),
    ],
)
def test_masked_softmax_rejects_bad_input(X, valid_lens, message):
    with pytest.raises(ValueError, match=message):
        masked_softmax(X, valid_lens)


def test_valid_lens_to_mask():
    mask = valid_lens_to_mask(torch.tensor([0, 2]), n_q=2, n_k=3)
    expected = torch.tensor([[[False] * 3] * 2, [[True, True, False]] * 2])
    assert torch.equal(mask, expected)
    per_query = valid_lens_to_mask(torch.tensor([[1, 3]]), n_q=2, n_k=3)
    assert torch.equal(per_query, torch.tensor([[[True, False, False], [True, True, True]]]))


# --------------------------------------------------------------------------- additive attention


def notes_example():
    """The notes' (and d2l's) example: one 20-d query per sequence, ten identical 2-d keys."""
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(2, 1, 20, generator=gen)
    keys = torch.ones(2, 10, 2)
    values = torch.arange(40, dtype=torch.float32).reshape(1, 10, 4).repeat(2, 1, 1)
    return queries, keys, values, torch.tensor([2, 6])


def test_additive_attention_on_the_notes_example():
    torch.manual_seed(0)
    attention = AdditiveAttention(num_hiddens=8, dropout=0.1, key_size=2, query_size=20).eval()
    queries, keys, values, valid_lens = notes_example()
    out = attention(queries, keys, values, valid_lens)
    assert out.shape == (2, 1, 4) and attention.attention_weights.shape == (2, 1, 10)
    # Identical keys give identical scores, so the weights are uniform over the valid keys.
    expected_w = torch.zeros(2, 1, 10)
    expected_w[0, 0, :2], expected_w[1, 0, :6] = 1 / 2, 1 / 6
    torch.testing.assert_close(attention.attention_weights, expected_w)
    torch.testing.assert_close(out, torch.tensor([[[2.0, 3.0, 4.0, 5.0]], [[10.0, 11.0, 12.0, 13.0]]]))


def test_additive_score_matches_the_formula_pair_by_pair():
    torch.manual_seed(1)
    attention = AdditiveAttention(num_hiddens=5, dropout=0.0, key_size=3, query_size=4).double()
    q, k, v = rand(2, 3, 4, seed=1), rand(2, 6, 3, seed=2), rand(2, 6, 2, seed=3)
    attention(q, k, v)
    W_q, W_k, w_v = attention.W_q.weight, attention.W_k.weight, attention.w_v.weight[0]
    scores = torch.empty(2, 3, 6, dtype=torch.float64)
    for b in range(2):
        for i in range(3):
            for j in range(6):
                scores[b, i, j] = w_v @ torch.tanh(W_q @ q[b, i] + W_k @ k[b, j])
    torch.testing.assert_close(attention.attention_weights, F.softmax(scores, dim=-1))


def test_additive_attention_lazy_and_explicit_sizes_agree():
    torch.manual_seed(2)
    explicit = AdditiveAttention(6, 0.0, key_size=3, query_size=7)
    lazy = AdditiveAttention(6, 0.0)
    q, k = rand(2, 4, 7, dtype=torch.float32), rand(2, 5, 3, seed=1, dtype=torch.float32)
    v = rand(2, 5, 2, dtype=torch.float32)
    lazy(q, k, v)  # materialise the lazy weights
    lazy.load_state_dict(explicit.state_dict())
    lens = torch.tensor([3, 5])
    torch.testing.assert_close(lazy(q, k, v, lens), explicit(q, k, v, lens))


def test_additive_attention_has_no_biases():
    attention = AdditiveAttention(8, 0.0, key_size=2, query_size=20)
    names = {name for name, _ in attention.named_parameters()}
    assert names == {"W_q.weight", "W_k.weight", "w_v.weight"}


def test_additive_attention_dropout_only_in_training():
    torch.manual_seed(3)
    attention = AdditiveAttention(8, 0.5, key_size=2, query_size=3)
    q, k, v = rand(1, 2, 3, dtype=torch.float32), rand(1, 50, 2, dtype=torch.float32), torch.ones(1, 50, 1)
    out = attention(q, k, v)
    # The stored weights are before dropout (rows sum to one); the output saw dropped weights.
    torch.testing.assert_close(attention.attention_weights.sum(-1), torch.ones(1, 2))
    assert not torch.allclose(out, torch.ones(1, 2, 1))
    attention.eval()
    torch.testing.assert_close(attention(q, k, v), torch.ones(1, 2, 1))


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((2, 1, 19), (2, 10, 2), (2, 10, 4)), r"queries must have 20 features .* got queries \(2, 1, 19\)"),
        (((2, 1, 20), (2, 10, 3), (2, 10, 4)), r"keys must have 2 features"),
        (((2, 1, 20), (2, 10, 2), (2, 9, 4)), r"keys \(2, 10, 2\) and values \(2, 9, 4\)"),
        (((3, 1, 20), (2, 10, 2), (2, 10, 4)), r"same batch size"),
        (((1, 20), (2, 10, 2), (2, 10, 4)), r"queries must be 3-D"),
    ],
)
def test_additive_attention_rejects_bad_shapes(shapes, message):
    attention = AdditiveAttention(8, 0.0, key_size=2, query_size=20)
    with pytest.raises(ValueError, match=message):
        attention(*(torch.zeros(s) for s in shapes))


@pytest.mark.parametrize("kwargs, message", [({"num_hiddens": 0, "dropout": 0.1}, "num_hiddens"),
                                             ({"num_hiddens": 4, "dropout": 1.0}, "dropout")])
def test_additive_attention_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdditiveAttention(**kwargs)


# --------------------------------------------------------------------------- dot-product attention


def random_mask_case(seed):
    """Random shapes and one of the four mask kinds (no mask, lengths, per-query lengths, bool)."""
    gen = torch.Generator().manual_seed(seed)
    batch, n_q, n_k, d, v = (int(torch.randint(1, 7, (), generator=gen)) for _ in range(5))
    q = torch.randn(batch, n_q, d, generator=gen, dtype=torch.float64)
    k = torch.randn(batch, n_k, d, generator=gen, dtype=torch.float64)
    values = torch.randn(batch, n_k, v, generator=gen, dtype=torch.float64)
    kind = seed % 4
    if kind == 0:
        lens = None
    elif kind == 1:
        lens = torch.randint(1, n_k + 1, (batch,), generator=gen)
    elif kind == 2:
        lens = torch.randint(1, n_k + 1, (batch, n_q), generator=gen)
    else:
        lens = torch.rand(batch, n_q, n_k, generator=gen) < 0.6
        lens[..., 0] = True  # every query sees a key; empty rows are tested on their own
    return q, k, values, lens


@pytest.mark.parametrize("seed", range(24))
def test_dot_product_attention_equals_torch_sdpa(seed):
    q, k, v, lens = random_mask_case(seed)
    attention = DotProductAttention(dropout=0.0)
    out = attention(q, k, v, lens)
    mask = None
    if lens is not None:
        mask = lens if lens.dtype == torch.bool else valid_lens_to_mask(lens, q.shape[1], k.shape[1])
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(fused_dot_product_attention(q, k, v, lens), out, rtol=0, atol=1e-6)


def test_dot_product_scores_one_query_against_each_key():
    q, k, v = rand(1, 2, 3), rand(1, 4, 3, seed=1), rand(1, 4, 2, seed=2)
    attention = DotProductAttention()
    attention(q, k, v)
    for i in range(2):
        scores = torch.stack([q[0, i] @ k[0, j] for j in range(4)]) / math.sqrt(3)  # one score per key
        torch.testing.assert_close(attention.attention_weights[0, i], F.softmax(scores, dim=0))


def test_dot_product_fully_masked_query_outputs_zero_in_both_paths():
    q, k, v = rand(2, 3, 4), rand(2, 5, 4, seed=1), rand(2, 5, 6, seed=2)
    lens = torch.tensor([[0, 2, 5], [5, 0, 0]])
    out = DotProductAttention()(q, k, v, lens)
    assert (out[0, 0] == 0).all() and (out[1, 1:] == 0).all()
    torch.testing.assert_close(fused_dot_product_attention(q, k, v, lens), out, rtol=0, atol=1e-6)


def test_dot_product_attention_is_equivariant_to_key_order():
    q, k, v = rand(2, 3, 4), rand(2, 5, 4, seed=1), rand(2, 5, 6, seed=2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    attention = DotProductAttention()
    torch.testing.assert_close(attention(q, k, v), attention(q, k[:, perm], v[:, perm]))


@pytest.mark.parametrize("seed", range(5))
def test_dot_product_attention_dropout_is_unbiased_and_off_in_eval(seed):
    torch.manual_seed(seed)
    n_draws, p = 20000, 0.3
    q, k = rand(1, 1, 4, seed=seed), rand(1, 8, 4, seed=seed + 100)
    q, k = q.expand(n_draws, -1, -1), k.expand(n_draws, -1, -1)
    one_hot = torch.eye(8, dtype=torch.float64).expand(n_draws, -1, -1)  # output = weights
    attention = DotProductAttention(dropout=p)
    dropped = attention(q, k, one_hot)[:, 0]  # (N, 8), train mode
    alpha = attention.attention_weights[0, 0]  # (8,), before dropout
    # Each weight is zeroed or scaled by 1 / (1 - p), so a row no longer sums to one.
    assert ((dropped == 0) | torch.isclose(dropped, (alpha / (1 - p)).expand_as(dropped))).all()
    sums = dropped.sum(-1)
    assert (sums - 1).abs().max() > 0.1
    # The expectation is the weights: each entry's mean over the draws is within 6 standard
    # errors (std of one draw alpha * sqrt(p / (1 - p))), a bound that fails with odds ~1e-8.
    std_error = alpha * math.sqrt(p / (1 - p) / n_draws)
    assert ((dropped.mean(0) - alpha).abs() <= 6 * std_error).all()
    predicted_std = math.sqrt(p / (1 - p) * (alpha**2).sum().item())
    assert abs(sums.mean().item() - 1) <= 6 * predicted_std / math.sqrt(n_draws)
    # Evaluation mode: dropout is the identity, every row sums to one.
    attention.eval()
    kept = attention(q, k, one_hot)[:, 0]
    assert torch.equal(kept, alpha.expand_as(kept))
    torch.testing.assert_close(kept.sum(-1), torch.ones(n_draws, dtype=torch.float64))


def test_fused_attention_with_a_head_axis_holds_no_score_matrix():
    from companion.measure import peak_memory

    n, d = 4096, 64
    target = "companion.experiments.scaling:run_fused_attention"
    score_matrix_mib = n * n * 4 / 2**20
    fused = peak_memory(target, warmup=[{"n": 64}], n=n, d=d)
    assert fused < 0.25 * score_matrix_mib, fused  # CPU, 2 cores: 5.5 MiB of 64
    three_d = peak_memory(target, warmup=[{"n": 64, "heads_axis": False}], n=n, d=d,
                          heads_axis=False)
    assert three_d > 0.9 * score_matrix_mib, three_d  # the math path: 149 MiB


def test_run_fused_attention_rejects_bad_sizes():
    from companion.experiments.scaling import run_fused_attention

    with pytest.raises(ValueError, match=r"n"):
        run_fused_attention(0)
    with pytest.raises(ValueError, match=r"d"):
        run_fused_attention(8, d=-1)


def test_dot_product_attention_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match=r"same feature size d .* queries \(1, 2, 3\) and keys \(1, 4, 5\)"):
        DotProductAttention()(torch.zeros(1, 2, 3), torch.zeros(1, 4, 5), torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match=r"same feature size d"):
        fused_dot_product_attention(torch.zeros(1, 2, 3), torch.zeros(1, 4, 5), torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        DotProductAttention(dropout=-0.1)


# --------------------------------------------------------------------------- the sqrt(d) experiment
