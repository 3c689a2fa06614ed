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


# --- Adam's first steps: minibatch gradients at fixed weights, and the statistics of Adam's step -----

from companion.experiments.norm_placement import _adam_moments, adam_step_statistics, minibatch_gradients


def test_minibatch_gradients_are_the_gradients_of_random_batches_at_fixed_weights():
    torch.manual_seed(0)
    model = TransformerTagger(16, 8, 16, 32, 2, 2)
    X, Y = make_rank_data(64, 8, 16, seed=3)
    before = [p.detach().clone() for p in model.parameters()]
    G = minibatch_gradients(model, X, Y, num_batches=3, batch_size=5, seed=4)
    assert G.shape == (3, sum(p.numel() for p in model.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # not updated
    # Row 1 is the gradient on the second batch the seed's generator draws.
    gen = torch.Generator().manual_seed(4)
    torch.randint(0, 64, (5,), generator=gen)
    idx = torch.randint(0, 64, (5,), generator=gen)
    loss = F.cross_entropy(model(X[idx]).reshape(-1, 8), Y[idx].reshape(-1))
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])
    torch.testing.assert_close(G[1], expected)
    assert torch.equal(G, minibatch_gradients(model, X, Y, num_batches=3, batch_size=5, seed=4))
    assert not torch.equal(G[0], G[1])


def test_adam_moments_are_what_torch_adam_uses_for_its_update():
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64)  # 2 groups of 5 steps, 7 weights
    betas, eps, lr = (0.8, 0.95), 1e-8, 0.1
    m, v = _adam_moments(G, betas)
    for group in range(2):
        w = torch.zeros(7, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([w], lr=lr, betas=betas, eps=eps)
        for step in range(5):
            before = w.detach().clone()
            w.grad = G[group, step].clone()
            opt.step()
        torch.testing.assert_close(before - w.detach(), lr * m[group] / (v[group].sqrt() + eps))


def test_adam_step_statistics_on_pure_noise_match_the_chi_square_closed_form():
    # Gradients N(0, 1): v_t is about a chi-square with t degrees of freedom over t, whose log has variance
    # trigamma(t / 2); so the spread of log(1 / sqrt(v_t)) is sqrt(trigamma(t / 2)) / 2 (1.11 at t = 1).
    grads = torch.randn(128, 4000, generator=torch.Generator().manual_seed(1))
    counts = [1, 4, 16]
    stats = adam_step_statistics(grads, counts, betas=(0.9, 0.9999))  # beta2 near 1: a plain average
    expected = torch.special.polygamma(1, torch.tensor(counts) / 2).sqrt() / 2
    torch.testing.assert_close(stats["spread"], expected.float(), rtol=0.05, atol=0)
    assert abs(stats["spread"][0] - math.pi / (2 * math.sqrt(2))) < 0.05
    # The first step is sign(g): every weight moves by lr. Noise has no direction the groups share.
    assert stats["size"][0] == pytest.approx(1.0, abs=1e-6)
    assert stats["size"][2] < 0.5
    assert stats["cosine"].abs().max() < 0.05


def test_adam_step_statistics_see_the_direction_of_a_shared_gradient():
    gen = torch.Generator().manual_seed(2)
    signal = (1 + torch.rand(2000, generator=gen)) * torch.randn(2000, generator=gen).sign()  # |signal| >= 1
    quiet = adam_step_statistics(signal + 0.3 * torch.randn(64, 2000, generator=gen), [1, 8])
    noisy = adam_step_statistics(signal + 1.0 * torch.randn(64, 2000, generator=gen), [1, 8])
    # With little noise, one gradient already points the way (cosine 1) and tells its size (small spread).
    assert quiet["cosine"].min() > 0.99 and quiet["spread"][0] < 0.4
    # With noise as large as the signal, the first step is less well aimed and its size less sure.
    assert 0.7 < noisy["cosine"][0] < 0.9 < noisy["cosine"][1]
    assert noisy["spread"][0] > 2 * quiet["spread"][0] and noisy["spread"][1] < noisy["spread"][0] / 3
    assert noisy["size"][0] == pytest.approx(1.0, abs=1e-6) and noisy["size"][1] < quiet["size"][1]


def test_adam_step_statistics_leave_out_weights_whose_gradient_is_ever_zero():
    grads = torch.randn(8, 50, generator=torch.Generator().manual_seed(3))
    with_dead = torch.cat([grads, torch.zeros(8, 3)], dim=1)
    with_dead[2, 0] = 0.0  # a weight with one zero gradient goes too
    kept = adam_step_statistics(grads[:, 1:], [1, 2])
    for key, value in adam_step_statistics(with_dead, [1, 2]).items():
        torch.testing.assert_close(value, kept[key])
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("grads, counts, message", [
    (torch.zeros(8), [1], r"grads must be a 2-D tensor \(N, num_weights\), got torch.Size\(\[8\]\)"),
    (torch.ones(8, 3), [0], r"each count must be a positive int"),
    (torch.ones(8, 3), [5], r"must leave two groups of its size in the 8 rows of grads, got 5"),
])
def test_adam_step_statistics_reject_bad_arguments(grads, counts, message):
    with pytest.raises(ValueError, match=message):
        adam_step_statistics(grads, counts)
