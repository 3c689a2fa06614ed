"""Helpers shared by the test modules: seeded generators, one CPU thread, the toy sequence-to-sequence models
and batches that the seq2seq, decoding, training and cost tests all use, and the Colab editions and autograders
of every chapter, generated once per test run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from companion import (EncoderDecoder, Seq2SeqAttentionDecoder, Seq2SeqDecoder, Seq2SeqEncoder,
                       TransformerEncoderDecoder, make_date_data)
from course import notebooks

ROOT = Path(__file__).resolve().parents[1]
V_SRC, V_TGT = 13, 9  # vocabulary sizes of the toy models (four specials included)
E, H = 6, 8  # embedding and hidden size of the toy GRU models
D = 16  # width of the toy Transformers


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator with this seed: the global random state stays untouched."""
    return torch.Generator().manual_seed(seed)


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard normal entries from their own seeded generator."""
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


@pytest.fixture
def one_thread():
    # Tiny models: a second thread only adds synchronisation, and the suite shares a 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def source_batch(lens: list[int], T_src: int, T_tgt: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random sources with <pad> after each valid length, and random targets.  Shapes: (B, T_src), (B,), (B, T_tgt)."""
    g = gen(0)
    X = torch.randint(4, V_SRC, (len(lens), T_src), generator=g)  # (B, T_src)
    valid = torch.tensor(lens)  # (B,)
    X[torch.arange(T_src)[None, :] >= valid[:, None]] = 0  # <pad> after each source
    Y = torch.randint(3, V_TGT, (len(lens), T_tgt), generator=g)  # (B, T_tgt)
    return X, valid, Y


@pytest.fixture
def gru_batch():
    return source_batch([7, 3, 5, 1], T_src=7, T_tgt=5)


@pytest.fixture
def transformer_batch():
    return source_batch([7, 2, 5], T_src=7, T_tgt=6)


def gru_net(attention: bool, bidirectional: bool = False, num_layers: int = 1, seed: int = 0) -> EncoderDecoder:
    """A toy GRU encoder-decoder (chapter 5), with or without Bahdanau attention, in eval mode."""
    torch.manual_seed(seed)
    encoder = Seq2SeqEncoder(V_SRC, E, H, num_layers=num_layers, bidirectional=bidirectional)
    decoder_cls = Seq2SeqAttentionDecoder if attention else Seq2SeqDecoder
    return EncoderDecoder(encoder, decoder_cls(V_TGT, E, H, num_layers=num_layers)).eval()


def transformer_net(norm_first: bool = True, seed: int = 0, num_blks: int = 2,
                    positions: str = "sinusoidal") -> TransformerEncoderDecoder:
    """A toy Transformer encoder-decoder (chapter 9) in eval mode."""
    torch.manual_seed(seed)
    return TransformerEncoderDecoder(V_SRC, V_TGT, num_hiddens=D, ffn_num_hiddens=24, num_heads=2,
                                     num_blks=num_blks, norm_first=norm_first, max_len=32,
                                     positions=positions).eval()


@pytest.fixture(scope="session")
def tiny_dates():
    """A small dates task (chapter 5): 96 training, 8 validation, 32 test examples."""
    return make_date_data(n_train=96, n_valid=8, n_test=32, seed=1)


def tiny_date_net(data, attention: bool, seed: int = 0) -> EncoderDecoder:
    """A GRU encoder-decoder sized for tiny_dates."""
    torch.manual_seed(seed)
    enc = Seq2SeqEncoder(len(data.src_vocab), 16, 32, bidirectional=True)
    dec = (Seq2SeqAttentionDecoder if attention else Seq2SeqDecoder)(len(data.tgt_vocab), 16, 32)
    return EncoderDecoder(enc, dec)


class ScriptedDecoder(nn.Module):
    """Says the tokens of `script[b]` one by one, whatever it is fed; counts its calls."""

    def __init__(self, script: torch.Tensor, vocab_size: int) -> None:
        super().__init__()
        self.script, self.vocab_size, self.calls = script, vocab_size, 0
        self.dummy = nn.Parameter(torch.zeros(()))

    def init_state(self, enc_all_outputs, enc_valid_lens=None):
        return 0

    def forward(self, X, state):
        self.calls += 1
        column = self.script[:, min(state, self.script.shape[1] - 1)]  # (B,)
        return F.one_hot(column, self.vocab_size).float().unsqueeze(1), state + 1  # (B, 1, V)


class NullEncoder(nn.Module):
    """An encoder whose outputs carry nothing: for decoders that ignore them."""

    def forward(self, X, valid_lens=None):
        return torch.zeros(X.shape[0], X.shape[1], 1), torch.zeros(1, X.shape[0], 1)


@pytest.fixture(scope="session")
def generated_editions() -> notebooks.Generated:
    """What `python -m course.notebooks` makes of every chapter (Colab editions, public checks, autograders),
    in memory, generated once per test run: the staleness check and the grading tests share it."""
    return notebooks.generate(ROOT, autograder=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test marked ``gpu`` is skipped, with its reason in the summary, where there is no CUDA device
    (scripts/gpu_check.sh runs them on a GPU)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run scripts/gpu_check.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
