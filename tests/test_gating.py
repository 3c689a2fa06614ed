"""The written-out LSTM and GRU cells equal torch.nn.LSTM / torch.nn.GRU given the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.gating import GRUCell, LSTMCell, load_torch_rnn, run_cell


@pytest.fixture
def X():
    return torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(0))  # (B, n, E)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_cell_equals_torch_lstm(X, bidirectional):
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 6, batch_first=True, bidirectional=bidirectional)
    theirs, (h_n, c_n) = lstm(X)
    cell = load_torch_rnn(LSTMCell(5, 6), lstm)
    ours, (H, C), _ = run_cell(cell, X)
    torch.testing.assert_close(ours, theirs[..., :6], atol=1e-6, rtol=0)
    torch.testing.assert_close(H, h_n[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(C, c_n[0], atol=1e-6, rtol=0)
    if bidirectional:
        load_torch_rnn(cell, lstm, reverse=True)
        back, _, _ = run_cell(cell, X.flip(1))
        torch.testing.assert_close(back.flip(1), theirs[..., 6:], atol=1e-6, rtol=0)


def test_gru_cell_equals_torch_gru(X):
    torch.manual_seed(1)
    gru = nn.GRU(5, 4, batch_first=True)
    theirs, h_n = gru(X)
    ours, H, _ = run_cell(load_torch_rnn(GRUCell(5, 4), gru), X)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    torch.testing.assert_close(H, h_n[0], atol=1e-6, rtol=0)


def test_gru_cell_equals_torch_gru_cell_in_one_step():
    torch.manual_seed(2)
    theirs = nn.GRUCell(3, 4)
    ours = GRUCell(3, 4)
    ours.load_state_dict(theirs.state_dict())
    X, H = torch.randn(2, 3), torch.randn(2, 4)
    torch.testing.assert_close(ours(X, H), theirs(X, H), atol=1e-6, rtol=0)


def test_paper_gru_resets_before_the_matmul_and_differs_from_torch(X):
    torch.manual_seed(3)
    torch_form = GRUCell(5, 4)
    paper = GRUCell(5, 4, reset_after=False)
    paper.load_state_dict(torch_form.state_dict())
    H = torch.randn(3, 4)
    g = paper.gates(X[:, 0], H)
    W_n, b_n = paper.weight_hh[8:], paper.bias_hh[8:]
    Xn = X[:, 0] @ paper.weight_ih[8:].T + paper.bias_ih[8:]
    torch.testing.assert_close(g["candidate"], torch.tanh(Xn + (g["reset"] * H) @ W_n.T + b_n))
    assert (paper(X[:, 0], H) - torch_form(X[:, 0], H)).abs().max() > 1e-2
    # With the reset gate wide open (R = 1) the two forms agree.
    with torch.no_grad():
        for cell in (paper, torch_form):
            cell.bias_ih[:4] = 50.0
    torch.testing.assert_close(paper(X[:, 0], H), torch_form(X[:, 0], H), atol=1e-6, rtol=0)


def test_gates_lie_in_zero_one_and_have_one_value_per_unit(X):
    _, _, gates = run_cell(LSTMCell(5, 6), X)
    assert set(gates) == {"input", "forget", "output", "candidate"}
    for name in ("input", "forget", "output"):
        assert gates[name].shape == (3, 7, 6)
        assert ((gates[name] > 0) & (gates[name] < 1)).all()
    assert (gates["candidate"].abs() < 1).all()


def test_load_checks_the_pair_and_the_sizes():
    with pytest.raises(ValueError, match="nn.LSTM into an LSTMCell"):
        load_torch_rnn(LSTMCell(3, 4), nn.GRU(3, 4))
    with pytest.raises(ValueError, match="weight_ih_l0"):
        load_torch_rnn(GRUCell(3, 5), nn.GRU(3, 4))
    with pytest.raises(ValueError, match="biases"):
        load_torch_rnn(GRUCell(3, 4), nn.GRU(3, 4, bias=False))
    with pytest.raises(ValueError, match="reverse"):
        load_torch_rnn(GRUCell(3, 4), nn.GRU(3, 4), reverse=True)


def test_cells_reject_wrong_shapes():
    with pytest.raises(ValueError, match="X must have shape"):
        GRUCell(3, 4)(torch.randn(2, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="hidden state"):
        LSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 5), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match="positive int"):
        LSTMCell(0, 4)
