"""Chapter 12's experiments: the memory wall and the time of attention against n, and
the streaming frame task trained with local and chunked masks.

Every figure of time or memory comes from ``companion.measure``: ``peak_memory`` runs
``run_attention`` in a fresh process, ``time_call`` times ``attention_call``'s
closure.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention import DotProductAttention
from ..chunked_attention import chunked_attention
from ..local_attention import FrameTagger, local_attention_mask
from ..measure import peak_memory, time_call
from ..training import train
from ..utils import check_positive_int, one_thread_on_cpu, set_seed, try_gpu

__all__ = [
    "ATTENTION_KINDS", "attention_call", "run_attention", "attention_memory",
    "attention_times", "train_frame_tagger", "frame_error", "error_by_mask",
]

# naive: DotProductAttention, the (n, n) scores at once; chunked: chunked_attention;
# fused: F.scaled_dot_product_attention. "-local" adds a band mask of `window`.
ATTENTION_KINDS = ("naive", "chunked", "fused", "naive-local", "chunked-local")


def attention_call(
    kind: str, n: int, *, d: int = 64, chunk_size: int = 512, window: int = 64,
    seed: int = 0, device: str = "cpu",
) -> Callable[[], Tensor]:
    """A closure computing one head's self-attention of n random positions (ch. 12).

    Shapes: inside, queries, keys and values (1, n, d) -> (1, n, d). Runs without
    autograd (inference), so only the forward pass's memory counts.
    """
    _check_kind(kind, n, d)
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, n, d, generator=gen).to(device) for _ in range(3))
    mask = None
    if kind.endswith("-local"):
        mask = local_attention_mask(n, window, device=device)[None]  # (1, n, n)
    naive = DotProductAttention(dropout=0.0)

    def call() -> Tensor:
        with torch.no_grad():
            if kind.startswith("naive"):
                return naive(q, k, v, mask)
            if kind.startswith("chunked"):
                return chunked_attention(q, k, v, mask, chunk_size=chunk_size)
            # (1, 1, n, d): with a heads axis torch picks its flash kernel on a CPU.
            return F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
    return call


def _check_kind(kind: object, n: object, d: object) -> None:
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"kind must be one of {ATTENTION_KINDS}, got {kind!r}")
    check_positive_int("n", n)
    check_positive_int("d", d)


def run_attention(kind: str, n: int, **options) -> None:
    """Build the inputs and run attention once: the target that peak_memory measures."""
    attention_call(kind, n, **options)()


def attention_memory(
    kinds: Sequence[str], ns: Sequence[int], **options
) -> dict[str, list[float]]:
    """MiB each kind adds at its peak, per n, each in its own fresh process (ch. 12).

    One measurement at a time (a naive one at n = 16k takes a few GB).
    """
    target = f"{__name__}:run_attention"
    return {kind: [peak_memory(target, kind=kind, n=n, **options) for n in ns]
            for kind in kinds}


def attention_times(
    kinds: Sequence[str], ns: Sequence[int], *, repeats: int = 3,
    device: str = "cpu", **options
) -> dict[str, list[float]]:
    """Median seconds of each kind of attention, per n, by time_call (ch. 12).

    On a CPU on one thread: two threads on a shared machine make the times erratic.
    """
    with one_thread_on_cpu(device):
        return {kind: [time_call(attention_call(kind, n, device=device, **options),
                                 repeats=repeats, device=device) for n in ns]
                for kind in kinds}


def train_frame_tagger(
    X: Tensor, Y: Tensor, mask: Optional[Tensor], *, num_layers: int = 1,
    num_epochs: int = 150, lr: float = 1e-2, seed: int = 0,
    device: Optional[torch.device | str] = None, progress: Optional[bool] = None,
) -> tuple[FrameTagger, list[float]]:
    """Train a FrameTagger with this mask on frames X and labels Y (ch. 12).

    Shapes: X (N, n, C), Y (N, n), mask None or (n, n) bool -> the model and its
    per-epoch losses. Full-batch Adam (companion.train), seeded by `seed`.
    """
    set_seed(seed)
    model = FrameTagger(X.shape[-1], int(Y.max()) + 1, num_layers=num_layers)

    def loss_fn(logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    device = torch.device(device) if device is not None else try_gpu()
    with one_thread_on_cpu(device):  # a tiny model: one CPU thread is faster
        losses = train(model, loss_fn, (X, mask), Y, num_epochs=num_epochs, lr=lr,
                       optimizer="adam", progress=progress, device=device)
    return model, losses


def frame_error(model: FrameTagger, X: Tensor, Y: Tensor,
                mask: Optional[Tensor]) -> float:
    """The fraction of frames whose class the model gets wrong (ch. 12).

    Shapes: X (N, n, C), Y (N, n), mask None or (n, n) -> a float in [0, 1].
    """
    device = next(model.parameters()).device
    with torch.no_grad():
        predicted = model(X.to(device), mask).argmax(dim=-1).cpu()  # (N, n)
    return (predicted != Y).float().mean().item()


def error_by_mask(
    masks: Mapping[str, Optional[Tensor]], train_data: tuple[Tensor, Tensor],
    test_data: tuple[Tensor, Tensor], **options
) -> dict[str, float]:
    """Test error of a FrameTagger trained with each mask (chapter 12)."""
    errors = {}
    for label, mask in masks.items():
        model, _ = train_frame_tagger(*train_data, mask, **options)
        errors[label] = frame_error(model, *test_data, mask)
    return errors

