"""The synthetic sequence tasks (companion.tasks.synthetic) of chapters 6-9."""
from __future__ import annotations

import pytest
import torch

from companion.tasks.synthetic import make_rank_data, make_sequence_task, make_two_neighbours_data, previous_token_data


def test_two_neighbours_targets_are_the_neighbours_contents():
    X, Y = make_two_neighbours_data(num_seqs=4, seq_len=5, content_size=2, seed=3)
    assert X.shape == (4, 5, 7) and Y.shape == (4, 5, 4)
    assert torch.equal(X[:, :, :5], torch.eye(5).expand(4, 5, 5))
    content = X[:, :, 5:]
    for t in range(5):
        assert torch.equal(Y[:, t, :2], content[:, (t - 1) % 5])
        assert torch.equal(Y[:, t, 2:], content[:, (t + 1) % 5])
    X2, _ = make_two_neighbours_data(num_seqs=4, seq_len=5, content_size=2, seed=3)
    assert torch.equal(X, X2)
    with pytest.raises(ValueError, match="seq_len >= 3"):
        make_two_neighbours_data(seq_len=2)


def test_previous_token_data_targets_are_the_tokens_one_step_earlier():
    tokens, targets = previous_token_data(4, 10, 7, torch.Generator().manual_seed(0))
    assert tokens.shape == (4, 10) and targets.shape == (4, 9)
    assert torch.equal(targets, tokens[:, :-1]) and tokens.max() < 7 and tokens.min() >= 0
    with pytest.raises(ValueError, match="seq_len must be >= 2"):
        previous_token_data(4, 1, 7)


def test_rank_labels_are_positions_in_the_sorted_sequence():
    X, Y = make_rank_data(50, seq_len=6, vocab_size=10, seed=3)
    assert X.shape == Y.shape == (50, 6)
    assert all(len(set(row.tolist())) == 6 for row in X)  # distinct tokens
    assert X.min() >= 0 and X.max() < 10
    torch.testing.assert_close(Y, X.argsort(dim=-1).argsort(dim=-1))  # rank = inverse of the sorting permutation
    sorted_back = torch.empty_like(X).scatter_(1, Y, X)  # put each token at its rank
    assert torch.equal(sorted_back, X.sort(dim=-1).values)


def test_rank_data_is_reproducible_and_seeded():
    a, b, c = make_rank_data(8, seed=1), make_rank_data(8, seed=1), make_rank_data(8, seed=2)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_rank_data_rejects_more_positions_than_tokens():
    with pytest.raises(ValueError, match=r"seq_len <= vocab_size, got 9 > 8"):
        make_rank_data(4, seq_len=9, vocab_size=8)


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_sequence_task_targets_and_layout(task):
    src_vocab, tgt_vocab, train, valid, test = make_sequence_task(50, 10, 20, task=task, min_len=3, max_len=6,
                                                                  seed=1)
    assert (len(train), len(valid), len(test)) == (50, 10, 20)
    for split in (train, valid, test):
        for s, t in zip(split.sources, split.targets):
            assert 3 <= len(s) <= 6
            assert t == (s[::-1] if task == "reverse" else "".join(sorted(s)))
        assert split.X.shape == split.Y.shape == (len(split), 7)
        assert torch.equal(split.X_valid_len, torch.tensor([len(s) + 1 for s in split.sources]))
        for row, s in zip(split.Y, split.targets):
            assert tgt_vocab.decode(row) == s and int(row[len(s)]) == tgt_vocab.eos
    assert not set(train.sources) & set(test.sources) and not set(train.sources) & set(valid.sources)
    assert len(src_vocab) == 4 + 26


def test_sequence_task_is_reproducible_and_rejects_bad_arguments():
    a = make_sequence_task(20, 0, 5, seed=3)[2]
    b = make_sequence_task(20, 0, 5, seed=3)[2]
    assert a.sources == b.sources and torch.equal(a.X, b.X)
    with pytest.raises(ValueError, match=r"task must be 'reverse' or 'sort', got 'copy'"):
        make_sequence_task(task="copy")
    with pytest.raises(ValueError, match=r"min_len must be <= max_len, got min_len=5, max_len=4"):
        make_sequence_task(min_len=5, max_len=4)
    with pytest.raises(ValueError, match=r"could not draw 10 distinct strings"):
        make_sequence_task(8, 1, 1, min_len=1, max_len=1, alphabet="ab")
