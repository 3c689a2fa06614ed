"""The Transformer block (chapter 8): position-wise FFN, add & norm, the encoder.

Names and call signatures follow d2l 1.0 (``PositionWiseFFN``, ``AddNorm``,
``TransformerEncoderBlock``, ``TransformerEncoder``). The flag ``norm_first`` means
what it means in ``torch.nn.TransformerEncoderLayer``: ``False`` is the post-norm
block of the 2017 paper and of d2l, ``True`` the pre-norm block of GPT-2 and most
models since; ``AddNorm.sublayer`` is the one residual + norm step of both, and of
chapter 9's decoder block. ``TransformerEncoder`` initialises its embedding small,
N(0, 1/d), before the sqrt(d) scaling, as the paper's code does (chapter 7 measures
why); ``embed_tokens`` is that input step, shared with chapter 9's decoder.
Chapter 8's experiment is ``experiments.norm_placement``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .multihead import MultiHeadAttention, load_torch_mha_weights
from .positional import position_encoding
from .utils import check_dropout, check_positive_int

__all__ = [
    "PositionWiseFFN",
    "AddNorm",
    "TransformerEncoderBlock",
    "token_embedding",
    "embed_tokens",
    "TransformerEncoder",
    "load_torch_encoder_layer",
]


def _shape(t: object) -> object:
    return getattr(t, "shape", type(t).__name__)


class PositionWiseFFN(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2 at every position (chapter 8, eq. ffn; d2l).

    Shapes: forward(X (..., ffn_num_inputs)) -> (..., ffn_num_outputs), usually
    (B, n, d) -> (B, n, d). Without ffn_num_inputs the first layer is created on the
    first call (LazyLinear, as in d2l 1.0).
    """

    def __init__(
        self,
        ffn_num_hiddens: int,
        ffn_num_outputs: int,
        ffn_num_inputs: Optional[int] = None,
    ) -> None:
        super().__init__()
        check_positive_int("ffn_num_hiddens", ffn_num_hiddens)
        check_positive_int("ffn_num_outputs", ffn_num_outputs)
        if ffn_num_inputs is None:
            self.dense1: nn.Module = nn.LazyLinear(ffn_num_hiddens)
        else:
            check_positive_int("ffn_num_inputs", ffn_num_inputs)
            self.dense1 = nn.Linear(ffn_num_inputs, ffn_num_hiddens)
        self.relu = nn.ReLU()
        self.dense2 = nn.Linear(ffn_num_hiddens, ffn_num_outputs)

    def forward(self, X: Tensor) -> Tensor:
        """The two layers on the last axis; the other axes (batch, position) stay apart.

        Shapes: X (..., ffn_num_inputs) -> (..., ffn_num_outputs).
        """
        _check_ffn_input(self, X)
        # nn.Linear multiplies the last axis only, so position i's output depends on
        # position i's input alone: nothing flows between positions here (attention's
        # job).
        return self.dense2(self.relu(self.dense1(X)))


def _check_ffn_input(ffn: PositionWiseFFN, X: object) -> None:
    if not isinstance(X, Tensor) or X.dim() < 1:
        raise ValueError(f"X must be a tensor (..., features), got {_shape(X)}")
    layer = ffn.dense1
    if not isinstance(layer, nn.LazyLinear) and X.shape[-1] != layer.in_features:
        raise ValueError(
            f"X must have {layer.in_features} features (last dim), "
            f"got X {tuple(X.shape)}"
        )


class AddNorm(nn.Module):
    """Residual connection, then LayerNorm: LN(X + dropout(Y)) (ch. 8, eq. post-pre).

    Shapes: forward(X (..., *norm_shape), Y like X) -> like X; Y is the sublayer's
    output for input X. d2l's name; ``sublayer`` runs a whole sublayer with it.
    """

    def __init__(self, norm_shape: int | tuple[int, ...], dropout: float) -> None:
        super().__init__()
        check_dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(norm_shape)

    def forward(self, X: Tensor, Y: Tensor) -> Tensor:
        """Add the sublayer's output to its input, then normalise each position.

        Shapes: X (..., *norm_shape), Y like X -> like X.
        """
        if not isinstance(X, Tensor) or not isinstance(Y, Tensor) or X.shape != Y.shape:
            raise ValueError(
                "X (the sublayer's input) and Y (its output) must be tensors of the "
                f"same shape, got X {_shape(X)} and Y {_shape(Y)}"
            )
        return self.ln(self.dropout(Y) + X)

    def sublayer(
        self, X: Tensor, f: Callable[[Tensor], Tensor], norm_first: bool = False
    ) -> Tensor:
        """One sublayer f with its residual and LayerNorm, post-norm or pre-norm.

        Shapes: X (..., *norm_shape) -> like X; f keeps the shape of its input.
        Post-norm (the paper, d2l): LN(X + f(X)); pre-norm: X + f(LN(X)), with the
        same LayerNorm and dropout.
        """
        if norm_first:
            # The sum X + ... is never normalised, so an identity path runs from the
            # last block back to the first.
            return X + self.dropout(f(self.ln(X)))
        return self(X, f(X))


class TransformerEncoderBlock(nn.Module):
    """Self-attention, then a position-wise FFN, each with add & norm (chapter 8; d2l).

    Shapes: forward(X (B, n, d), valid_lens None or (B,)) -> (B, n, d), d = num_hiddens.
    norm_first=False (post-norm, the paper, d2l): X <- LN(X + f(X)) for each sublayer
    f; norm_first=True (pre-norm): X <- X + f(LN(X)). Both use the same parameters.
    """

    def __init__(
        self,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        dropout: float,
        use_bias: bool = False,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("num_hiddens", num_hiddens)
        check_dropout(dropout)
        self.norm_first = bool(norm_first)
        d = num_hiddens
        # Sizes given, so every weight exists at once (countable, copyable).
        self.attention = MultiHeadAttention(
            d, num_heads, dropout, bias=use_bias, query_size=d, key_size=d, value_size=d
        )
        self.addnorm1 = AddNorm(d, dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, d, ffn_num_inputs=d)
        self.addnorm2 = AddNorm(d, dropout)

    def forward(self, X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
        """One block: attention mixes positions, the FFN transforms each position.

        Shapes: X (B, n, d), valid_lens None or (B,) -> (B, n, d).
        """
        def attend(H: Tensor) -> Tensor:
            return self.attention(H, H, H, valid_lens)

        X = self.addnorm1.sublayer(X, attend, self.norm_first)
        return self.addnorm2.sublayer(X, self.ffn, self.norm_first)


def token_embedding(vocab_size: int, num_hiddens: int) -> nn.Embedding:
    """The token table of a Transformer stack (chapters 8-9).  Shapes: weight (V, d).

    Entries are drawn from N(0, 1/d), so that after the sqrt(d) scaling each coordinate
    has variance 1, like the paper's setup (nn.Embedding's own N(0, 1) times sqrt(d)
    would give rows of norm d; chapter 7).
    """
    check_positive_int("vocab_size", vocab_size)
    embedding = nn.Embedding(vocab_size, num_hiddens)
    nn.init.normal_(embedding.weight, std=num_hiddens**-0.5)
    return embedding


def embed_tokens(
    embedding: nn.Embedding, positions: nn.Module, X: Tensor, offset: int = 0
) -> Tensor:
    """Token vectors times sqrt(d), plus positions offset, offset + 1, ... (ch. 8-9).

    Shapes: X (B, n) token ids -> (B, n, d). The input step of the encoder and of
    chapter 9's decoder, whose offset counts the positions already decoded.
    """
    d = embedding.embedding_dim
    # Scaled by sqrt(d) as in the paper and d2l (chapter 7 measures what that does).
    return positions(embedding(X) * math.sqrt(d), offset)


def check_token_ids(X: object) -> None:
    """Raise ValueError unless X is a 2-D integer tensor of token ids (B, n)."""
    if not isinstance(X, Tensor) or X.dim() != 2 or X.is_floating_point():
        raise ValueError(
            f"X must be a 2-D tensor of token ids (B, n), got {_shape(X)}"
            + (f" of dtype {X.dtype}" if isinstance(X, Tensor) else "")
        )


class TransformerEncoder(nn.Module):
    """Embedding times sqrt(d), positions, then num_blks encoder blocks (ch. 8; d2l).

    Shapes: forward(X (B, n) token ids, valid_lens None or (B,)) -> (B, n, d).
    A pre-norm stack ends with a LayerNorm: its residual stream is otherwise never
    normalised. positions: "sinusoidal" (chapter 7's table, as in d2l) or "learned"
    (see positional.position_encoding).
    """

    def __init__(
        self,
        vocab_size: int,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        num_blks: int,
        dropout: float,
        use_bias: bool = False,
        norm_first: bool = False,
        max_len: int = 1000,
        positions: str = "sinusoidal",
    ) -> None:
        super().__init__()
        check_positive_int("num_blks", num_blks)
        self.num_hiddens = num_hiddens
        self.embedding = token_embedding(vocab_size, num_hiddens)
        block = dict(num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                     num_heads=num_heads, dropout=dropout, use_bias=use_bias,
                     norm_first=norm_first)
        self.blks = nn.ModuleList(
            TransformerEncoderBlock(**block) for _ in range(num_blks)
        )
        self.pos_encoding = position_encoding(positions, num_hiddens, dropout, max_len)
        self.final_norm: nn.Module = (nn.LayerNorm(num_hiddens) if norm_first
                                      else nn.Identity())
        self.attention_weights: list[Optional[Tensor]] = [None] * num_blks

    def forward(self, X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
        """Embed, add positions, run the blocks, keeping each block's attention weights.

        Shapes: X (B, n) -> (B, n, d); self.attention_weights[i] (B, h, n, n).
        """
        check_token_ids(X)
        X = embed_tokens(self.embedding, self.pos_encoding, X)  # (B, n, d)
        for i, blk in enumerate(self.blks):
            X = blk(X, valid_lens)
            self.attention_weights[i] = blk.attention.attention_weights
        return self.final_norm(X)


@torch.no_grad()
def load_torch_encoder_layer(
    block: TransformerEncoderBlock, layer: nn.TransformerEncoderLayer
) -> TransformerEncoderBlock:
    """Copy a torch.nn.TransformerEncoderLayer's weights into block (chapter 8, parity).

    Shapes: self_attn -> attention; linear1 (d_ff, d) -> ffn.dense1; linear2 (d, d_ff)
    -> ffn.dense2; norm1, norm2 (d,) -> addnorm1.ln, addnorm2.ln. Returns block.
    """
    _check_same_layer_kind(block, layer)
    load_torch_mha_weights(block.attention, layer.self_attn)
    pairs = (
        (block.ffn.dense1, layer.linear1),
        (block.ffn.dense2, layer.linear2),
        (block.addnorm1.ln, layer.norm1),
        (block.addnorm2.ln, layer.norm2),
    )
    for ours, theirs in pairs:
        if ours.weight.shape != theirs.weight.shape:
            raise ValueError(
                f"weight shapes differ: expected {tuple(ours.weight.shape)}, "
                f"got {tuple(theirs.weight.shape)}"
            )
        ours.weight.copy_(theirs.weight)
        ours.bias.copy_(theirs.bias)
    block.addnorm1.ln.eps, block.addnorm2.ln.eps = layer.norm1.eps, layer.norm2.eps
    return block


def _check_same_layer_kind(block: TransformerEncoderBlock, layer: object) -> None:
    if not isinstance(layer, nn.TransformerEncoderLayer):
        raise ValueError(
            "layer must be a torch.nn.TransformerEncoderLayer, "
            f"got {type(layer).__name__}"
        )
    if layer.norm_first != block.norm_first:
        raise ValueError(
            f"both must place the LayerNorms alike, got block.norm_first="
            f"{block.norm_first} and layer.norm_first={layer.norm_first}"
        )
    # torch stores the activation as a function (F.relu by default) or a module.
    if layer.activation is not F.relu and not isinstance(layer.activation, nn.ReLU):
        raise ValueError(
            "PositionWiseFFN uses ReLU, "
            f"got a layer with activation {layer.activation!r}"
        )
