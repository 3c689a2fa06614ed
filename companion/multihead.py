"""Multi-head attention (chapter 6): split into heads, attend per head, merge, project.

Names and call signatures follow d2l (``transpose_qkv``, ``transpose_output``,
``MultiHeadAttention(num_hiddens, num_heads, dropout, bias=False)``). Each head
runs chapter 4's ``DotProductAttention`` on its own slice of the projected
features; the heads are folded into the batch axis so that one batched matrix
product serves them all.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .attention import DotProductAttention

__all__ = [
    "transpose_qkv",
    "transpose_output",
    "MultiHeadAttention",
    "valid_lens_to_key_padding_mask",
    "load_torch_mha_weights",
    "make_two_neighbours_data",
    "TwoNeighboursReader",
]


def _check_heads(num_hiddens: int, num_heads: int) -> None:
    if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    if num_hiddens % num_heads != 0:
        raise ValueError(
            f"num_hiddens must be divisible by num_heads so that every head gets "
            f"num_hiddens / num_heads features, got num_hiddens={num_hiddens} and "
            f"num_heads={num_heads} ({num_hiddens} % {num_heads} = {num_hiddens % num_heads})"
        )


def transpose_qkv(X: Tensor, num_heads: int) -> Tensor:
    """Split the feature axis into heads and fold the heads into the batch (chapter 6, split; d2l name).

    Shapes: X (batch, n, num_hiddens) -> (batch * num_heads, n, num_hiddens / num_heads).
    Row b * num_heads + h of the result holds head h of sequence b: features
    h * d_h ... (h + 1) * d_h - 1 of every position, with d_h = num_hiddens / num_heads.
    """
    if not isinstance(X, Tensor) or X.dim() != 3:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be a 3-D tensor (batch, n, num_hiddens), got {shape}")
    batch, n, num_hiddens = X.shape
    _check_heads(num_hiddens, num_heads)
    # Cut the feature axis into num_heads consecutive chunks.
    X = X.reshape(batch, n, num_heads, num_hiddens // num_heads)  # (batch, n, heads, d_h)
    # Bring the head axis next to the batch axis, before the positions.
    X = X.permute(0, 2, 1, 3)  # (batch, heads, n, d_h)
    # Fold heads into the batch: each head becomes an independent "sequence".
    return X.reshape(batch * num_heads, n, num_hiddens // num_heads)  # (batch * heads, n, d_h)


def transpose_output(X: Tensor, num_heads: int) -> Tensor:
    """Undo transpose_qkv: unfold the heads and concatenate them along the features (chapter 6, merge; d2l name).

    Shapes: X (batch * num_heads, n, d_h) -> (batch, n, num_heads * d_h).
    """
    if not isinstance(X, Tensor) or X.dim() != 3:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be a 3-D tensor (batch * num_heads, n, d_h), got {shape}")
    if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    bh, n, d_h = X.shape
    if bh % num_heads != 0:
        raise ValueError(
            f"the first axis must be batch * num_heads, so divisible by num_heads={num_heads}, "
            f"got X {tuple(X.shape)}"
        )
    X = X.reshape(bh // num_heads, num_heads, n, d_h)  # (batch, heads, n, d_h)
    X = X.permute(0, 2, 1, 3)  # (batch, n, heads, d_h)
    return X.reshape(bh // num_heads, n, num_heads * d_h)  # (batch, n, num_hiddens)


def _linear(in_size: Optional[int], out_size: int, bias: bool) -> nn.Module:
    # With the input size known the weights exist at once (easy to inspect and
    # to copy); without it they are created on the first call (d2l 1.0).
    return nn.Linear(in_size, out_size, bias=bias) if in_size is not None else nn.LazyLinear(out_size, bias=bias)


def _repeat_per_head(valid_lens: Tensor, num_heads: int) -> Tensor:
    """valid_lens or a bool mask for (batch, ...) -> the same for (batch * heads, ...)."""
    if valid_lens.dim() >= 1 and valid_lens.dtype == torch.bool and valid_lens.shape[0] == 1:
        return valid_lens  # a mask shared by the whole batch broadcasts as it is
    # Row b * heads + h of the folded batch belongs to sequence b (transpose_qkv),
    # so each sequence's entry is repeated heads times in a row.
    return torch.repeat_interleave(valid_lens, repeats=num_heads, dim=0)  # (batch * heads, ...)


class MultiHeadAttention(nn.Module):
    """Multi-head attention: h dot-product heads on projected slices, mixed by W_o (chapter 6, eq. mha; d2l name).

    Shapes: forward(queries (batch, n_q, query_size), keys (batch, n_k, key_size),
    values (batch, n_k, value_size), valid_lens as in masked_softmax) -> (batch, n_q, num_hiddens).
    Per-head weights are kept in self.attention_weights (batch, num_heads, n_q, n_k).
    query_size, key_size, value_size default to lazy layers (d2l 1.0); give them
    to create the weights at once.
    """

    def __init__(
        self,
        num_hiddens: int,
        num_heads: int,
        dropout: float,
        bias: bool = False,
        query_size: Optional[int] = None,
        key_size: Optional[int] = None,
        value_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_hiddens, int) or isinstance(num_hiddens, bool) or num_hiddens < 1:
            raise ValueError(f"num_hiddens must be a positive int, got {num_hiddens!r}")
        _check_heads(num_hiddens, num_heads)
        self.num_heads = num_heads
        self.num_hiddens = num_hiddens
        self.attention = DotProductAttention(dropout)
        self.W_q = _linear(query_size, num_hiddens, bias)
        self.W_k = _linear(key_size, num_hiddens, bias)
        self.W_v = _linear(value_size, num_hiddens, bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.attention_weights: Optional[Tensor] = None

    def forward(
        self, queries: Tensor, keys: Tensor, values: Tensor, valid_lens: Optional[Tensor] = None
    ) -> Tensor:
        """Project, split into heads, attend per head, merge, project again.

        Shapes: queries (batch, n_q, query_size), keys (batch, n_k, key_size),
        values (batch, n_k, value_size) -> (batch, n_q, num_hiddens).
        """
        for name, t, layer in (("queries", queries, self.W_q), ("keys", keys, self.W_k),
                               ("values", values, self.W_v)):
            if not isinstance(t, Tensor) or t.dim() != 3:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must be a 3-D tensor (batch, n, features), got {shape}")
            if isinstance(layer, nn.Linear) and not isinstance(layer, nn.LazyLinear) \
                    and t.shape[-1] != layer.in_features:
                raise ValueError(
                    f"{name} must have {layer.in_features} features (last dim), got {name} {tuple(t.shape)}"
                )
        h = self.num_heads
        # One projection for all heads at once, then cut into heads.
        q = transpose_qkv(self.W_q(queries), h)  # (batch * h, n_q, d_h)
        k = transpose_qkv(self.W_k(keys), h)  # (batch * h, n_k, d_h)
        v = transpose_qkv(self.W_v(values), h)  # (batch * h, n_k, d_h)
        if valid_lens is not None:
            if not isinstance(valid_lens, Tensor):
                raise ValueError(
                    f"valid_lens must be None or a torch.Tensor, got {type(valid_lens).__name__}"
                )
            batch = queries.shape[0]
            allowed = (batch, 1) if valid_lens.dtype == torch.bool else (batch,)
            if valid_lens.dim() == 0 or valid_lens.shape[0] not in allowed:
                raise ValueError(
                    f"valid_lens must have batch size {batch} like the queries "
                    f"{tuple(queries.shape)}, got valid_lens {tuple(valid_lens.shape)}"
                )
            valid_lens = _repeat_per_head(valid_lens, h)  # (batch * h, ...)
        # Each head scales by sqrt(d_h), its own query/key size.
        out = self.attention(q, k, v, valid_lens)  # (batch * h, n_q, d_h)
        weights = self.attention.attention_weights  # (batch * h, n_q, n_k)
        self.attention_weights = weights.reshape(-1, h, *weights.shape[1:])  # (batch, h, n_q, n_k)
        out = transpose_output(out, h)  # (batch, n_q, num_hiddens): heads side by side
        return self.W_o(out)  # (batch, n_q, num_hiddens): mixes the heads


def valid_lens_to_key_padding_mask(valid_lens: Tensor, n_k: int) -> Tensor:
    """Valid lengths (batch,) -> torch's key_padding_mask, True = ignore this key (chapter 6).

    Shapes: valid_lens (batch,) integers -> (batch, n_k) bool.
    The opposite convention to masked_softmax's boolean masks (True = may attend).
    """
    if not isinstance(valid_lens, Tensor) or valid_lens.dim() != 1 or valid_lens.is_floating_point() \
            or valid_lens.dtype == torch.bool:
        desc = (f"{tuple(valid_lens.shape)} {valid_lens.dtype}" if isinstance(valid_lens, Tensor)
                else type(valid_lens).__name__)
        raise ValueError(f"valid_lens must be a 1-D integer tensor (batch,), got {desc}")
    positions = torch.arange(n_k, device=valid_lens.device)  # (n_k,)
    return positions[None, :] >= valid_lens[:, None]  # (batch, n_k)


@torch.no_grad()
def load_torch_mha_weights(mha: MultiHeadAttention, torch_mha: nn.MultiheadAttention) -> MultiHeadAttention:
    """Copy the weights of a torch.nn.MultiheadAttention into a MultiHeadAttention (chapter 6, parity).

    Shapes: torch_mha.in_proj_weight (3 * num_hiddens, num_hiddens) -> W_q, W_k, W_v
    (num_hiddens, num_hiddens) each; out_proj -> W_o. Returns mha.
    """
    e = torch_mha.embed_dim
    if e != mha.num_hiddens or torch_mha.num_heads != mha.num_heads:
        raise ValueError(
            f"the two modules must have the same width and heads, got num_hiddens={mha.num_hiddens}, "
            f"num_heads={mha.num_heads} and embed_dim={e}, num_heads={torch_mha.num_heads}"
        )
    if torch_mha.bias_k is not None:
        raise ValueError("add_bias_kv=True has no counterpart in MultiHeadAttention, got a module with bias_k")
    if torch_mha.in_proj_weight is not None:
        # Torch stacks the three projections row-wise: [W_q; W_k; W_v].
        weights = torch_mha.in_proj_weight.split(e, dim=0)  # 3 x (e, e)
    else:
        weights = (torch_mha.q_proj_weight, torch_mha.k_proj_weight, torch_mha.v_proj_weight)
    biases = (torch_mha.in_proj_bias.split(e, dim=0) if torch_mha.in_proj_bias is not None
              else (None, None, None))
    targets = (mha.W_q, mha.W_k, mha.W_v)
    for layer, w in zip(targets, weights):
        if isinstance(layer, nn.LazyLinear) and layer.has_uninitialized_params():
            layer(w.new_zeros(1, w.shape[1]))  # one call creates the lazy weights
    for layer, w, b in zip((*targets, mha.W_o), (*weights, torch_mha.out_proj.weight),
                           (*biases, torch_mha.out_proj.bias)):
        if layer.weight.shape != w.shape:
            raise ValueError(f"weight shapes differ: expected {tuple(layer.weight.shape)}, got {tuple(w.shape)}")
        if (layer.bias is None) != (b is None):
            raise ValueError(
                f"bias settings differ: MultiHeadAttention has bias={layer.bias is not None}, "
                f"torch module has bias={b is not None}"
            )
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
    return mha


# --------------------------------------------------------------------------- one head vs many (chapter 6)


def make_two_neighbours_data(
    num_seqs: int = 256, seq_len: int = 6, content_size: int = 3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A task that needs two places at once: output both neighbours of every position (chapter 6).

    Shapes: -> X (num_seqs, seq_len, seq_len + content_size), Y (num_seqs, seq_len, 2 * content_size).
    Token i is [one-hot(i), c_i] with c_i ~ N(0, I); its target is [c_{i-1}, c_{i+1}],
    indices taken cyclically. Uses its own generator (the global RNG is untouched).
    """
    if seq_len < 3 or num_seqs < 1 or content_size < 1:
        raise ValueError(
            f"need seq_len >= 3 (two distinct neighbours), num_seqs >= 1 and content_size >= 1, "
            f"got seq_len={seq_len}, num_seqs={num_seqs}, content_size={content_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    content = torch.randn(num_seqs, seq_len, content_size, generator=gen)  # (N, n, c)
    position = torch.eye(seq_len).expand(num_seqs, -1, -1)  # (N, n, n): token i carries one-hot(i)
    X = torch.cat([position, content], dim=-1)  # (N, n, n + c)
    # roll(1) puts c_{i-1} at position i, roll(-1) puts c_{i+1} there.
    Y = torch.cat([content.roll(1, dims=1), content.roll(-1, dims=1)], dim=-1)  # (N, n, 2c)
    return X, Y


class TwoNeighboursReader(nn.Module):
    """Self-attention with num_heads heads, then a linear readout, for make_two_neighbours_data (chapter 6).

    Shapes: forward(X (batch, seq_len, seq_len + content_size)) -> (batch, seq_len, 2 * content_size).
    """

    def __init__(self, num_hiddens: int, num_heads: int, seq_len: int, content_size: int) -> None:
        super().__init__()
        size = seq_len + content_size
        self.attention = MultiHeadAttention(num_hiddens, num_heads, 0.0, bias=True,
                                            query_size=size, key_size=size, value_size=size)
        self.readout = nn.Linear(num_hiddens, 2 * content_size)

    def forward(self, X: Tensor) -> Tensor:
        """Every token attends to the whole sequence (queries = keys = values = X).

        Shapes: X (batch, n, n + c) -> (batch, n, 2c).
        """
        return self.readout(self.attention(X, X, X))  # (batch, n, num_hiddens) -> (batch, n, 2c)
