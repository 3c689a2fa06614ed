"""The work ``memory_against_length`` measures, in a module of its own (chapter 10).

``peak_memory`` imports this module in a fresh process, then reads the resident set,
then calls ``forward_once``. Importing it first runs every layer kind once on a tiny
input, so that what the libraries allocate on their first call (thread pools, kernel
caches) is in place before the measurement starts and is not counted as the layer's.
"""
from __future__ import annotations

import torch

from .layer_cost import COST_KINDS, build_layer


def forward_once(kind: str, n: int, d: int, batch_size: int,
                 device: str = "cpu") -> None:
    """Build ``kind`` and run one forward pass on (batch_size, n, d)."""
    layer = build_layer(kind, d).to(device).eval()
    X = torch.randn(batch_size, n, d, device=device)
    with torch.no_grad():
        layer(X)


def _warm_up() -> None:
    for kind in COST_KINDS:
        forward_once(kind, 8, 64, 1)


_warm_up()
