"""Chapter 8's experiment (companion.experiments.norm_placement): the tagger, gradient norms, the trainer."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.experiments.norm_placement import (TransformerTagger, block_gradient_norms, tagging_accuracy,
                                                  train_tagger)
from companion.tasks.synthetic import make_rank_data


def test_tagger_gives_one_logit_vector_per_token():
    model = TransformerTagger(16, 8, 16, 32, 2, 2)
    assert model(torch.randint(0, 16, (3, 8))).shape == (3, 8, 8)


def test_block_gradient_norms_match_autograd():
    torch.manual_seed(0)
    model = TransformerTagger(16, 8, 16, 32, 2, 3)
    X, Y = make_rank_data(32, 8, 16, seed=4)
    norms = block_gradient_norms(model, X, Y)
    assert norms["input"].shape == norms["params"].shape == (3,)
    blk = model.encoder.blks[1]
    loss = F.cross_entropy(model(X).reshape(-1, 8), Y.reshape(-1))
    grads = torch.autograd.grad(loss, list(blk.parameters()))
    expected = torch.cat([g.reshape(-1) for g in grads]).norm()
    torch.testing.assert_close(norms["params"][1], expected)
    # The input gradient of block 0 is the gradient with respect to the embedded, position-encoded tokens.
    enc = model.encoder
    H = enc.pos_encoding(enc.embedding(X) * math.sqrt(enc.num_hiddens)).detach().requires_grad_()
    out = H
    for b in enc.blks:
        out = b(out)
    loss = F.cross_entropy(model.head(enc.final_norm(out)).reshape(-1, 8), Y.reshape(-1))
    (g,) = torch.autograd.grad(loss, H)
    torch.testing.assert_close(norms["input"][0], g.norm())


def test_block_gradient_norms_needs_a_tagger():
    with pytest.raises(ValueError, match=r"must be a TransformerTagger, got Linear"):
        block_gradient_norms(nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, 2))


def test_train_tagger_learns_the_rank_task_and_is_reproducible():
    X, Y = make_rank_data(512, seq_len=4, vocab_size=8, seed=6)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = TransformerTagger(8, 4, 16, 32, 2, 1)
        runs.append(train_tagger(model, X, Y, num_steps=80, lr=1e-2, batch_size=32, progress=False, device="cpu"))
    assert runs[0] == runs[1]
    losses = runs[0]
    assert len(losses) == 80 and sum(losses[-10:]) / 10 < 0.5 * losses[0]
    assert tagging_accuracy(model, X, Y) > 0.5  # chance is 1/4


def test_warmup_makes_the_first_step_small():
    X, Y = make_rank_data(64, 4, 8, seed=7)
    changes = {}
    for warmup in (0, 10):
        torch.manual_seed(0)
        model = TransformerTagger(8, 4, 16, 32, 2, 1)
        before = model.head.weight.detach().clone()
        train_tagger(model, X, Y, num_steps=1, lr=0.1, warmup_steps=warmup, progress=False, device="cpu")
        changes[warmup] = (model.head.weight - before).abs().max().item()
    # Adam's first step moves each weight by about lr: 0.1 without warm-up, 0.1 / 10 with it.
    assert changes[0] == pytest.approx(0.1, rel=0.01)
    assert changes[10] == pytest.approx(0.01, rel=0.01)


def test_train_tagger_skips_steps_with_a_non_finite_loss():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, X):
            return self.w * torch.full((*X.shape, 3), float("nan"))

    model = Broken()
    losses = train_tagger(model, torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 2, dtype=torch.long),
                          num_steps=3, lr=0.1, progress=False, device="cpu")
    assert len(losses) == 3 and all(math.isnan(v) for v in losses)
    assert torch.equal(model.w.detach(), torch.ones(1))


def test_train_tagger_restores_the_thread_count():
    before = torch.get_num_threads()
    X, Y = make_rank_data(16, 4, 8)
    train_tagger(TransformerTagger(8, 4, 8, 8, 2, 1), X, Y, num_steps=1, lr=1e-3, progress=False, device="cpu")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_steps=0, lr=1e-3), r"num_steps must be a positive int"),
        (dict(num_steps=1, lr=0.0), r"lr must be > 0, got 0.0"),
        (dict(num_steps=1, lr=1e-3, warmup_steps=-1), r"warmup_steps must be a non-negative int"),
        (dict(num_steps=1, lr=1e-3, batch_size=0), r"batch_size must be a positive int"),
    ],
)
def test_train_tagger_rejects_bad_settings(kwargs, message):
    X, Y = make_rank_data(8, 4, 8)
    with pytest.raises(ValueError, match=message):
        train_tagger(TransformerTagger(8, 4, 8, 8, 2, 1), X, Y, progress=False, **kwargs)


def test_train_tagger_rejects_mismatched_data():
    X, Y = make_rank_data(8, 4, 8)
    with pytest.raises(ValueError, match=r"same shape"):
        train_tagger(TransformerTagger(8, 4, 8, 8, 2, 1), X, Y[:, :3], num_steps=1, lr=1e-3, progress=False)


def test_tagging_accuracy_counts_tokens_and_keeps_the_mode():
    class Oracle(nn.Module):
        """Predicts the rank exactly, through one-hot logits."""

        def __init__(self) -> None:
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, X):
            return F.one_hot(X.argsort(-1).argsort(-1), X.shape[1]).float() + self.dummy

    X, Y = make_rank_data(100, 5, 9, seed=8)
    oracle = Oracle().train()
    assert tagging_accuracy(oracle, X, Y, batch_size=7) == 1.0
    assert oracle.training
    Y_wrong = Y.clone()
    Y_wrong[:10, 0] = (Y_wrong[:10, 0] + 1) % 5  # 10 of 500 tokens wrong
    assert tagging_accuracy(oracle, X, Y_wrong) == pytest.approx(0.98)
