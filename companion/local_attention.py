"""Local (windowed) and chunked self-attention masks, as in streaming speech (ch. 12).

``local_attention_mask`` lets each frame attend to the frames within a window on
either side; ``chunk_mask`` cuts the sequence into chunks and lets each frame see
its own chunk and a number of chunks to its left (WeNet's
``subsequent_chunk_mask``): the latency of a streaming recogniser is then one chunk.
``receptive_field`` follows a mask through a stack of layers. ``FrameTagger`` is
the small model that chapter 12 trains with these masks.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .transformer import TransformerEncoderBlock
from .utils import check_non_negative_int, check_positive_int

__all__ = ["chunk_mask", "local_attention_mask", "receptive_field", "FrameTagger"]


def chunk_mask(
    n: int, chunk_size: int, num_left_chunks: int = -1,
    device: Optional[torch.device | str] = None,
) -> Tensor:
    """True where frame i may attend to frame j, chunk by chunk (ch. 12, eq. masks).

    Shapes: -> (n, n) bool. Frame i sits in chunk c(i) = i // chunk_size and sees
    the frames of chunks c(i) - num_left_chunks .. c(i); num_left_chunks < 0 means
    every chunk to the left (WeNet's subsequent_chunk_mask).
    """
    _check_chunk_args(n, chunk_size, num_left_chunks)
    chunk = torch.arange(n, device=device) // chunk_size  # (n,): chunk of each frame
    query, key = chunk[:, None], chunk[None, :]  # (n, 1), (1, n)
    allowed = key <= query  # (n, n): no frame of a later chunk
    if num_left_chunks >= 0:
        allowed &= key >= query - num_left_chunks
    return allowed


def _check_chunk_args(n: object, chunk_size: object, num_left_chunks: object) -> None:
    check_positive_int("n", n)
    check_positive_int("chunk_size", chunk_size)
    if not isinstance(num_left_chunks, int) or isinstance(num_left_chunks, bool):
        raise ValueError("num_left_chunks must be an int (negative: all chunks), "
                         f"got {num_left_chunks!r}")


def local_attention_mask(
    n: int, window: int, device: Optional[torch.device | str] = None
) -> Tensor:
    """True where |i - j| <= window: a band around the diagonal (ch. 12, eq. masks).

    Shapes: -> (n, n) bool. window = 0 lets each frame see only itself; a window
    of n - 1 or more is full self-attention.
    """
    check_positive_int("n", n)
    check_non_negative_int("window", window)
    positions = torch.arange(n, device=device)  # (n,)
    return (positions[:, None] - positions[None, :]).abs() <= window  # (n, n)


def receptive_field(mask: Tensor, num_layers: int) -> Tensor:
    """True where input j can reach output i through num_layers masked layers (ch. 12).

    Shapes: mask (n, n) bool, True = may attend -> (n, n) bool. One layer moves
    information along the mask's edges; L layers along paths of L edges, so the
    field is the boolean L-th power of the mask (with the diagonal, which the
    residual connections add).
    """
    _check_square_mask(mask)
    check_positive_int("num_layers", num_layers)
    step = (mask | torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device))
    step = step.float()
    field = step
    for _ in range(num_layers - 1):
        field = ((field @ step) > 0).float()  # a path of one more edge
    return field > 0


def _check_square_mask(mask: object) -> None:
    if not (isinstance(mask, Tensor) and mask.dtype == torch.bool and mask.dim() == 2
            and mask.shape[0] == mask.shape[1]):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a square (n, n) bool tensor, got {shape}")


class FrameTagger(nn.Module):
    """A frame classifier: a linear input layer, masked encoder blocks, a linear output.

    Shapes: forward(X (B, n, num_inputs), mask None or (n, n) bool) -> logits
    (B, n, C), C = num_classes. Pre-norm blocks (chapter 8) with num_heads heads;
    no positional encoding: the mask alone says which frames are near.
    """

    def __init__(self, num_inputs: int, num_classes: int, num_hiddens: int = 32,
                 num_heads: int = 2, num_layers: int = 1) -> None:
        super().__init__()
        check_positive_int("num_layers", num_layers)
        self.embed = nn.Linear(num_inputs, num_hiddens)
        self.blocks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, 2 * num_hiddens, num_heads, 0.0,
                                    use_bias=True, norm_first=True)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(num_hiddens)
        self.output = nn.Linear(num_hiddens, num_classes)

    def forward(self, X: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Embed every frame, let the frames attend within the mask, classify each.

        Shapes: X (B, n, num_inputs), mask (n, n) -> (B, n, C).
        """
        if mask is not None:
            _check_square_mask(mask)
            mask = mask[None].to(X.device)  # (1, n, n): shared by the batch
        H = self.embed(X)  # (B, n, d)
        for block in self.blocks:
            H = block(H, mask)  # (B, n, d)
        return self.output(self.norm(H))  # (B, n, C)
