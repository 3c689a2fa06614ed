"""The exercise checks of chapter 8 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from companion.transformer import PositionWiseFFN
from companion.exercises import transformer_block as ex

FFN_CHECKS = [ex.check_position_wise_ffn_small, ex.check_position_wise_ffn_thorough]
ADD_NORM_CHECKS = [ex.check_add_norm_small, ex.check_add_norm_thorough]


# --- reference solutions (as a learner would write them) ----------------------------------------


def ffn_ok(X, W1, b1, W2, b2):
    return torch.clamp(X @ W1 + b1, min=0) @ W2 + b2


def ffn_flatten_and_back(X, W1, b1, W2, b2):
    rows = X.reshape(-1, X.shape[-1])  # (positions, d): a legal reshape, positions stay whole
    out = torch.relu(rows @ W1 + b1) @ W2 + b2
    return out.reshape(*X.shape[:-1], W2.shape[1])


def ffn_one_position_at_a_time(X, W1, b1, W2, b2):
    rows = X.reshape(-1, X.shape[-1])
    out = torch.stack([torch.relu(r @ W1 + b1) @ W2 + b2 for r in rows])
    return out.reshape(*X.shape[:-1], -1)


def ffn_with_companion_module(X, W1, b1, W2, b2):
    ffn = PositionWiseFFN(W1.shape[1], W2.shape[1], W1.shape[0]).to(X.dtype)
    with torch.no_grad():  # nn.Linear stores its weight transposed: (out, in)
        ffn.dense1.weight.copy_(W1.T), ffn.dense1.bias.copy_(b1)
        ffn.dense2.weight.copy_(W2.T), ffn.dense2.bias.copy_(b2)
    return ffn(X).detach()


def add_norm_ok(X, Y, gamma, beta, eps=1e-5):
    S = X + Y
    mean = S.mean(dim=-1, keepdim=True)
    var = ((S - mean) ** 2).mean(dim=-1, keepdim=True)
    return (S - mean) / torch.sqrt(var + eps) * gamma + beta


def add_norm_builtin(X, Y, gamma, beta, eps=1e-5):
    return F.layer_norm(X + Y, X.shape[-1:], gamma, beta, eps)


@pytest.mark.parametrize("check", FFN_CHECKS)
@pytest.mark.parametrize("solution", [ffn_ok, ffn_flatten_and_back, ffn_one_position_at_a_time,
                                      ffn_with_companion_module])
def test_ffn_checks_accept_correct_answers(check, solution):
    check(solution)


@pytest.mark.parametrize("check", ADD_NORM_CHECKS)
@pytest.mark.parametrize("solution", [add_norm_ok, add_norm_builtin])
def test_add_norm_checks_accept_correct_answers(check, solution):
    check(solution)


# --- diagnosed mistakes: the FFN -------------------------------------------------------------------


def mixes_by_reshape(X, W1, b1, W2, b2):
    # "Transposes" (batch, n, d) to (batch, d, n) with a reshape, applies the layers to the "last axis",
    # then puts it back the same way: rows of the result blend features of several positions.
    *lead, n, d = X.shape if X.dim() >= 2 else (1, *X.shape)
    Z = X.reshape(*lead, d, n).transpose(-1, -2)
    return ffn_ok(Z, W1, b1, W2, b2)


FFN_MISTAKES = {
    "no relu": (lambda X, W1, b1, W2, b2: (X @ W1 + b1) @ W2 + b2, r"there is no ReLU"),
    "relu after the second layer": (
        lambda X, W1, b1, W2, b2: torch.relu((X @ W1 + b1) @ W2 + b2), r"ReLU is after the second layer"),
    "relu after both layers": (
        lambda X, W1, b1, W2, b2: torch.relu(ffn_ok(X, W1, b1, W2, b2)), r"ReLU after both layers"),
    "forgot b1": (lambda X, W1, b1, W2, b2: torch.relu(X @ W1) @ W2 + b2, r"first bias b1 is missing"),
    "forgot b2": (lambda X, W1, b1, W2, b2: torch.relu(X @ W1 + b1) @ W2, r"second bias b2 is missing"),
    "b1 after relu": (lambda X, W1, b1, W2, b2: (torch.relu(X @ W1) + b1) @ W2 + b2, r"b1 is added after the ReLU"),
    "tanh": (lambda X, W1, b1, W2, b2: torch.tanh(X @ W1 + b1) @ W2 + b2, r"you used tanh"),
    "sigmoid": (lambda X, W1, b1, W2, b2: torch.sigmoid(X @ W1 + b1) @ W2 + b2, r"you used a sigmoid"),
    "hidden layer only": (lambda X, W1, b1, W2, b2: torch.relu(X @ W1 + b1), r"returned the hidden layer"),
    "positions mixed by a reshape": (mixes_by_reshape, r"mixes positions"),
}


@pytest.mark.parametrize("check", FFN_CHECKS)
@pytest.mark.parametrize("mistake", sorted(FFN_MISTAKES))
def test_ffn_checks_name_the_mistake(check, mistake):
    wrong, hint = FFN_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_ffn_hidden_check_catches_transposed_square_weights():
    def transposed(X, W1, b1, W2, b2):
        return torch.relu(X @ W1.T + b1) @ W2.T + b2

    with pytest.raises(AssertionError, match=r"raised RuntimeError"):  # public: the shapes do not fit
        ex.check_position_wise_ffn_small(transposed)
    with pytest.raises(AssertionError, match=r"weight matrix is transposed"):
        ex.check_position_wise_ffn_thorough(transposed)


def test_ffn_hidden_check_catches_a_function_that_only_handles_3d_input():
    def only_3d(X, W1, b1, W2, b2):
        batch, n, d = X.shape
        return ffn_ok(X, W1, b1, W2, b2)

    ex.check_position_wise_ffn_small(only_3d)
    with pytest.raises(AssertionError, match=r"raised ValueError"):
        ex.check_position_wise_ffn_thorough(only_3d)


def test_ffn_hidden_check_catches_mixing_across_the_batch():
    def mixes_sequences(X, W1, b1, W2, b2):
        out = ffn_ok(X, W1, b1, W2, b2)
        return out + 0.1 * out.mean(dim=0, keepdim=True)  # every sequence leaks into every other

    with pytest.raises(AssertionError, match=r"mixes positions"):
        ex.check_position_wise_ffn_thorough(mixes_sequences)


def test_ffn_check_rejects_a_change_to_its_input():
    def in_place(X, W1, b1, W2, b2):
        result = ffn_ok(X, W1, b1, W2, b2)
        X.zero_()  # a learner's scratch work on the input
        return result

    with pytest.raises(AssertionError, match=r"changed its input `X` in place"):
        ex.check_position_wise_ffn_small(in_place)


# --- diagnosed mistakes: add & norm ---------------------------------------------------------------


def _norm(S, dims, eps, unbiased=False):
    return (S - S.mean(dims, keepdim=True)) / torch.sqrt(S.var(dims, unbiased=unbiased, keepdim=True) + eps)


ADD_NORM_MISTAKES = {
    "over positions": (lambda X, Y, g, b, eps=1e-5: _norm(X + Y, -2, eps) * g + b, r"over the positions \(dim=-2\)"),
    "over the whole sequence": (
        lambda X, Y, g, b, eps=1e-5: _norm(X + Y, (-2, -1), eps) * g + b, r"all positions and features together"),
    "batch norm": (
        lambda X, Y, g, b, eps=1e-5: _norm(X + Y, tuple(range(X.dim() - 1)), eps) * g + b,
        r"batch and the positions, as BatchNorm does"),
    "norm before residual": (lambda X, Y, g, b, eps=1e-5: X + add_norm_ok(torch.zeros_like(Y), Y, g, b, eps),
                             r"normalised Y and then added X"),
    "normalised x then added y": (lambda X, Y, g, b, eps=1e-5: add_norm_ok(X, torch.zeros_like(X), g, b, eps) + Y,
                                  r"normalised X and then added Y"),
    "no residual": (lambda X, Y, g, b, eps=1e-5: add_norm_ok(torch.zeros_like(Y), Y, g, b, eps),
                    r"residual connection is missing"),
    "no norm": (lambda X, Y, g, b, eps=1e-5: X + Y, r"without normalising"),
    "unbiased variance": (lambda X, Y, g, b, eps=1e-5: _norm(X + Y, -1, eps, unbiased=True) * g + b,
                          r"biased variance"),
    "eps outside the root": (
        lambda X, Y, g, b, eps=1e-5: ((X + Y) - (X + Y).mean(-1, keepdim=True))
        / ((X + Y).std(-1, unbiased=False, keepdim=True) + eps) * g + b,
        r"eps belongs inside the square root"),
    "divided by the variance": (
        lambda X, Y, g, b, eps=1e-5: ((X + Y) - (X + Y).mean(-1, keepdim=True))
        / ((X + Y).var(-1, unbiased=False, keepdim=True) + eps) * g + b,
        r"divided by the variance"),
    "rms norm": (lambda X, Y, g, b, eps=1e-5: (X + Y) / torch.sqrt((X + Y).square().mean(-1, keepdim=True) + eps)
                 * g + b, r"RMSNorm"),
    "no gain or bias": (lambda X, Y, g, b, eps=1e-5: _norm(X + Y, -1, eps), r"gamma and beta are missing"),
    "gain and bias swapped": (lambda X, Y, g, b, eps=1e-5: _norm(X + Y, -1, eps) * b + g, r"swapped"),
}


@pytest.mark.parametrize("check", ADD_NORM_CHECKS)
@pytest.mark.parametrize("mistake", sorted(ADD_NORM_MISTAKES))
def test_add_norm_checks_name_the_mistake(check, mistake):
    wrong, hint = ADD_NORM_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_add_norm_hidden_check_catches_a_fixed_eps():
    def fixed_eps(X, Y, gamma, beta, eps=1e-5):
        return add_norm_ok(X, Y, gamma, beta, 1e-5)

    ex.check_add_norm_small(fixed_eps)  # the public check uses the default eps
    with pytest.raises(AssertionError, match=r"eps was ignored"):
        ex.check_add_norm_thorough(fixed_eps)


def test_add_norm_check_rejects_in_place_change():
    def in_place(X, Y, gamma, beta, eps=1e-5):
        X += Y  # the residual sum written into X
        return add_norm_ok(X, torch.zeros_like(Y), gamma, beta, eps)

    with pytest.raises(AssertionError, match=r"changed its input `X` in place"):
        ex.check_add_norm_small(in_place)


# --- the pre-norm block ---------------------------------------------------------------------------

PRE_NORM_CHECKS = [ex.check_pre_norm_block_small, ex.check_pre_norm_block_thorough]


def pre_norm_ok(X, valid_lens, block):
    H = block.addnorm1.ln(X)
    X = X + block.attention(H, H, H, valid_lens)
    return X + block.ffn(block.addnorm2.ln(X))


def pre_norm_functional(X, valid_lens, block):
    # F.layer_norm with the block's gains and biases, dropout kept in (p = 0), keywords for the mask.
    d = X.shape[-1]
    ln1, ln2 = block.addnorm1.ln, block.addnorm2.ln
    H = F.layer_norm(X, (d,), ln1.weight, ln1.bias, ln1.eps)
    X = X + block.addnorm1.dropout(block.attention(H, H, H, valid_lens=valid_lens))
    H = F.layer_norm(X, (d,), ln2.weight, ln2.bias, ln2.eps)
    return X + block.addnorm2.dropout(block.ffn(H))


def pre_norm_loop(X, valid_lens, block):
    sublayers = [(block.addnorm1.ln, lambda H: block.attention(H, H, H, valid_lens)),
                 (block.addnorm2.ln, lambda H: block.ffn.dense2(torch.relu(block.ffn.dense1(H))))]
    for norm, f in sublayers:
        X = X + f(norm(X))
    return X


@pytest.mark.parametrize("check", PRE_NORM_CHECKS)
@pytest.mark.parametrize("solution", [pre_norm_ok, pre_norm_functional, pre_norm_loop])
def test_pre_norm_checks_accept_correct_answers(check, solution):
    check(solution)


def test_pre_norm_reference_is_the_blocks_own_forward():
    block = ex._pre_norm_block(8, 16, 2, True, seed=0)
    X, valid_lens = torch.randn(3, 5, 8), torch.tensor([5, 2, 4])
    with torch.no_grad():
        torch.testing.assert_close(ex._pre_norm(block, X, valid_lens), block(X, valid_lens))
        torch.testing.assert_close(pre_norm_ok(X, valid_lens, block), block(X, valid_lens))
    # The two LayerNorms differ, so that using one of them twice changes the output.
    assert not torch.equal(block.addnorm1.ln.weight, block.addnorm2.ln.weight)


def _attend(block, H, valid_lens):
    return block.attention(H, H, H, valid_lens)


def _post_norm(X, valid_lens, block):
    X = block.addnorm1.ln(X + _attend(block, X, valid_lens))
    return block.addnorm2.ln(X + block.ffn(X))


def _stream_normalised(X, valid_lens, block):
    X = block.addnorm1.ln(X)
    X = X + _attend(block, X, valid_lens)
    X = block.addnorm2.ln(X)
    return X + block.ffn(X)


def _ln1_twice(X, valid_lens, block):
    X = X + _attend(block, block.addnorm1.ln(X), valid_lens)
    return X + block.ffn(block.addnorm1.ln(X))


def _ln2_twice(X, valid_lens, block):
    X = X + _attend(block, block.addnorm2.ln(X), valid_lens)
    return X + block.ffn(block.addnorm2.ln(X))


def _norms_swapped(X, valid_lens, block):
    X = X + _attend(block, block.addnorm2.ln(X), valid_lens)
    return X + block.ffn(block.addnorm1.ln(X))


def _no_mask(X, valid_lens, block):
    return pre_norm_ok(X, None, block)


def _final_norm_inside(X, valid_lens, block):
    return block.addnorm2.ln(pre_norm_ok(X, valid_lens, block))


def _final_plain_norm(X, valid_lens, block):
    return F.layer_norm(pre_norm_ok(X, valid_lens, block), X.shape[-1:])


def _no_attention_residual(X, valid_lens, block):
    X = _attend(block, block.addnorm1.ln(X), valid_lens)
    return X + block.ffn(block.addnorm2.ln(X))


def _no_ffn_residual(X, valid_lens, block):
    X = X + _attend(block, block.addnorm1.ln(X), valid_lens)
    return block.ffn(block.addnorm2.ln(X))


def _no_residual(X, valid_lens, block):
    return block.ffn(block.addnorm2.ln(_attend(block, block.addnorm1.ln(X), valid_lens)))


def _second_residual_from_input(X, valid_lens, block):
    Y = X + _attend(block, block.addnorm1.ln(X), valid_lens)
    return X + block.ffn(block.addnorm2.ln(Y))


def _parallel(X, valid_lens, block):
    return X + _attend(block, block.addnorm1.ln(X), valid_lens) + block.ffn(block.addnorm2.ln(X))


def _ffn_first(X, valid_lens, block):
    X = X + block.ffn(block.addnorm2.ln(X))
    return X + _attend(block, block.addnorm1.ln(X), valid_lens)


def _raw_keys(X, valid_lens, block):
    X = X + block.attention(block.addnorm1.ln(X), X, X, valid_lens)
    return X + block.ffn(block.addnorm2.ln(X))


def _attention_only(X, valid_lens, block):
    return X + _attend(block, block.addnorm1.ln(X), valid_lens)


PRE_NORM_MISTAKES = {
    "post-norm": (_post_norm, r"that is the post-norm block"),
    "normalised residual stream": (_stream_normalised, r"the residual adds LN\(X\), not X"),
    "LN1 twice": (_ln1_twice, r"used block.addnorm1.ln twice"),
    "LN2 twice": (_ln2_twice, r"used block.addnorm2.ln twice"),
    "norms swapped": (_norms_swapped, r"two LayerNorms are swapped"),
    "final norm inside the block": (_final_norm_inside, r"the output is normalised: .*final_norm"),
    "plain final norm inside the block": (_final_plain_norm, r"the output is normalised \(F.layer_norm\)"),
    "no attention residual": (_no_attention_residual, r"attention's residual is missing"),
    "no FFN residual": (_no_ffn_residual, r"FFN's residual is missing"),
    "no residual": (_no_residual, r"both residual connections are missing"),
    "second residual from the block's input": (_second_residual_from_input, r"second residual adds the block's"),
    "parallel sublayers": (_parallel, r"in parallel"),
    "FFN first": (_ffn_first, r"wrong order"),
    "raw keys and values": (_raw_keys, r"keys and values are the un-normalised X"),
    "attention only": (_attention_only, r"returned after the attention sublayer"),
}


@pytest.mark.parametrize("check", PRE_NORM_CHECKS)
@pytest.mark.parametrize("mistake", sorted(PRE_NORM_MISTAKES))
def test_pre_norm_checks_name_the_mistake(check, mistake):
    wrong, hint = PRE_NORM_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


@pytest.mark.parametrize("check", PRE_NORM_CHECKS)
def test_pre_norm_checks_catch_an_ignored_padding_mask(check):
    with pytest.raises(AssertionError, match=r"the padding is attended to: pass valid_lens"):
        check(_no_mask)


def test_pre_norm_check_rejects_a_change_to_its_input():
    def in_place(X, valid_lens, block):
        X += _attend(block, block.addnorm1.ln(X), valid_lens)  # the residual sum written into the caller's X
        return X + block.ffn(block.addnorm2.ln(X))

    with pytest.raises(AssertionError, match=r"changed its input `X` in place"):
        ex.check_pre_norm_block_small(in_place)


def test_pre_norm_check_names_a_wrong_attention_call():
    def self_attention_without_values(X, valid_lens, block):
        H = block.addnorm1.ln(X)
        return X + block.attention(H, H, valid_lens)  # values forgotten: valid_lens takes their place

    with pytest.raises(AssertionError, match=r"`pre_norm_block` raised"):
        ex.check_pre_norm_block_small(self_attention_without_values)


def test_pre_norm_forbids_the_blocks_own_forward_but_not_its_parts():
    from course.learner import Tripwire

    block = ex._pre_norm_block(8, 16, 2, False, seed=0)
    X, valid_lens = torch.randn(2, 5, 8), torch.tensor([5, 3])
    with torch.no_grad():
        with Tripwire(ex.FORBIDDEN["pre_norm_block"]) as calling_the_block:
            block(X, valid_lens)
        with Tripwire(ex.FORBIDDEN["pre_norm_block"]) as sublayer:
            block.addnorm1.sublayer(X, block.ffn, norm_first=True)
        with Tripwire(ex.FORBIDDEN["pre_norm_block"]) as answer:
            pre_norm_ok(X, valid_lens, block)
    assert "companion.transformer.TransformerEncoderBlock.forward" in calling_the_block.hits
    assert sublayer.hits == {"companion.transformer.AddNorm.sublayer"}
    assert answer.hits == set()


def test_pre_norm_block_crosses_to_the_learner_as_its_recipe():
    # At grading time the judge sends the block as its recipe and weights; the learner's process rebuilds it.
    from course.crossing import sender
    from course.learner import _build_module
    from course.wire import decode

    block = ex._pre_norm_block(8, 16, 2, True, seed=3)
    buffers: list[bytes] = []
    node = sender({}, buffers)(block)
    rebuilt = decode(node, buffers, lambda n: _build_module(n, buffers))
    X, valid_lens = torch.randn(2, 5, 8), torch.tensor([4, 5])
    assert not rebuilt.training and rebuilt.norm_first
    with torch.no_grad():
        torch.testing.assert_close(pre_norm_ok(X, valid_lens, rebuilt), pre_norm_ok(X, valid_lens, block))
