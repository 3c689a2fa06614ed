"""Positions for self-attention (chapter 7): sinusoidal, learned and rotary.

Self-attention without positions is permutation-equivariant: it cannot tell "A hit B"
from "B hit A". The sinusoidal table follows d2l's layout
(``PositionalEncoding(num_hiddens, dropout, max_len=1000)``, sines in the even
columns, cosines in the odd ones, the table in ``self.P``). Angles are computed in
float64 and rounded once, so the table is exact to float32 precision even at
position 1000. Chapter 7's experiments are ``experiments.positions``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .utils import check_dropout, check_non_negative_int, check_positive_int

__all__ = [
    "encoding_frequencies",
    "sinusoidal_encoding",
    "PositionalEncoding",
    "LearnedPositionalEmbedding",
    "POSITION_KINDS",
    "position_encoding",
    "offset_rotation",
    "apply_rotary",
]


def _check_even_width(num_hiddens: object) -> None:
    check_positive_int("num_hiddens", num_hiddens)
    if num_hiddens % 2:  # type: ignore[operator]
        raise ValueError(
            "num_hiddens must be even: columns 2i and 2i+1 hold the sine and cosine of "
            f"one frequency, got num_hiddens={num_hiddens}"
        )


def encoding_frequencies(num_hiddens: int, base: float = 10000.0) -> Tensor:
    """Angular frequencies w_i = base^(-2i/d), i = 0 .. d/2 - 1 (ch. 7, eq. sinusoidal).

    Shapes: -> (d / 2,) float64, from 1 down to nearly 1/base.
    """
    _check_even_width(num_hiddens)
    if not base > 1:
        raise ValueError(
            f"base must be > 1 so that the frequencies decrease, got {base!r}"
        )
    two_i = torch.arange(0, num_hiddens, 2, dtype=torch.float64)  # (d/2,): 0, 2, 4, ...
    return base ** (-two_i / num_hiddens)


def sinusoidal_encoding(
    max_len: int,
    num_hiddens: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """P[pos, 2i] = sin(pos w_i), P[pos, 2i+1] = cos(pos w_i) (ch. 7, eq. sinusoidal).

    Shapes: -> (max_len, d).
    """
    check_positive_int("max_len", max_len)
    w = encoding_frequencies(num_hiddens, base)  # (d/2,)
    pos = torch.arange(max_len, dtype=torch.float64)  # (max_len,)
    angles = pos[:, None] * w[None, :]  # (max_len, d/2)
    P = torch.empty(max_len, num_hiddens, dtype=torch.float64)
    P[:, 0::2] = torch.sin(angles)  # even columns: sines
    P[:, 1::2] = torch.cos(angles)  # odd columns: cosines of the same frequency
    return P.to(dtype)


def _check_sequence(X: object, num_hiddens: int, max_len: int, offset: int) -> None:
    if not isinstance(X, Tensor) or X.dim() != 3:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be a 3-D tensor (B, n, d), got {shape}")
    if X.shape[-1] != num_hiddens:
        raise ValueError(
            f"X must have num_hiddens={num_hiddens} features (last dim), "
            f"got X {tuple(X.shape)}"
        )
    check_non_negative_int("offset", offset)
    n = X.shape[1]
    if offset + n > max_len:
        raise ValueError(
            f"positions {offset}..{offset + n - 1} (a sequence of length {n} at "
            f"offset {offset}) do not fit in the table of max_len={max_len} "
            "positions; build the module with a larger max_len"
        )


class PositionalEncoding(nn.Module):
    """Add the sinusoidal table, then dropout (chapter 7, eq. sinusoidal; d2l).

    Shapes: forward(X (B, n, d), offset=0) -> (B, n, d); self.P (1, max_len, d) is
    the table, as in d2l. ``offset`` adds the rows offset .. offset + n - 1, for
    decoding one token at a time.
    """

    def __init__(
        self,
        num_hiddens: int,
        dropout: float,
        max_len: int = 1000,
        base: float = 10000.0,
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.dropout = nn.Dropout(dropout)
        # A buffer moves with .to(device); not persistent: it is recomputed, never
        # learned.
        P = sinusoidal_encoding(max_len, num_hiddens, base)[None]  # (1, max_len, d)
        self.register_buffer("P", P, persistent=False)

    def forward(self, X: Tensor, offset: int = 0) -> Tensor:
        """X + P[offset : offset + n], then dropout.  Shapes: (B, n, d) -> (B, n, d)."""
        _check_sequence(X, self.num_hiddens, self.max_len, offset)
        # (1, n, d) broadcasts over the batch.
        X = X + self.P[:, offset : offset + X.shape[1], :].to(X.dtype)
        return self.dropout(X)


class LearnedPositionalEmbedding(nn.Module):
    """Add a learned vector per position, then dropout (chapter 7; BERT, GPT-2).

    Shapes: forward(X (B, n, d), offset=0) -> (B, n, d); self.P (1, max_len, d) is an
    nn.Parameter, initialised N(0, init_std^2). A position never seen in training
    keeps its random initial vector.
    """

    def __init__(
        self,
        num_hiddens: int,
        dropout: float,
        max_len: int = 1000,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        check_positive_int("num_hiddens", num_hiddens)
        check_positive_int("max_len", max_len)
        check_dropout(dropout)
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std!r}")
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.dropout = nn.Dropout(dropout)
        self.P = nn.Parameter(init_std * torch.randn(1, max_len, num_hiddens))

    def forward(self, X: Tensor, offset: int = 0) -> Tensor:
        """X + P[offset : offset + n], then dropout.  Shapes: (B, n, d) -> (B, n, d)."""
        _check_sequence(X, self.num_hiddens, self.max_len, offset)
        return self.dropout(X + self.P[:, offset : offset + X.shape[1], :])


POSITION_KINDS = ("sinusoidal", "learned")


def position_encoding(
    kind: str, num_hiddens: int, dropout: float, max_len: int = 1000
) -> nn.Module:
    """The positions a Transformer stack adds to its tokens, X + P[:n] (chapters 8-9).

    Shapes: the module's forward(X (B, n, d), offset=0) -> (B, n, d). kind
    "sinusoidal" is the fixed table above; "learned" is a LearnedPositionalEmbedding
    started at the scale of the token vectors.
    """
    if kind == "sinusoidal":
        return PositionalEncoding(num_hiddens, dropout, max_len)
    if kind == "learned":
        # The token vectors enter with entries of standard deviation 1 (N(0, 1/d)
        # times sqrt(d), chapters 7-8), so the learned rows start at the same scale,
        # as GPT-2 starts both tables alike. Independent random rows also start
        # neighbouring positions far apart, where sinusoidal neighbours are 97% alike
        # (chapter 9).
        return LearnedPositionalEmbedding(num_hiddens, dropout, max_len, init_std=1.0)
    raise ValueError(f"positions must be one of {POSITION_KINDS}, got {kind!r}")


def offset_rotation(
    k: int,
    num_hiddens: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The rotation M_k with P[pos + k] = P[pos] M_k for every pos (ch. 7, eq. offset).

    Shapes: -> (d, d), block-diagonal; block i is
    [[cos k w_i, -sin k w_i], [sin k w_i, cos k w_i]].
    """
    if not isinstance(k, int) or isinstance(k, bool):
        raise ValueError(f"k must be an int (negative k shifts back), got {k!r}")
    angles = k * encoding_frequencies(num_hiddens, base)  # (d/2,)
    c, s = torch.cos(angles), torch.sin(angles)
    M = torch.zeros(num_hiddens, num_hiddens, dtype=torch.float64)
    even, odd = torch.arange(0, num_hiddens, 2), torch.arange(1, num_hiddens, 2)
    # Row vector times M: new sin = sin cos(kw) + cos sin(kw),
    # new cos = cos cos(kw) - sin sin(kw).
    M[even, even], M[even, odd] = c, -s
    M[odd, even], M[odd, odd] = s, c
    return M.to(dtype)


def apply_rotary(
    x: Tensor, positions: Optional[Tensor] = None, base: float = 10000.0
) -> Tensor:
    """Rotary embedding: rotate pair (2i, 2i+1) by the angle pos w_i (chapter 7, RoPE).

    Shapes: x (..., n, d) with d even; positions None (0 .. n-1) or integers
    broadcastable to x.shape[:-1] -> (..., n, d). Equals x @ offset_rotation(pos, d).T
    row by row, so (q at m) . (k at n) depends on m - n only.
    """
    w = encoding_frequencies(_feature_size(x), base).to(x.device)  # (d/2,)
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)  # (n,)
    _check_positions(positions, x)
    # (..., n, d/2), exact in float64 before rounding.
    angles = positions.to(x.device, torch.float64)[..., None] * w
    c, s = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., n, d/2) each: the two halves of a pair
    rotated = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), -1)  # (..., n, d/2, 2)
    return rotated.flatten(-2)  # (..., n, d): pairs back in place, interleaved


def _feature_size(x: object) -> int:
    if not isinstance(x, Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"x must be a tensor (..., n, d) with at least 2 dims, got {shape}"
        )
    return x.shape[-1]  # encoding_frequencies checks that it is even


def _check_positions(positions: object, x: Tensor) -> None:
    if (not isinstance(positions, Tensor) or positions.is_floating_point()
            or positions.dtype == torch.bool):
        raise ValueError(f"positions must be an integer tensor, got {positions!r:.80}")
    try:
        fits = torch.broadcast_shapes(positions.shape, x.shape[:-1]) == x.shape[:-1]
    except RuntimeError:
        fits = False
    if not fits:  # positions may repeat over x's leading axes, never add axes
        raise ValueError(
            f"positions must broadcast to x.shape[:-1] = {tuple(x.shape[:-1])}, "
            f"got {tuple(positions.shape)}"
        )
