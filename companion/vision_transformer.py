"""The Vision Transformer (chapter 13): patches as tokens, a class token, positions.

Names and call signatures follow d2l 1.0 (``PatchEmbedding``, ``ViTBlock``, ``ViT``;
``PatchEmbedding`` adds ``in_channels``). An image is cut into patch_size x patch_size
patches; each is flattened and mapped linearly to num_hiddens features, which a
strided convolution does in one call (``patchify`` is the same cut written out).
A learned class token is put in front, learned position embeddings are added, and
chapter 8's pre-norm encoder blocks run on the sequence (``ViTBlock`` is
``TransformerEncoderBlock(norm_first=True)``; its FFN uses ReLU where d2l's ViTMLP
uses GELU). The head reads the class token. ``attention_rollout`` (Abnar & Zuidema,
2020) follows the attention from the class token down to the patches.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .transformer import TransformerEncoderBlock
from .utils import check_dropout, check_positive_int

__all__ = ["patchify", "permute_patches", "PatchEmbedding", "ViTBlock", "ViT",
           "attention_rollout"]


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)  # type: ignore


def patchify(X: Tensor, patch_size: int) -> Tensor:
    """Cut images into flattened patches, row by row of patches (chapter 13).

    Shapes: X (B, channels, height, width) -> (B, n, channels * patch_size**2),
    n = (height / patch_size) * (width / patch_size). Each patch is flattened channel
    first, then row, then column: the order of a Conv2d weight (d, channels, patch,
    patch).
    """
    _check_patchify(X, patch_size)
    B, C, H, W = X.shape
    p = patch_size
    X = X.reshape(B, C, H // p, p, W // p, p)  # (B, channels, rows, patch, cols, patch)
    X = X.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, channels, patch, patch)
    # (B, n, channels * patch * patch)
    return X.reshape(B, (H // p) * (W // p), C * p * p)


def _check_patchify(X: object, patch_size: object) -> None:
    check_positive_int("patch_size", patch_size)
    if not isinstance(X, Tensor) or X.dim() != 4:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError("X must be a 4-D tensor (B, channels, height, width), "
                         f"got {shape}")
    if X.shape[-2] % patch_size or X.shape[-1] % patch_size:  # type: ignore[operator]
        raise ValueError(f"patch_size {patch_size} must divide the image size "
                         f"{tuple(X.shape[-2:])}")


def permute_patches(X: Tensor, patch_size: int, perm: Tensor) -> Tensor:
    """The images with their patches moved: patch perm[k] goes to place k (ch. 13).

    Shapes: X (B, channels, height, width), perm (n,) a permutation of the n patches in
    patchify's order -> (B, channels, height, width).
    """
    _check_patchify(X, patch_size)
    B, C, H, W = X.shape
    p, rows, cols = patch_size, H // patch_size, W // patch_size
    patches = X.reshape(B, C, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5)
    # (B, n, channels, patch, patch), in the new order
    patches = patches.reshape(B, rows * cols, C, p, p)[:, perm]
    patches = patches.reshape(B, rows, cols, C, p, p).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(B, C, H, W)


class PatchEmbedding(nn.Module):
    """Each patch, flattened, times a weight matrix: a strided conv (ch. 13; d2l).

    Shapes: forward(X (B, in_channels, height, width)) -> (B, n, d), d = num_hiddens,
    n = num_patches = (height / patch_size) * (width / patch_size).
    """

    def __init__(self, img_size: int | tuple[int, int] = 96,
                 patch_size: int | tuple[int, int] = 16, num_hiddens: int = 512,
                 in_channels: int = 1) -> None:
        super().__init__()
        img_size, patch_size = _pair(img_size), _pair(patch_size)
        _check_patch_args(img_size, patch_size, num_hiddens, in_channels)
        self.img_size, self.patch_size = img_size, patch_size
        self.num_patches = ((img_size[0] // patch_size[0])
                            * (img_size[1] // patch_size[1]))
        # kernel = stride = patch: the kernel sees each patch once, and no two overlap.
        self.conv = nn.Conv2d(in_channels, num_hiddens, kernel_size=patch_size,
                              stride=patch_size)

    def forward(self, X: Tensor) -> Tensor:
        """Embed every patch; the patches become a sequence, row by row.

        Shapes: X (B, in_channels, height, width) -> (B, n, d).
        """
        _check_images(self, X)
        # (B, d, rows, cols) -> (B, d, n) -> (B, n, d)
        return self.conv(X).flatten(2).transpose(1, 2)


def _check_patch_args(img_size: tuple, patch_size: tuple, num_hiddens: object,
                      in_channels: object) -> None:
    for name, value in [("num_hiddens", num_hiddens), ("in_channels", in_channels),
                        *(("img_size", s) for s in img_size),
                        *(("patch_size", s) for s in patch_size)]:
        check_positive_int(name, value)
    if img_size[0] % patch_size[0] or img_size[1] % patch_size[1]:
        raise ValueError(f"patch_size {patch_size} must divide img_size {img_size}")


def _check_images(embedding: PatchEmbedding, X: object) -> None:
    expected = (embedding.conv.in_channels, *embedding.img_size)
    if not isinstance(X, Tensor) or X.dim() != 4 or tuple(X.shape[1:]) != expected:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be images (B, {', '.join(map(str, expected))}), "
                         f"got {shape}")


class ViTBlock(TransformerEncoderBlock):
    """Chapter 8's pre-norm encoder block, under d2l's ViT name and signature (ch. 13).

    Shapes: forward(X (B, n, d), valid_lens None) -> (B, n, d), d = num_hiddens.
    X <- X + MHA(LN(X)), then X <- X + FFN(LN(X)), with mlp_num_hiddens in the FFN.
    """

    def __init__(self, num_hiddens: int, norm_shape: int | tuple[int, ...],
                 mlp_num_hiddens: int, num_heads: int, dropout: float,
                 use_bias: bool = False) -> None:
        _check_norm_shape(norm_shape, num_hiddens)
        super().__init__(num_hiddens, mlp_num_hiddens, num_heads, dropout,
                         use_bias=use_bias, norm_first=True)


def _check_norm_shape(norm_shape: object, num_hiddens: int) -> None:
    shape = (norm_shape,) if isinstance(norm_shape, int) else norm_shape
    if not isinstance(shape, (tuple, list)) or tuple(shape) != (num_hiddens,):
        raise ValueError(f"norm_shape must be num_hiddens ({num_hiddens}) or "
                         f"({num_hiddens},), got {norm_shape!r}")


class ViT(nn.Module):
    """Patch embedding, class token, positions, ViT blocks, a head (ch. 13; d2l).

    Shapes: forward(X (B, in_channels, height, width)) -> (B, C) logits,
    C = num_classes; self.attention_weights[i] (B, h, n + 1, n + 1), token 0 the
    class token.
    positions=False leaves the position embeddings out (the chapter's permutation
    test). lr is stored as in d2l, whose trainer reads it (train_classifier takes
    its own).
    """

    def __init__(self, img_size: int | tuple[int, int], patch_size: int,
                 num_hiddens: int, mlp_num_hiddens: int, num_heads: int,
                 num_blks: int, emb_dropout: float, blk_dropout: float,
                 lr: float = 0.1, use_bias: bool = False, num_classes: int = 10,
                 in_channels: int = 1, positions: bool = True) -> None:
        super().__init__()
        _check_vit_args(num_blks, num_classes, emb_dropout)
        self.lr = lr
        self.patch_embedding = PatchEmbedding(img_size, patch_size, num_hiddens,
                                              in_channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, num_hiddens))
        num_steps = self.patch_embedding.num_patches + 1  # the class token too
        # Small at the start (as in the ViT paper's code), learned like any weight.
        self.pos_embedding: Optional[nn.Parameter] = (
            nn.Parameter(0.02 * torch.randn(1, num_steps, num_hiddens))
            if positions else None)
        self.dropout = nn.Dropout(emb_dropout)
        self.blks = nn.ModuleList(
            ViTBlock(num_hiddens, num_hiddens, mlp_num_hiddens, num_heads,
                     blk_dropout, use_bias) for _ in range(num_blks))
        self.head = nn.Sequential(nn.LayerNorm(num_hiddens),
                                  nn.Linear(num_hiddens, num_classes))
        self.attention_weights: list[Optional[Tensor]] = [None] * num_blks

    def forward(self, X: Tensor) -> Tensor:
        """Patches to tokens, the class token in front, the blocks, the head on it.

        Shapes: X (B, in_channels, height, width) -> (B, C).
        """
        X = self.patch_embedding(X)  # (B, n, d)
        cls = self.cls_token.expand(X.shape[0], -1, -1)  # (B, 1, d)
        X = torch.cat((cls, X), dim=1)  # (B, n + 1, d)
        if self.pos_embedding is not None:
            X = X + self.pos_embedding
        X = self.dropout(X)
        for i, blk in enumerate(self.blks):
            X = blk(X)
            self.attention_weights[i] = blk.attention.attention_weights
        # Only the class token's final state is read: it attended to every patch.
        return self.head(X[:, 0])  # (B, C)


def _check_vit_args(num_blks: object, num_classes: object,
                    emb_dropout: object) -> None:
    check_positive_int("num_blks", num_blks)
    check_positive_int("num_classes", num_classes)
    check_dropout(emb_dropout)


def attention_rollout(attention_weights: list[Tensor],
                      residual: bool = True) -> Tensor:
    """How much each token's output draws on each input token (Abnar & Zuidema 2020).

    Shapes: attention_weights L tensors (B, h, n, n), first layer first -> (B, n, n),
    rows summing to one. Heads are averaged; with residual, each layer's weights
    become 0.5 A + 0.5 I (the skip connection), and the layers are multiplied.
    """
    _check_rollout(attention_weights)
    rollout = None
    for weights in attention_weights:
        A = weights.mean(dim=1)  # (B, n, n): the heads averaged
        if residual:
            A = 0.5 * A + 0.5 * torch.eye(A.shape[-1], device=A.device, dtype=A.dtype)
        # Output i of this layer mixes its inputs j, each of which already mixed the
        # layer below: rollout_L = A_L ... A_1, the last layer on the left.
        rollout = A if rollout is None else A @ rollout
    return rollout  # type: ignore[return-value]


def _check_rollout(attention_weights: object) -> None:
    if (not isinstance(attention_weights, (list, tuple)) or not attention_weights
            or not all(isinstance(w, Tensor) and w.dim() == 4
                       and w.shape == attention_weights[0].shape
                       and w.shape[-1] == w.shape[-2] for w in attention_weights)):
        raise ValueError("attention_weights must be a non-empty list of tensors "
                         "(B, h, n, n) of one shape, one per layer (ViT keeps them "
                         "in model.attention_weights after a forward pass)")
