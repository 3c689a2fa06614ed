"""Chapter 9's measurements of cost (companion.experiments.cost)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.experiments.cost import time_decoding, training_flops_per_token
from companion.tasks.dates import make_date_data
from companion.transformer_seq2seq import TransformerEncoderDecoder
from conftest import D, transformer_net


def test_time_decoding_measures_both_modes_for_each_length(transformer_batch):
    X, lens, _ = transformer_batch
    net = transformer_net()
    seconds = time_decoding(net, X, lens, [2, 6], repeats=2)
    assert set(seconds) == {False, True}
    for times in seconds.values():
        assert len(times) == 2 and all(0 < t < 10 for t in times)
    with pytest.raises(ValueError, match=r"repeats must be a positive int, got 0"):
        time_decoding(net, X, lens, [4], repeats=0)
    with pytest.raises(ValueError, match=r"steps must hold at least one number of steps"):
        time_decoding(net, X, lens, [])
    with pytest.raises(ValueError, match=r"each number of steps must be a positive int, got 0"):
        time_decoding(net, X, lens, [3, 0])


def test_training_flops_per_token_matches_a_hand_count():
    data = make_date_data(40, 0, 1, seed=0)
    V, d = len(data.tgt_vocab), 8
    net = _OneLinearDecoder(V, d)
    n = 24
    # Forward: (n * T_tgt, d) @ (d, V), 2 n T d V FLOPs; backward: the same again for the weight's gradient and
    # for the input's (the embedding needs it). Per token: source and target tokens of the n examples.
    tokens = int(data.train.X_valid_len[:n].sum() + data.train.Y_valid_len[:n].sum())
    expected = 3 * 2 * n * data.train.Y.shape[1] * d * V / tokens
    assert training_flops_per_token(net, data.train, data.tgt_vocab, num_examples=n, batch_size=10) == \
        pytest.approx(expected)


def test_training_flops_per_token_leaves_the_gradients_alone():
    data = make_date_data(40, 0, 1, seed=0)
    net = TransformerEncoderDecoder(len(data.src_vocab), len(data.tgt_vocab), num_hiddens=D, ffn_num_hiddens=24,
                                    num_heads=2, num_blks=1)
    first = next(net.parameters())
    first.grad = torch.full_like(first, 3.0)
    flops = training_flops_per_token(net, data.train, data.tgt_vocab, num_examples=16)
    assert flops > 0
    assert torch.equal(first.grad, torch.full_like(first, 3.0))
    assert all(p.grad is None for p in list(net.parameters())[1:])
    wider = TransformerEncoderDecoder(len(data.src_vocab), len(data.tgt_vocab), num_hiddens=D, ffn_num_hiddens=48,
                                      num_heads=2, num_blks=1)
    assert training_flops_per_token(wider, data.train, data.tgt_vocab, num_examples=16) > flops
    with pytest.raises(ValueError, match=r"num_examples must be a positive int, got 0"):
        training_flops_per_token(net, data.train, data.tgt_vocab, num_examples=0)


class _OneLinearDecoder(nn.Module):
    """A stand-in model whose only matrix product is one linear layer on the target embeddings."""

    def __init__(self, vocab_size: int, d: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d)
        self.dense = nn.Linear(d, vocab_size, bias=False)

    def forward(self, enc_X, dec_X, enc_valid_lens):
        return self.dense(self.embedding(dec_X))  # (b, T, V)
