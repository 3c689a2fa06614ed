"""Chapter 7's experiments (companion.experiments.positions): scales, and the previous-token probe."""
from __future__ import annotations

import pytest
import torch

from companion.experiments.positions import (PositionProbe, embedding_scale_measurements, previous_token_accuracy,
                                             train_position_probe)

F64 = torch.float64


def test_embedding_scale_measurements_match_the_theory():
    before = torch.random.get_rng_state()
    m = embedding_scale_measurements([16, 64, 256], vocab_size=2000)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is untouched
    d = m["dims"].double()
    torch.testing.assert_close(m["encoding"], (d / 2).sqrt())  # exact: sin^2 + cos^2 = 1 per pair
    assert torch.allclose(m["embedding"], d.sqrt(), rtol=0.03)  # nn.Embedding's N(0, 1): norm about sqrt(d)
    assert torch.allclose(m["small"], torch.ones(3, dtype=F64), rtol=0.03)  # N(0, 1/d): norm about 1
    torch.testing.assert_close(m["embedding_scaled"], m["embedding"] * d.sqrt())
    torch.testing.assert_close(m["small_scaled"], m["small"] * d.sqrt())
    # As output weights: N(0, 1) gives logits of std sqrt(d), N(0, 1/d) gives std 1.
    assert torch.allclose(m["logits_embedding"], d.sqrt(), rtol=0.05)
    assert torch.allclose(m["logits_small"], torch.ones(3, dtype=F64), rtol=0.05)


def test_embedding_scale_measurements_reject_odd_dims():
    with pytest.raises(ValueError, match="num_hiddens must be even"):
        embedding_scale_measurements([16, 33])


def test_position_probe_without_positions_is_equivariant_and_with_them_is_not():
    torch.manual_seed(0)
    tokens = torch.randint(0, 10, (3, 9))
    perm = torch.randperm(9)
    for kind, equivariant in [("none", True), ("sinusoidal", False), ("learned", False), ("rotary", False)]:
        probe = PositionProbe(10, 8, kind)
        with torch.no_grad():
            if kind == "learned":
                probe.positions.P.normal_()  # as if trained: rows of the size of the token embeddings
            gap = (probe(tokens[:, perm]) - probe(tokens)[:, perm]).abs().max().item()
        assert (gap < 1e-5) == equivariant, (kind, gap)
    with pytest.raises(ValueError, match="kind must be one of"):
        PositionProbe(10, 8, "absolute")


def test_training_the_probe_needs_positions():
    threads = torch.get_num_threads()
    _, acc_none = train_position_probe("none", num_steps=120, device="cpu", progress=False)
    assert torch.get_num_threads() == threads  # the one-thread speed-up is undone afterwards
    model, acc_sin = train_position_probe("sinusoidal", num_steps=120, device="cpu", progress=False)
    assert len(acc_none) == 120
    assert max(acc_none[-20:]) < 0.4  # without positions it can only guess a frequent token
    assert previous_token_accuracy(model, 16) > 0.95
