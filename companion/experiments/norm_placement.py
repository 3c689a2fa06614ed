"""Chapter 8's experiment: post-norm against pre-norm, measured on a tagging task
(gradient norms per block, training with and without warm-up), and what Adam's
moment estimates make of the first minibatch gradients (why Adam wants a warm-up)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..training import linear_warmup_lr
from ..transformer import TransformerEncoder
from ..utils import (check_lr, check_non_negative_int, check_positive_int,
                     one_thread_on_cpu, progress_enabled, try_gpu)

__all__ = [
    "TransformerTagger", "block_gradient_norms", "train_tagger", "tagging_accuracy",
    "minibatch_gradients", "adam_step_statistics",
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
                group["lr"] = linear_warmup_lr(step + 1, lr, warmup_steps)
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


def minibatch_gradients(
    model: nn.Module,
    X: Tensor,
    Y: Tensor,
    *,
    num_batches: int,
    batch_size: int = 32,
    seed: int = 0,
) -> Tensor:
    """The loss gradient on num_batches random minibatches, at the same weights (ch. 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> (num_batches, num_weights), one
    row per minibatch, the weights in model.parameters() order. The model is not
    updated, so the rows are independent draws of the gradient Adam sees first.
    """
    check_positive_int("num_batches", num_batches)
    check_positive_int("batch_size", batch_size)
    _check_tagged(X, Y)
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    gen = torch.Generator().manual_seed(seed)
    rows = []
    with one_thread_on_cpu(device):
        for _ in range(num_batches):
            idx = torch.randint(0, X.shape[0], (batch_size,), generator=gen)
            loss = _token_loss(model(X[idx].to(device)), Y[idx].to(device))
            grads = torch.autograd.grad(loss, params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]).cpu())
    return torch.stack(rows)


def adam_step_statistics(
    grads: Tensor,
    counts: list[int],
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> dict[str, Tensor]:
    """Adam's step after t gradients at the same weights, for each t in counts (ch. 8).

    Shapes: grads (N, num_weights), independent draws -> {"spread", "cosine",
    "size"}, each of len(counts). For each t the rows are cut into N // t groups of
    t; each group gives Adam's bias-corrected averages m_t of g and v_t of g^2, and
    its update divided by lr, u = m_t / (sqrt(v_t) + eps).
    "spread": the std over groups of log(1 / sqrt(v_t)), the log of a weight's
    step size lr / sqrt(v_t) (root mean square over weights); "cosine": the mean
    cosine of u with the direction all the other groups give together; "size":
    the median |u|. Weights with a zero gradient in some row (a dead ReLU unit)
    are left out.
    """
    _check_statistics_args(grads, counts)
    live = (grads != 0).all(dim=0)  # a zero gradient has no logarithm
    grads = grads[:, live].float()  # (N, num_live)
    out: dict[str, list[float]] = {"spread": [], "cosine": [], "size": []}
    for t in counts:
        # N // t groups of t rows each.
        G = grads[: len(grads) // t * t].reshape(-1, t, grads.shape[1])
        m, v = _adam_moments(G, betas)
        u = m / (v.sqrt() + eps)  # one row per group: the update divided by lr
        # Where the other groups point: their mean gradient over its root mean square.
        g_sum, g2_sum = G.sum(dim=1), (G**2).sum(dim=1)  # one row per group
        rest = (g_sum.sum(0) - g_sum) / (g2_sum.sum(0) - g2_sum).sqrt()
        # Variance over groups (unbiased, so two groups suffice), mean over weights.
        log_step = -0.5 * v.log()  # log(lr / sqrt(v_t)) - log(lr)
        out["spread"].append(log_step.var(dim=0).mean().sqrt().item())
        out["cosine"].append(F.cosine_similarity(u, rest, dim=-1).mean().item())
        out["size"].append(u.abs().median().item())
    return {key: torch.tensor(values) for key, values in out.items()}


def _adam_moments(G: Tensor, betas: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """Adam's m_t and v_t after the t gradients of each group, bias-corrected.

    Shapes: G (groups, steps, num_weights) -> two (groups, num_weights).
    """
    t = G.shape[1]
    age = torch.arange(t - 1, -1, -1, dtype=G.dtype)  # the first row is the oldest
    # Exponential averages, divided by 1 - beta^t (Adam's bias correction).
    w1, w2 = [(1 - b) * b**age / (1 - b**t) for b in betas]
    return torch.einsum("s,gsp->gp", w1, G), torch.einsum("s,gsp->gp", w2, G**2)


def _check_statistics_args(grads: object, counts: list[int]) -> None:
    if not isinstance(grads, Tensor) or grads.dim() != 2:
        raise ValueError(
            "grads must be a 2-D tensor (N, num_weights), got "
            f"{getattr(grads, 'shape', type(grads).__name__)}"
        )
    for t in counts:
        check_positive_int("each count", t)
        if 2 * t > grads.shape[0]:
            raise ValueError(
                f"each count must leave two groups of its size in the {grads.shape[0]} "
                f"rows of grads, got {t}"
            )
