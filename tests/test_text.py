"""Text as indices (companion.tasks.text): the vocabulary, padding."""
from __future__ import annotations

import pytest
import torch

from companion.tasks.text import BOS, EOS, PAD, UNK, Vocab, pad_sequences


def test_vocab_round_trip_and_unknown_characters():
    v = Vocab("hello world")
    assert v.idx_to_token[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (v.pad, v.bos, v.eos, v.unk) == (0, 1, 2, 3)
    assert len(v) == 4 + len(set("hello world"))
    ids = v.encode("hold")
    assert v.decode(ids) == "hold" and v.to_tokens(ids) == list("hold")
    assert v["o"] == v.encode("o")[0] and v[["h", "o"]] == v.encode("ho")
    assert v.encode("hz") == [v["h"], v.unk] and v["z"] == v.unk
    # decode stops at the first <eos> and skips <bos> and <pad>
    assert v.decode([v.bos, *v.encode("he"), v.pad, v.eos, *v.encode("ll")]) == "he"
    with pytest.raises(ValueError, match=r"index must be in \[0, 12\), got 12"):
        v.to_tokens(12)
    with pytest.raises(ValueError, match="reserved tokens"):
        Vocab(["a", "<eos>"])


def test_vocab_min_freq_drops_rare_tokens():
    v = Vocab("aaab", min_freq=2)
    assert "a" in v.idx_to_token and "b" not in v.idx_to_token


def test_pad_sequences_pads_on_the_right_and_returns_lengths():
    X, lens = pad_sequences([[5, 6, 7], [8], []], pad=0)
    assert torch.equal(X, torch.tensor([[5, 6, 7], [8, 0, 0], [0, 0, 0]]))
    assert torch.equal(lens, torch.tensor([3, 1, 0]))
    X, _ = pad_sequences([[5]], pad=9, length=3)
    assert torch.equal(X, torch.tensor([[5, 9, 9]]))
    with pytest.raises(ValueError, match=r"at least the longest sequence \(3\), got 2"):
        pad_sequences([[1, 2, 3]], pad=0, length=2)


def test_special_tokens_are_named_constants_shared_by_every_vocab():
    for vocab in (Vocab(), Vocab("abc"), Vocab(["x", "yy", "x"])):
        assert (vocab.pad, vocab.bos, vocab.eos, vocab.unk) == (PAD, BOS, EOS, UNK)
        assert vocab.to_tokens([PAD, BOS, EOS, UNK]) == ["<pad>", "<bos>", "<eos>", "<unk>"]
