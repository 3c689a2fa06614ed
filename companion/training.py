"""A full-batch training loop with an optional progress bar (chapter 3)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .utils import progress_enabled, try_gpu

__all__ = ["train"]

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
    """Full-batch gradient descent on loss_fn(model(*inputs), targets), chapter 3.

    Shapes: inputs as the model expects, targets like its output -> num_epochs floats.
    """
    is_int = isinstance(num_epochs, int) and not isinstance(num_epochs, bool)
    if not is_int or num_epochs < 1:
        raise ValueError(f"num_epochs must be an int >= 1, got {num_epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}"
        )
    if not isinstance(inputs, tuple):
        raise ValueError(
            f"inputs must be a tuple of model arguments, got {type(inputs).__name__}"
        )
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
        if loss.dim() != 0:
            raise ValueError(
                f"loss_fn must return a scalar, got shape {tuple(loss.shape)}"
            )
        loss.backward()
        opt.step()
        losses.append(loss.item())
        # refresh=False: tqdm redraws at its own pace, not once per epoch.
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return losses
