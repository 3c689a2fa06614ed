"""Parity with d2l (1.0.x): the same weights and inputs give d2l's outputs (chapter 4).

The course mirrors d2l's names and call signatures, so a reader can move between the two. These tests run only
where ``d2l.torch`` imports; on this course's reference machine it does not (d2l imports torchvision, whose CPU
build is missing there, and d2l 1.0.3 pins an old matplotlib), so the module is skipped with that reason.
"""

from __future__ import annotations

import pytest
import torch

try:
    import d2l.torch as d2l
except Exception as err:  # ImportError, or RuntimeError from a broken torchvision build
    pytest.skip(
        f"d2l.torch is not importable here ({type(err).__name__}: {err}); d2l needs a working torchvision and "
        "its pinned matplotlib, so parity with d2l is checked only where d2l is installed",
        allow_module_level=True,
    )

from companion.attention import AdditiveAttention, DotProductAttention, masked_softmax  # noqa: E402


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "valid_lens",
    [torch.tensor([2, 3]), torch.tensor([[1, 3], [2, 4]]), torch.tensor([4, 4])],
    ids=["per-sequence", "per-query", "nothing-masked"],
)
def test_masked_softmax_matches_d2l(valid_lens):
    X = rand(2, 2, 4)
    torch.testing.assert_close(masked_softmax(X, valid_lens), d2l.masked_softmax(X, valid_lens))


def test_masked_softmax_differs_from_d2l_only_on_empty_rows():
    # d2l fills masked scores with -1e6, so a row with valid length 0 becomes uniform; ours is all zero.
    X = rand(2, 2, 4)
    lens = torch.tensor([[0, 3], [2, 0]])
    ours, theirs = masked_softmax(X, lens), d2l.masked_softmax(X, lens)
    torch.testing.assert_close(theirs[0, 0], torch.full((4,), 0.25))
    assert (ours[0, 0] == 0).all() and (ours[1, 1] == 0).all()
    torch.testing.assert_close(ours[0, 1], theirs[0, 1])
    torch.testing.assert_close(ours[1, 0], theirs[1, 0])


def copy_additive_weights(theirs: torch.nn.Module, ours: AdditiveAttention) -> None:
    """Give our module d2l's weights (d2l's layers are lazy: call it once before copying)."""
    with torch.no_grad():
        for name in ("W_q", "W_k", "w_v"):
            getattr(ours, name).weight.copy_(getattr(theirs, name).weight)


@pytest.mark.parametrize("explicit_sizes", [True, False], ids=["explicit-sizes", "lazy"])
def test_additive_attention_matches_d2l(explicit_sizes):
    queries, keys = rand(2, 3, 20), rand(2, 10, 2, seed=1)
    values = torch.arange(40, dtype=torch.float32).reshape(1, 10, 4).repeat(2, 1, 1)
    valid_lens = torch.tensor([2, 6])
    torch.manual_seed(0)
    theirs = d2l.AdditiveAttention(8, 0.1).eval()
    expected = theirs(queries, keys, values, valid_lens)  # materialises d2l's lazy weights
    sizes = {"key_size": 2, "query_size": 20} if explicit_sizes else {}
    ours = AdditiveAttention(8, 0.1, **sizes).eval()
    ours(queries, keys, values, valid_lens)  # materialises ours when lazy
    copy_additive_weights(theirs, ours)
    torch.testing.assert_close(ours(queries, keys, values, valid_lens), expected)
    torch.testing.assert_close(ours.attention_weights, theirs.attention_weights)


@pytest.mark.parametrize("valid_lens", [None, torch.tensor([3, 5]), torch.tensor([[1, 2, 5], [4, 4, 2]])])
def test_dot_product_attention_matches_d2l(valid_lens):
    queries, keys, values = rand(2, 3, 6), rand(2, 5, 6, seed=1), rand(2, 5, 4, seed=2)
    theirs = d2l.DotProductAttention(0.0).eval()
    ours = DotProductAttention(0.0).eval()
    torch.testing.assert_close(
        ours(queries, keys, values, valid_lens), theirs(queries, keys, values, valid_lens)
    )
    torch.testing.assert_close(ours.attention_weights, theirs.attention_weights)
