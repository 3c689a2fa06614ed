"""Parity with d2l 1.0.3's library: the same weights and inputs give d2l's outputs (chapters 4-8).

The course mirrors d2l's names and call signatures (README, "Coming from d2l?"), so a reader can move between the
two. Every component that both the companion and ``d2l.torch`` define is run here on the same inputs with d2l's
weights copied in (d2l's layers are lazy: each module is called once first), in eval mode, and compared with
``torch.testing.assert_close`` at its default float32 tolerances. The differences that are the course's choices are
tested as differences, so that each test fails if its difference disappears or changes:

- a query with no visible key gets all-zero weights here, uniform weights in d2l (chapter 4);
- d2l's ``masked_softmax`` writes -1e6 into its input's masked entries; the course's leaves its input alone;
- the sinusoidal table is computed in float64 and rounded once here, in float32 in d2l (chapter 7);
- ``TransformerEncoder``'s embedding is drawn from N(0, 1/d) here, N(0, 1) in d2l, before the sqrt(d) scaling
  (chapter 7);
- attention weights are kept per head, (B, h, n_q, n_k), on ``MultiHeadAttention`` and the encoder here; d2l keeps
  them folded, (B * h, n_q, n_k), on the inner ``DotProductAttention`` only (chapter 6);
- ``Seq2SeqEncoder`` is batch-first and packs padded sequences here, so its state is the one after each source's last
  real token; d2l's is time-major and reads the padding; d2l also redraws the GRU's weights Xavier-uniform
  (``init_seq2seq``), the course keeps PyTorch's initialisation (chapter 5).

Components that d2l 1.0.3 defines only in its book's notebooks, not in ``d2l.torch``, cannot be compared with
d2l's library: ``test_components_missing_from_d2l_library`` records which.

d2l is imported by tests/d2l_reference.py. ``d2l/torch.py`` imports torchvision at the top, but d2l's attention code
never calls torchvision (only its image data sets do), so where ``import torchvision`` fails a placeholder module
stands in during the import. Where d2l is not installed the module is skipped, with the install command as reason.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import gen
from d2l_reference import d2l

from companion.attention import AdditiveAttention, DotProductAttention, masked_softmax
from companion.multihead import MultiHeadAttention, transpose_output, transpose_qkv
from companion.positional import PositionalEncoding, sinusoidal_encoding
from companion.seq2seq import Seq2SeqEncoder
from companion.transformer import AddNorm, PositionWiseFFN, TransformerEncoder, TransformerEncoderBlock

# What the course has and d2l 1.0.3 defines only in its book's notebooks (or, for transpose_qkv and
# transpose_output, only as methods of d2l.MultiHeadAttention), not as names of d2l.torch.
MISSING_FROM_D2L_TORCH = (
    "TransformerDecoderBlock", "TransformerDecoder", "Seq2SeqAttentionDecoder", "Seq2SeqDecoder",
    "PatchEmbedding", "ViTBlock", "ViT", "GRUScratch", "LSTMScratch", "NWKernelRegression",
    "transpose_qkv", "transpose_output",
)
# What these tests compare with d2l's own.
COMPARED = (
    "masked_softmax", "AdditiveAttention", "DotProductAttention", "MultiHeadAttention", "PositionalEncoding",
    "PositionWiseFFN", "AddNorm", "TransformerEncoderBlock", "TransformerEncoder", "Seq2SeqEncoder",
)
# Largest absolute difference each test saw between the course and d2l, by test id (for the report, not checked).
LARGEST_DIFFERENCE: dict[str, float] = {}


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed))


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """assert_close at its float32 defaults, noting the largest difference seen."""
    torch.testing.assert_close(actual, expected)
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    LARGEST_DIFFERENCE[test] = max(diff, LARGEST_DIFFERENCE.get(test, 0.0))


def tokens(B: int, T: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(vocab_size, (B, T), generator=gen(seed))


@torch.no_grad()
def paired(theirs: nn.Module, ours: nn.Module, *inputs, renames: dict[str, str] | None = None):
    """d2l's module and ours in eval mode, ours holding d2l's weights: both are called once on inputs first, which
    creates their lazy weights. d2l's LayerNorms get random scales and shifts, so that these are compared too;
    renames maps d2l's parameter names to ours, piece by piece, and every parameter must find its match."""
    theirs.eval(), ours.eval()
    theirs(*inputs), ours(*inputs)
    g = gen(99)
    for module in theirs.modules():
        if isinstance(module, nn.LayerNorm):
            module.weight.copy_(1 + 0.5 * torch.randn(module.weight.shape, generator=g))
            module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=g))
    state = theirs.state_dict()
    for old, new in (renames or {}).items():
        state = {name.replace(old, new): value for name, value in state.items()}
    ours.load_state_dict(state, strict=True)
    return theirs, ours


# --- what both libraries define: the same numbers ---------------------------------------------------------------

@pytest.mark.parametrize(
    "valid_lens",
    [None, torch.tensor([2, 3]), torch.tensor([[1, 3], [2, 4]]), torch.tensor([4, 4])],
    ids=["none", "per-sequence", "per-query", "nothing-masked"],
)
def test_masked_softmax_matches_d2l(valid_lens):
    X = randn(2, 2, 4)
    assert_same(masked_softmax(X, valid_lens), d2l.masked_softmax(X.clone(), valid_lens))


@pytest.mark.parametrize("explicit_sizes", [True, False], ids=["explicit-sizes", "lazy"])
def test_additive_attention_matches_d2l(explicit_sizes):
    queries, keys = randn(2, 3, 20), randn(2, 10, 2, seed=1)
    values = torch.arange(40, dtype=torch.float32).reshape(1, 10, 4).repeat(2, 1, 1)
    inputs = (queries, keys, values, torch.tensor([2, 6]))
    torch.manual_seed(0)
    sizes = {"key_size": 2, "query_size": 20} if explicit_sizes else {}
    theirs, ours = paired(d2l.AdditiveAttention(8, 0.1), AdditiveAttention(8, 0.1, **sizes), *inputs)
    assert_same(ours(*inputs), theirs(*inputs))
    assert_same(ours.attention_weights, theirs.attention_weights)


@pytest.mark.parametrize("valid_lens", [None, torch.tensor([3, 5]), torch.tensor([[1, 2, 5], [4, 4, 2]])],
                         ids=["none", "per-sequence", "per-query"])
def test_dot_product_attention_matches_d2l(valid_lens):
    inputs = (randn(2, 3, 6), randn(2, 5, 6, seed=1), randn(2, 5, 4, seed=2), valid_lens)
    theirs, ours = d2l.DotProductAttention(0.1).eval(), DotProductAttention(0.1).eval()
    assert_same(ours(*inputs), theirs(*inputs))
    assert_same(ours.attention_weights, theirs.attention_weights)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("valid_lens", [None, torch.tensor([3, 6]), torch.tensor([[1, 2, 6, 4], [5, 3, 2, 6]])],
                         ids=["no-valid-lens", "per-sequence", "per-query"])
def test_multihead_attention_matches_d2l(valid_lens, bias):
    # Cross-attention with three different input widths: every projection is exercised.
    inputs = (randn(2, 4, 5), randn(2, 6, 7, seed=1), randn(2, 6, 3, seed=2), valid_lens)
    torch.manual_seed(0)
    theirs, ours = paired(d2l.MultiHeadAttention(8, 2, 0.1, bias), MultiHeadAttention(8, 2, 0.1, bias), *inputs)
    assert_same(ours(*inputs), theirs(*inputs))
    assert_same(ours.attention_weights.flatten(0, 1), theirs.attention.attention_weights)


def test_transpose_qkv_and_output_match_d2l_methods():
    X = randn(2, 5, 12)
    theirs = d2l.MultiHeadAttention(12, 3, 0.0)
    folded = transpose_qkv(X, 3)
    assert_same(folded, theirs.transpose_qkv(X))
    assert_same(transpose_output(folded, 3), theirs.transpose_output(folded))


@pytest.mark.parametrize("offset", [0, 30])
def test_positional_encoding_matches_d2l(offset):
    # Within the first 100 positions float32 angles (d2l) stay inside the default tolerances; see the float64 test.
    X = randn(2, 50, 32)
    theirs, ours = d2l.PositionalEncoding(32, 0.0).eval(), PositionalEncoding(32, 0.0).eval()
    expected = theirs(X) if offset == 0 else X + theirs.P[:, offset : offset + 50]  # d2l has no offset argument
    assert_same(ours(X, offset), expected)


@pytest.mark.parametrize("explicit_inputs", [False, True], ids=["lazy", "explicit-inputs"])
def test_positionwise_ffn_matches_d2l(explicit_inputs):
    X = randn(2, 3, 4)
    torch.manual_seed(0)
    sizes = {"ffn_num_inputs": 4} if explicit_inputs else {}
    theirs, ours = paired(d2l.PositionWiseFFN(16, 6), PositionWiseFFN(16, 6, **sizes), X)
    assert_same(ours(X), theirs(X))


def test_addnorm_matches_d2l():
    X, Y = randn(2, 3, 8), randn(2, 3, 8, seed=1)
    theirs, ours = paired(d2l.AddNorm(8, 0.5), AddNorm(8, 0.5), X, Y)
    assert_same(ours(X, Y), theirs(X, Y))


@pytest.mark.parametrize("use_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("valid_lens", [None, torch.tensor([5, 2, 3])], ids=["no-valid-lens", "valid-lens"])
def test_transformer_encoder_block_matches_d2l(valid_lens, use_bias):
    inputs = (randn(3, 5, 16), valid_lens)
    torch.manual_seed(0)
    theirs, ours = paired(d2l.TransformerEncoderBlock(16, 32, 4, 0.1, use_bias),
                          TransformerEncoderBlock(16, 32, 4, 0.1, use_bias), *inputs)
    assert_same(ours(*inputs), theirs(*inputs))


@pytest.mark.parametrize("use_bias", [False, True], ids=["no-bias", "bias"])
def test_transformer_encoder_matches_d2l(use_bias):
    # The course draws its embedding differently (test_embedding_initialisation_differs_from_d2l): copied here,
    # so the sqrt(d) scaling, positions and blocks are compared.
    inputs = (tokens(3, 7, 20), torch.tensor([7, 2, 5]))
    torch.manual_seed(0)
    theirs, ours = paired(d2l.TransformerEncoder(20, 16, 32, 4, 2, 0.1, use_bias),
                          TransformerEncoder(20, 16, 32, 4, 2, 0.1, use_bias), *inputs,
                          renames={"blks.block": "blks."})  # nn.Sequential's "block0" is ModuleList's "0"
    assert_same(ours(*inputs), theirs(*inputs))
    for mine, d2ls in zip(ours.attention_weights, theirs.attention_weights, strict=True):
        assert_same(mine.flatten(0, 1), d2ls)


@pytest.mark.parametrize("valid_lens", [None, torch.tensor([6, 6, 6, 6])], ids=["no-valid-lens", "packed"])
def test_seq2seq_encoder_matches_d2l_without_padding(valid_lens):
    # Sequences without padding: the packed path (full lengths) must give the same numbers too.
    inputs = (tokens(4, 6, 12), valid_lens)
    torch.manual_seed(0)
    theirs, ours = paired(d2l.Seq2SeqEncoder(12, 6, 8, 2, 0.2), Seq2SeqEncoder(12, 6, 8, 2, 0.2), *inputs,
                          renames={"rnn.rnn.": "rnn."})  # d2l wraps nn.GRU in its own d2l.GRU
    (outputs, state), (d2l_outputs, d2l_state) = ours(*inputs), theirs(*inputs)
    assert_same(outputs, d2l_outputs.transpose(0, 1))  # d2l: (T, B, H); ours: (B, T, H)
    assert_same(state, d2l_state)  # (L, B, H) in both


def test_components_missing_from_d2l_library():
    # README's "Coming from d2l?" says which components cannot be checked against d2l's library: these.
    assert [name for name in MISSING_FROM_D2L_TORCH if hasattr(d2l, name)] == []
    assert [name for name in COMPARED if not hasattr(d2l, name)] == []
    assert hasattr(d2l.MultiHeadAttention, "transpose_qkv") and hasattr(d2l.MultiHeadAttention, "transpose_output")


# --- the course's choices: tested as differences -----------------------------------------------------------------

def test_fully_masked_row_is_zero_here_uniform_in_d2l():
    # d2l fills masked scores with -1e6, so a row with valid length 0 becomes uniform; ours is all zero.
    X = randn(2, 2, 4)
    lens = torch.tensor([[0, 3], [2, 0]])
    ours, theirs = masked_softmax(X, lens), d2l.masked_softmax(X.clone(), lens)
    torch.testing.assert_close(theirs[0, 0], torch.full((4,), 0.25))
    torch.testing.assert_close(theirs[1, 1], torch.full((4,), 0.25))
    assert (ours[0, 0] == 0).all() and (ours[1, 1] == 0).all()
    assert_same(ours[0, 1], theirs[0, 1])
    assert_same(ours[1, 0], theirs[1, 0])


def test_masked_softmax_leaves_its_input_alone_d2l_overwrites_it():
    X = randn(2, 2, 4)
    lens = torch.tensor([1, 3])
    before, theirs = X.clone(), X.clone()
    masked_softmax(X, lens)
    d2l.masked_softmax(theirs, lens)
    assert torch.equal(X, before)
    mask = torch.arange(4)[None, None, :] < lens[:, None, None]  # (B, 1, n_k)
    assert torch.equal(theirs, torch.where(mask, before, torch.tensor(-1e6)))


def test_positional_table_is_float64_rounded_here_float32_in_d2l():
    truth = sinusoidal_encoding(1000, 32, dtype=torch.float64)
    ours, theirs = PositionalEncoding(32, 0.0).P[0], d2l.PositionalEncoding(32, 0.0).P[0]
    # Ours is the exact table rounded once to float32: within half a float32 step of 1.
    assert (ours.double() - truth).abs().max() <= 2.0**-24
    # d2l's angles are float32 products, off by up to ~3e-5 at position 999: outside the default tolerances.
    d2l_error = (theirs.double() - truth).abs().max().item()
    assert 1e-5 < d2l_error < 1e-4
    with pytest.raises(AssertionError):
        torch.testing.assert_close(ours, theirs)


def test_embedding_initialisation_differs_from_d2l():
    # Chapter 7: after the sqrt(d) scaling each coordinate has variance 1 here; in d2l, variance d.
    d = 64
    torch.manual_seed(0)
    ours, theirs = TransformerEncoder(500, d, 32, 4, 1, 0.0), d2l.TransformerEncoder(500, d, 32, 4, 1, 0.0)
    ours_std = (ours.embedding.weight * math.sqrt(d)).std().item()
    d2l_std = (theirs.embedding.weight * math.sqrt(d)).std().item()
    assert abs(ours_std - 1) < 0.02 and abs(d2l_std / math.sqrt(d) - 1) < 0.02


def test_attention_weights_are_kept_per_head_here_folded_in_d2l():
    B, h, n = 3, 4, 5
    inputs = (tokens(B, n, 20), torch.tensor([5, 2, 3]))
    ours, theirs = TransformerEncoder(20, 16, 32, h, 1, 0.0), d2l.TransformerEncoder(20, 16, 32, h, 1, 0.0)
    ours(*inputs), theirs(*inputs)
    assert ours.attention_weights[0].shape == ours.blks[0].attention.attention_weights.shape == (B, h, n, n)
    assert theirs.attention_weights[0].shape == (B * h, n, n)
    assert not hasattr(theirs.blks[0].attention, "attention_weights")  # only on its inner DotProductAttention


def test_seq2seq_encoder_is_batch_first_here_time_major_in_d2l():
    X = tokens(2, 5, 12)  # B = 2, T = 5
    outputs, state = Seq2SeqEncoder(12, 6, 8, 3)(X)
    d2l_outputs, d2l_state = d2l.Seq2SeqEncoder(12, 6, 8, 3)(X)
    assert outputs.shape == (2, 5, 8) and d2l_outputs.shape == (5, 2, 8)
    assert state.shape == d2l_state.shape == (3, 2, 8)


def test_seq2seq_encoder_skips_padding_here_d2l_reads_it():
    lens = torch.tensor([6, 3, 1])
    X = tokens(3, 6, 12)
    X[torch.arange(6)[None, :] >= lens[:, None]] = 0  # <pad> after each source
    torch.manual_seed(0)
    theirs, ours = paired(d2l.Seq2SeqEncoder(12, 6, 8, 2), Seq2SeqEncoder(12, 6, 8, 2), X, lens,
                          renames={"rnn.rnn.": "rnn."})
    with torch.no_grad():
        outputs, state = ours(X, lens)
        _, d2l_state = theirs(X)
        for b, n in enumerate(lens.tolist()):
            # Ours on the padded batch is d2l on the source alone, without its padding ...
            d2l_outputs_alone, d2l_state_alone = theirs(X[b : b + 1, :n])
            assert_same(outputs[b, :n], d2l_outputs_alone[:, 0])
            assert_same(state[:, b], d2l_state_alone[:, 0])
            assert (outputs[b, n:] == 0).all()  # the padded positions' outputs are zero
        # ... while d2l's state has read the padding, except where there is none.
        assert_same(state[:, 0], d2l_state[:, 0])
        for b in (1, 2):
            assert not torch.allclose(state[:, b], d2l_state[:, b], rtol=0, atol=1e-3)


def test_seq2seq_encoder_keeps_torch_initialisation_d2l_redraws_it():
    # d2l's init_seq2seq: Xavier-uniform GRU weights, bound sqrt(6 / (fan_in + fan_out)); PyTorch's default bound is
    # 1 / sqrt(H), the same for every GRU weight and bias.
    H = 32
    torch.manual_seed(0)
    ours, theirs = Seq2SeqEncoder(12, 16, H, 1), d2l.Seq2SeqEncoder(12, 16, H, 1)
    for name, weight in ours.rnn.named_parameters():
        assert weight.abs().max() <= 1 / math.sqrt(H), name
    d2l_weight = theirs.rnn.rnn.weight_hh_l0  # (3H, H)
    assert d2l_weight.abs().max() > 1 / math.sqrt(H)
    assert d2l_weight.abs().max() <= math.sqrt(6 / (H + 3 * H))


def test_readme_names_only_tests_that_exist():
    """README's "Coming from d2l?" cites these tests by name: each must be one of this module's."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Coming from d2l?", 1)[1].split("\n## ", 1)[0]
    cited = set(re.findall(r"`(test_\w+)`", section))
    here = {name for name in globals() if name.startswith("test_")}
    assert cited, "README's d2l table cites no test"
    assert cited <= here, f"README cites tests that do not exist: {sorted(cited - here)}"
