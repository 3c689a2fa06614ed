"""Chapter 7: sinusoidal and learned positions, the offset rotation, rotary embeddings, permutation equivariance."""

from __future__ import annotations

import math

import pytest
import torch

from companion.attention import DotProductAttention
from companion.multihead import MultiHeadAttention
from companion.metrics import permutation_gap
from companion.positional import (
    LearnedPositionalEmbedding,
    PositionalEncoding,
    apply_rotary,
    encoding_frequencies,
    offset_rotation,
    sinusoidal_encoding,
)

F64 = torch.float64


def encoding_by_loop(max_len: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """The formula of the paper, one entry at a time."""
    P = torch.zeros(max_len, d, dtype=F64)
    for pos in range(max_len):
        for i in range(d // 2):
            angle = pos / base ** (2 * i / d)
            P[pos, 2 * i] = math.sin(angle)
            P[pos, 2 * i + 1] = math.cos(angle)
    return P


# --- the sinusoidal table ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_len, d, base", [(7, 2, 10000.0), (50, 16, 10000.0), (30, 6, 100.0), (1000, 4, 10000.0)])
def test_sinusoidal_encoding_matches_a_loop(max_len, d, base):
    expected = encoding_by_loop(max_len, d, base)
    torch.testing.assert_close(sinusoidal_encoding(max_len, d, base, dtype=F64), expected, atol=1e-12, rtol=0)
    # The float32 table is the float64 one rounded once, even at position 999.
    torch.testing.assert_close(sinusoidal_encoding(max_len, d, base), expected.float(), atol=1e-6, rtol=0)


def test_encoding_frequencies_run_from_one_towards_one_over_base():
    w = encoding_frequencies(512)
    assert w.shape == (256,) and w.dtype == F64
    assert w[0] == 1.0 and torch.all(w[1:] < w[:-1])
    torch.testing.assert_close(w[-1], torch.tensor(10000.0 ** (-510 / 512), dtype=F64))


def test_encoding_rows_have_norm_sqrt_half_d_and_dot_products_depend_on_the_offset_only():
    P = sinusoidal_encoding(200, 32, dtype=F64)
    torch.testing.assert_close(P.norm(dim=-1), torch.full((200,), math.sqrt(16.0), dtype=F64))
    G = P @ P.T  # (200, 200)
    for k in (0, 1, 5, 37):
        diagonal = torch.diagonal(G, offset=k)
        torch.testing.assert_close(diagonal, torch.full_like(diagonal, diagonal[0].item()), atol=1e-10, rtol=0)
    assert G[0, 0] > G[0, 1] > G[0, 2]  # nearby positions are more alike


def test_sinusoidal_encoding_rejects_odd_width_and_bad_arguments():
    with pytest.raises(ValueError, match=r"num_hiddens must be even.*num_hiddens=7"):
        sinusoidal_encoding(10, 7)
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        sinusoidal_encoding(0, 8)
    with pytest.raises(ValueError, match="base must be > 1"):
        encoding_frequencies(8, base=1.0)


# --- PositionalEncoding -------------------------------------------------------------------------------


def test_positional_encoding_keeps_the_table_in_P_with_d2l_shape():
    pe = PositionalEncoding(16, 0.1, max_len=60)
    assert pe.P.shape == (1, 60, 16)
    torch.testing.assert_close(pe.P[0], sinusoidal_encoding(60, 16))
    assert "P" not in pe.state_dict()  # recomputed, never learned or saved
    assert list(pe.parameters()) == []


def test_positional_encoding_without_dropout_adds_the_table():
    X = torch.randn(3, 9, 8)
    out = PositionalEncoding(8, 0.0)(X)
    assert out.shape == X.shape
    torch.testing.assert_close(out, X + sinusoidal_encoding(9, 8)[None], atol=1e-6, rtol=0)


def test_positional_encoding_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    pe = PositionalEncoding(32, 0.5)
    X = torch.randn(4, 20, 32)
    pe.train()
    dropped = pe(X)
    zero_fraction = (dropped == 0).float().mean().item()
    assert 0.4 < zero_fraction < 0.6
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], 2 * (X + pe.P[:, :20])[kept.expand_as(X)], atol=1e-5, rtol=0)
    pe.eval()
    torch.testing.assert_close(pe(X), X + pe.P[:, :20], atol=0, rtol=0)


def test_positional_encoding_offset_continues_the_sequence():
    pe = PositionalEncoding(8, 0.0, max_len=30)
    X = torch.randn(2, 12, 8)
    whole = pe(X)
    # Decoding step by step: token t at offset t gets the same row as in the whole sequence.
    steps = torch.cat([pe(X[:, t : t + 1], offset=t) for t in range(12)], dim=1)
    torch.testing.assert_close(steps, whole)


def test_positional_encoding_names_length_and_max_len_when_too_long():
    pe = PositionalEncoding(8, 0.0, max_len=10)
    with pytest.raises(ValueError, match=r"length 11.*max_len=10"):
        pe(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match=r"positions 8\.\.10.*max_len=10"):
        pe(torch.zeros(1, 3, 8), offset=8)
    pe(torch.zeros(1, 10, 8))  # exactly max_len fits


def test_positional_encoding_rejects_odd_width_wrong_features_and_bad_dropout():
    with pytest.raises(ValueError, match=r"num_hiddens must be even.*num_hiddens=5"):
        PositionalEncoding(5, 0.0)
    with pytest.raises(ValueError, match=r"num_hiddens=8 features.*\(2, 3, 6\)"):
        PositionalEncoding(8, 0.0)(torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match="3-D tensor"):
        PositionalEncoding(8, 0.0)(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="dropout"):
        PositionalEncoding(8, 1.0)


# --- the offset is a linear map --------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 3, 17, 250, -4])
def test_offset_rotation_shifts_every_position_by_k(k):
    P = sinusoidal_encoding(400, 24, dtype=F64)
    M = offset_rotation(k, 24, dtype=F64)
    lo, hi = max(0, -k), min(400, 400 - k)
    torch.testing.assert_close(P[lo:hi] @ M, P[lo + k : hi + k], atol=1e-10, rtol=0)


def test_offset_rotation_is_a_block_diagonal_rotation_group():
    M1, M2, M3 = (offset_rotation(k, 8, dtype=F64) for k in (1, 2, 3))
    torch.testing.assert_close(M1 @ M2, M3, atol=1e-12, rtol=0)
    torch.testing.assert_close(M3 @ M3.T, torch.eye(8, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(offset_rotation(-3, 8, dtype=F64), M3.T)
    torch.testing.assert_close(offset_rotation(0, 8), torch.eye(8))
    off_block = M3.clone()
    for i in range(0, 8, 2):
        off_block[i : i + 2, i : i + 2] = 0
    assert off_block.abs().max() == 0


def test_offset_map_fitted_from_data_does_not_depend_on_the_position():
    # Least squares on two disjoint ranges of positions finds the same matrix, and it is M_k.
    P = sinusoidal_encoding(300, 8, dtype=F64)
    k = 5
    fits = [torch.linalg.lstsq(P[a : a + 100], P[a + k : a + k + 100]).solution for a in (0, 150)]
    torch.testing.assert_close(fits[0], fits[1], atol=1e-8, rtol=0)
    torch.testing.assert_close(fits[0], offset_rotation(k, 8, dtype=F64), atol=1e-8, rtol=0)


def test_offset_rotation_rejects_a_float_offset():
    with pytest.raises(ValueError, match="k must be an int"):
        offset_rotation(1.5, 8)


# --- learned positions ------------------------------------------------------------------------------------


def test_learned_positional_embedding_adds_a_trainable_row_per_position():
    torch.manual_seed(0)
    lpe = LearnedPositionalEmbedding(6, 0.0, max_len=20)
    assert isinstance(lpe.P, torch.nn.Parameter) and lpe.P.shape == (1, 20, 6)
    assert 0.01 < lpe.P.std().item() < 0.03  # N(0, 0.02^2)
    X = torch.randn(2, 7, 6)
    torch.testing.assert_close(lpe(X), X + lpe.P[:, :7])
    torch.testing.assert_close(lpe(X[:, 2:5], offset=2), (X + lpe.P[:, :7])[:, 2:5])
    lpe(X).sum().backward()
    assert lpe.P.grad[0, :7].abs().min() > 0 and lpe.P.grad[0, 7:].abs().max() == 0  # unused rows get no gradient
    with pytest.raises(ValueError, match=r"length 21.*max_len=20"):
        lpe(torch.zeros(1, 21, 6))


# --- rotary embeddings --------------------------------------------------------------------------------------


def test_apply_rotary_equals_the_rotation_matrices():
    x = torch.randn(2, 6, 10, dtype=F64)
    expected = torch.stack([x[:, m] @ offset_rotation(m, 10, dtype=F64).T for m in range(6)], dim=1)
    torch.testing.assert_close(apply_rotary(x), expected, atol=1e-12, rtol=0)


def test_apply_rotary_preserves_norms_and_leaves_position_zero_alone():
    x = torch.randn(3, 40, 16)
    out = apply_rotary(x)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 0], x[:, 0])
    assert (out[:, 1:] - x[:, 1:]).abs().max() > 0.1


def test_rotary_scores_depend_on_the_offset_only():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=gen, dtype=F64), torch.randn(16, generator=gen, dtype=F64)

    def score(m: int, n: int) -> float:
        qm = apply_rotary(q[None], torch.tensor([m]))[0]
        kn = apply_rotary(k[None], torch.tensor([n]))[0]
        return (qm @ kn).item()

    for m, n in [(5, 2), (40, 37), (503, 500), (3, 0)]:
        assert score(m, n) == pytest.approx(score(3, 0), abs=1e-10)
    for m, n in [(0, 4), (96, 100)]:
        assert score(m, n) == pytest.approx(score(0, 4), abs=1e-10)
    assert abs(score(3, 0) - score(0, 4)) > 1e-3  # different offsets, different scores
    # The whole score matrix is Toeplitz: constant along every diagonal.
    Q, K = apply_rotary(q.expand(30, 16)), apply_rotary(k.expand(30, 16))
    S = Q @ K.T
    for off in (-7, 0, 3):
        diagonal = torch.diagonal(S, offset=off)
        torch.testing.assert_close(diagonal, torch.full_like(diagonal, diagonal[0].item()), atol=1e-10, rtol=0)


def test_apply_rotary_accepts_per_sequence_positions_and_rejects_bad_ones():
    x = torch.randn(2, 5, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])  # (batch, n)
    out = apply_rotary(x, positions)
    torch.testing.assert_close(out[0], apply_rotary(x[0]))
    torch.testing.assert_close(out[1], apply_rotary(x[1], torch.arange(7, 12)))
    with pytest.raises(ValueError, match="num_hiddens must be even"):
        apply_rotary(torch.zeros(4, 7))
    with pytest.raises(ValueError, match="integer tensor"):
        apply_rotary(x, torch.arange(5.0))
    with pytest.raises(ValueError, match=r"broadcast to x.shape\[:-1\] = \(2, 5\)"):
        apply_rotary(x, torch.arange(4))
    with pytest.raises(ValueError, match=r"got \(3, 2, 5\)"):
        apply_rotary(x, torch.zeros(3, 2, 5, dtype=torch.long))  # would add an axis to the output


# --- permutation equivariance --------------------------------------------------------------------------------


def _self_attention_modules():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, 0.0).eval()
    dot = DotProductAttention(0.0)
    return {
        "dot-product": lambda X: dot(X, X, X),
        "multi-head": lambda X: mha(X, X, X),
    }


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", ["dot-product", "multi-head"])
def test_self_attention_without_positions_is_permutation_equivariant(name, seed):
    f = _self_attention_modules()[name]
    gen = torch.Generator().manual_seed(seed)
    n = 3 + seed * 2
    X = torch.randn(2, n, 16, generator=gen)
    perm = torch.randperm(n, generator=gen)
    assert permutation_gap(f, X, perm) < 1e-5


@pytest.mark.parametrize("name", ["dot-product", "multi-head"])
def test_adding_positions_breaks_permutation_equivariance(name):
    f = _self_attention_modules()[name]
    pe = PositionalEncoding(16, 0.0)
    X = torch.randn(2, 8, 16)
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    assert permutation_gap(f, X, perm) < 1e-5
    assert permutation_gap(lambda Z: f(pe(Z)), X, perm) > 0.05


def test_rotary_attention_is_not_equivariant_but_is_shift_invariant():
    dot = DotProductAttention(0.0)
    X = torch.randn(1, 6, 8, dtype=F64)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])

    def rope_attention(Z, start=0):
        pos = torch.arange(start, start + Z.shape[1])
        return dot(apply_rotary(Z, pos), apply_rotary(Z, pos), Z)

    assert permutation_gap(rope_attention, X, perm) > 0.05
    # Moving every position by the same amount changes nothing: only offsets matter.
    torch.testing.assert_close(rope_attention(X, start=100), rope_attention(X), atol=1e-10, rtol=0)


# --- the sqrt(d) scaling, measured ---------------------------------------------------------------------------


# --- the previous-token probe --------------------------------------------------------------------------------------
