"""Chapter 8's experiment: post-norm against pre-norm, measured on a tagging task
(gradient norms per block, training with and without warm-up)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..transformer import TransformerEncoder
from ..utils import (check_lr, check_non_negative_int, check_positive_int,
                     one_thread_on_cpu, progress_enabled, try_gpu)

__all__ = [
    "TransformerTagger", "block_gradient_norms", "train_tagger", "tagging_accuracy",
]


class TransformerTagger(nn.Module):
    """A TransformerEncoder and a linear read-out: one class per token (chapter 8).

    Shapes: forward(X (B, n) token ids, valid_lens None or (B,)) -> logits (B, n, C),
    with C = num_classes.
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
            vocab_size, num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
            num_heads=num_heads, num_blks=num_blks, dropout=dropout,
            norm_first=norm_first,
        )
        self.head = nn.Linear(num_hiddens, num_classes)

    def forward(self, X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
        """Encode the sequence, then classify each position.

        Shapes: X (B, n) -> (B, n, C).
        """
        return self.head(self.encoder(X, valid_lens))


def block_gradient_norms(
    model: TransformerTagger, X: Tensor, Y: Tensor
) -> dict[str, Tensor]:
    """One backward pass; per block, the gradient norm of its input and weights (ch. 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> {"input": (L,), "params": (L,)}
    for the L = num_blks blocks; entry 0 is the block next to the embedding. "input"
    is ||dL/dX_l|| for the block's input X_l (the signal sent back towards the
    embedding), "params" the norm of all the block's weight gradients.
    """
    if not isinstance(model, TransformerTagger):
        raise ValueError(
            f"model must be a TransformerTagger, got {type(model).__name__}"
        )
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
            _token_loss(logits, Y.to(device)).backward()
    finally:
        for h in hooks:
            h.remove()
    params = [
        _norm_of_all(p.grad for p in blk.parameters())
        for blk in model.encoder.blks
    ]
    grads = [torch.linalg.vector_norm(x.grad) for x in inputs]
    return {
        "input": torch.stack(grads).detach().cpu(),
        "params": torch.stack(params).detach().cpu(),
    }


def _norm_of_all(tensors) -> Tensor:
    """The Euclidean norm of all the entries of the tensors together."""
    return torch.linalg.vector_norm(torch.cat([t.reshape(-1) for t in tensors]))


def _token_loss(logits: Tensor, Y: Tensor) -> Tensor:
    """Mean cross-entropy over every token.  Shapes: (N, n, C), (N, n) -> ()."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1))


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
    """Minibatch Adam on the per-token cross-entropy, with a linear warm-up (ch. 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> num_steps floats (the loss of
    each step's batch). A step whose loss is not finite is recorded (as nan or inf)
    and skipped, so a diverging run shows as a gap.
    """
    _check_training_args(X, Y, num_steps, lr, batch_size, warmup_steps)
    device = torch.device(device) if device is not None else try_gpu()
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # The batch order is reproducible, and the global random state untouched.
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    bar = tqdm(range(num_steps), desc="train", disable=not progress_enabled(progress))
    with one_thread_on_cpu(device):
        for step in bar:
            # Linear warm-up: lr / warmup_steps, 2 lr / warmup_steps, ..., then lr.
            for group in optimizer.param_groups:
                ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
                group["lr"] = lr * ramp
            idx = torch.randint(0, X.shape[0], (batch_size,), generator=gen)
            Xb, Yb = X[idx].to(device), Y[idx].to(device)  # (B, n), (B, n)
            loss = _token_loss(model(Xb), Yb)
            losses.append(loss.item())
            optimizer.zero_grad()
            # A non-finite loss would put NaN into every weight.
            if math.isfinite(losses[-1]):
                loss.backward()
                optimizer.step()
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return losses


def _check_training_args(
    X: object, Y: object, num_steps: int, lr: float, batch_size: int, warmup_steps: int
) -> None:
    check_positive_int("num_steps", num_steps)
    check_positive_int("batch_size", batch_size)
    check_lr(lr)
    check_non_negative_int("warmup_steps", warmup_steps)
    _check_tagged(X, Y)


def _check_tagged(X: object, Y: object) -> None:
    if (not isinstance(X, Tensor) or not isinstance(Y, Tensor) or X.dim() != 2
            or X.shape != Y.shape):
        raise ValueError(
            "X and Y must be 2-D tensors (N, n) of the same shape, got "
            f"X {getattr(X, 'shape', type(X).__name__)} and "
            f"Y {getattr(Y, 'shape', type(Y).__name__)}"
        )


@torch.no_grad()
def tagging_accuracy(
    model: nn.Module, X: Tensor, Y: Tensor, batch_size: int = 1024
) -> float:
    """Fraction of tokens whose class the model predicts correctly (chapter 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> a float.
    """
    _check_tagged(X, Y)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    with one_thread_on_cpu(device):
        for start in range(0, X.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            Xb, Yb = X[rows].to(device), Y[rows].to(device)  # (B, n), (B, n)
            correct += (model(Xb).argmax(dim=-1) == Yb).sum().item()
    model.train(was_training)
    return correct / Y.numel()
