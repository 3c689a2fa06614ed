"""Chapter 6's experiment: one head against many, on a task that needs two places at
once (tasks.synthetic.make_two_neighbours_data)."""
from __future__ import annotations

from torch import Tensor, nn

from ..multihead import MultiHeadAttention

__all__ = ["TwoNeighboursReader"]


class TwoNeighboursReader(nn.Module):
    """Self-attention with num_heads heads, then a linear read-out (chapter 6).

    Shapes: forward(X (B, n, n + c)) -> (B, n, 2c), with n = seq_len and
    c = content_size, the layout of make_two_neighbours_data.
    """

    def __init__(
        self, num_hiddens: int, num_heads: int, seq_len: int, content_size: int
    ) -> None:
        super().__init__()
        size = seq_len + content_size
        self.attention = MultiHeadAttention(num_hiddens, num_heads, 0.0, bias=True,
                                            query_size=size, key_size=size,
                                            value_size=size)
        self.readout = nn.Linear(num_hiddens, 2 * content_size)

    def forward(self, X: Tensor) -> Tensor:
        """Every token attends to the whole sequence (queries = keys = values = X).

        Shapes: X (B, n, n + c) -> (B, n, 2c).
        """
        return self.readout(self.attention(X, X, X))  # (B, n, d) -> (B, n, 2c)
