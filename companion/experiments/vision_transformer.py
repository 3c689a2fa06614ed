"""Chapter 13's experiments: a ViT and a small CNN trained on the 8x8 digits, over
seeds and over the amount of training data.

Both models train with the same loop (``train_classifier``: minibatch AdamW, a linear
warm-up then a cosine decay) for the same number of epochs; ``time_call`` times each
run, so the chapter can compare the training time with the issue's 30 s ceiling.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..cnn_baseline import SmallCNN
from ..measure import time_call
from ..tasks.digits import DigitsSplit, stratified_subset
from ..utils import (check_lr, check_positive_int, one_thread_on_cpu,
                     progress_enabled, set_seed, try_gpu)
from ..vision_transformer import ViT

__all__ = ["VIT_DIGITS", "train_classifier", "classifier_accuracy", "digits_model",
           "train_digits", "accuracy_over_seeds", "accuracy_by_data_amount"]

# The chapter's ViT for 8x8 digits: 4x4 patches (4 tokens and the class token).
VIT_DIGITS = dict(img_size=8, patch_size=4, num_hiddens=64, mlp_num_hiddens=128,
                  num_heads=4, num_blks=2, emb_dropout=0.0, blk_dropout=0.0,
                  lr=1e-2, use_bias=True)


def train_classifier(
    model: nn.Module, X: Tensor, y: Tensor, *, num_epochs: int, lr: float,
    batch_size: int = 128, weight_decay: float = 0.05, warmup_epochs: int = 2,
    label_smoothing: float = 0.0, seed: int = 0,
    device: Optional[torch.device | str] = None,
    progress: Optional[bool] = None,
) -> list[float]:
    """Minibatch AdamW on cross-entropy (with label_smoothing), warm-up then cosine
    decay (chapter 13).

    Shapes: X (N, channels, height, width), y (N,) labels -> num_epochs floats (the mean
    training loss of each epoch). The batch order is drawn from seed.
    """
    _check_classifier_args(X, y, num_epochs, lr, batch_size, warmup_epochs,
                           label_smoothing)
    device = torch.device(device) if device is not None else try_gpu()
    model.to(device).train()
    X, y = X.to(device), y.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = math.ceil(len(y) / batch_size)
    warmup, total = warmup_epochs * per_epoch, num_epochs * per_epoch
    # Linear warm-up (Adam's first steps are noisy), then a cosine decay to zero.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (
        (s + 1) / warmup if s < warmup
        else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    bar = tqdm(range(num_epochs), desc="train", disable=not progress_enabled(progress))
    with one_thread_on_cpu(device):  # small models: one CPU thread is faster
        for _ in bar:
            order = torch.randperm(len(y), generator=generator).to(device)
            total_loss = 0.0
            for batch in order.split(batch_size):
                loss = F.cross_entropy(model(X[batch]), y[batch],
                                       label_smoothing=label_smoothing)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total_loss += loss.item() * len(batch)
            losses.append(total_loss / len(y))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return losses


def _check_classifier_args(X: object, y: object, num_epochs: int, lr: float,
                           batch_size: int, warmup_epochs: int,
                           label_smoothing: float) -> None:
    for name, value in [("num_epochs", num_epochs), ("batch_size", batch_size),
                        ("warmup_epochs", warmup_epochs)]:
        check_positive_int(name, value)
    check_lr(lr)
    if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}")
    if not isinstance(X, Tensor) or not isinstance(y, Tensor) or y.dim() != 1 or (
            len(X) != len(y)):
        raise ValueError("X must be a tensor (N, ...) and y labels (N,) of the same N")


def classifier_accuracy(model: nn.Module, X: Tensor, y: Tensor) -> float:
    """The fraction of X the model classifies as y, in eval mode (chapter 13).

    Shapes: X (N, channels, height, width), y (N,) -> a float in [0, 1].
    """
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        predicted = model(X.to(device)).argmax(dim=-1).cpu()  # (N,)
    return (predicted == y.cpu()).float().mean().item()


def digits_model(kind: str, seed: int = 0, **options) -> nn.Module:
    """A fresh "vit" (VIT_DIGITS, updated by options) or "cnn" (SmallCNN), seeded."""
    set_seed(seed)
    if kind == "vit":
        return ViT(**{**VIT_DIGITS, **options})
    if kind == "cnn":
        return SmallCNN(**options)
    raise ValueError(f"kind must be 'vit' or 'cnn', got {kind!r}")


def train_digits(
    kind: str, data: DigitsSplit, *, num_epochs: int = 25, lr: Optional[float] = None,
    seed: int = 0, train_indices: Optional[Tensor] = None, batch_size: int = 128,
    label_smoothing: float = 0.1, device: Optional[torch.device | str] = None,
    progress: Optional[bool] = None, **options,
) -> tuple[nn.Module, float, float]:
    """Train one model on the digits; return it, its test accuracy and seconds (ch. 13).

    Shapes: train_indices None (all) or (kept,) into data.X_train. lr defaults to
    VIT_DIGITS's for both kinds; both train with label smoothing, 0.1 by default (a
    target of 0.91 for the right class, 0.01 for each other); the seconds are
    time_call's of one training run.
    """
    model = digits_model(kind, seed, **options)
    X, y = data.X_train, data.y_train
    if train_indices is not None:
        X, y = X[train_indices], y[train_indices]
    lr = VIT_DIGITS["lr"] if lr is None else lr
    seconds = time_call(lambda: train_classifier(
        model, X, y, num_epochs=num_epochs, lr=lr, batch_size=batch_size,
        label_smoothing=label_smoothing, seed=seed, device=device, progress=progress),
        warmup=0, repeats=1, device=device)
    return model, classifier_accuracy(model, data.X_test, data.y_test), seconds


def accuracy_over_seeds(
    kinds: Sequence[str], data: DigitsSplit, *, num_seeds: int = 3, seed: int = 0,
    **options,
) -> dict[str, dict[str, list]]:
    """Test accuracy, training seconds and model of each kind for seeds seed, seed + 1,
    ... (num_seeds of them), one run each (ch. 13).

    Returns {kind: {"accuracy": [...], "seconds": [...], "models": [...]}}.
    """
    check_positive_int("num_seeds", num_seeds)
    results: dict[str, dict[str, list]] = {}
    for kind in kinds:
        runs = [train_digits(kind, data, seed=s, **options)
                for s in range(seed, seed + num_seeds)]
        results[kind] = {"accuracy": [a for _, a, _ in runs],
                         "seconds": [t for _, _, t in runs],
                         "models": [m for m, _, _ in runs]}
    return results


def accuracy_by_data_amount(
    kinds: Sequence[str], data: DigitsSplit, fractions: Sequence[float], *,
    num_seeds: int = 1, seed: int = 0, num_epochs: int = 25, batch_size: int = 128,
    **options,
) -> dict[str, list[float]]:
    """Mean test accuracy over seeds per fraction of the training set (ch. 13).

    Each fraction keeps that share of every class (stratified_subset, drawn from the
    seed); every run, whatever its fraction, takes as many optimizer steps as
    num_epochs on the whole training set, so a small set is seen more often.
    """
    check_positive_int("num_seeds", num_seeds)
    steps = num_epochs * math.ceil(len(data.y_train) / batch_size)
    curve: dict[str, list[float]] = {kind: [] for kind in kinds}
    for fraction in fractions:
        for kind in kinds:
            accs = []
            for s in range(seed, seed + num_seeds):
                subset = stratified_subset(data.y_train, fraction, s)
                epochs = max(1, round(steps / math.ceil(len(subset) / batch_size)))
                accs.append(train_digits(kind, data, num_epochs=epochs, seed=s,
                                         train_indices=subset, batch_size=batch_size,
                                         **options)[1])
            curve[kind].append(sum(accs) / len(accs))
    return curve
