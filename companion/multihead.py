"""Multi-head attention (chapter 6): split into heads, attend per head, merge, project.

Names and call signatures follow d2l (``transpose_qkv``, ``transpose_output``,
``MultiHeadAttention(num_hiddens, num_heads, dropout, bias=False)``). Each head runs
chapter 4's ``DotProductAttention`` on its own slice of the projected features; the
heads are folded into the batch axis so that one batched matrix product serves them
all. A ``KVCache`` keeps the projected keys and values of the positions seen so far,
for decoding one token at a time (chapter 9).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .attention import DotProductAttention
from .utils import check_positive_int

__all__ = [
    "transpose_qkv",
    "transpose_output",
    "KVCache",
    "MultiHeadAttention",
    "valid_lens_to_key_padding_mask",
    "load_torch_mha_weights",
]


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__


def _check_heads(num_hiddens: int, num_heads: int) -> None:
    check_positive_int("num_heads", num_heads)
    if num_hiddens % num_heads != 0:
        raise ValueError(
            f"num_hiddens must be divisible by num_heads so that every head gets "
            f"num_hiddens / num_heads features, got num_hiddens={num_hiddens} and "
            f"num_heads={num_heads} ({num_hiddens} % {num_heads} = "
            f"{num_hiddens % num_heads})"
        )


def transpose_qkv(X: Tensor, num_heads: int) -> Tensor:
    """Split the features into heads, fold the heads into the batch (chapter 6; d2l).

    Shapes: X (B, n, d) -> (B * h, n, d_h) with h = num_heads, d_h = d / h.
    Row b * h + j of the result holds head j of sequence b: features
    j * d_h ... (j + 1) * d_h - 1 of every position.
    """
    if not isinstance(X, Tensor) or X.dim() != 3:
        raise ValueError(f"X must be a 3-D tensor (B, n, d), got {_shape(X)}")
    B, n, d = X.shape
    _check_heads(d, num_heads)
    h = num_heads
    # Cut the feature axis into h consecutive chunks.
    X = X.reshape(B, n, h, d // h)  # (B, n, h, d_h)
    # Bring the head axis next to the batch axis, before the positions.
    X = X.permute(0, 2, 1, 3)  # (B, h, n, d_h)
    # Fold heads into the batch: each head becomes an independent "sequence".
    return X.reshape(B * h, n, d // h)  # (B * h, n, d_h)


def transpose_output(X: Tensor, num_heads: int) -> Tensor:
    """Undo transpose_qkv: unfold the heads, put them side by side (chapter 6; d2l).

    Shapes: X (B * h, n, d_h) -> (B, n, h * d_h) with h = num_heads.
    """
    if not isinstance(X, Tensor) or X.dim() != 3:
        raise ValueError(f"X must be a 3-D tensor (B * h, n, d_h), got {_shape(X)}")
    check_positive_int("num_heads", num_heads)
    Bh, n, d_h = X.shape
    h = num_heads
    if Bh % h != 0:
        raise ValueError(
            f"the first axis must be B * num_heads, so divisible by num_heads={h}, "
            f"got X {tuple(X.shape)}"
        )
    X = X.reshape(Bh // h, h, n, d_h)  # (B, h, n, d_h)
    X = X.permute(0, 2, 1, 3)  # (B, n, h, d_h)
    return X.reshape(Bh // h, n, h * d_h)  # (B, n, d)


class KVCache:
    """The projected keys and values of one attention layer so far (chapter 9).

    Shapes: k, v (B * h, t, d_h) after t positions; None before the first append.
    """

    def __init__(self) -> None:
        self.k: Optional[Tensor] = None
        self.v: Optional[Tensor] = None

    def __len__(self) -> int:
        """Number of positions t held."""
        return 0 if self.k is None else self.k.shape[1]

    def append(self, k: Tensor, v: Tensor) -> None:
        """Add the keys and values of new positions after the ones held.

        Shapes: k, v (B * h, n, d_h), the keys and values of n new positions.
        """
        _check_new_entries(self, k, v)
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=1)  # (B * h, t + n, d_h)
            self.v = torch.cat([self.v, v], dim=1)


def _check_new_entries(cache: KVCache, k: Tensor, v: Tensor) -> None:
    if k.shape != v.shape or k.dim() != 3:
        raise ValueError(
            f"k and v must be 3-D of the same shape, got k {tuple(k.shape)} and "
            f"v {tuple(v.shape)}"
        )
    if cache.k is not None and (
        k.shape[0] != cache.k.shape[0] or k.shape[2] != cache.k.shape[2]
    ):
        raise ValueError(
            f"new keys must have shape ({cache.k.shape[0]}, n_new, "
            f"{cache.k.shape[2]}) like the cached ones, got {tuple(k.shape)}"
        )


def _linear(in_size: Optional[int], out_size: int, bias: bool) -> nn.Module:
    # With the input size known the weights exist at once (easy to inspect and to
    # copy); without it they are created on the first call (d2l 1.0).
    if in_size is None:
        return nn.LazyLinear(out_size, bias=bias)
    return nn.Linear(in_size, out_size, bias=bias)


def _repeat_per_head(valid_lens: Tensor, num_heads: int) -> Tensor:
    """valid_lens or a bool mask for (B, ...) -> the same for (B * h, ...)."""
    if valid_lens.dtype == torch.bool and valid_lens.shape[0] == 1:
        return valid_lens  # a mask shared by the whole batch broadcasts as it is
    # Row b * h + j of the folded batch belongs to sequence b (transpose_qkv), so
    # each sequence's entry is repeated h times in a row.
    return torch.repeat_interleave(valid_lens, repeats=num_heads, dim=0)


class MultiHeadAttention(nn.Module):
    """h dot-product heads on projected slices, mixed by W_o (chapter 6, eq. mha; d2l).

    Shapes: forward(queries (B, n_q, query_size), keys (B, n_k, key_size),
    values (B, n_k, value_size), valid_lens as in masked_softmax) -> (B, n_q, d),
    d = num_hiddens. Per-head weights are kept in self.attention_weights
    (B, h, n_q, n_k). query_size, key_size, value_size default to lazy layers
    (d2l 1.0); give them to create the weights at once. With a KVCache (chapter 9)
    keys and values hold only the new positions, or are None when the cache holds
    them all, and the queries attend to every position in the cache.
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
        check_positive_int("num_hiddens", num_hiddens)
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
        self,
        queries: Tensor,
        keys: Optional[Tensor],
        values: Optional[Tensor],
        valid_lens: Optional[Tensor] = None,
        cache: Optional[KVCache] = None,
    ) -> Tensor:
        """Project, split into heads, attend per head, merge, project again.

        Shapes: queries (B, n_q, query_size), keys (B, n_k, key_size),
        values (B, n_k, value_size) -> (B, n_q, d).
        """
        _check_mha_inputs(self, queries, keys, values, valid_lens, cache)
        h = self.num_heads
        # One projection for all heads at once, then cut into heads.
        q = transpose_qkv(self.W_q(queries), h)  # (B * h, n_q, d_h)
        if keys is not None:
            k = transpose_qkv(self.W_k(keys), h)  # (B * h, n_k, d_h)
            v = transpose_qkv(self.W_v(values), h)  # (B * h, n_k, d_h)
        if cache is not None:
            if keys is not None:  # only the new positions are projected
                cache.append(k, v)
            k, v = cache.k, cache.v  # (B * h, t, d_h): every position so far
        if valid_lens is not None:
            valid_lens = _repeat_per_head(valid_lens, h)  # (B * h, ...)
        # Each head scales by sqrt(d_h), its own query/key size.
        out = self.attention(q, k, v, valid_lens)  # (B * h, n_q, d_h)
        weights = self.attention.attention_weights  # (B * h, n_q, n_k)
        self.attention_weights = weights.reshape(-1, h, *weights.shape[1:])
        out = transpose_output(out, h)  # (B, n_q, d): heads side by side
        return self.W_o(out)  # (B, n_q, d): mixes the heads


def _check_mha_inputs(
    mha: MultiHeadAttention,
    queries: object,
    keys: object,
    values: object,
    valid_lens: object,
    cache: Optional[KVCache],
) -> None:
    """What MultiHeadAttention.forward expects of its arguments, as ValueErrors."""
    if (keys is None) != (values is None):
        raise ValueError("keys and values must both be tensors or both be None")
    if keys is None and (cache is None or cache.k is None):
        raise ValueError(
            "keys and values may be None only when a cache holds them: the cache is "
            "empty, so give the keys and values on the first call"
        )
    for name, t, layer in (("queries", queries, mha.W_q), ("keys", keys, mha.W_k),
                           ("values", values, mha.W_v)):
        if t is None:
            continue
        if not isinstance(t, Tensor) or t.dim() != 3:
            raise ValueError(
                f"{name} must be a 3-D tensor (B, n, features), got {_shape(t)}"
            )
        if not isinstance(layer, nn.LazyLinear) and t.shape[-1] != layer.in_features:
            raise ValueError(
                f"{name} must have {layer.in_features} features (last dim), "
                f"got {name} {tuple(t.shape)}"
            )
    if valid_lens is None:
        return
    if not isinstance(valid_lens, Tensor):
        raise ValueError(
            "valid_lens must be None or a torch.Tensor, "
            f"got {type(valid_lens).__name__}"
        )
    B = queries.shape[0]  # type: ignore[union-attr]
    allowed = (B, 1) if valid_lens.dtype == torch.bool else (B,)
    if valid_lens.dim() == 0 or valid_lens.shape[0] not in allowed:
        raise ValueError(
            f"valid_lens must have batch size {B} like the queries "
            f"{_shape(queries)}, got valid_lens {tuple(valid_lens.shape)}"
        )


def valid_lens_to_key_padding_mask(valid_lens: Tensor, n_k: int) -> Tensor:
    """Valid lengths -> torch's key_padding_mask, True = ignore this key (chapter 6).

    Shapes: valid_lens (B,) integers -> (B, n_k) bool.
    The opposite convention to masked_softmax's boolean masks (True = may attend).
    """
    if (not isinstance(valid_lens, Tensor) or valid_lens.dim() != 1
            or valid_lens.is_floating_point() or valid_lens.dtype == torch.bool):
        desc = (f"{tuple(valid_lens.shape)} {valid_lens.dtype}"
                if isinstance(valid_lens, Tensor) else type(valid_lens).__name__)
        raise ValueError(f"valid_lens must be a 1-D integer tensor (B,), got {desc}")
    positions = torch.arange(n_k, device=valid_lens.device)  # (n_k,)
    return positions[None, :] >= valid_lens[:, None]  # (B, n_k)


@torch.no_grad()
def load_torch_mha_weights(
    mha: MultiHeadAttention, torch_mha: nn.MultiheadAttention
) -> MultiHeadAttention:
    """Copy a torch.nn.MultiheadAttention's weights into mha (chapter 6, parity).

    Shapes: torch_mha.in_proj_weight (3 * d, d) -> W_q, W_k, W_v (d, d) each;
    out_proj -> W_o. Returns mha.
    """
    _check_same_layout(mha, torch_mha)
    d = torch_mha.embed_dim
    if torch_mha.in_proj_weight is not None:
        # Torch stacks the three projections row-wise: [W_q; W_k; W_v].
        weights = torch_mha.in_proj_weight.split(d, dim=0)  # 3 x (d, d)
    else:
        weights = (torch_mha.q_proj_weight, torch_mha.k_proj_weight,
                   torch_mha.v_proj_weight)
    biases = (torch_mha.in_proj_bias.split(d, dim=0)
              if torch_mha.in_proj_bias is not None else (None, None, None))
    targets = (mha.W_q, mha.W_k, mha.W_v)
    for layer, w in zip(targets, weights):
        if isinstance(layer, nn.LazyLinear) and layer.has_uninitialized_params():
            layer(w.new_zeros(1, w.shape[1]))  # one call creates the lazy weights
    for layer, w, b in zip((*targets, mha.W_o), (*weights, torch_mha.out_proj.weight),
                           (*biases, torch_mha.out_proj.bias)):
        _check_same_weight(layer, w, b)
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
    return mha


def _check_same_layout(
    mha: MultiHeadAttention, torch_mha: nn.MultiheadAttention
) -> None:
    if torch_mha.embed_dim != mha.num_hiddens or torch_mha.num_heads != mha.num_heads:
        raise ValueError(
            f"the two modules must have the same width and heads, got "
            f"num_hiddens={mha.num_hiddens}, num_heads={mha.num_heads} and "
            f"embed_dim={torch_mha.embed_dim}, num_heads={torch_mha.num_heads}"
        )
    if torch_mha.bias_k is not None:
        raise ValueError(
            "add_bias_kv=True has no counterpart in MultiHeadAttention, "
            "got a module with bias_k"
        )


def _check_same_weight(layer: nn.Module, w: Tensor, b: Optional[Tensor]) -> None:
    if layer.weight.shape != w.shape:
        raise ValueError(
            f"weight shapes differ: expected {tuple(layer.weight.shape)}, "
            f"got {tuple(w.shape)}"
        )
    if (layer.bias is None) != (b is None):
        raise ValueError(
            f"bias settings differ: MultiHeadAttention has "
            f"bias={layer.bias is not None}, torch module has bias={b is not None}"
        )
