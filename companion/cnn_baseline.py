"""A small convolutional network, the baseline beside the Vision Transformer (ch. 13).

Two 3x3 convolutions, a 2x2 max-pool and two linear layers: about 21,000 weights for
8x8 images. Its inductive bias (local, weight-shared filters, a little invariance to
shifts from the pooling) is what the ViT must learn from data instead.
"""
from __future__ import annotations

from torch import Tensor, nn

from .utils import check_positive_int

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """conv3x3 - ReLU - conv3x3 - ReLU - maxpool 2 - linear - ReLU - linear (ch. 13).

    Shapes: forward(X (B, in_channels, img_size, img_size)) -> (B, C) logits,
    C = num_classes.
    """

    def __init__(self, img_size: int = 8, num_classes: int = 10, in_channels: int = 1,
                 channels: int = 16, num_hiddens: int = 32) -> None:
        super().__init__()
        for name, value in [("img_size", img_size), ("num_classes", num_classes),
                            ("in_channels", in_channels), ("channels", channels),
                            ("num_hiddens", num_hiddens)]:
            check_positive_int(name, value)
        if img_size % 2:
            raise ValueError(f"img_size must be even (one 2x2 pooling), got {img_size}")
        side = img_size // 2
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 2 * channels, side, side)
            nn.Flatten(),
            nn.Linear(2 * channels * side * side, num_hiddens), nn.ReLU(),
            nn.Linear(num_hiddens, num_classes))

    def forward(self, X: Tensor) -> Tensor:
        """Shapes: X (B, in_channels, img_size, img_size) -> (B, C)."""
        return self.net(X)
