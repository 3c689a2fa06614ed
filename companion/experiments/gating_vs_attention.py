"""Chapter 11's experiment: an LSTM, a GRU, a gMLP and self-attention of about the
same size on the rank task, over several seeds, and the weights each one produces."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..gating import GRUCell, LSTMCell, load_torch_rnn, run_cell
from ..gmlp import gMLPBlock
from ..utils import check_positive_int, one_thread_on_cpu, set_seed, try_gpu
from .norm_placement import TransformerTagger, tagging_accuracy, train_tagger

__all__ = [
    "RNNTagger", "gMLPTagger", "build_tagger", "count_parameters", "compare_taggers",
    "mixing_weights",
]

KINDS = ("LSTM", "GRU", "gMLP", "attention")


class RNNTagger(nn.Module):
    """Embedding, a bidirectional nn.LSTM or nn.GRU, a linear read-out (chapter 11).

    Shapes: forward(X (B, n) token ids) -> logits (B, n, C), with C = num_classes.
    """

    def __init__(self, kind: str, vocab_size: int, num_classes: int,
                 num_hiddens: int, embed_size: int) -> None:
        super().__init__()
        rnn = {"LSTM": nn.LSTM, "GRU": nn.GRU}[kind]
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = rnn(embed_size, num_hiddens, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * num_hiddens, num_classes)

    def forward(self, X: Tensor) -> Tensor:
        """Read the sequence both ways, classify each position."""
        return self.head(self.rnn(self.embedding(X))[0])  # (B, n, 2H) -> (B, n, C)


class gMLPTagger(nn.Module):
    """Embedding, gMLP blocks, a LayerNorm and a linear read-out (chapter 11).

    Shapes: forward(X (B, n) token ids) -> logits (B, n, C), with C = num_classes.
    """

    def __init__(self, vocab_size: int, num_classes: int, seq_len: int,
                 num_hiddens: int, ffn_num_hiddens: int, num_blks: int) -> None:
        super().__init__()
        check_positive_int("num_blks", num_blks)
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.blks = nn.ModuleList(
            gMLPBlock(seq_len, num_hiddens, ffn_num_hiddens) for _ in range(num_blks))
        self.norm = nn.LayerNorm(num_hiddens)
        self.head = nn.Linear(num_hiddens, num_classes)

    def forward(self, X: Tensor) -> Tensor:
        """Embed, run the blocks, classify each position."""
        H = self.embedding(X)  # (B, n, d)
        for blk in self.blks:
            H = blk(H)
        return self.head(self.norm(H))  # (B, n, C)


def build_tagger(
    kind: str, vocab_size: int, num_classes: int, seq_len: int
) -> nn.Module:
    """One of the four models of chapter 11, each with about 9,000 weights."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind in ("LSTM", "GRU"):
        hiddens = 24 if kind == "LSTM" else 28  # a GRU has 3 gates to the LSTM's 4
        return RNNTagger(kind, vocab_size, num_classes, hiddens, embed_size=16)
    if kind == "gMLP":
        return gMLPTagger(vocab_size, num_classes, seq_len, num_hiddens=32,
                          ffn_num_hiddens=160, num_blks=1)
    return TransformerTagger(vocab_size, num_classes, num_hiddens=32,
                             ffn_num_hiddens=64, num_heads=4, num_blks=1,
                             norm_first=True)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable weights of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def compare_taggers(
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    seed: int = 0,
    num_seeds: int = 3,
    kinds: tuple[str, ...] = KINDS,
    num_steps: int = 150,
    lr: float = 2e-2,
    batch_size: int = 64,
    device: Optional[torch.device] = None,
    progress: Optional[bool] = None,
) -> dict[str, dict]:
    """Train each kind of model once per seed on the same data; test accuracies.

    The seeds are seed, seed + 1, ..., seed + num_seeds - 1; each seeds the weights
    and the batch order.
    Shapes: data = X_train (N, n), Y_train (N, n), X_test (N, n), Y_test (N, n) ->
    {kind: {"accuracy": [one per seed], "parameters": int, "model": the last
    seed's model}}.
    """
    check_positive_int("num_seeds", num_seeds)
    X_train, Y_train, X_test, Y_test = data
    vocab_size, num_classes = int(X_train.max()) + 1, int(Y_train.max()) + 1
    device = device if device is not None else try_gpu()
    results: dict[str, dict] = {}
    for kind in kinds:
        accuracies = []
        for s in range(seed, seed + num_seeds):
            set_seed(s)
            model = build_tagger(kind, vocab_size, num_classes, X_train.shape[1])
            train_tagger(model, X_train, Y_train, num_steps=num_steps, lr=lr,
                         batch_size=batch_size, seed=s, device=device,
                         progress=progress)
            accuracies.append(tagging_accuracy(model, X_test, Y_test))
        results[kind] = {"accuracy": accuracies, "model": model,
                         "parameters": count_parameters(model)}
    return results


@torch.no_grad()
def mixing_weights(models: dict[str, nn.Module], X: Tensor) -> dict[str, Tensor]:
    """What each trained model computes on one sequence (chapter 11).

    Shapes: X (n,) token ids -> {"LSTM forget", "LSTM input", "GRU update",
    "GRU reset": gate activations (n, H) of the forward direction, over time;
    "gMLP": the spatial weights W (n, n); "attention": the attention weights (n, n),
    averaged over the heads}.
    """
    out: dict[str, Tensor] = {}
    for kind, model in models.items():
        device = next(model.parameters()).device
        tokens = X[None].to(device)  # (1, n)
        if kind in ("LSTM", "GRU"):
            cell_type = LSTMCell if kind == "LSTM" else GRUCell
            cell = cell_type(model.rnn.input_size, model.rnn.hidden_size).to(device)
            load_torch_rnn(cell, model.rnn)  # the forward direction, written out
            _, _, gates = run_cell(cell, model.embedding(tokens))
            names = ("forget", "input") if kind == "LSTM" else ("update", "reset")
            out.update({f"{kind} {g}": gates[g][0].cpu() for g in names})
        elif kind == "gMLP":
            out[kind] = model.blks[0].sgu.weight.detach().cpu()
        else:
            model.eval()
            with one_thread_on_cpu(device):
                model(tokens)
            # (h, n, n) for the one sequence, averaged over the heads.
            out[kind] = model.encoder.attention_weights[0][0].mean(0).cpu()
    return out
