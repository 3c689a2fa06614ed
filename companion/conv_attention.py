"""A convolution as attention, and what each layer type connects (chapter 10).

``conv_attention_weights`` builds the attention weights that reproduce a given
``nn.Conv1d``: one head per kernel tap, each head a one-hot attention at a fixed
offset, its values the kernel's slice for that tap (Cordonnier et al., 2020).
``relative_offset_weights`` gets the same heads from a softmax over relative
positions only. ``layer_connectivity``, ``reachable`` and ``max_path_length``
compute the maximum path length of Vaswani et al. (2017), Table 1, by reachability
through products of connectivity matrices.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .utils import check_positive_int

__all__ = [
    "conv_attention_weights",
    "conv_as_attention",
    "conv_offsets",
    "relative_offset_weights",
    "LAYER_KINDS",
    "layer_connectivity",
    "reachable",
    "max_path_length",
]

LAYER_KINDS = ("convolution", "dilated", "recurrent", "attention", "restricted")


def _check_conv(conv: object) -> None:
    if not isinstance(conv, nn.Conv1d):
        raise TypeError(f"expected an nn.Conv1d, got {type(conv).__name__}")
    if conv.stride != (1,) or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError("expected stride 1, groups 1 and zero padding, got stride "
                         f"{conv.stride}, groups {conv.groups}, {conv.padding_mode!r}")
    if isinstance(conv.padding, str) and conv.padding == "same":
        span = conv.dilation[0] * (conv.kernel_size[0] - 1)
        if span % 2:
            raise ValueError("padding='same' with an even span pads unevenly; "
                             "give the padding as an int")


def _padding(conv: nn.Conv1d) -> int:
    if isinstance(conv.padding, str):
        span = conv.dilation[0] * (conv.kernel_size[0] - 1)
        return 0 if conv.padding == "valid" else span // 2
    return conv.padding[0]


def conv_offsets(conv: nn.Conv1d) -> list[int]:
    """The offset of each kernel tap from the output position (chapter 10).

    Output position i of the convolution reads input position i + offset[j] with
    tap j: offset[j] = j * dilation - padding.
    """
    _check_conv(conv)
    return [j * conv.dilation[0] - _padding(conv) for j in range(conv.kernel_size[0])]


def conv_attention_weights(conv: nn.Conv1d, n: int) -> Tensor:
    """One-hot attention weights, one head per tap, reproducing ``conv`` (ch. 10).

    Shapes: -> (h, n_q, n_k), h = kernel_size, n_k = n + 2 * padding (the keys are
    the zero-padded input), n_q = the convolution's output length. Head j puts
    weight 1 on key i + j * dilation for query i: a fixed offset, the same for
    every query and every input, whatever the input holds.
    """
    _check_conv(conv)
    check_positive_int("n", n)
    k, dilation, p = conv.kernel_size[0], conv.dilation[0], _padding(conv)
    n_k = n + 2 * p
    n_q = n_k - dilation * (k - 1)
    if n_q < 1:
        raise ValueError(f"a sequence of {n} positions is shorter than the kernel's "
                         f"span {dilation * (k - 1) + 1} (with padding {p})")
    queries = torch.arange(n_q)
    weights = torch.zeros(k, n_q, n_k)
    for j in range(k):
        weights[j, queries, queries + j * dilation] = 1.0
    return weights


def conv_as_attention(conv: nn.Conv1d, X: Tensor,
                      weights: Tensor | None = None) -> Tensor:
    """``conv`` computed as attention: sum over heads of A_j (X W_j^T), plus bias.

    Shapes: X (B, n, d) with d = in_channels -> (B, n_q, d_v), d_v = out_channels;
    weights (h, n_q, n_k) as conv_attention_weights gives (the default). Equals
    conv(X.transpose(1, 2)).transpose(1, 2).
    """
    _check_conv(conv)
    if weights is None:
        weights = conv_attention_weights(conv, X.shape[1])
    p = _padding(conv)
    keys = F.pad(X, (0, 0, p, p))  # (B, n_k, d): zeros before and after
    kernel = conv.weight  # (d_v, d, h): tap j's slice W_j is kernel[:, :, j]
    # Head j's values are the keys projected by the kernel's slice: (B, h, n_k, d_v).
    values = torch.einsum("bmc,ocj->bjmo", keys, kernel)
    out = (weights.to(X) @ values).sum(dim=1)  # (B, n_q, d_v): the heads added up
    return out if conv.bias is None else out + conv.bias


def relative_offset_weights(offsets: list[int], n_q: int, n_k: int,
                            alpha: float) -> Tensor:
    """Attention weights from relative positions alone: softmax(-alpha (m-i-D_h)^2).

    Shapes: -> (h, n_q, n_k), h = len(offsets). Head h's score for query i and key
    m depends only on m - i (Cordonnier et al., 2020, the quadratic encoding); the
    weights tend to the one-hot head at offset D_h as alpha grows, with an error
    of order exp(-alpha).
    """
    check_positive_int("n_q", n_q)
    check_positive_int("n_k", n_k)
    shift = torch.arange(n_k)[None, :] - torch.arange(n_q)[:, None]  # (n_q, n_k)
    delta = torch.tensor(offsets, dtype=torch.float64)[:, None, None]  # (h, 1, 1)
    scores = -alpha * (shift[None] - delta) ** 2  # (h, n_q, n_k)
    return torch.softmax(scores, dim=-1).float()


# ---------------------------------------------------------------------------
# Connectivity and maximum path length (Vaswani et al., 2017, Table 1)
# ---------------------------------------------------------------------------


def _check_kind(kind: str, kernel_size: int, window: int) -> None:
    if kind not in LAYER_KINDS:
        raise ValueError(f"kind must be one of {LAYER_KINDS}, got {kind!r}")
    check_positive_int("kernel_size", kernel_size)
    check_positive_int("window", window)
    if kind in ("convolution", "dilated") and kernel_size % 2 == 0:
        raise ValueError(f"expected an odd kernel_size (centred), got {kernel_size}")


def layer_connectivity(kind: str, n: int, *, kernel_size: int = 3, layer: int = 0,
                       window: int = 2) -> Tensor:
    """C[i, j] True where output i of one layer reads input j directly (chapter 10).

    Shapes: -> (n, n), boolean. ``convolution``: |i - j| <= (k - 1) / 2;
    ``dilated``: i - j a multiple of k**layer, at most (k - 1) / 2 of them;
    ``recurrent``: one step, i - j in {0, 1} (the state carries the past);
    ``attention``: every pair; ``restricted``: |i - j| <= window.
    """
    _check_kind(kind, kernel_size, window)
    check_positive_int("n", n)
    gap = torch.arange(n)[:, None] - torch.arange(n)[None, :]  # (n, n): i - j
    half = (kernel_size - 1) // 2
    if kind == "convolution":
        return gap.abs() <= half
    if kind == "dilated":
        dilation = min(kernel_size**layer, n)  # beyond n only the identity is left
        return (gap % dilation == 0) & (gap.abs() <= half * dilation)
    if kind == "recurrent":
        return (gap == 0) | (gap == 1)
    if kind == "restricted":
        return gap.abs() <= window
    return torch.ones(n, n, dtype=torch.bool)


def reachable(kind: str, n: int, num_layers: int, **options: int) -> Tensor:
    """R[i, j] True where output i of ``num_layers`` stacked layers depends on input j.

    Shapes: -> (n, n), boolean: the product C_L ... C_1 of the layers'
    connectivity matrices (a path j -> i exists through the layers). For the
    ``recurrent`` kind a layer is one time step.
    """
    check_positive_int("num_layers", num_layers)
    reach = torch.eye(n, dtype=torch.bool)
    for layer in range(num_layers):
        step = layer_connectivity(kind, n, layer=layer, **options).to(torch.int64)
        reach = (step @ reach.to(torch.int64)) > 0  # one more layer on every path
    return reach


def max_path_length(kind: str, n: int, **options: int) -> int:
    """The fewest layers after which every connectable pair is connected (ch. 10).

    A pair (i, j) is connectable when some number of layers connects it (for the
    recurrent kind: j <= i). Computed by multiplying connectivity matrices until
    the reachable set stops growing, never from the formula.
    """
    check_positive_int("n", n)
    reach = torch.eye(n, dtype=torch.bool)
    everything = reachable(kind, n, n, **options)  # n layers connect all there is
    for layers in range(1, n + 1):
        step = layer_connectivity(kind, n, layer=layers - 1, **options)
        reach = (step.to(torch.int64) @ reach.to(torch.int64)) > 0
        if torch.equal(reach, everything):
            return layers
    return n
