"""Chapter 7's experiments: the scale of embeddings and positions, and which positions
let one attention layer name the previous token."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attention import DotProductAttention
from ..positional import (LearnedPositionalEmbedding, PositionalEncoding,
                          _check_even_width, apply_rotary, sinusoidal_encoding)
from ..tasks.synthetic import previous_token_data
from ..utils import (check_lr, check_positive_int, one_thread_on_cpu,
                     progress_enabled, try_gpu)

__all__ = [
    "embedding_scale_measurements", "PositionProbe", "train_position_probe",
    "previous_token_accuracy",
]


def embedding_scale_measurements(
    dims: list[int], vocab_size: int = 1000, n_positions: int = 100, seed: int = 0
) -> dict[str, Tensor]:
    """Row norms of token embeddings and of the sinusoidal table against d (chapter 7).

    Shapes: dims, a list of sizes d -> dict of float64 tensors, an entry per d: "dims";
    "encoding" (sinusoidal rows, sqrt(d/2)); "embedding" (nn.Embedding's own N(0, 1)
    init) and "embedding_scaled" (times sqrt(d)); "small" (N(0, 1/d), the init of an
    embedding shared with the output layer) and "small_scaled"; "logits_embedding" and
    "logits_small": the std of h W^T for a LayerNorm output h when W is used as the
    output layer.
    """
    _check_dims(dims)
    check_positive_int("vocab_size", vocab_size)
    out: dict[str, list[float]] = {k: [] for k in (
        "encoding", "embedding", "embedding_scaled", "small", "small_scaled",
        "logits_embedding", "logits_small")}
    f64 = torch.float64
    # fork_rng: nn.Embedding draws from the global generator; the caller's stream
    # stays untouched.
    with torch.random.fork_rng(devices=[]), one_thread_on_cpu(torch.device("cpu")):
        torch.manual_seed(seed)
        for d in dims:
            P = sinusoidal_encoding(n_positions, d, dtype=f64)  # (n_positions, d)
            out["encoding"].append(P.norm(dim=-1).mean().item())
            # (V, d) each: PyTorch's N(0, 1), and N(0, 1/d).
            default = nn.Embedding(vocab_size, d).weight.detach().double()
            small = torch.randn(vocab_size, d, dtype=f64) * d**-0.5
            # (256, d): rows of mean 0 and variance 1, as a LayerNorm gives.
            h = F.layer_norm(torch.randn(256, d, dtype=f64), (d,))
            for key, W in (("embedding", default), ("small", small)):
                norm = W.norm(dim=-1).mean().item()
                out[key].append(norm)
                out[f"{key}_scaled"].append(math.sqrt(d) * norm)
                # (256, V): the logits when W is also the output layer.
                out[f"logits_{key}"].append((h @ W.T).std().item())
    result = {k: torch.tensor(v, dtype=f64) for k, v in out.items()}
    result["dims"] = torch.tensor([int(d) for d in dims])
    return result


def _check_dims(dims: list[int]) -> None:
    if len(dims) == 0:
        raise ValueError("dims must be a non-empty list of even ints, got []")
    for d in dims:
        _check_even_width(d)


class PositionProbe(nn.Module):
    """Embedding, positions of one kind, one self-attention layer, read-out (chapter 7).

    Shapes: forward(tokens (B, n)) -> logits (B, n, V). kind: "none", "sinusoidal"
    (PositionalEncoding), "learned" (LearnedPositionalEmbedding) or "rotary"
    (apply_rotary on the queries and keys). Attention is chapter 4's
    DotProductAttention.
    """

    KINDS = ("none", "sinusoidal", "learned", "rotary")

    def __init__(
        self, vocab_size: int, num_hiddens: int, kind: str, max_len: int = 256
    ) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        d = num_hiddens
        self.embedding = nn.Embedding(vocab_size, d)
        self.positions: nn.Module = nn.Identity()
        if kind == "sinusoidal":
            self.positions = PositionalEncoding(d, 0.0, max_len)
        elif kind == "learned":
            self.positions = LearnedPositionalEmbedding(d, 0.0, max_len)
        self.W_q, self.W_k, self.W_v = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.attention = DotProductAttention(0.0)
        self.readout = nn.Linear(d, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        """Self-attention over the tokens, a logit vector per position.

        Shapes: tokens (B, n) -> (B, n, V).
        """
        X = self.positions(self.embedding(tokens))  # (B, n, d): positions added, or not
        q, k, v = self.W_q(X), self.W_k(X), self.W_v(X)  # (B, n, d) each
        if self.kind == "rotary":
            # Positions enter the scores only, as relative offsets.
            q, k = apply_rotary(q), apply_rotary(k)
        return self.readout(self.attention(q, k, v))  # (B, n, d) -> (B, n, V)


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
    """Train a PositionProbe with Adam on fresh previous-token batches (chapter 7).

    Shapes: -> the model, and its accuracy on each training batch (num_steps floats).
    """
    check_positive_int("num_steps", num_steps)
    check_lr(lr)
    device = torch.device(device) if device is not None else try_gpu()
    # Seed the initial weights without touching the caller's stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PositionProbe(vocab_size, num_hiddens, kind, max_len=max(256, seq_len))
    model.to(device)
    # The training data, drawn on the CPU whatever the device.
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    accuracy: list[float] = []
    bar = tqdm(range(num_steps), desc=kind, disable=not progress_enabled(progress))
    with one_thread_on_cpu(device):
        for _ in bar:
            batch = previous_token_data(batch_size, seq_len, vocab_size, gen)
            tokens, targets = (t.to(device) for t in batch)  # (B, n), (B, n - 1)
            # (B, n - 1, V): position 0 has no previous token.
            logits = model(tokens)[:, 1:]
            loss = F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            accuracy.append((logits.argmax(-1) == targets).float().mean().item())
            bar.set_postfix(acc=f"{accuracy[-1]:.2f}", refresh=False)
    bar.close()
    return model, accuracy


@torch.no_grad()
def previous_token_accuracy(
    model: PositionProbe, seq_len: int, num_sequences: int = 256, seed: int = 1000
) -> float:
    """Share of positions 1 .. n-1 whose previous token the model names (chapter 7).

    Shapes: -> a float in [0, 1], on num_sequences fresh sequences of n = seq_len.
    """
    vocab_size = model.readout.out_features
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    tokens, targets = previous_token_data(num_sequences, seq_len, vocab_size, gen)
    with one_thread_on_cpu(device):
        logits = model(tokens.to(device))[:, 1:]  # (N, n - 1, V)
    return (logits.argmax(-1).cpu() == targets).float().mean().item()
