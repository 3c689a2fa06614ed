"""Chapter 7's experiments: the scale of embeddings and positions, and which positions let one attention layer
name the previous token."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attention import DotProductAttention
from ..positional import (LearnedPositionalEmbedding, PositionalEncoding, _check_even_width, apply_rotary,
                          sinusoidal_encoding)
from ..tasks.synthetic import previous_token_data
from ..utils import check_positive_int, one_thread_on_cpu, progress_enabled, try_gpu

__all__ = ["embedding_scale_measurements", "PositionProbe", "train_position_probe", "previous_token_accuracy"]


def embedding_scale_measurements(
    dims: list[int], vocab_size: int = 1000, n_positions: int = 100, seed: int = 0
) -> dict[str, Tensor]:
    """Row norms of token embeddings and of the sinusoidal table against d, two initialisations (chapter 7).

    Shapes: dims (m,) -> dict of (m,) float64 tensors: "dims"; "encoding" (sinusoidal rows, sqrt(d/2));
    "embedding" (nn.Embedding's own N(0, 1) init) and "embedding_scaled" (times sqrt(d)); "small" (N(0, 1/d),
    the init of an embedding shared with the output layer) and "small_scaled"; "logits_embedding" and
    "logits_small": the std of h W^T for a LayerNorm output h when W is used as the output layer.
    """
    if len(dims) == 0:
        raise ValueError("dims must be a non-empty list of even ints, got []")
    for d in dims:
        _check_even_width(d)
    check_positive_int("vocab_size", vocab_size)
    out: dict[str, list[float]] = {k: [] for k in (
        "encoding", "embedding", "embedding_scaled", "small", "small_scaled", "logits_embedding", "logits_small")}
    # fork_rng: nn.Embedding draws from the global generator; the caller's stream stays untouched.
    with torch.random.fork_rng(devices=[]), one_thread_on_cpu(torch.device("cpu")):
        torch.manual_seed(seed)
        for d in dims:
            out["encoding"].append(sinusoidal_encoding(n_positions, d, dtype=torch.float64).norm(dim=-1).mean().item())
            default = nn.Embedding(vocab_size, d).weight.detach().double()  # (vocab, d), PyTorch's N(0, 1)
            small = torch.randn(vocab_size, d, dtype=torch.float64) * d**-0.5  # (vocab, d), N(0, 1/d)
            h = F.layer_norm(torch.randn(256, d, dtype=torch.float64), (d,))  # (256, d): unit-variance rows
            for key, W in (("embedding", default), ("small", small)):
                norm = W.norm(dim=-1).mean().item()
                out[key].append(norm)
                out[f"{key}_scaled"].append(math.sqrt(d) * norm)
                out[f"logits_{key}"].append((h @ W.T).std().item())  # (256, vocab) logits with tied weights
    result = {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}
    result["dims"] = torch.tensor([int(d) for d in dims])
    return result


class PositionProbe(nn.Module):
    """Embedding, positions of one kind, one self-attention layer, linear read-out (chapter 7 experiment).

    Shapes: forward(tokens (batch, n)) -> logits (batch, n, vocab_size).
    kind: "none", "sinusoidal" (PositionalEncoding), "learned" (LearnedPositionalEmbedding) or "rotary"
    (apply_rotary on the queries and keys). Attention is chapter 4's DotProductAttention.
    """

    KINDS = ("none", "sinusoidal", "learned", "rotary")

    def __init__(self, vocab_size: int, num_hiddens: int, kind: str, max_len: int = 256) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.positions: nn.Module = nn.Identity()
        if kind == "sinusoidal":
            self.positions = PositionalEncoding(num_hiddens, 0.0, max_len)
        elif kind == "learned":
            self.positions = LearnedPositionalEmbedding(num_hiddens, 0.0, max_len)
        self.W_q, self.W_k, self.W_v = (nn.Linear(num_hiddens, num_hiddens, bias=False) for _ in range(3))
        self.attention = DotProductAttention(0.0)
        self.readout = nn.Linear(num_hiddens, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        """Self-attention over the token sequence, one logit vector per position.  Shapes: (b, n) -> (b, n, V)."""
        X = self.positions(self.embedding(tokens))  # (b, n, d): positions added, or X itself
        q, k, v = self.W_q(X), self.W_k(X), self.W_v(X)  # (b, n, d) each
        if self.kind == "rotary":
            q, k = apply_rotary(q), apply_rotary(k)  # positions enter the scores only, as relative offsets
        return self.readout(self.attention(q, k, v))  # (b, n, d) -> (b, n, V)


def train_position_probe(
    kind: str,
    *,
    vocab_size: int = 16,
    num_hiddens: int = 32,
    seq_len: int = 16,
    num_steps: int = 200,
    batch_size: int = 32,
    lr: float = 1e-2,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> tuple[PositionProbe, list[float]]:
    """Train a PositionProbe with Adam on fresh previous-token batches (chapter 7 experiment).

    Shapes: -> (model, accuracy on each training batch, num_steps floats).
    """
    check_positive_int("num_steps", num_steps)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    device = torch.device(device) if device is not None else try_gpu()
    with torch.random.fork_rng(devices=[]):  # seed the initial weights without touching the caller's stream
        torch.manual_seed(seed)
        model = PositionProbe(vocab_size, num_hiddens, kind, max_len=max(256, seq_len)).to(device)
    gen = torch.Generator().manual_seed(seed + 1)  # the training data, drawn on the CPU whatever the device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    show = progress_enabled(progress)
    accuracy: list[float] = []
    bar = tqdm(range(num_steps), desc=kind, disable=not show)
    with one_thread_on_cpu(device):
        for _ in bar:
            tokens, targets = (t.to(device) for t in previous_token_data(batch_size, seq_len, vocab_size, gen))
            logits = model(tokens)[:, 1:]  # (b, n-1, V): position 0 has no previous token
            loss = F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            accuracy.append((logits.argmax(-1) == targets).float().mean().item())
            bar.set_postfix(acc=f"{accuracy[-1]:.2f}", refresh=False)
    bar.close()
    return model, accuracy


@torch.no_grad()
def previous_token_accuracy(model: PositionProbe, seq_len: int, num_sequences: int = 256, seed: int = 1000) -> float:
    """Fraction of positions 1 .. n-1 whose previous token the model names, on fresh sequences (chapter 7).

    Shapes: -> float in [0, 1].
    """
    vocab_size = model.readout.out_features
    device = next(model.parameters()).device
    tokens, targets = previous_token_data(num_sequences, seq_len, vocab_size, torch.Generator().manual_seed(seed))
    with one_thread_on_cpu(device):
        logits = model(tokens.to(device))[:, 1:]  # (num_sequences, n-1, V)
    return (logits.argmax(-1).cpu() == targets).float().mean().item()
