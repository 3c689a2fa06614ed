"""Chapter 8's experiment: post-norm against pre-norm, measured on a tagging task (gradient norms per block,
training with and without warm-up)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..transformer import TransformerEncoder
from ..utils import check_positive_int, one_thread_on_cpu, progress_enabled, try_gpu

__all__ = ["TransformerTagger", "block_gradient_norms", "train_tagger", "tagging_accuracy"]


class TransformerTagger(nn.Module):
    """A TransformerEncoder with a linear read-out at every position: one class per token (chapter 8, experiment).

    Shapes: forward(X (batch, n) token ids, valid_lens None or (batch,)) -> logits (batch, n, num_classes).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        num_blks: int,
        dropout: float = 0.0,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.encoder = TransformerEncoder(
            vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, norm_first=norm_first
        )
        self.head = nn.Linear(num_hiddens, num_classes)

    def forward(self, X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
        """Encode the sequence, then classify each position.

        Shapes: X (batch, n) -> (batch, n, num_classes).
        """
        return self.head(self.encoder(X, valid_lens))


def block_gradient_norms(model: TransformerTagger, X: Tensor, Y: Tensor) -> dict[str, Tensor]:
    """One backward pass of the tagging loss; per block, the gradient norms of its input and weights (chapter 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> {"input": (num_blks,), "params": (num_blks,)};
    entry 0 is the block next to the embedding. "input" is ||dL/dX_l|| for the block's input X_l
    (the signal sent back towards the embedding), "params" the norm of all the block's weight gradients.
    """
    if not isinstance(model, TransformerTagger):
        raise ValueError(f"model must be a TransformerTagger, got {type(model).__name__}")
    inputs: list[Tensor] = []

    def keep_input(module: nn.Module, args: tuple) -> None:
        args[0].retain_grad()  # a non-leaf tensor keeps its .grad only when asked
        inputs.append(args[0])

    hooks = [blk.register_forward_pre_hook(keep_input) for blk in model.encoder.blks]
    device = next(model.parameters()).device
    try:
        model.zero_grad()
        with one_thread_on_cpu(device):
            logits = model(X.to(device))  # (N, n, C)
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.to(device).reshape(-1)).backward()
    finally:
        for h in hooks:
            h.remove()
    params = [
        torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in blk.parameters()]))
        for blk in model.encoder.blks
    ]
    return {
        "input": torch.stack([torch.linalg.vector_norm(x.grad) for x in inputs]).detach().cpu(),
        "params": torch.stack(params).detach().cpu(),
    }


def train_tagger(
    model: nn.Module,
    X: Tensor,
    Y: Tensor,
    *,
    num_steps: int,
    lr: float,
    batch_size: int = 64,
    warmup_steps: int = 0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: Optional[bool] = None,
) -> list[float]:
    """Minibatch Adam on the per-token cross-entropy, with an optional linear warm-up (chapter 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> num_steps floats (the loss of each step's batch).
    A step whose loss is not finite is recorded (as nan or inf) and skipped, so a diverging run shows as a gap.
    """
    check_positive_int("num_steps", num_steps)
    check_positive_int("batch_size", batch_size)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if not isinstance(X, Tensor) or not isinstance(Y, Tensor) or X.dim() != 2 or X.shape != Y.shape:
        raise ValueError(
            "X and Y must be 2-D tensors (N, n) of the same shape, got "
            f"X {getattr(X, 'shape', type(X).__name__)} and Y {getattr(Y, 'shape', type(Y).__name__)}"
        )
    device = torch.device(device) if device is not None else try_gpu()
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)  # batch order reproducible, global RNG untouched
    losses: list[float] = []
    bar = tqdm(range(num_steps), desc="train", disable=not progress_enabled(progress))
    with one_thread_on_cpu(device):
        for step in bar:
            # Linear warm-up: lr / warmup_steps, 2 lr / warmup_steps, ..., then lr.
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
            idx = torch.randint(0, X.shape[0], (batch_size,), generator=gen)
            Xb, Yb = X[idx].to(device), Y[idx].to(device)  # (b, n), (b, n)
            logits = model(Xb)  # (b, n, C)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Yb.reshape(-1))
            losses.append(loss.item())
            optimizer.zero_grad()
            if math.isfinite(losses[-1]):  # a non-finite loss would put NaN into every weight
                loss.backward()
                optimizer.step()
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return losses


@torch.no_grad()
def tagging_accuracy(model: nn.Module, X: Tensor, Y: Tensor, batch_size: int = 1024) -> float:
    """Fraction of tokens whose class the model predicts correctly (chapter 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> float.
    """
    if not isinstance(X, Tensor) or not isinstance(Y, Tensor) or X.dim() != 2 or X.shape != Y.shape:
        raise ValueError(
            "X and Y must be 2-D tensors (N, n) of the same shape, got "
            f"X {getattr(X, 'shape', type(X).__name__)} and Y {getattr(Y, 'shape', type(Y).__name__)}"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    with one_thread_on_cpu(device):
        for start in range(0, X.shape[0], batch_size):
            Xb, Yb = X[start:start + batch_size].to(device), Y[start:start + batch_size].to(device)
            correct += (model(Xb).argmax(dim=-1) == Yb).sum().item()
    model.train(was_training)
    return correct / Y.numel()
