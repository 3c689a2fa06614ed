"""Chapter 6's experiment (companion.experiments.heads): one head against many."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from companion.experiments.heads import TwoNeighboursReader
from companion.tasks.synthetic import make_two_neighbours_data


def test_two_heads_pass_the_one_average_floor(one_thread):
    X, Y = make_two_neighbours_data(num_seqs=256, seq_len=6, content_size=3, seed=0)
    X_test, Y_test = make_two_neighbours_data(num_seqs=256, seq_len=6, content_size=3, seed=1)
    test_mse = {}
    for heads in (1, 2):
        torch.manual_seed(1)
        model = TwoNeighboursReader(num_hiddens=12, num_heads=heads, seq_len=6, content_size=3)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(120):
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()
        with torch.no_grad():
            test_mse[heads] = F.mse_loss(model(X_test), Y_test).item()
    assert test_mse[1] > 0.4, test_mse  # one weighted average cannot hold both neighbours
    assert test_mse[2] < 0.05, test_mse
