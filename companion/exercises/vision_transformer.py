"""Checks for the exercises of chapter 13, the Vision Transformer (how a check works: companion.exercises)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from companion.exercises import call_on_copies, expect_close, expect_returned

__all__ = [
    "FORBIDDEN",
    "check_patchify_small",
    "check_patchify_thorough",
    "check_attention_rollout_small",
    "check_attention_rollout_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "patchify": [
        "companion.vision_transformer.patchify",
        "companion.vision_transformer.permute_patches",
        "companion.vision_transformer.PatchEmbedding",
    ],
    "attention_rollout": [
        "companion.vision_transformer.attention_rollout",
    ],
}

# ---------------------------------------------------------------------------
# Exercise 1: cutting images into flattened patches, in a Conv2d weight's order
# ---------------------------------------------------------------------------


def _blocks(X: Tensor, p: int) -> Tensor:
    B, C, H, W = X.shape
    return X.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows, p, cols, p)


def _patchify(X: Tensor, p: int) -> Tensor:
    B, C, H, W = X.shape
    return _blocks(X, p).permute(0, 2, 4, 1, 3, 5).reshape(B, (H // p) * (W // p), C * p * p)


def _patchify_mistakes(X: Tensor, p: int) -> dict[str, Tensor]:
    B, C, H, W = X.shape
    n, size = (H // p) * (W // p), C * p * p
    blocks = _blocks(X, p)
    return {
        "each patch must be flattened channel first, then row, then column (the order of a Conv2d weight "
        "(d, C, p, p)): the channel axis went last. Permute to (B, rows, cols, C, p, p) before the reshape.":
            blocks.permute(0, 2, 4, 3, 5, 1).reshape(B, n, size),
        "the patches must come row by row (patch 1 is to the right of patch 0, as conv(X).flatten(2) orders "
        "them), not column by column: put the axis of patch rows before the axis of patch columns.":
            blocks.permute(0, 4, 2, 1, 3, 5).reshape(B, n, size),
        "inside a patch the pixels go row by row (row i, then column j): the two pixel axes are swapped.":
            blocks.permute(0, 2, 4, 1, 5, 3).reshape(B, n, size),
        "a plain reshape of (B, C, H, W) does not cut patches: it takes runs of consecutive pixels. Split H "
        "and W into (H / p, p) and (W / p, p), then permute the axes.": X.reshape(B, n, size),
        "F.unfold returns (B, C * p * p, n): transpose the last two axes to get one row per patch.":
            F.unfold(X, p, stride=p),
        "the patches overlap: a ViT cuts non-overlapping patches, so the stride must be patch_size (with "
        "F.unfold, stride=patch_size).": F.unfold(X, p).transpose(1, 2),
    }


def _check_patchify_on(fn: Callable[..., Any], X: Tensor, p: int, seconds: float) -> None:
    name = "patchify"
    actual = call_on_copies(fn, X, p, name=name, seconds=seconds)
    expect_returned(actual, name=name)
    expected = _patchify(X, p)
    mistakes = {hint: wrong for hint, wrong in _patchify_mistakes(X, p).items()
                if not (wrong.shape == expected.shape and torch.equal(wrong, expected))}
    expect_close(actual, expected, name=f"{name} (X {tuple(X.shape)}, patch_size={p})", mistakes=mistakes,
                 atol=1e-6, rtol=1e-6)


def _images(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.rand(*shape, generator=gen, dtype=dtype)


def check_patchify_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: two 8 x 8 grey images, patches of 4 (the chapter's ViT)."""
    _check_patchify_on(fn, _images((2, 1, 8, 8), torch.Generator().manual_seed(0)), 4, seconds)


def check_patchify_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: three channels, a non-square image, patches of 1, 2 and of the whole image, float64."""
    gen = torch.Generator().manual_seed(1)
    for shape, p in [((3, 1, 8, 8), 2), ((2, 3, 6, 9), 3), ((1, 2, 8, 4), 4), ((2, 1, 4, 4), 1),
                     ((2, 3, 4, 4), 4), ((1, 1, 28, 28), 7)]:
        _check_patchify_on(fn, _images(shape, gen), p, seconds)
    _check_patchify_on(fn, _images((2, 2, 6, 6), gen, torch.float64), 3, seconds)


# ---------------------------------------------------------------------------
# Exercise 2: attention rollout over the layers of a ViT
# ---------------------------------------------------------------------------


def _mixed(W: Tensor) -> Tensor:
    A = W.mean(dim=1)
    return 0.5 * A + 0.5 * torch.eye(A.shape[-1], dtype=A.dtype)


def _product(layers: list[Tensor], last_on_left: bool = True) -> Tensor:
    R = layers[0]
    for A in layers[1:]:
        R = A @ R if last_on_left else R @ A
    return R


def _rollout(weights: list[Tensor]) -> Tensor:
    return _product([_mixed(W) for W in weights])


def _rollout_mistakes(weights: list[Tensor]) -> dict[str, Tensor]:
    eye = torch.eye(weights[0].shape[-1], dtype=weights[0].dtype)
    mixed = [_mixed(W) for W in weights]
    return {
        "the layers are multiplied in the wrong order: output i of the last layer mixes that layer's "
        "inputs, which the layers below produced, so rollout = A_L @ ... @ A_1 (the new layer on the left).":
            _product(mixed, last_on_left=False),
        "the skip connection is missing: each layer's weights become 0.5 * A + 0.5 * I before the product.":
            _product([W.mean(dim=1) for W in weights]),
        "A + I has rows summing to 2: take 0.5 * A + 0.5 * I, so every row still sums to one.":
            _product([W.mean(dim=1) + eye for W in weights]),
        "the heads are averaged (mean over dim=1), not taken at their maximum.":
            _product([0.5 * W.max(dim=1).values + 0.5 * eye for W in weights]),
        "the heads are averaged (mean over dim=1), not summed.":
            _product([0.5 * W.sum(dim=1) + 0.5 * eye for W in weights]),
        "the layers are multiplied, not added: the flow through layer 1 is carried on by layer 2.":
            sum(mixed[1:], mixed[0]),
        "every layer counts, not only the last one: multiply the mixed weights of all the layers.":
            mixed[-1],
        "every layer counts, not only the first one: multiply the mixed weights of all the layers.":
            mixed[0],
    }


def _check_rollout_on(fn: Callable[..., Any], weights: list[Tensor], seconds: float) -> None:
    name = "attention_rollout"
    actual = call_on_copies(fn, weights, name=name, seconds=seconds)
    expect_returned(actual, name=name)
    expected = _rollout(weights)
    mistakes = {hint: wrong for hint, wrong in _rollout_mistakes(weights).items()
                if not (wrong.shape == expected.shape and torch.allclose(wrong, expected, atol=1e-5))}
    B, h, n, _ = weights[0].shape
    expect_close(actual, expected, name=f"{name} ({len(weights)} layers of (B={B}, h={h}, n={n}, n={n}))",
                 mistakes=mistakes)


def _weights(L: int, B: int, h: int, n: int, gen: torch.Generator, sharp: float = 2.0,
             dtype: torch.dtype = torch.float32) -> list[Tensor]:
    return [torch.softmax(sharp * torch.randn(B, h, n, n, generator=gen, dtype=dtype), dim=-1)
            for _ in range(L)]


def check_attention_rollout_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: two layers, two images, four heads, five tokens (the chapter's ViT)."""
    _check_rollout_on(fn, _weights(2, 2, 4, 5, torch.Generator().manual_seed(0)), seconds)


def check_attention_rollout_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: one layer, three and six layers, one head, more tokens, float64."""
    gen = torch.Generator().manual_seed(1)
    for L, B, h, n in [(1, 3, 2, 4), (3, 1, 1, 7), (6, 2, 3, 17), (4, 2, 4, 5)]:
        _check_rollout_on(fn, _weights(L, B, h, n, gen), seconds)
    _check_rollout_on(fn, _weights(3, 2, 2, 6, gen, dtype=torch.float64), seconds)
