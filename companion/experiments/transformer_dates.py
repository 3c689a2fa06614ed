"""Chapter 9's experiment: the chapter's Transformer on the dates task with one
choice changed (the exercise "What the order choices are worth")."""
from __future__ import annotations

from typing import Any

from ..decoding import predict_seq2seq
from ..training import train_seq2seq
from ..transformer_seq2seq import TransformerEncoderDecoder
from ..utils import set_seed

__all__ = ["train_date_transformer"]


def train_date_transformer(
    split: Any, test: Any, *, model: dict[str, Any], training: dict[str, Any]
) -> tuple[list[float], float]:
    """Train a Transformer on ``split.train``; its exact match on ``test`` (chapter 9).

    ``split`` is a ``make_date_data`` result (training split and vocabularies),
    ``test`` a split of date strings (``test.sources``, ``test.targets``), read
    with ``split``'s vocabularies. ``model`` and ``training`` are the keyword
    arguments of the model and of ``train_seq2seq``; the seed in ``training``
    (default 0) also initialises the weights. Returns the training loss per
    epoch and the share of test dates written exactly right.
    """
    set_seed(training.get("seed", 0))
    net = TransformerEncoderDecoder(len(split.src_vocab), len(split.tgt_vocab), **model)
    losses = train_seq2seq(net, split.train, split.tgt_vocab, **training)
    predicted, _ = predict_seq2seq(net, test.sources, split.src_vocab,
                                   split.tgt_vocab, num_steps=test.Y.shape[1])
    right = sum(p == t for p, t in zip(predicted, test.targets))
    return losses, right / len(test.targets)
