"""A synthetic frame-sequence task: noisy frames, one label per frame (chapter 12).

Like the frames of speech, each sequence is a run of segments (a "phone" each) of a
few frames; every frame of a segment carries the segment's class, but its features
are the class's one-hot code drowned in noise, so one frame alone is often
misread. Averaging the frames of the same segment recovers the class: the more
neighbours a frame may attend to, the better, up to the segment's length.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..utils import check_positive_int

__all__ = ["make_frame_data"]


def make_frame_data(
    num_seqs: int = 256,
    seq_len: int = 64,
    num_classes: int = 4,
    min_segment: int = 4,
    max_segment: int = 12,
    noise: float = 1.5,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Noisy frames and the class of the segment each belongs to (chapter 12).

    Shapes: -> X (N, n, C) float, Y (N, n) int64, with N = num_seqs, n = seq_len
    and C = num_classes. Segment lengths are uniform in [min_segment, max_segment];
    neighbouring segments have different classes; X = one_hot(Y) + noise * N(0, I).
    """
    _check_frame_args(num_seqs, seq_len, num_classes, min_segment, max_segment, noise)
    gen = torch.Generator().manual_seed(seed)
    Y = torch.empty(num_seqs, seq_len, dtype=torch.long)
    for b in range(num_seqs):
        t, label = 0, int(torch.randint(num_classes, (), generator=gen))
        while t < seq_len:
            length = int(torch.randint(min_segment, max_segment + 1, (),
                                       generator=gen))
            Y[b, t:t + length] = label
            # A different class next: shift by 1 .. C - 1.
            shift = int(torch.randint(1, num_classes, (), generator=gen))
            label, t = (label + shift) % num_classes, t + length
    signal = torch.nn.functional.one_hot(Y, num_classes).float()  # (N, n, C)
    X = signal + noise * torch.randn(signal.shape, generator=gen)  # (N, n, C)
    return X, Y


def _check_frame_args(num_seqs: object, seq_len: object, num_classes: object,
                      min_segment: object, max_segment: object,
                      noise: object) -> None:
    for name, value in (("num_seqs", num_seqs), ("seq_len", seq_len),
                        ("min_segment", min_segment), ("max_segment", max_segment)):
        check_positive_int(name, value)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if min_segment > max_segment:  # type: ignore[operator]
        raise ValueError("min_segment must be at most max_segment, got "
                         f"{min_segment} and {max_segment}")
    if not isinstance(noise, (int, float)) or noise < 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
