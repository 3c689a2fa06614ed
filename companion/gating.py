"""LSTM and GRU cells written out from their equations (chapter 11).

Each cell stores its weights in PyTorch's layout (``weight_ih``, ``weight_hh``,
``bias_ih``, ``bias_hh``, the gates stacked in PyTorch's order), so that
``load_torch_rnn`` can copy the weights of a ``torch.nn.LSTM`` or ``torch.nn.GRU``
into it and the two give the same numbers. ``GRUCell(reset_after=False)`` is the
original paper's GRU (Cho et al., 2014), which applies the reset gate before the
hidden matrix product; PyTorch applies it after (pytorch/pytorch#99531).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .utils import check_positive_int

__all__ = ["LSTMCell", "GRUCell", "run_cell", "load_torch_rnn"]


class _GatedCell(nn.Module):
    """The weights shared by both cells: num_gates blocks of H rows each."""

    num_gates = 1

    def __init__(self, input_size: int, num_hiddens: int) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("num_hiddens", num_hiddens)
        self.input_size, self.num_hiddens = input_size, num_hiddens
        rows = self.num_gates * num_hiddens
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, num_hiddens))
        self.bias_ih = nn.Parameter(torch.empty(rows))
        self.bias_hh = nn.Parameter(torch.empty(rows))
        bound = 1 / math.sqrt(num_hiddens)  # PyTorch's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _check_input(self, X: Tensor, H: Tensor) -> None:
        if X.dim() != 2 or X.shape[-1] != self.input_size:
            raise ValueError(
                f"X must have shape (batch, {self.input_size}), got {tuple(X.shape)}")
        if H.shape != (X.shape[0], self.num_hiddens):
            raise ValueError(
                f"the hidden state must have shape ({X.shape[0]}, {self.num_hiddens}),"
                f" got {tuple(H.shape)}")


class LSTMCell(_GatedCell):
    """One LSTM step, eq. (lstm) of chapter 11; gates in PyTorch's order i, f, g, o.

    Shapes: forward(X (B, E), state (H (B, H), C (B, H))) -> (H (B, H), C (B, H)),
    with E = input_size and H = num_hiddens.
    """

    num_gates = 4

    def gates(self, X: Tensor, state: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        """The input, forget and output gates and the candidate memory of one step.

        Shapes: X (B, E), state (H, C) -> {"input", "forget", "output",
        "candidate"}, each (B, H).
        """
        H, C = state
        self._check_input(X, H)
        # (B, 4H): the four pre-activations side by side, split into (B, H) each.
        Z = X @ self.weight_ih.T + self.bias_ih + H @ self.weight_hh.T + self.bias_hh
        I, F, G, O = Z.chunk(4, dim=-1)
        return {"input": torch.sigmoid(I), "forget": torch.sigmoid(F),
                "output": torch.sigmoid(O), "candidate": torch.tanh(G)}

    def forward(
        self, X: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """C' = F * C + I * C~, H' = O * tanh(C').  Shapes: as the class."""
        g = self.gates(X, state)
        C = g["forget"] * state[1] + g["input"] * g["candidate"]  # (B, H)
        return g["output"] * torch.tanh(C), C


class GRUCell(_GatedCell):
    """One GRU step, eq. (gru) of chapter 11; gates in PyTorch's order r, z, n.

    reset_after=True is PyTorch's form, R * (H W_hn + b_hn); False is the original
    paper's, (R * H) W_hn + b_hn.
    Shapes: forward(X (B, E), H (B, H)) -> H (B, H), with E = input_size and
    H = num_hiddens.
    """

    num_gates = 3

    def __init__(
        self, input_size: int, num_hiddens: int, reset_after: bool = True
    ) -> None:
        super().__init__(input_size, num_hiddens)
        self.reset_after = reset_after

    def gates(self, X: Tensor, H: Tensor) -> dict[str, Tensor]:
        """The reset and update gates and the candidate state of one step.

        Shapes: X (B, E), H (B, H) -> {"reset", "update", "candidate"}, each (B, H).
        """
        self._check_input(X, H)
        W_r, W_z, W_n = self.weight_hh.chunk(3, dim=0)  # (H, H) each
        b_r, b_z, b_n = self.bias_hh.chunk(3)
        Xr, Xz, Xn = (X @ self.weight_ih.T + self.bias_ih).chunk(3, dim=-1)  # (B, H)
        R = torch.sigmoid(Xr + H @ W_r.T + b_r)
        Z = torch.sigmoid(Xz + H @ W_z.T + b_z)
        if self.reset_after:  # PyTorch: reset the hidden matmul's result
            N = torch.tanh(Xn + R * (H @ W_n.T + b_n))
        else:  # Cho et al. (2014), d2l: reset the state, then multiply
            N = torch.tanh(Xn + (R * H) @ W_n.T + b_n)
        return {"reset": R, "update": Z, "candidate": N}

    def forward(self, X: Tensor, H: Tensor) -> Tensor:
        """H' = Z * H + (1 - Z) * N.  Shapes: as the class."""
        g = self.gates(X, H)
        return g["update"] * H + (1 - g["update"]) * g["candidate"]


Cell = Union[LSTMCell, GRUCell]


def run_cell(
    cell: Cell, X: Tensor, state: Optional[object] = None
) -> tuple[Tensor, object, dict[str, Tensor]]:
    """Run a cell over a sequence, keeping its gates at every step (chapter 11).

    Shapes: X (B, n, E) -> outputs (B, n, H), the final state (H, or (H, C) for an
    LSTM) and each gate's activations (B, n, H). The state starts at zero.
    """
    if X.dim() != 3:
        raise ValueError(
            f"X must have shape (batch, n, input_size), got {tuple(X.shape)}")
    if state is None:
        zeros = X.new_zeros(X.shape[0], cell.num_hiddens)  # (B, H)
        state = (zeros, zeros) if isinstance(cell, LSTMCell) else zeros
    outputs, gates = [], []
    for t in range(X.shape[1]):
        gates.append(cell.gates(X[:, t], state))
        state = cell(X[:, t], state)
        outputs.append(state[0] if isinstance(cell, LSTMCell) else state)
    stacked = {k: torch.stack([g[k] for g in gates], dim=1) for k in gates[0]}
    return torch.stack(outputs, dim=1), state, stacked


def load_torch_rnn(
    cell: Cell, rnn: Union[nn.LSTM, nn.GRU], layer: int = 0, reverse: bool = False
) -> Cell:
    """Copy one layer (and direction) of an nn.LSTM / nn.GRU into a cell (chapter 11).

    Both store their gates stacked in the same order, so the copy is one to one.
    """
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    _check_rnn_pair(cell, rnn, suffix)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(rnn, name + suffix))
    return cell


def _check_rnn_pair(cell: Cell, rnn: nn.Module, suffix: str) -> None:
    pairs = {LSTMCell: nn.LSTM, GRUCell: nn.GRU}
    expected = pairs.get(type(cell))
    if expected is None or not isinstance(rnn, expected):
        raise ValueError(
            f"load an nn.LSTM into an LSTMCell or an nn.GRU into a GRUCell, got "
            f"{type(rnn).__name__} into {type(cell).__name__}")
    if not rnn.bias or getattr(rnn, "proj_size", 0):
        raise ValueError("the cells need an RNN with biases and no projection")
    theirs = getattr(rnn, "weight_ih" + suffix, None)
    if theirs is None or theirs.shape != cell.weight_ih.shape or (
            rnn.hidden_size != cell.num_hiddens):
        raise ValueError(
            f"no layer weight_ih{suffix} of shape {tuple(cell.weight_ih.shape)} in the "
            f"RNN (hidden size {rnn.hidden_size}, {rnn.num_layers} layer(s))")
