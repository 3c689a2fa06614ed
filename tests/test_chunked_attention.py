"""chunked_attention equals DotProductAttention (output and gradient, with masks); the online-softmax merge."""

from __future__ import annotations

import pytest
import torch

import companion
from companion.chunked_attention import chunked_attention, online_softmax_merge, partial_attention

NAIVE = companion.DotProductAttention(dropout=0.0)


def _qkv(B, n_q, n_k, d, d_v, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(B, n_q, d, generator=gen, dtype=dtype).requires_grad_(),
            torch.randn(B, n_k, d, generator=gen, dtype=dtype).requires_grad_(),
            torch.randn(B, n_k, d_v, generator=gen, dtype=dtype).requires_grad_())


MASKS = {
    "none": lambda B, n_q, n_k: None,
    "lengths": lambda B, n_q, n_k: torch.randint(1, n_k + 1, (B,), generator=torch.Generator().manual_seed(3)),
    "lengths with zero": lambda B, n_q, n_k: torch.tensor([0] + [n_k] * (B - 1)),
    "per query": lambda B, n_q, n_k: torch.randint(0, n_k + 1, (B, n_q), generator=torch.Generator().manual_seed(4)),
    "bool shared": lambda B, n_q, n_k: companion.chunk_mask(max(n_q, n_k), 5, 1)[None, :n_q, :n_k],
    "bool per sequence": lambda B, n_q, n_k: torch.rand(B, n_q, n_k, generator=torch.Generator().manual_seed(5)) > 0.5,
}


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("chunk_size", [1, 7, 16, 100])
def test_chunked_attention_equals_naive_in_output_and_gradient(dtype, tol, mask, chunk_size) -> None:
    q, k, v = _qkv(3, 37, 29, 8, 5, dtype)
    valid = MASKS[mask](3, 37, 29)
    expected = NAIVE(q, k, v, valid)
    actual = chunked_attention(q, k, v, valid, chunk_size=chunk_size)
    assert actual.shape == expected.shape == (3, 37, 5)
    assert torch.allclose(actual, expected, atol=tol, rtol=tol)
    upstream = torch.randn(expected.shape, dtype=dtype)
    for a, b in zip(torch.autograd.grad(actual, (q, k, v), upstream),
                    torch.autograd.grad(expected, (q, k, v), upstream)):
        assert torch.allclose(a, b, atol=tol, rtol=tol)  # |a - b| <= tol (1 + |b|)


def test_chunked_attention_equals_the_fused_kernel() -> None:
    q, k, v = _qkv(2, 300, 300, 16, 16, torch.float32)
    with torch.no_grad():
        fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        assert torch.allclose(chunked_attention(q, k, v, chunk_size=64), fused, atol=1e-6)


def test_fully_masked_queries_get_zeros_without_nan() -> None:
    q, k, v = _qkv(2, 9, 6, 4, 3, torch.float32)
    mask = torch.ones(2, 9, 6, dtype=torch.bool)
    mask[0, 2] = False  # query 2 of sequence 0 sees nothing
    mask[:, 5:] = False  # queries 5.. of both see nothing: whole query blocks are empty for chunk_size 4
    out = chunked_attention(q, k, v, mask, chunk_size=4)
    assert torch.equal(out[0, 2], torch.zeros(3)) and torch.equal(out[:, 5:], torch.zeros(2, 4, 3))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert torch.allclose(out, NAIVE(q, k, v, mask), atol=1e-6)


def test_large_scores_do_not_overflow() -> None:
    q, k, v = _qkv(1, 20, 20, 4, 2, torch.float32)
    with torch.no_grad():
        q, k = q * 40, k * 40  # scores of several hundred: exp would overflow without the maxima
        out = chunked_attention(q, k, v, chunk_size=3)
        assert torch.isfinite(out).all()
        assert torch.allclose(out, NAIVE(q, k, v), atol=1e-5)


def test_online_softmax_merge_equals_the_softmax_of_both_blocks() -> None:
    q, k, v = _qkv(2, 5, 12, 4, 3, torch.float64)
    with torch.no_grad():
        a = partial_attention(q, k[:, :7], v[:, :7])
        b = partial_attention(q, k[:, 7:], v[:, 7:])
        m, l, o = online_softmax_merge(*a, *b)
        m_all, l_all, o_all = partial_attention(q, k, v)
        assert torch.allclose(m, m_all) and torch.allclose(l, l_all) and torch.allclose(o, o_all)
        assert torch.allclose(o / l, NAIVE(q, k, v))
        assert torch.equal(torch.maximum(a[0], b[0]), m)


def test_merge_with_an_empty_part_gives_the_other_part() -> None:
    m_a, l_a, o_a = torch.tensor([[1.5]]), torch.tensor([[2.0]]), torch.tensor([[3.0, -1.0]])
    low = torch.full((1, 1), torch.finfo(torch.float32).min)
    m, l, o = online_softmax_merge(m_a, l_a, o_a, low, torch.zeros(1, 1), torch.zeros(1, 2))
    assert torch.equal(m, m_a) and torch.equal(l, l_a) and torch.equal(o, o_a)


def test_partial_attention_of_a_fully_masked_block_is_empty() -> None:
    q, k, v = _qkv(1, 3, 4, 2, 2, torch.float32)
    m, l, o = partial_attention(q, k, v, torch.zeros(1, 3, 4, dtype=torch.bool))
    assert torch.equal(l, torch.zeros(1, 3, 1)) and torch.equal(o, torch.zeros(1, 3, 2))
    assert (m == torch.finfo(torch.float32).min).all()


def test_chunked_attention_checks_its_inputs() -> None:
    q, k, v = _qkv(2, 4, 5, 3, 2, torch.float32)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_attention(q, k, v, chunk_size=0)
    with pytest.raises(ValueError, match="feature size"):
        chunked_attention(q, k[..., :2], v)
    with pytest.raises(ValueError, match="boolean mask"):
        chunked_attention(q, k, v, torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch size"):
        chunked_attention(q, k, v, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, n_k\]"):
        chunked_attention(q, k, v, torch.tensor([1, 9]))
