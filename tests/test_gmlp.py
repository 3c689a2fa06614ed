"""The spatial gating unit and the gMLP block (chapter 11)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from companion.gmlp import SpatialGatingUnit, gMLPBlock


def test_sgu_equals_its_formula():
    torch.manual_seed(0)
    sgu = SpatialGatingUnit(5, 8)
    with torch.no_grad():
        sgu.weight.normal_(), sgu.bias.normal_()
    Z = torch.randn(3, 5, 8)
    U, V = Z[..., :4], Z[..., 4:]
    expected = U * (torch.einsum("ij,bjk->bik", sgu.weight, F.layer_norm(V, (4,))) + sgu.bias[:, None])
    torch.testing.assert_close(sgu(Z), expected, atol=1e-5, rtol=1e-5)


def test_sgu_starts_near_zero_weights_and_bias_one():
    torch.manual_seed(1)
    sgu = SpatialGatingUnit(16, 8)
    assert sgu.weight.abs().max() <= 1e-3 / 16 and torch.equal(sgu.bias, torch.ones(16))
    Z = torch.randn(2, 16, 8)
    # The unit passes U through: the gate is 1 up to about 1e-3.
    assert (sgu(Z) - Z[..., :4]).abs().max() < 1e-2 * Z.abs().max()


def test_block_starts_near_a_position_wise_block():
    torch.manual_seed(2)
    blk = gMLPBlock(8, 16, 32)
    X = torch.randn(4, 8, 16)
    X2 = X.clone()
    X2[:, 3] += 3 * torch.randn(16)  # change one position (not by a constant: LN removes that)
    with torch.no_grad():
        moved = (blk(X2) - blk(X)).abs().amax(dim=-1)  # (B, n)
    others = torch.cat([moved[:, :3], moved[:, 4:]], dim=1)
    assert others.max() < 1e-3 * moved[:, 3].min()
    with torch.no_grad():
        blk.sgu.weight.normal_()  # trained weights mix positions
        assert (blk(X2) - blk(X))[:, 0].abs().max() > 1e-2


def test_longer_input_raises_shorter_uses_the_top_left_block():
    sgu = SpatialGatingUnit(6, 4)
    with pytest.raises(ValueError, match="at most 6 positions"):
        sgu(torch.randn(1, 7, 4))
    with torch.no_grad():
        sgu.weight.normal_()
    Z = torch.randn(2, 4, 4)
    padded = torch.cat([Z, torch.zeros(2, 2, 4)], dim=1)
    # Zero-padded V is still zero after the layer norm, so padding and slicing agree.
    torch.testing.assert_close(sgu(Z), sgu(padded)[:, :4], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="even"):
        SpatialGatingUnit(6, 5)
    with pytest.raises(ValueError, match="shape"):
        sgu(torch.randn(2, 4, 6))


def test_block_keeps_the_shape_and_trains():
    blk = gMLPBlock(5, 8, 12)
    X = torch.randn(2, 5, 8)
    assert blk(X).shape == (2, 5, 8)
    blk(X).sum().backward()
    assert blk.sgu.weight.grad.abs().sum() > 0
