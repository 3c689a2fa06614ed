"""Checks for the exercises of chapter 8, the Transformer block (how a check works: companion.exercises)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from companion.exercises import built, call_on_copies, expect_close
from companion.transformer import TransformerEncoderBlock

__all__ = [
    "FORBIDDEN",
    "check_position_wise_ffn_small",
    "check_position_wise_ffn_thorough",
    "check_add_norm_small",
    "check_add_norm_thorough",
    "check_pre_norm_block_small",
    "check_pre_norm_block_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "position_wise_ffn": ["companion.transformer.PositionWiseFFN"],
    "add_norm": [
        "companion.transformer.AddNorm",
        "torch.nn.LayerNorm",
        "torch.nn.functional.layer_norm",
        "torch.layer_norm",
    ],
    # The block's own forward and the one residual step it runs; torch's layer is the same block.
    "pre_norm_block": [
        "companion.transformer.TransformerEncoderBlock.forward",
        "companion.transformer.AddNorm.sublayer",
        "torch.nn.TransformerEncoderLayer",
    ],
}

# ---------------------------------------------------------------------------
# Exercise 1: the position-wise FFN, max(0, x W1 + b1) W2 + b2
# ---------------------------------------------------------------------------


def _ffn(X: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    return F.relu(X @ W1 + b1) @ W2 + b2  # (..., d) -> (..., d_ff) -> (..., d_out)


def _ffn_mistakes(X: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> dict[str, Tensor]:
    """What the usual wrong FFNs return, keyed by the hint that names them."""
    hidden = X @ W1 + b1  # (..., d_ff), before the ReLU
    mistakes = {
        "there is no ReLU: without it the two layers collapse into one linear map. Apply max(0, .) to the "
        "hidden layer, x W1 + b1.": hidden @ W2 + b2,
        "the ReLU is after the second layer: it belongs between the two layers, on x W1 + b1; the output "
        "x ... W2 + b2 stays linear so it can be negative.": F.relu(hidden @ W2 + b2),
        "there is a ReLU after both layers: only the hidden layer gets one; the output, "
        "max(0, x W1 + b1) W2 + b2, must be able to be negative.": F.relu(F.relu(hidden) @ W2 + b2),
        "the first bias b1 is missing: the hidden layer is x W1 + b1, added before the ReLU.": (
            F.relu(X @ W1) @ W2 + b2),
        "the second bias b2 is missing: add it after the second matrix product.": F.relu(hidden) @ W2,
        "b1 is added after the ReLU; it belongs inside: max(0, x W1 + b1).": (F.relu(X @ W1) + b1) @ W2 + b2,
        "you used tanh; the FFN of the Transformer uses ReLU, max(0, .).": torch.tanh(hidden) @ W2 + b2,
        "you used a sigmoid; the FFN of the Transformer uses ReLU, max(0, .).": torch.sigmoid(hidden) @ W2 + b2,
        "you returned the hidden layer max(0, x W1 + b1); multiply it by W2 and add b2.": F.relu(hidden),
    }
    if W1.shape[0] == W1.shape[1] and W2.shape[0] == W2.shape[1]:
        # Square weights let a transposed matrix through without a shape error.
        mistakes["a weight matrix is transposed: the formula multiplies x W1 with W1 of shape (d, d_ff) as "
                 "given; use X @ W1 and H @ W2 (torch's nn.Linear stores W transposed, these are not "
                 "nn.Linear weights)."] = F.relu(X @ W1.T + b1) @ W2.T + b2
    return mistakes


def _mixes_positions(fn: Callable[..., Any], args: tuple[Tensor, ...], seconds: float) -> str | None:
    """Perturb one position of X; name the first other position whose output moved, if any."""
    X = args[0]
    if X.dim() < 2:
        return None
    before = call_on_copies(fn, *args, name="position_wise_ffn", seconds=seconds)
    rows = X.reshape(-1, X.shape[-1]).shape[0]
    target = rows // 2  # a position in the middle, whose neighbours exist on both sides
    X2 = X.clone().reshape(-1, X.shape[-1])
    X2[target] += 1.0 + torch.linspace(0, 1, X.shape[-1], dtype=X.dtype)
    after = call_on_copies(fn, X2.reshape(X.shape), *args[1:], name="position_wise_ffn", seconds=seconds)
    if not isinstance(before, Tensor) or not isinstance(after, Tensor) or before.shape != after.shape:
        return None
    if before.shape[:-1] != X.shape[:-1]:
        return None
    moved = (after - before).detach().reshape(rows, -1).abs().amax(dim=-1) > 1e-6  # (rows,)
    moved[target] = False
    if moved.any():
        return (
            f"changing one position of X (row {target} of the flattened positions) changed the output at "
            f"{int(moved.sum())} other position(s): your function mixes positions. The FFN acts on the "
            "last axis only; X @ W1 already does that for any leading shape. If you reshape, reshape to "
            "(-1, d) and back to (..., d_out), never swap axes with reshape."
        )
    return None


def _check_ffn_on(fn: Callable[..., Any], args: tuple[Tensor, ...], seconds: float) -> None:
    actual = call_on_copies(fn, *args, name="position_wise_ffn", seconds=seconds)
    expected = _ffn(*args)
    if isinstance(actual, Tensor) and not (actual.shape == expected.shape and torch.allclose(
            actual.detach().double(), expected.double(), atol=1e-5, rtol=1e-4)):
        hint = _mixes_positions(fn, args, seconds)
        if hint is not None:
            raise AssertionError(f"`position_wise_ffn`: {hint}")
    expect_close(actual, expected, name="position_wise_ffn", mistakes=_ffn_mistakes(*args))


def _ffn_args(shape: tuple[int, ...], d_ff: int, d_out: int, gen: torch.Generator,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    d = shape[-1]
    return (
        torch.randn(shape, generator=gen, dtype=dtype),
        torch.randn(d, d_ff, generator=gen, dtype=dtype) / d**0.5,
        torch.randn(d_ff, generator=gen, dtype=dtype),  # biases of size 1, so forgetting one shows
        torch.randn(d_ff, d_out, generator=gen, dtype=dtype) / d_ff**0.5,
        torch.randn(d_out, generator=gen, dtype=dtype),
    )


def check_position_wise_ffn_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: a batch of 2 sequences of 3 positions, d = 4, d_ff = 6, d_out = 5."""
    _check_ffn_on(fn, _ffn_args((2, 3, 4), 6, 5, torch.Generator().manual_seed(0)), seconds)


def check_position_wise_ffn_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: other shapes (one sequence, one vector, 4-D), square weights, float64, inputs far below zero."""
    gen = torch.Generator().manual_seed(1)
    # Square weights first: a transposed matrix gets through them without a shape error.
    _check_ffn_on(fn, _ffn_args((2, 4, 6), 6, 6, gen, dtype=torch.float64), seconds)
    for shape, d_ff, d_out in [((3, 5, 8), 16, 8), ((7, 4), 9, 3), ((2, 2, 3, 6), 12, 6), ((1, 1, 5), 5, 5),
                               ((6,), 4, 3)]:
        _check_ffn_on(fn, _ffn_args(shape, d_ff, d_out, gen), seconds)
    # Every hidden unit negative at some positions: the ReLU must zero them, not clip the output.
    X, W1, b1, W2, b2 = _ffn_args((2, 6, 4), 8, 4, gen)
    _check_ffn_on(fn, (X, W1, b1 - 3.0, W2, b2 - 1.0), seconds)


# ---------------------------------------------------------------------------
# Exercise 2: add & norm, LayerNorm(X + Y) with gain gamma and bias beta
# ---------------------------------------------------------------------------


def _normalise(S: Tensor, dims: Any, eps: float, unbiased: bool = False) -> Tensor:
    mean = S.mean(dim=dims, keepdim=True)
    var = S.var(dim=dims, unbiased=unbiased, keepdim=True)
    return (S - mean) / torch.sqrt(var + eps)


def _add_norm(X: Tensor, Y: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> Tensor:
    return F.layer_norm(X + Y, (X.shape[-1],), gamma, beta, eps)


def _add_norm_mistakes(X: Tensor, Y: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> dict[str, Tensor]:
    """What the usual wrong versions of LayerNorm(X + Y) return, keyed by their hint."""
    S = X + Y
    d = X.shape[-1]

    def ln(T: Tensor) -> Tensor:
        return F.layer_norm(T, (d,), gamma, beta, eps)

    mistakes: dict[str, Tensor] = {}
    if X.dim() >= 2:
        mistakes["you normalised over the positions (dim=-2); LayerNorm normalises each position over its "
                 "own d features, the last axis (dim=-1)."] = _normalise(S, -2, eps) * gamma + beta
        mistakes["you normalised over all positions and features together; LayerNorm normalises each "
                 "position separately, over the last axis only (dim=-1)."] = (
                     _normalise(S, (-2, -1), eps) * gamma + beta)
    if X.dim() >= 3:
        mistakes["you normalised each feature over the batch (dim=0), as BatchNorm does; LayerNorm "
                 "normalises each position over its features (dim=-1)."] = _normalise(S, 0, eps) * gamma + beta
        mistakes["you normalised each feature over the batch and the positions, as BatchNorm does; "
                 "LayerNorm normalises each position over its features (dim=-1)."] = (
                     _normalise(S, tuple(range(X.dim() - 1)), eps) * gamma + beta)
    mistakes.update({
        "you normalised Y and then added X: that is the pre-norm order's residual. Add & norm adds first "
        "and normalises the sum, LayerNorm(X + Y).": X + ln(Y),
        "you normalised X and then added Y; add first, then normalise the sum: LayerNorm(X + Y).": ln(X) + Y,
        "the residual connection is missing: normalise X + Y, not Y alone.": ln(Y),
        "you returned X + Y without normalising it.": S,
        "LayerNorm uses the biased variance, the mean of the squared deviations (divide by d, not d - 1): "
        "use var(dim=-1, unbiased=False).": _normalise(S, -1, eps, unbiased=True) * gamma + beta,
        "eps belongs inside the square root: divide by sqrt(var + eps), not sqrt(var) + eps.": (
            (S - S.mean(-1, keepdim=True)) / (S.var(-1, unbiased=False, keepdim=True).sqrt() + eps) * gamma + beta),
        "you divided by the variance; divide by the standard deviation, sqrt(var + eps).": (
            (S - S.mean(-1, keepdim=True)) / (S.var(-1, unbiased=False, keepdim=True) + eps) * gamma + beta),
        "the mean was not subtracted (that is RMSNorm); LayerNorm centres each position first: "
        "(x - mean) / sqrt(var + eps).": S / torch.sqrt(S.square().mean(-1, keepdim=True) + eps) * gamma + beta,
        "gamma and beta are missing: after normalising, multiply by gamma and add beta.": _normalise(S, -1, eps),
        "gamma and beta are swapped: multiply by gamma (the gain), then add beta (the bias).": (
            _normalise(S, -1, eps) * beta + gamma),
        "eps was ignored: use the eps argument, sqrt(var + eps), not a fixed number.": (
            F.layer_norm(S, (d,), gamma, beta, 1e-5)),
    })
    return mistakes


def _check_add_norm_on(fn: Callable[..., Any], X: Tensor, Y: Tensor, gamma: Tensor, beta: Tensor, eps: float,
                       seconds: float) -> None:
    actual = call_on_copies(fn, X, Y, gamma, beta, eps, name="add_norm", seconds=seconds)
    mistakes = _add_norm_mistakes(X, Y, gamma, beta, eps)
    expected = _add_norm(X, Y, gamma, beta, eps)
    if abs(eps - 1e-5) < 1e-12:
        mistakes.pop("eps was ignored: use the eps argument, sqrt(var + eps), not a fixed number.")
    expect_close(actual, expected, name="add_norm", mistakes=mistakes, atol=1e-5, rtol=1e-4)


def _add_norm_args(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype = torch.float32):
    d = shape[-1]
    X = 2 + 3 * torch.randn(shape, generator=gen, dtype=dtype)  # not centred, not unit variance
    Y = torch.randn(shape, generator=gen, dtype=dtype)
    gamma = 0.5 + torch.rand(d, generator=gen, dtype=dtype)
    beta = torch.randn(d, generator=gen, dtype=dtype)
    return X, Y, gamma, beta


def check_add_norm_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: X, Y of shape (2, 3, 4), one position nearly constant (where eps matters), eps = 1e-5."""
    X, Y, gamma, beta = _add_norm_args((2, 3, 4), torch.Generator().manual_seed(0))
    X[1, 2] = torch.tensor([0.0, 0.001, -0.001, 0.0])  # X + Y has a tiny variance at this position
    Y[1, 2] = 0.0
    _check_add_norm_on(fn, X, Y, gamma, beta, 1e-5, seconds)


def check_add_norm_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: one sequence (2-D), 4-D inputs, another eps, float64, a constant position."""
    gen = torch.Generator().manual_seed(1)
    for shape, eps in [((4, 5, 8), 1e-5), ((6, 3), 1e-5), ((2, 3, 2, 6), 1e-5), ((3, 4, 5), 1e-2)]:
        _check_add_norm_on(fn, *_add_norm_args(shape, gen), eps, seconds)
    _check_add_norm_on(fn, *_add_norm_args((2, 3, 4), gen, dtype=torch.float64), 1e-6, seconds)
    # A position where X + Y is constant: its normalised value is 0, so the output there is beta.
    X, Y, gamma, beta = _add_norm_args((1, 3, 5), gen)
    X[0, 1], Y[0, 1] = 1.0, 3.0
    _check_add_norm_on(fn, X, Y, gamma, beta, 1e-5, seconds)


# ---------------------------------------------------------------------------
# Exercise 3: the pre-norm block, X + MHA(LN1(X)), then X + FFN(LN2(X))
# ---------------------------------------------------------------------------


def _pre_norm_parts(block: TransformerEncoderBlock, valid_lens: Tensor | None):
    """The block's sublayers as functions: attention (masked or not), FFN, its two LayerNorms."""

    def attend(H: Tensor, masked: bool = True) -> Tensor:
        return block.attention(H, H, H, valid_lens if masked else None)  # (B, n, d)

    return attend, block.ffn, block.addnorm1.ln, block.addnorm2.ln


def _pre_norm(block: TransformerEncoderBlock, X: Tensor, valid_lens: Tensor | None) -> Tensor:
    attend, ffn, ln1, ln2 = _pre_norm_parts(block, valid_lens)
    X = X + attend(ln1(X))  # the residual stream itself is never normalised
    return X + ffn(ln2(X))


def _pre_norm_mistakes(block: TransformerEncoderBlock, X: Tensor,
                       valid_lens: Tensor | None) -> dict[str, Tensor]:
    """What the usual wrong pre-norm blocks return, keyed by the hint that names them."""
    attend, ffn, ln1, ln2 = _pre_norm_parts(block, valid_lens)
    after_attention = X + attend(ln1(X))  # (B, n, d), right so far
    out = after_attention + ffn(ln2(after_attention))
    H1 = ln1(X)
    H2 = ln2(H1 + attend(H1))
    post = ln1(X + attend(X))
    return {
        "you normalised after the residual sum, LN(X + f(X)): that is the post-norm block. Pre-norm "
        "normalises only the sublayer's input and adds its output to X as it is: X + f(LN(X)).": (
            ln2(post + ffn(post))),
        "the residual adds LN(X), not X: you overwrote X with its normalised version (X = LN(X)). Keep X "
        "and give the sublayer a normalised copy: H = LN1(X); X = X + MHA(H, H, H).": H2 + ffn(H2),
        "the attention's residual is missing: add the sublayer's input, X + MHA(LN1(X)), before the FFN.": (
            attend(H1) + ffn(ln2(attend(H1)))),
        "the FFN's residual is missing: return X + FFN(LN2(X)), where X is the attention's output.": (
            ffn(ln2(after_attention))),
        "both residual connections are missing: each sublayer adds its output to its input, "
        "X + f(LN(X)).": ffn(ln2(attend(H1))),
        "the second residual adds the block's input: add the FFN's output to the stream after the "
        "attention, X + MHA(LN1(X)), not to the X the block was given.": X + ffn(ln2(after_attention)),
        "the FFN sees the block's input: it comes after the attention, on its updated output "
        "(X = X + MHA(LN1(X)), then X + FFN(LN2(X))); you added both sublayers to the input in "
        "parallel.": after_attention + ffn(ln2(X)),
        "the sublayers are in the wrong order: self-attention first, then the FFN.": (
            X + ffn(ln2(X)) + attend(ln1(X + ffn(ln2(X))))),
        "you used block.addnorm1.ln twice: each sublayer has its own LayerNorm, block.addnorm2.ln before "
        "the FFN.": after_attention + ffn(ln1(after_attention)),
        "you used block.addnorm2.ln twice: each sublayer has its own LayerNorm, block.addnorm1.ln before "
        "the attention.": (X + attend(ln2(X))) + ffn(ln2(X + attend(ln2(X)))),
        "the two LayerNorms are swapped: block.addnorm1.ln goes before the attention, block.addnorm2.ln "
        "before the FFN.": (X + attend(ln2(X))) + ffn(ln1(X + attend(ln2(X)))),
        "the keys and values are the un-normalised X: self-attention takes LN1(X) as its queries, keys "
        "and values, block.attention(H, H, H, valid_lens) with H = LN1(X).": (
            (X + block.attention(H1, X, X, valid_lens)) + ffn(ln2(X + block.attention(H1, X, X, valid_lens)))),
        "you returned after the attention sublayer: the block goes on with the FFN, X + FFN(LN2(X)).": (
            after_attention),
        "the output is normalised: a pre-norm block returns its residual stream as it is; the one final "
        "LayerNorm comes after the last block of a stack (TransformerEncoder's final_norm), not inside "
        "each block.": ln2(out),
        "the output is normalised (by block.addnorm1.ln): a pre-norm block returns its residual stream as "
        "it is; the final LayerNorm belongs after the last block of a stack.": ln1(out),
        "the output is normalised (F.layer_norm): a pre-norm block returns its residual stream as it is; "
        "the final LayerNorm belongs after the last block of a stack.": F.layer_norm(out, out.shape[-1:]),
        "the padding is attended to: pass valid_lens to the attention, block.attention(H, H, H, "
        "valid_lens), so that no query looks at a padded key.": (
            (X + attend(H1, False)) + ffn(ln2(X + attend(H1, False)))),
    }


def _pre_norm_block(d: int, d_ff: int, heads: int, use_bias: bool, seed: int) -> TransformerEncoderBlock:
    """A pre-norm block (in eval mode, no dropout) whose two LayerNorms differ, so mixing them up shows."""
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        block = built(TransformerEncoderBlock, d, d_ff, heads, 0.0, use_bias=use_bias, norm_first=True)
        with torch.no_grad():
            for norm in (block.addnorm1.ln, block.addnorm2.ln):
                norm.weight.copy_(0.5 + torch.rand(d))  # a fresh LayerNorm is the identity map:
                norm.bias.copy_(0.5 * torch.randn(d))  # both would be the same
            for p in block.ffn.parameters():
                p.mul_(2.0)  # a sublayer output as large as X, so a missing residual shows
    finally:
        torch.random.set_rng_state(rng_state)
    return block.eval()


def _check_pre_norm_on(fn: Callable[..., Any], B: int, n: int, d: int, heads: int, *, padded: bool,
                       use_bias: bool, seed: int, seconds: float) -> None:
    # float32 only: the learner's copy of the block is rebuilt from its recipe, in torch's default dtype.
    block = _pre_norm_block(d, 2 * d, heads, use_bias, seed)
    gen = torch.Generator().manual_seed(seed)
    X = 1.0 + 2.0 * torch.randn(B, n, d, generator=gen)  # not normalised, so LN(X) != X
    valid_lens = None
    if padded:
        valid_lens = torch.randint(1, n + 1, (B,), generator=gen)  # (B,)
        valid_lens[0] = max(1, n - 2)  # at least one sequence with padding
    with torch.no_grad():
        actual = call_on_copies(fn, X, valid_lens, block, name="pre_norm_block", seconds=seconds)
        expect_close(actual, _pre_norm(block, X, valid_lens), name="pre_norm_block",
                     mistakes=_pre_norm_mistakes(block, X, valid_lens))


def check_pre_norm_block_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: two sequences of five positions, one padded, d = 8, two heads."""
    _check_pre_norm_on(fn, 2, 5, 8, 2, padded=True, use_bias=False, seed=0, seconds=seconds)


def check_pre_norm_block_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: more heads, biases in the projections, no padding (valid_lens None), one head, one
    sequence, a long padded batch."""
    for B, n, d, heads, padded, bias, seed in [(4, 9, 16, 4, True, True, 1), (3, 6, 12, 3, False, False, 2),
                                               (1, 7, 8, 1, True, True, 3), (6, 12, 8, 2, True, False, 4)]:
        _check_pre_norm_on(fn, B, n, d, heads, padded=padded, use_bias=bias, seed=seed, seconds=seconds)
