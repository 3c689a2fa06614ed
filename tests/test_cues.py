"""Tests for companion.cues: attention pooling, exact and soft lookups (chapter 1)."""
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from companion.cues import (  # noqa: E402
    SCORES,
    attention_pooling,
    dot_scores_with_key_bias,
    exact_match_weights,
    similarity_scores,
    soft_lookup,
)
from companion.pooling import nadaraya_watson_weights  # noqa: E402


def loop_pooling(weights, values):
    """sum_i w_ji v_i with Python loops over queries and keys."""
    rows = []
    for j in range(weights.shape[0]):
        acc = torch.zeros_like(values[0], dtype=torch.float64)
        for i in range(weights.shape[1]):
            acc = acc + float(weights[j, i]) * values[i].double()
        rows.append(acc)
    return torch.stack(rows)


# --- attention_pooling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_q,n_k,d", [(1, 1, 1), (3, 5, 2), (4, 4, 7), (6, 2, 3)])
def test_attention_pooling_matches_loop(n_q, n_k, d):
    g = torch.Generator().manual_seed(n_q * 100 + n_k * 10 + d)
    weights = torch.rand(n_q, n_k, generator=g)
    values = torch.randn(n_k, d, generator=g)
    out = attention_pooling(weights, values)
    assert out.shape == (n_q, d)
    torch.testing.assert_close(out.double(), loop_pooling(weights, values))


def test_attention_pooling_scalar_values_give_one_number_per_query():
    weights = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    values = torch.tensor([4.0, 8.0])
    torch.testing.assert_close(attention_pooling(weights, values), torch.tensor([7.0, 4.0]))


def test_attention_pooling_one_hot_weights_copy_value_rows():
    values = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    pick = torch.tensor([4, 0, 2])
    weights = torch.nn.functional.one_hot(pick, num_classes=5).float()
    torch.testing.assert_close(attention_pooling(weights, values), values[pick])


def test_attention_pooling_uniform_weights_average_the_values():
    values = torch.randn(6, 2, generator=torch.Generator().manual_seed(2))
    weights = torch.full((3, 6), 1 / 6)
    torch.testing.assert_close(attention_pooling(weights, values), values.mean(dim=0).expand(3, 2))


def test_attention_pooling_is_linear_in_values():
    g = torch.Generator().manual_seed(3)
    weights = torch.softmax(torch.randn(4, 5, generator=g), dim=-1)
    v1, v2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    lhs = attention_pooling(weights, 2.0 * v1 - 3.0 * v2)
    rhs = 2.0 * attention_pooling(weights, v1) - 3.0 * attention_pooling(weights, v2)
    torch.testing.assert_close(lhs, rhs)


def test_attention_pooling_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"one column per value.*\(3, 4\).*\(5, 2\)"):
        attention_pooling(torch.rand(3, 4), torch.rand(5, 2))
    with pytest.raises(ValueError, match=r"weights must be a 2-D tensor"):
        attention_pooling(torch.rand(4), torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"values must be a tensor \(n_k,\) or \(n_k, d\)"):
        attention_pooling(torch.rand(3, 4), torch.rand(4, 2, 2))
    with pytest.raises(ValueError, match=r"values must be a tensor.*list"):
        attention_pooling(torch.rand(3, 4), [1.0, 2.0, 3.0, 4.0])


# --- exact_match_weights -----------------------------------------------------------------------------------


def test_exact_match_on_integer_ids_is_one_hot_float():
    keys = torch.tensor([10, 20, 30, 40])
    queries = torch.tensor([30, 10])
    w = exact_match_weights(queries, keys)
    assert w.dtype == torch.get_default_dtype()
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))


def test_exact_match_of_keys_against_themselves_is_identity():
    keys = torch.randn(7, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    w = exact_match_weights(keys, keys)
    assert w.dtype == torch.float64
    torch.testing.assert_close(w, torch.eye(7, dtype=torch.float64))


def test_exact_match_compares_whole_vectors():
    keys = torch.tensor([[1.0, 2.0], [1.0, 3.0], [2.0, 2.0]])
    queries = torch.tensor([[1.0, 3.0], [2.0, 3.0]])  # the second shares one feature with each key, matches none
    torch.testing.assert_close(exact_match_weights(queries, keys), torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))


def test_exact_match_then_pooling_is_a_dictionary_lookup():
    table = {3: 1.5, 7: -2.0, 11: 0.25, 5: 9.0}
    keys = torch.tensor(list(table))
    values = torch.tensor(list(table.values()))
    queries = torch.tensor([11, 3, 5, 7, 3])
    out = attention_pooling(exact_match_weights(queries, keys), values)
    torch.testing.assert_close(out, torch.tensor([table[int(q)] for q in queries]))


def test_exact_match_rejects_duplicate_keys_and_width_mismatch():
    with pytest.raises(ValueError, match=r"keys must be unique, got 3 keys of which only 2 are distinct"):
        exact_match_weights(torch.tensor([1]), torch.tensor([1, 2, 1]))
    with pytest.raises(ValueError, match=r"same number of features d.*\(2, 3\).*\(4, 2\)"):
        exact_match_weights(torch.zeros(2, 3), torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"same number of features d.*queries \(3,\) and keys \(4, 2\)"):
        exact_match_weights(torch.zeros(3), torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"at least one entry"):
        exact_match_weights(torch.tensor([1]), torch.tensor([], dtype=torch.long))


# --- similarity_scores and soft_lookup -----------------------------------------------------------------------


def test_similarity_scores_match_their_definitions():
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(3, 4, generator=g), torch.randn(6, 4, generator=g)
    dist = similarity_scores(q, k, kind="distance")
    dot = similarity_scores(q, k, kind="dot")
    for j in range(3):
        for i in range(6):
            assert math.isclose(dist[j, i].item(), -float(((q[j] - k[i]) ** 2).sum()), rel_tol=1e-5, abs_tol=1e-5)
            assert math.isclose(dot[j, i].item(), float((q[j] * k[i]).sum()), rel_tol=1e-5, abs_tol=1e-5)
    assert set(SCORES) == {"distance", "dot"}


def test_similarity_scores_rejects_unknown_kind():
    with pytest.raises(ValueError, match=r"kind must be one of .*'cosine'"):
        similarity_scores(torch.zeros(1), torch.zeros(2), kind="cosine")


def test_soft_lookup_weights_are_a_softmax_over_keys():
    g = torch.Generator().manual_seed(6)
    q, k, v = torch.randn(4, 2, generator=g), torch.randn(5, 2, generator=g), torch.randn(5, 3, generator=g)
    out, w = soft_lookup(q, k, v, temperature=0.7)
    assert w.shape == (4, 5) and out.shape == (4, 3)
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(4))
    expected = torch.exp(similarity_scores(q, k) / 0.7)
    expected = expected / expected.sum(dim=-1, keepdim=True)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(out, expected @ v)


def test_soft_lookup_prefers_closer_keys():
    keys = torch.tensor([0.0, 1.0, 3.0, 6.0])
    _, w = soft_lookup(torch.tensor([0.9]), keys, torch.zeros(4), temperature=2.0)
    order = torch.argsort(w[0], descending=True)
    assert order.tolist() == [1, 0, 2, 3]  # 0.1 away, then 0.9, then 2.1, then 5.1


def test_soft_lookup_cold_limit_is_the_exact_match():
    keys = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5], [3.0, 3.0]])
    queries = keys[[2, 0, 3]]
    _, w = soft_lookup(queries, keys, torch.zeros(4), temperature=1e-4)
    torch.testing.assert_close(w, exact_match_weights(queries, keys))


def test_soft_lookup_hot_limit_is_average_pooling():
    g = torch.Generator().manual_seed(7)
    keys, values = torch.randn(8, 2, generator=g), torch.randn(8, generator=g)
    out, w = soft_lookup(torch.randn(3, 2, generator=g), keys, values, temperature=1e6)
    torch.testing.assert_close(w, torch.full((3, 8), 1 / 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, values.mean().expand(3), atol=1e-5, rtol=0)


def test_soft_lookup_on_scalars_is_gaussian_nadaraya_watson():
    # -(q-k)^2 / T with T = 2 h^2 is the Gaussian kernel's exponent -((q-k)/h)^2 / 2.
    g = torch.Generator().manual_seed(8)
    q, k = torch.rand(5, generator=g) * 5, torch.rand(9, generator=g) * 5
    h = 0.6
    _, w = soft_lookup(q, k, torch.zeros(9), temperature=2 * h**2)
    torch.testing.assert_close(w, nadaraya_watson_weights(q, k, kernel="gaussian", bandwidth=h))


def test_soft_lookup_output_is_not_linear_in_the_query():
    keys, values = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])
    f = lambda q: soft_lookup(torch.tensor([q]), keys, values, temperature=0.5)[0].item()  # noqa: E731
    # A linear map would give f(2q) = 2 f(q) and f(0) = 0; the softmax bends it into a smooth step.
    assert abs(f(0.5) - 0.5) < 1e-6
    assert abs(f(1.0) - 2 * f(0.5)) > 0.1
    assert 0 < f(-3.0) < 0.01 and 0.99 < f(4.0) < 1


def test_soft_lookup_with_dot_scores_is_softmax_of_dot_products():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    _, w = soft_lookup(torch.tensor([[3.0, 1.0]]), keys, torch.eye(2), temperature=1.0, kind="dot")
    torch.testing.assert_close(w, torch.softmax(torch.tensor([[3.0, 1.0]]), dim=-1))


# --- from a distance to a dot product -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_gaussian_weights_are_dot_product_weights_plus_a_key_bias(seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(4, 3, generator=g), 2 * torch.randn(7, 3, generator=g)
    # softmax(-||q - k||^2 / 2) == softmax(q.k - ||k||^2 / 2), to 1e-6 in float32.
    gaussian = torch.softmax(similarity_scores(q, k) / 2, dim=-1)
    with_bias = torch.softmax(dot_scores_with_key_bias(q, k), dim=-1)
    torch.testing.assert_close(with_bias, gaussian, rtol=0, atol=1e-6)
    # The scores differ by -||q||^2 / 2, one constant per query.
    gap = similarity_scores(q.double(), k.double()) / 2 - dot_scores_with_key_bias(q.double(), k.double())
    torch.testing.assert_close(gap, (-(q.double() ** 2).sum(-1, keepdim=True) / 2).expand(4, 7))
    # Keys of different norms: the dot product alone gives other weights.
    dot = torch.softmax(similarity_scores(q, k, kind="dot"), dim=-1)
    assert (dot - gaussian).abs().max() > 1e-2


@pytest.mark.parametrize("seed", range(5))
def test_gaussian_weights_on_keys_of_equal_norm_are_dot_product_weights(seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(4, 3, generator=g), torch.randn(7, 3, generator=g)
    k = 1.5 * k / k.norm(dim=-1, keepdim=True)  # every key of norm 1.5
    gaussian = torch.softmax(similarity_scores(q, k) / 2, dim=-1)
    dot = torch.softmax(similarity_scores(q, k, kind="dot"), dim=-1)
    torch.testing.assert_close(dot, gaussian, rtol=0, atol=1e-6)


def test_dot_scores_with_key_bias_on_scalars_and_bad_input():
    q, k = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0, -1.0])
    torch.testing.assert_close(dot_scores_with_key_bias(q, k), q[:, None] * k - k**2 / 2)
    with pytest.raises(ValueError, match=r"same number of features d"):
        dot_scores_with_key_bias(torch.zeros(2, 3), torch.zeros(4, 2))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), True, "1"])
def test_soft_lookup_rejects_bad_temperature(bad):
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0"):
        soft_lookup(torch.zeros(1), torch.zeros(2), torch.zeros(2), temperature=bad)


def test_soft_lookup_rejects_values_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"one column per value"):
        soft_lookup(torch.zeros(1), torch.zeros(3), torch.zeros(4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lookups_on_the_gpu_match_the_cpu():
    g = torch.Generator().manual_seed(9)
    q, k, v = torch.randn(3, 2, generator=g), torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    out_cpu, w_cpu = soft_lookup(q, k, v)
    out_gpu, w_gpu = soft_lookup(q.cuda(), k.cuda(), v.cuda())
    assert out_gpu.is_cuda and w_gpu.is_cuda
    torch.testing.assert_close(out_gpu.cpu(), out_cpu)
    torch.testing.assert_close(w_gpu.cpu(), w_cpu)
    ids = torch.tensor([5, 9, 2])
    torch.testing.assert_close(exact_match_weights(ids.cuda(), ids.cuda()).cpu(), torch.eye(3))


# --- plot_weight_bars ----------------------------------------------------------------------------------------
