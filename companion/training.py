"""Training loops with a progress bar: full-batch gradient descent (chapter 3), and
minibatch sequence-to-sequence training with teacher forcing (chapter 5); learning-rate
warm-up schedules (chapter 8)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .seq2seq import EncoderDecoder, sequence_loss, teacher_forcing_inputs
from .tasks.text import DateSplit, Vocab
from .utils import (check_lr, check_non_negative_int, check_positive_int,
                    one_thread_on_cpu, progress_enabled, try_gpu)

__all__ = ["train", "train_seq2seq", "transformer_lr", "linear_warmup_lr"]

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def train(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: tuple,
    targets: Tensor,
    *,
    num_epochs: int,
    lr: float,
    optimizer: str = "sgd",
    progress: bool | None = None,
    device: torch.device | str | None = None,
) -> list[float]:
    """Full-batch gradient descent on loss_fn(model(*inputs), targets) (chapter 3).

    Shapes: inputs as the model expects, targets like its output -> num_epochs floats.
    """
    _check_train_args(inputs, num_epochs, lr, optimizer)
    device = torch.device(device) if device is not None else try_gpu()
    model = model.to(device)
    inputs = tuple(x.to(device) if isinstance(x, Tensor) else x for x in inputs)
    targets = targets.to(device)
    opt = _OPTIMIZERS[optimizer](model.parameters(), lr=lr)

    losses: list[float] = []
    bar = tqdm(range(num_epochs), desc="train", disable=not progress_enabled(progress))
    for _ in bar:
        opt.zero_grad()
        loss = loss_fn(model(*inputs), targets)
        _check_scalar(loss)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        # refresh=False: tqdm redraws at its own pace, not once per epoch.
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return losses


def _check_train_args(
    inputs: object, num_epochs: int, lr: float, optimizer: str
) -> None:
    check_positive_int("num_epochs", num_epochs)
    check_lr(lr)
    if optimizer not in _OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}"
        )
    if not isinstance(inputs, tuple):
        raise ValueError(
            f"inputs must be a tuple of model arguments, got {type(inputs).__name__}"
        )


def _check_scalar(loss: Tensor) -> None:
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")


def train_seq2seq(
    net: EncoderDecoder,
    data: DateSplit,
    tgt_vocab: Vocab,
    *,
    num_epochs: int,
    lr: float,
    batch_size: int = 128,
    grad_clip: float = 1.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> list[float]:
    """Minibatch Adam with teacher forcing, clipping, a cosine schedule (ch. 5; d2l).

    Shapes: data.X (N, T_src), data.Y (N, T_tgt) -> num_epochs floats (the mean
    training loss of each epoch).
    """
    _check_seq2seq_args(num_epochs, lr, grad_clip)
    device = torch.device(device) if device is not None else try_gpu()
    net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = num_epochs * math.ceil(len(data) / batch_size)
    # Cosine decay to zero: large steps early, small ones at the end to settle on
    # exact answers.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    # The batch order is reproducible, and the global random state untouched.
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    bar = tqdm(range(num_epochs), desc="train", disable=not progress_enabled(progress))
    # Small matrices: a second CPU thread costs more than it saves.
    with one_thread_on_cpu(device):
        for _ in bar:
            total, count = 0.0, 0
            for X, X_valid_len, Y, _ in data.batches(batch_size, shuffle=True,
                                                     generator=generator):
                # (B, T_src), (B,), (B, T_tgt)
                X, X_valid_len, Y = X.to(device), X_valid_len.to(device), Y.to(device)
                dec_X = teacher_forcing_inputs(Y, tgt_vocab.bos)  # (B, T_tgt)
                loss = sequence_loss(net(X, dec_X, X_valid_len), Y, tgt_vocab.pad)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
                optimizer.step()
                schedule.step()
                total, count = total + loss.item() * len(Y), count + len(Y)
            losses.append(total / count)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return losses


def _check_seq2seq_args(num_epochs: int, lr: float, grad_clip: float) -> None:
    check_positive_int("num_epochs", num_epochs)
    check_lr(lr)
    if not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0, got {grad_clip!r}")


def transformer_lr(step: int, d_model: int, warmup_steps: int) -> float:
    """Vaswani et al. (2017, eq. 3): d^-0.5 min(step^-0.5, step w^-1.5) (ch. 8).

    Steps count from 1. The rate grows linearly for warmup_steps = w steps, peaks
    at step w with (d w)^-0.5, then decays as 1 / sqrt(step).
    """
    check_positive_int("step", step)
    check_positive_int("d_model", d_model)
    check_positive_int("warmup_steps", warmup_steps)
    return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def linear_warmup_lr(step: int, lr: float, warmup_steps: int) -> float:
    """lr min(1, step / warmup_steps): a linear ramp to lr, then constant (ch. 8).

    Steps count from 1, so the first step gets lr / warmup_steps; warmup_steps = 0
    is no warm-up (lr from the first step).
    """
    check_positive_int("step", step)
    check_lr(lr)
    check_non_negative_int("warmup_steps", warmup_steps)
    return lr * min(1.0, step / warmup_steps) if warmup_steps else lr
