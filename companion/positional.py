"""Positions for self-attention (chapter 7): sinusoidal and learned encodings, rotary embeddings, measurements.

Self-attention without positions is permutation-equivariant: it cannot tell
"A hit B" from "B hit A". The sinusoidal table follows d2l's layout
(``PositionalEncoding(num_hiddens, dropout, max_len=1000)``, sines in the even
columns, cosines in the odd ones, the table in ``self.P``). Angles are computed
in float64 and rounded once, so the table is exact to float32 precision even at
position 1000.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .attention import DotProductAttention
from .utils import check_positive_int, one_thread_on_cpu, progress_enabled, try_gpu

__all__ = [
    "encoding_frequencies",
    "sinusoidal_encoding",
    "PositionalEncoding",
    "LearnedPositionalEmbedding",
    "POSITION_KINDS",
    "position_encoding",
    "offset_rotation",
    "apply_rotary",
    "permutation_gap",
    "embedding_scale_measurements",
    "previous_token_data",
    "PositionProbe",
    "train_position_probe",
    "previous_token_accuracy",
]


def _check_even_width(num_hiddens: object) -> None:
    check_positive_int("num_hiddens", num_hiddens)
    if num_hiddens % 2:  # type: ignore[operator]
        raise ValueError(
            "num_hiddens must be even: columns 2i and 2i+1 hold the sine and cosine of one frequency, "
            f"got num_hiddens={num_hiddens}"
        )


def encoding_frequencies(num_hiddens: int, base: float = 10000.0) -> Tensor:
    """Angular frequencies w_i = base^(-2i/d), i = 0 .. d/2 - 1 (chapter 7, eq. sinusoidal).

    Shapes: -> (num_hiddens / 2,) float64, from 1 down to nearly 1/base.
    """
    _check_even_width(num_hiddens)
    if not base > 1:
        raise ValueError(f"base must be > 1 so that the frequencies decrease, got {base!r}")
    two_i = torch.arange(0, num_hiddens, 2, dtype=torch.float64)  # (d/2,): 0, 2, 4, ...
    return base ** (-two_i / num_hiddens)


def sinusoidal_encoding(
    max_len: int, num_hiddens: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The table P[pos, 2i] = sin(pos w_i), P[pos, 2i+1] = cos(pos w_i) (chapter 7, eq. sinusoidal).

    Shapes: -> (max_len, num_hiddens).
    """
    check_positive_int("max_len", max_len)
    w = encoding_frequencies(num_hiddens, base)  # (d/2,)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * w[None, :]  # (max_len, d/2)
    P = torch.empty(max_len, num_hiddens, dtype=torch.float64)
    P[:, 0::2] = torch.sin(angles)  # even columns: sines
    P[:, 1::2] = torch.cos(angles)  # odd columns: cosines of the same frequency
    return P.to(dtype)


def _check_sequence(X: object, num_hiddens: int, max_len: int, offset: int) -> None:
    if not isinstance(X, Tensor) or X.dim() != 3:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be a 3-D tensor (batch, n, num_hiddens), got {shape}")
    if X.shape[-1] != num_hiddens:
        raise ValueError(f"X must have num_hiddens={num_hiddens} features (last dim), got X {tuple(X.shape)}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")
    if offset + X.shape[1] > max_len:
        raise ValueError(
            f"positions {offset}..{offset + X.shape[1] - 1} (a sequence of length {X.shape[1]} at offset {offset}) "
            f"do not fit in the table of max_len={max_len} positions; build the module with a larger max_len"
        )


class PositionalEncoding(nn.Module):
    """Add the sinusoidal table to the inputs, then dropout (chapter 7, eq. sinusoidal; d2l name).

    Shapes: forward(X (batch, n, num_hiddens), offset=0) -> (batch, n, num_hiddens);
    self.P (1, max_len, num_hiddens) is the table, as in d2l.
    ``offset`` adds the rows offset .. offset+n-1, for decoding one token at a time.
    """

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000, base: float = 10000.0) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.dropout = nn.Dropout(dropout)
        # A buffer moves with .to(device); not persistent: it is recomputed, never learned.
        P = sinusoidal_encoding(max_len, num_hiddens, base).unsqueeze(0)  # (1, max_len, d)
        self.register_buffer("P", P, persistent=False)

    def forward(self, X: Tensor, offset: int = 0) -> Tensor:
        """X + P[offset : offset + n], then dropout.  Shapes: X (batch, n, d) -> (batch, n, d)."""
        _check_sequence(X, self.num_hiddens, self.max_len, offset)
        X = X + self.P[:, offset : offset + X.shape[1], :].to(X.dtype)  # (1, n, d) broadcasts over the batch
        return self.dropout(X)


class LearnedPositionalEmbedding(nn.Module):
    """Add a learned vector per position, then dropout (chapter 7, learned positions; BERT and GPT-2 style).

    Shapes: forward(X (batch, n, num_hiddens), offset=0) -> (batch, n, num_hiddens);
    self.P (1, max_len, num_hiddens) is an nn.Parameter, initialised N(0, init_std^2).
    A position never seen in training keeps its random initial vector.
    """

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000, init_std: float = 0.02) -> None:
        super().__init__()
        check_positive_int("num_hiddens", num_hiddens)
        check_positive_int("max_len", max_len)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std!r}")
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.dropout = nn.Dropout(dropout)
        self.P = nn.Parameter(init_std * torch.randn(1, max_len, num_hiddens))

    def forward(self, X: Tensor, offset: int = 0) -> Tensor:
        """X + P[offset : offset + n], then dropout.  Shapes: X (batch, n, d) -> (batch, n, d)."""
        _check_sequence(X, self.num_hiddens, self.max_len, offset)
        return self.dropout(X + self.P[:, offset : offset + X.shape[1], :])


POSITION_KINDS = ("sinusoidal", "learned")


def position_encoding(kind: str, num_hiddens: int, dropout: float, max_len: int = 1000) -> nn.Module:
    """The positions a Transformer stack adds to its token vectors (chapters 8-9): a module called as X + P[:n].

    kind "sinusoidal" is the fixed table above; "learned" is a LearnedPositionalEmbedding started at the scale of
    the token vectors. Both take forward(X (batch, n, num_hiddens), offset=0) -> (batch, n, num_hiddens).
    """
    if kind == "sinusoidal":
        return PositionalEncoding(num_hiddens, dropout, max_len)
    if kind == "learned":
        # The token vectors enter with entries of standard deviation 1 (N(0, 1/d) times sqrt(d), chapters 7-8),
        # so the learned rows start at the same scale, as GPT-2 starts both tables alike. Independent random rows
        # also start neighbouring positions far apart, where sinusoidal neighbours are 97% alike (chapter 9).
        return LearnedPositionalEmbedding(num_hiddens, dropout, max_len, init_std=1.0)
    raise ValueError(f"positions must be one of {POSITION_KINDS}, got {kind!r}")


def offset_rotation(k: int, num_hiddens: int, base: float = 10000.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """The block-diagonal rotation M_k with P[pos + k] = P[pos] M_k for every pos (chapter 7, eq. offset).

    Shapes: -> (num_hiddens, num_hiddens); block i is [[cos k w_i, -sin k w_i], [sin k w_i, cos k w_i]].
    """
    if not isinstance(k, int) or isinstance(k, bool):
        raise ValueError(f"k must be an int (negative k shifts back), got {k!r}")
    angles = k * encoding_frequencies(num_hiddens, base)  # (d/2,)
    c, s = torch.cos(angles), torch.sin(angles)
    M = torch.zeros(num_hiddens, num_hiddens, dtype=torch.float64)
    even, odd = torch.arange(0, num_hiddens, 2), torch.arange(1, num_hiddens, 2)
    # Row vector times M: new sin = sin*cos(kw) + cos*sin(kw), new cos = cos*cos(kw) - sin*sin(kw).
    M[even, even], M[even, odd] = c, -s
    M[odd, even], M[odd, odd] = s, c
    return M.to(dtype)


def apply_rotary(x: Tensor, positions: Optional[Tensor] = None, base: float = 10000.0) -> Tensor:
    """Rotary position embedding: rotate each feature pair (2i, 2i+1) by the angle pos * w_i (chapter 7, RoPE).

    Shapes: x (..., n, d) with d even; positions None (0 .. n-1) or integers broadcastable to x.shape[:-1]
    -> (..., n, d). Equals x @ offset_rotation(pos, d).T row by row, so (q at m) . (k at n) depends on m - n only.
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor (..., n, d) with at least 2 dims, got {shape}")
    w = encoding_frequencies(x.shape[-1], base).to(x.device)  # (d/2,); raises if d is odd
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)  # (n,)
    if not isinstance(positions, Tensor) or positions.is_floating_point() or positions.dtype == torch.bool:
        raise ValueError(f"positions must be an integer tensor, got {positions!r:.80}")
    try:
        fits = torch.broadcast_shapes(positions.shape, x.shape[:-1]) == x.shape[:-1]
    except RuntimeError:
        fits = False
    if not fits:  # positions may repeat over x's leading axes, never add axes of their own
        raise ValueError(
            f"positions must broadcast to x.shape[:-1] = {tuple(x.shape[:-1])}, got {tuple(positions.shape)}"
        )
    angles = positions.to(x.device, torch.float64)[..., None] * w  # (..., n, d/2), exact before rounding
    c, s = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., n, d/2) each: the two coordinates of every pair
    rotated = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)  # (..., n, d/2, 2)
    return rotated.flatten(-2)  # (..., n, d): pairs back in place, interleaved


def permutation_gap(fn: Callable[[Tensor], Tensor], X: Tensor, perm: Tensor) -> float:
    """Largest |fn(X permuted) - fn(X) permuted| over all entries: 0 for a permutation-equivariant fn (chapter 7).

    Shapes: X (batch, n, d), perm (n,) a permutation of 0 .. n-1; fn maps (batch, n, d) -> (batch, n, d').
    """
    if not isinstance(X, Tensor) or X.dim() != 3:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be a 3-D tensor (batch, n, d), got {shape}")
    n = X.shape[1]
    if not isinstance(perm, Tensor) or perm.dim() != 1 or not torch.equal(
        torch.sort(perm.cpu()).values, torch.arange(n)
    ):
        raise ValueError(f"perm must be a permutation of 0..{n - 1} (a 1-D integer tensor), got {perm!r:.80}")
    perm = perm.to(X.device)
    with torch.no_grad():
        return (fn(X[:, perm]) - fn(X)[:, perm]).abs().max().item()


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


# --------------------------------------------------------------------------- the previous-token experiment


def previous_token_data(
    batch_size: int, seq_len: int, vocab_size: int, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """Random token sequences and, for positions 1 .. n-1, the token one step earlier (chapter 7 experiment).

    Shapes: -> tokens (batch_size, seq_len) int64, targets (batch_size, seq_len - 1) = tokens[:, :-1].
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("vocab_size", vocab_size)):
        check_positive_int(name, value)
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 so that some position has a previous token, got {seq_len}")
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    return tokens, tokens[:, :-1]


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
