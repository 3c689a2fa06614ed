"""Three ways to mix the positions of a sequence, side by side (chapter 10).

A stack of convolutions, a recurrent layer (GRU or LSTM) and a stack of
self-attention blocks, each mapping (B, n, d) to (B, n, d); and a classifier
that tags the positions of any of them, for the long-range recall task.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .multihead import MultiHeadAttention
from .transformer import TransformerEncoderBlock
from .utils import check_positive_int

__all__ = [
    "ConvSequenceStack",
    "RecurrentSequenceLayer",
    "AttentionSequenceStack",
    "SequenceTagger",
    "SelfAttentionLayer",
    "count_sequential_steps",
]


def _check_conv_stack(num_hiddens: int, num_layers: int, kernel_size: int,
                      dilation_base: int) -> None:
    for name, value in [("num_hiddens", num_hiddens), ("num_layers", num_layers),
                        ("kernel_size", kernel_size), ("dilation_base", dilation_base)]:
        check_positive_int(name, value)
    if kernel_size % 2 == 0:
        raise ValueError(f"expected an odd kernel_size, got {kernel_size}")


class ConvSequenceStack(nn.Module):
    """L Conv1d layers of width d, zero 'same' padding, ReLU between (chapter 10).

    Shapes: forward(X (B, n, d)) -> (B, n, d). With dilation_base b > 1 layer l
    has dilation b**l (WaveNet's stack); with 1 every layer is contiguous.
    """

    def __init__(self, num_hiddens: int, num_layers: int, kernel_size: int = 3,
                 dilation_base: int = 1) -> None:
        super().__init__()
        _check_conv_stack(num_hiddens, num_layers, kernel_size, dilation_base)
        self.convs = nn.ModuleList(
            nn.Conv1d(num_hiddens, num_hiddens, kernel_size,
                      dilation=dilation_base**layer,
                      padding=dilation_base**layer * (kernel_size - 1) // 2)
            for layer in range(num_layers))

    def forward(self, X: Tensor) -> Tensor:
        H = X.transpose(1, 2)  # (B, d, n): Conv1d wants channels first
        for i, conv in enumerate(self.convs):
            H = conv(H)
            if i < len(self.convs) - 1:
                H = torch.relu(H)
        return H.transpose(1, 2)  # (B, n, d)


class RecurrentSequenceLayer(nn.Module):
    """One GRU or LSTM layer run over the positions left to right (chapter 10).

    Shapes: forward(X (B, n, d)) -> (B, n, H), H = num_hiddens. ``cell=True``
    runs the same weights one step at a time with nn.GRUCell / nn.LSTMCell, to
    count the steps and to compare with the fused kernel.
    """

    def __init__(self, input_size: int, num_hiddens: int, kind: str = "gru",
                 cell: bool = False) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("num_hiddens", num_hiddens)
        if kind not in ("gru", "lstm"):
            raise ValueError(f"kind must be 'gru' or 'lstm', got {kind!r}")
        self.kind, self.cell = kind, cell
        layer = nn.GRU if kind == "gru" else nn.LSTM
        self.rnn = layer(input_size, num_hiddens, batch_first=True)
        step = nn.GRUCell if kind == "gru" else nn.LSTMCell
        self.step = step(input_size, num_hiddens)
        # The cell shares the layer's weights: both compute the same function.
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(self.step, name, getattr(self.rnn, f"{name}_l0"))

    def forward(self, X: Tensor) -> Tensor:
        if not self.cell:
            return self.rnn(X)[0]  # (B, n, H): the fused kernel, all steps in one call
        state = None
        outputs = []
        for t in range(X.shape[1]):  # n steps, each waiting for the one before
            state = self.step(X[:, t], state)  # (B, H), or (h, c) for an LSTM
            outputs.append(state if self.kind == "gru" else state[0])
        return torch.stack(outputs, dim=1)  # (B, n, H)


class SelfAttentionLayer(nn.Module):
    """One multi-head self-attention layer: queries, keys, values all from X.

    Shapes: forward(X (B, n, d)) -> (B, n, d).
    """

    def __init__(self, num_hiddens: int, num_heads: int) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(num_hiddens, num_heads, 0.0, bias=True,
                                            query_size=num_hiddens,
                                            key_size=num_hiddens,
                                            value_size=num_hiddens)

    def forward(self, X: Tensor) -> Tensor:
        return self.attention(X, X, X)


class AttentionSequenceStack(nn.Module):
    """Learned positions, then L pre-norm encoder blocks (chapters 8, 10).

    Shapes: forward(X (B, n, d)) -> (B, n, d), n <= max_len.
    """

    def __init__(self, num_hiddens: int, num_layers: int, num_heads: int,
                 max_len: int, ffn_num_hiddens: int | None = None) -> None:
        super().__init__()
        check_positive_int("max_len", max_len)
        ffn = ffn_num_hiddens or 2 * num_hiddens
        self.positions = nn.Parameter(0.1 * torch.randn(max_len, num_hiddens))
        self.blocks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, ffn, num_heads, 0.0, use_bias=True,
                                    norm_first=True)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(num_hiddens)

    def forward(self, X: Tensor) -> Tensor:
        if X.shape[1] > self.positions.shape[0]:
            raise ValueError(f"expected at most {self.positions.shape[0]} positions, "
                             f"got {X.shape[1]}")
        H = X + self.positions[: X.shape[1]]  # (B, n, d): where each token is
        for block in self.blocks:
            H = block(H, None)
        return self.norm(H)


class SequenceTagger(nn.Module):
    """Embed the tokens, mix positions with ``body``, classify every position.

    Shapes: forward(X (B, n) token ids) -> logits (B, n, C), C = num_classes;
    ``body`` maps (B, n, d) to (B, n, width).
    """

    def __init__(self, body: nn.Module, vocab_size: int, num_hiddens: int,
                 width: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, num_hiddens)
        self.body = body
        self.head = nn.Linear(width, num_classes)

    def forward(self, X: Tensor) -> Tensor:
        return self.head(self.body(self.embed(X)))  # (B, n, C)


def count_sequential_steps(model: nn.Module, X: Tensor) -> int:
    """How many position-mixing calls run one after another in ``model(X)`` (ch. 10).

    Counts the calls of every Conv1d, GRUCell / LSTMCell, GRU / LSTM time step and
    multi-head attention during one forward pass; each waits for the one before.
    A fused GRU / LSTM call counts as its n time steps, which its kernel still
    runs in sequence.
    """
    calls = [0]

    def one(module: nn.Module, inputs: tuple, output: object) -> None:
        calls[0] += 1

    def per_step(module: nn.Module, inputs: tuple, output: object) -> None:
        calls[0] += inputs[0].shape[1]  # batch_first: one step per position

    mixing = (nn.Conv1d, nn.GRUCell, nn.LSTMCell, MultiHeadAttention)
    hooks = [m.register_forward_hook(per_step if isinstance(m, (nn.GRU, nn.LSTM))
                                     else one)
             for m in model.modules()
             if isinstance(m, mixing + (nn.GRU, nn.LSTM))]
    try:
        with torch.no_grad():
            model(X)
    finally:
        for hook in hooks:
            hook.remove()
    return calls[0]
