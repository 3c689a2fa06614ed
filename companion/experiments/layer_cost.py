"""Chapter 10's experiments: what a convolution, a recurrent layer and self-attention
cost against the sequence length n (counted, timed, measured), and how far each
carries a token (the recall task)."""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn

from ..layer_types import (AttentionSequenceStack, ConvSequenceStack,
                           RecurrentSequenceLayer, SelfAttentionLayer, SequenceTagger)
from ..measure import peak_memory, time_call
from ..utils import check_positive_int, one_thread_on_cpu

__all__ = [
    "COST_KINDS",
    "layer_multiply_adds",
    "build_layer",
    "time_against_length",
    "memory_against_length",
    "build_recall_models",
    "recall_accuracy_by_distance",
]

COST_KINDS = ("convolution", "gru", "lstm", "attention")


def layer_multiply_adds(kind: str, n: int, d: int, *, kernel_size: int = 3,
                        window: int = 2) -> dict[str, int]:
    """Multiply-adds of one layer of width d over n positions, by part (ch. 10).

    ``mixing`` is what Table 1 of Vaswani et al. (2017) counts; ``projections``
    is the O(n d^2) of the Q, K, V, output maps of (restricted) self-attention,
    which the table leaves out. A GRU's three gates read the input and the state.
    """
    for name, value in [("n", n), ("d", d), ("kernel_size", kernel_size),
                        ("window", window)]:
        check_positive_int(name, value)
    if kind == "attention":
        return {"mixing": 2 * n * n * d, "projections": 4 * n * d * d}
    if kind == "restricted":
        width = 2 * window + 1  # keys per query
        return {"mixing": 2 * n * width * d, "projections": 4 * n * d * d}
    if kind in ("convolution", "dilated"):
        return {"mixing": kernel_size * n * d * d, "projections": 0}
    if kind == "gru":
        return {"mixing": 3 * 2 * n * d * d, "projections": 0}
    raise ValueError(f"kind must be attention, restricted, convolution, dilated or "
                     f"gru, got {kind!r}")


def build_layer(kind: str, d: int, *, num_heads: int = 2, kernel_size: int = 3,
                seed: int = 0) -> nn.Module:
    """One layer of width d: (B, n, d) -> (B, n, d), weights drawn from ``seed``."""
    torch.manual_seed(seed)
    if kind == "convolution":
        return ConvSequenceStack(d, 1, kernel_size)
    if kind in ("gru", "lstm"):
        return RecurrentSequenceLayer(d, d, kind)
    if kind == "attention":
        return SelfAttentionLayer(d, num_heads)
    raise ValueError(f"kind must be one of {COST_KINDS}, got {kind!r}")


def time_against_length(kinds: Sequence[str], lengths: Sequence[int], *, d: int,
                        batch_size: int, device: torch.device | str = "cpu",
                        repeats: int = 5) -> dict[str, list[float]]:
    """Median forward seconds of each layer kind at each n (time_call; chapter 10).

    Shapes: -> {kind: one float per n}. On a CPU each runs on one thread, so a
    neighbour on the machine disturbs it less.
    """
    device = torch.device(device)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    with one_thread_on_cpu(device), torch.no_grad():
        for kind in kinds:
            layer = build_layer(kind, d).to(device).eval()
            for n in lengths:
                X = torch.randn(batch_size, n, d, device=device)
                times[kind].append(time_call(lambda: layer(X), repeats=repeats,
                                             device=device))
    return times


def forward_once(kind: str, n: int, d: int, batch_size: int,
                 device: str = "cpu") -> None:
    """Build ``kind`` and run one forward pass on (batch_size, n, d): the work that
    ``memory_against_length`` measures (chapter 10)."""
    layer = build_layer(kind, d).to(device).eval()
    X = torch.randn(batch_size, n, d, device=device)
    with torch.no_grad():
        layer(X)


def memory_against_length(kinds: Sequence[str], lengths: Sequence[int], *, d: int,
                          batch_size: int, device: str = "cpu",
                          jobs: int = 2) -> dict[str, list[float]]:
    """MiB one forward pass adds at its peak, each in a fresh process (chapter 10).

    Shapes: -> {kind: one float per n}. ``jobs`` processes run at a time: each
    measures only itself. Each process first runs every kind once on a tiny input,
    so the libraries' first-call buffers are not counted as the layer's.
    """
    target = f"{__name__}:forward_once"
    warmup = [dict(kind=kind, n=8, d=64, batch_size=1) for kind in COST_KINDS]
    runs = [(kind, n) for kind in kinds for n in lengths]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        peaks = list(pool.map(lambda run: peak_memory(
            target, device=str(device), warmup=warmup, kind=run[0], n=run[1], d=d,
            batch_size=batch_size), runs))
    out: dict[str, list[float]] = {kind: [] for kind in kinds}
    for (kind, _), mib in zip(runs, peaks):
        out[kind].append(mib)
    return out


def build_recall_models(
    n: int, vocab_size: int, *, seed: int = 0, device: torch.device | str = "cpu"
) -> dict[str, SequenceTagger]:
    """A convolution stack, a GRU and self-attention of about the same size (ch. 10).

    Each tags (B, n) token ids of the recall task (2 V of them) with V classes; the
    weights are drawn from ``seed``, on ``device``.
    """
    tokens, V = 2 * vocab_size, vocab_size
    torch.manual_seed(seed)
    conv = ConvSequenceStack(32, 2, kernel_size=5)  # reach: 2 layers x 2 positions
    models = {"convolution": SequenceTagger(conv, tokens, 32, 32, V)}
    models["GRU"] = SequenceTagger(RecurrentSequenceLayer(32, 46), tokens, 32, 46, V)
    body = AttentionSequenceStack(24, 2, 2, max_len=n, ffn_num_hiddens=48)
    models["attention"] = SequenceTagger(body, tokens, 24, 24, V)
    return {name: model.to(device) for name, model in models.items()}


def recall_accuracy_by_distance(model: nn.Module, X: Tensor, y: Tensor,
                                distance: Tensor) -> tuple[list[int], list[float]]:
    """Accuracy of the answer at the last position, for each distance present.

    Shapes: X (N, n), y (N,), distance (N,) -> distances, one accuracy each.
    """
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), one_thread_on_cpu(device):
        guess = model(X.to(device))[:, -1].argmax(dim=-1).cpu()  # (N,)
    correct = guess == y
    distances = sorted(set(distance.tolist()))
    return distances, [correct[distance == t].float().mean().item() for t in distances]
