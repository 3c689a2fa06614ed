"""The Transformer block of chapter 8: FFN, add & norm, encoder blocks, the encoder, parity with PyTorch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import companion
from companion.multihead import valid_lens_to_key_padding_mask
from companion.transformer import (
    AddNorm,
    PositionWiseFFN,
    TransformerEncoder,
    TransformerEncoderBlock,
    load_torch_encoder_layer,
)
from companion.experiments.norm_placement import TransformerTagger, block_gradient_norms, train_tagger
from companion.tasks.synthetic import make_rank_data
from conftest import gen


# --- PositionWiseFFN ------------------------------------------------------------------------------------


def test_ffn_is_relu_between_two_affine_maps():
    torch.manual_seed(0)
    ffn = PositionWiseFFN(12, 5, 4)
    X = torch.randn(2, 3, 4, generator=gen(1))
    W1, b1 = ffn.dense1.weight.T, ffn.dense1.bias  # (4, 12), (12,)
    W2, b2 = ffn.dense2.weight.T, ffn.dense2.bias  # (12, 5), (5,)
    expected = torch.clamp(X @ W1 + b1, min=0) @ W2 + b2  # max(0, x W1 + b1) W2 + b2
    torch.testing.assert_close(ffn(X), expected)
    assert ffn(X).shape == (2, 3, 5)


def test_ffn_on_each_position_alone_equals_ffn_on_the_sequence():
    torch.manual_seed(0)
    ffn = PositionWiseFFN(16, 8, 8)
    X = torch.randn(3, 6, 8, generator=gen(2))
    one_at_a_time = torch.stack([ffn(X[:, i]) for i in range(X.shape[1])], dim=1)  # (3, 6, 8)
    torch.testing.assert_close(ffn(X), one_at_a_time)
    # ... and equals the flattened (batch * n, d) form: the batch and position axes play the same role.
    torch.testing.assert_close(ffn(X), ffn(X.reshape(-1, 8)).reshape(3, 6, 8))


def test_changing_one_position_changes_only_that_output_row():
    torch.manual_seed(0)
    ffn = PositionWiseFFN(16, 8, 8)
    X = torch.randn(1, 6, 8, generator=gen(3))
    X2 = X.clone()
    X2[0, 4] += torch.randn(8, generator=gen(4))
    changed = (ffn(X2) - ffn(X)).abs().amax(dim=-1)[0]  # (6,): largest change per output row
    assert changed[4] > 1e-3
    assert torch.equal(changed[torch.arange(6) != 4], torch.zeros(5))


def test_ffn_without_input_size_is_created_on_first_call():
    ffn = PositionWiseFFN(7, 3)
    assert isinstance(ffn.dense1, nn.LazyLinear)
    out = ffn(torch.randn(2, 4, 5))
    assert out.shape == (2, 4, 3) and ffn.dense1.weight.shape == (7, 5)


def test_ffn_rejects_the_wrong_input_width():
    with pytest.raises(ValueError, match=r"X must have 8 features \(last dim\), got X \(2, 3, 6\)"):
        PositionWiseFFN(16, 8, 8)(torch.zeros(2, 3, 6))


@pytest.mark.parametrize("args", [(0, 4), (4, 0), (4, 4, -1), (4.0, 4)])
def test_ffn_rejects_sizes_that_are_not_positive_ints(args):
    with pytest.raises(ValueError, match=r"must be a positive int"):
        PositionWiseFFN(*args)


# --- AddNorm --------------------------------------------------------------------------------------------


def test_addnorm_is_layernorm_of_the_residual_sum():
    torch.manual_seed(0)
    addnorm = AddNorm(6, dropout=0.5).eval()  # eval: dropout is the identity
    with torch.no_grad():
        addnorm.ln.weight.uniform_(0.5, 2.0)
        addnorm.ln.bias.uniform_(-1.0, 1.0)
    X, Y = torch.randn(2, 4, 6, generator=gen(5)), torch.randn(2, 4, 6, generator=gen(6))
    S = X + Y
    mean, var = S.mean(-1, keepdim=True), S.var(-1, unbiased=False, keepdim=True)
    expected = (S - mean) / torch.sqrt(var + 1e-5) * addnorm.ln.weight + addnorm.ln.bias
    torch.testing.assert_close(addnorm(X, Y), expected)


def test_addnorm_normalises_each_position_over_its_features():
    addnorm = AddNorm(16, dropout=0.0)
    out = addnorm(3 + 5 * torch.randn(4, 7, 16, generator=gen(7)), torch.randn(4, 7, 16, generator=gen(8)))
    torch.testing.assert_close(out.mean(-1), torch.zeros(4, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(4, 7), atol=1e-3, rtol=0)


def test_addnorm_applies_dropout_to_the_sublayer_output_only():
    torch.manual_seed(0)
    addnorm = AddNorm(32, dropout=0.5).train()
    X = torch.randn(1, 1, 32, generator=gen(9))
    # With Y = 0 the dropout has nothing to drop, so the output is LN(X) however the mask falls.
    torch.testing.assert_close(addnorm(X, torch.zeros_like(X)), F.layer_norm(X, (32,)))
    a, b = addnorm(X, torch.ones_like(X)), addnorm(X, torch.ones_like(X))
    assert not torch.equal(a, b)  # dropout is live in training mode


def test_addnorm_rejects_x_and_y_of_different_shapes():
    with pytest.raises(ValueError, match=r"same shape, got X torch.Size\(\[2, 3, 4\]\) and Y torch.Size\(\[2, 4, 4\]\)"):
        AddNorm(4, 0.0)(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4))


def test_addnorm_rejects_a_dropout_outside_0_1():
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\), got 1.0"):
        AddNorm(4, 1.0)


# --- TransformerEncoderBlock and parity with torch.nn.TransformerEncoderLayer ----------------------------


def torch_layer(d: int, heads: int, ffn: int, norm_first: bool, **kwargs) -> nn.TransformerEncoderLayer:
    layer = nn.TransformerEncoderLayer(
        d, heads, ffn, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first, **kwargs
    )
    # Random LayerNorm gains and biases, so a swapped norm1/norm2 cannot pass.
    with torch.no_grad():
        for norm in (layer.norm1, layer.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return layer


def matched_pair(norm_first: bool, d: int = 16, heads: int = 4, ffn: int = 24, seed: int = 0):
    torch.manual_seed(seed)
    layer = torch_layer(d, heads, ffn, norm_first)
    block = TransformerEncoderBlock(d, ffn, heads, 0.0, use_bias=True, norm_first=norm_first)
    load_torch_encoder_layer(block, layer)
    return block, layer


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_block_equals_torch_encoder_layer(norm_first):
    block, layer = matched_pair(norm_first)
    X = torch.randn(3, 7, 16, generator=gen(10), requires_grad=True)
    ours, theirs = block(X), layer(X)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # The gradients agree too, with respect to the input and to every copied weight.
    (g_ours,) = torch.autograd.grad(ours.square().sum(), X)
    (g_theirs,) = torch.autograd.grad(theirs.square().sum(), X)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_block_equals_torch_encoder_layer_with_padding(norm_first):
    block, layer = matched_pair(norm_first, seed=1)
    X = torch.randn(3, 6, 16, generator=gen(11))
    valid_lens = torch.tensor([6, 4, 2])
    mask = valid_lens_to_key_padding_mask(valid_lens, 6)  # (3, 6), True = padding
    torch.testing.assert_close(block(X, valid_lens), layer(X, src_key_padding_mask=mask), atol=1e-5, rtol=1e-5)
    # In eval mode without gradients PyTorch takes its fused fast path; the numbers must not move.
    block.eval(), layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(X, valid_lens), layer(X, src_key_padding_mask=mask), atol=1e-5, rtol=1e-5)


def test_load_copies_every_weight_and_nothing_is_shared():
    block, layer = matched_pair(False)
    ours = sum(p.numel() for p in block.parameters())
    theirs = sum(p.numel() for p in layer.parameters())
    assert ours == theirs
    with torch.no_grad():
        layer.linear1.weight.add_(1.0)  # the copy is a copy: changing torch's layer leaves ours alone
    assert not torch.equal(block.ffn.dense1.weight, layer.linear1.weight)


def test_load_rejects_a_different_norm_placement():
    block = TransformerEncoderBlock(16, 24, 4, 0.0, use_bias=True, norm_first=False)
    with pytest.raises(ValueError, match=r"block.norm_first=False and layer.norm_first=True"):
        load_torch_encoder_layer(block, torch_layer(16, 4, 24, norm_first=True))


def test_load_rejects_another_activation():
    block = TransformerEncoderBlock(16, 24, 4, 0.0, use_bias=True)
    layer = nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, activation="gelu", batch_first=True)
    with pytest.raises(ValueError, match=r"PositionWiseFFN uses ReLU"):
        load_torch_encoder_layer(block, layer)


def test_load_rejects_another_width_or_missing_biases():
    with pytest.raises(ValueError, match=r"same width"):
        load_torch_encoder_layer(TransformerEncoderBlock(8, 24, 4, 0.0, use_bias=True), torch_layer(16, 4, 24, False))
    with pytest.raises(ValueError, match=r"weight shapes differ"):
        load_torch_encoder_layer(TransformerEncoderBlock(16, 12, 4, 0.0, use_bias=True), torch_layer(16, 4, 24, False))
    with pytest.raises(ValueError, match=r"bias settings differ"):
        load_torch_encoder_layer(TransformerEncoderBlock(16, 24, 4, 0.0, use_bias=False), torch_layer(16, 4, 24, False))


def test_load_rejects_something_that_is_not_an_encoder_layer():
    with pytest.raises(ValueError, match=r"must be a torch.nn.TransformerEncoderLayer, got Linear"):
        load_torch_encoder_layer(TransformerEncoderBlock(16, 24, 4, 0.0), nn.Linear(2, 2))


def silence_sublayers(block: TransformerEncoderBlock) -> None:
    """Zero the last layer of both sublayers, so each sublayer outputs exactly zero."""
    with torch.no_grad():
        for layer in (block.attention.W_o, block.ffn.dense2):
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()


def test_pre_norm_block_with_silent_sublayers_is_the_identity():
    torch.manual_seed(0)
    pre = TransformerEncoderBlock(8, 16, 2, 0.0, use_bias=True, norm_first=True)
    post = TransformerEncoderBlock(8, 16, 2, 0.0, use_bias=True, norm_first=False)
    post.load_state_dict(pre.state_dict())  # same parameter names: the two forms are interchangeable
    silence_sublayers(pre), silence_sublayers(post)
    X = 3 + 2 * torch.randn(2, 5, 8, generator=gen(12))
    torch.testing.assert_close(pre(X), X)  # the residual path passes X through untouched
    # Post-norm normalises even then: twice LN(X) (the second LN sees an already normalised input).
    ln = F.layer_norm(X, (8,))
    torch.testing.assert_close(post(X), F.layer_norm(ln, (8,)), atol=1e-5, rtol=1e-5)


def test_block_ignores_the_content_of_padded_keys():
    torch.manual_seed(0)
    for norm_first in (False, True):
        block = TransformerEncoderBlock(8, 16, 2, 0.0, norm_first=norm_first)
        X = torch.randn(1, 6, 8, generator=gen(13))
        X2 = X.clone()
        X2[0, 4:] = torch.randn(2, 8, generator=gen(14))  # change only the padding
        valid = torch.tensor([4])
        torch.testing.assert_close(block(X, valid)[:, :4], block(X2, valid)[:, :4])


def test_block_rejects_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match=r"divisible by num_heads"):
        TransformerEncoderBlock(10, 16, 3, 0.0)


def test_block_parameter_count_is_the_closed_form():
    d, f = 32, 64
    with_bias = TransformerEncoderBlock(d, f, 4, 0.0, use_bias=True)
    without = TransformerEncoderBlock(d, f, 4, 0.0, use_bias=False)
    ffn_and_norms = (d * f + f) + (f * d + d) + 2 * (2 * d)
    assert sum(p.numel() for p in with_bias.parameters()) == 4 * d * d + 4 * d + ffn_and_norms
    assert sum(p.numel() for p in without.parameters()) == 4 * d * d + ffn_and_norms


# --- TransformerEncoder and the tagger ------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_shapes_and_attention_weights(norm_first):
    torch.manual_seed(0)
    enc = TransformerEncoder(20, 16, 32, 4, 3, 0.0, norm_first=norm_first)
    X = torch.randint(0, 20, (2, 7), generator=gen(15))
    out = enc(X, torch.tensor([7, 5]))
    assert out.shape == (2, 7, 16)
    assert len(enc.attention_weights) == 3 and all(w.shape == (2, 4, 7, 7) for w in enc.attention_weights)
    assert torch.equal(enc.attention_weights[0][1, :, :, 5:], torch.zeros(4, 7, 2))  # padded keys get no weight
    assert isinstance(enc.final_norm, nn.LayerNorm if norm_first else nn.Identity)


def test_encoder_input_has_unit_scale_like_the_positional_encoding():
    # N(0, 1/d) embeddings times sqrt(d): each coordinate has variance about 1, as in the paper's setup.
    torch.manual_seed(0)
    enc = TransformerEncoder(1000, 64, 64, 4, 1, 0.0)
    scaled = enc.embedding.weight * math.sqrt(64)  # (1000, 64)
    assert 0.9 < scaled.var().item() < 1.1


@pytest.mark.parametrize("positions, kind", [("sinusoidal", companion.PositionalEncoding),
                                              ("learned", companion.LearnedPositionalEmbedding)])
def test_encoder_takes_sinusoidal_or_learned_positions(positions, kind):
    enc = TransformerEncoder(10, 8, 16, 2, 1, 0.0, max_len=12, positions=positions)
    assert type(enc.pos_encoding) is kind and enc.pos_encoding.max_len == 12
    learned = [name for name, _ in enc.named_parameters() if name.startswith("pos_encoding")]
    assert learned == (["pos_encoding.P"] if positions == "learned" else [])
    X = torch.randint(0, 10, (2, 5), generator=gen(16))
    out = enc(X)
    # Swapping the first two tokens changes more than those two outputs' order: the positions tell them apart.
    swapped = enc(X[:, [1, 0, 2, 3, 4]])
    assert not torch.allclose(swapped[:, [1, 0]], out[:, :2], atol=1e-4)
    with pytest.raises(ValueError, match=r"positions must be one of \('sinusoidal', 'learned'\), got 'rotary'"):
        TransformerEncoder(10, 8, 16, 2, 1, 0.0, positions="rotary")


def test_encoder_rejects_float_tokens():
    enc = TransformerEncoder(10, 8, 16, 2, 1, 0.0)
    with pytest.raises(ValueError, match=r"token ids \(B, n\), got torch.Size\(\[2, 3\]\) of dtype torch.float32"):
        enc(torch.zeros(2, 3))


# --- gradient norms per block ---------------------------------------------------------------------------


def test_pre_norm_identity_path_carries_the_gradient_unchanged():
    # With every sublayer silent, a pre-norm stack is the identity: each block passes back exactly the
    # gradient it receives. A post-norm stack rescales it at every LayerNorm.
    torch.manual_seed(0)
    X, Y = make_rank_data(16, 8, 16, seed=5)
    pre = TransformerTagger(16, 8, 16, 32, 2, 4, norm_first=True)
    for blk in pre.encoder.blks:
        silence_sublayers(blk)
    norms = block_gradient_norms(pre, X, Y)["input"]
    torch.testing.assert_close(norms, norms[0].expand(4))


# --- training -------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_block_on_the_gpu_matches_the_cpu():
    block, layer = matched_pair(True)
    X = torch.randn(2, 5, 16, generator=gen(16))
    expected = block(X)
    torch.testing.assert_close(block.cuda()(X.cuda()).cpu(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layer.cuda()(X.cuda()).cpu(), expected, atol=1e-5, rtol=1e-4)
    X, Y = make_rank_data(64, 4, 8)
    torch.manual_seed(0)
    model = TransformerTagger(8, 4, 16, 32, 2, 1)
    losses = train_tagger(model, X, Y, num_steps=5, lr=1e-3, progress=False, device="cuda")
    assert all(math.isfinite(v) for v in losses) and next(model.parameters()).is_cuda
