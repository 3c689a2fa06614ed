"""The Transformer encoder-decoder (chapter 9): causal self-attention, encoder-decoder attention, a key-value cache.

The encoder is chapter 8's ``TransformerEncoder``. The decoder block has three sublayers: masked (causal)
self-attention over the target written so far, encoder-decoder attention (queries from the decoder, keys and
values from the encoder's outputs) and the position-wise FFN, each with a residual connection and a LayerNorm
(post-norm or pre-norm, as in chapter 8). Names follow d2l (``TransformerDecoderBlock``, ``TransformerDecoder``,
``init_state``); the decoder plugs into chapter 5's ``EncoderDecoder``, ``train_seq2seq``, ``greedy_decode`` and
``evaluate_seq2seq``. Decoding can keep the projected keys and values of the positions already written (a KV
cache), so that each step projects one new token instead of the whole prefix. Both stacks take chapter 7's
sinusoidal positions or a learned table; ``training_flops_per_token`` counts the arithmetic of a training step.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from .dates import DateSplit, Vocab, pad_sequences
from .multihead import MultiHeadAttention, transpose_output, transpose_qkv
from .positional import position_encoding
from .seq2seq import EncoderDecoder, sequence_loss, teacher_forcing_inputs
from .transformer import AddNorm, PositionWiseFFN, TransformerEncoder, check_token_ids, token_embedding
from .utils import check_positive_int, one_thread_on_cpu

__all__ = [
    "causal_mask",
    "KVCache",
    "attention_with_cache",
    "TransformerDecoderBlock",
    "TransformerDecoderState",
    "TransformerDecoder",
    "TransformerEncoderDecoder",
    "transformer_greedy_decode",
    "time_decoding",
    "training_flops_per_token",
    "make_sequence_task",
]


def causal_mask(n: int, n_k: Optional[int] = None, device: torch.device | str | None = None) -> Tensor:
    """Boolean mask, True = may attend: query i sees keys 0 .. i, never a later one (chapter 9, eq. causal).

    Shapes: -> (n, n_k) bool, n_k = n by default. With n_k > n the n queries are the last n of n_k positions
    (the first n_k - n are already in a cache): query i sees keys 0 .. n_k - n + i.
    """
    check_positive_int("n", n)
    n_k = n if n_k is None else n_k
    check_positive_int("n_k", n_k)
    if n_k < n:
        raise ValueError(f"n_k counts the cached positions plus the n new ones, so n_k >= n, got n={n}, n_k={n_k}")
    rows = torch.arange(n, device=device)[:, None] + (n_k - n)  # (n, 1): each query's absolute position
    cols = torch.arange(n_k, device=device)[None, :]  # (1, n_k)
    return cols <= rows  # (n, n_k): lower triangle, shifted right by the cache length


class KVCache:
    """The projected keys and values of one attention layer for the positions seen so far (chapter 9).

    Shapes: k, v (batch * num_heads, t, d_h) after t positions; None before the first append.
    """

    def __init__(self) -> None:
        self.k: Optional[Tensor] = None
        self.v: Optional[Tensor] = None

    def __len__(self) -> int:
        """Number of positions t held."""
        return 0 if self.k is None else self.k.shape[1]

    def append(self, k: Tensor, v: Tensor) -> None:
        """Add the keys and values of new positions after the ones held.

        Shapes: k, v (batch * num_heads, n_new, d_h).
        """
        if k.shape != v.shape or k.dim() != 3:
            raise ValueError(f"k and v must be 3-D of the same shape, got k {tuple(k.shape)} and v {tuple(v.shape)}")
        if self.k is None:
            self.k, self.v = k, v
        else:
            if k.shape[0] != self.k.shape[0] or k.shape[2] != self.k.shape[2]:
                raise ValueError(f"new keys must have shape ({self.k.shape[0]}, n_new, {self.k.shape[2]}) like "
                                 f"the cached ones, got {tuple(k.shape)}")
            self.k = torch.cat([self.k, k], dim=1)  # (batch * h, t + n_new, d_h)
            self.v = torch.cat([self.v, v], dim=1)


def attention_with_cache(
    mha: MultiHeadAttention, queries: Tensor, new_keys: Optional[Tensor], cache: KVCache,
    mask: Optional[Tensor] = None,
) -> Tensor:
    """Multi-head attention whose projected keys and values live in a cache (chapter 9, eq. kv-cache).

    Shapes: queries (batch, n_q, d), new_keys None or (batch, n_new, d) -> (batch, n_q, d). The new positions
    are projected by W_k and W_v (keys and values are the same tensor in the decoder) and appended to the
    cache; the queries then attend to every cached position. mask: a bool mask (1, n_q, len(cache)) shared by
    the batch, or valid lengths (batch,). Equals mha(queries, K, K, mask) with K all the positions so far.
    """
    h = mha.num_heads
    if new_keys is not None:
        # Only the new positions are projected: the old ones' keys and values never change.
        cache.append(transpose_qkv(mha.W_k(new_keys), h), transpose_qkv(mha.W_v(new_keys), h))
    if cache.k is None:
        raise ValueError("the cache is empty: give new_keys on the first call")
    q = transpose_qkv(mha.W_q(queries), h)  # (batch * h, n_q, d_h)
    if mask is not None and mask.dtype != torch.bool:
        # Valid lengths (batch,) -> (batch * h,): row b * h + j of the folded batch is head j of sequence b.
        mask = torch.repeat_interleave(mask, repeats=h, dim=0)
    out = mha.attention(q, cache.k, cache.v, mask)  # (batch * h, n_q, d_h)
    weights = mha.attention.attention_weights  # (batch * h, n_q, t)
    mha.attention_weights = weights.reshape(-1, h, *weights.shape[1:])  # (batch, h, n_q, t)
    return mha.W_o(transpose_output(out, h))  # (batch, n_q, d)


class TransformerDecoderBlock(nn.Module):
    """Causal self-attention, encoder-decoder attention, FFN; each with residual + LayerNorm (chapter 9; d2l name).

    Shapes: forward(X (batch, n, d), enc_outputs (batch, T_src, d), enc_valid_lens None or (batch,),
    cache None or (KVCache, KVCache)) -> (batch, n, d). Without a cache X is the whole target so far; with one,
    X holds the new positions only and the caches (self-attention, encoder-decoder attention) are extended.
    """

    def __init__(
        self,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        dropout: float,
        use_bias: bool = False,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("num_hiddens", num_hiddens)
        self.norm_first = bool(norm_first)
        d = num_hiddens
        self.attention1 = MultiHeadAttention(d, num_heads, dropout, use_bias, d, d, d)  # self, causal
        self.addnorm1 = AddNorm(d, dropout)
        self.attention2 = MultiHeadAttention(d, num_heads, dropout, use_bias, d, d, d)  # encoder-decoder
        self.addnorm2 = AddNorm(d, dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, d, d)
        self.addnorm3 = AddNorm(d, dropout)

    def _sublayer(self, addnorm: AddNorm, X: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
        # The same LayerNorm serves both placements (chapter 8): LN(X + f(X)) or X + f(LN(X)).
        if self.norm_first:
            return X + addnorm.dropout(f(addnorm.ln(X)))
        return addnorm(X, f(X))

    def forward(
        self,
        X: Tensor,
        enc_outputs: Tensor,
        enc_valid_lens: Optional[Tensor] = None,
        cache: Optional[tuple[KVCache, KVCache]] = None,
    ) -> Tensor:
        """One decoder block.  Shapes: X (batch, n, d), enc_outputs (batch, T_src, d) -> (batch, n, d)."""
        n = X.shape[1]
        if cache is None:
            causal = causal_mask(n, device=X.device)[None]  # (1, n, n), shared by the batch and the heads
            X = self._sublayer(self.addnorm1, X, lambda H: self.attention1(H, H, H, causal))
            X = self._sublayer(self.addnorm2, X,
                               lambda H: self.attention2(H, enc_outputs, enc_outputs, enc_valid_lens))
        else:
            self_cache, cross_cache = cache
            causal = causal_mask(n, len(self_cache) + n, device=X.device)[None]  # (1, n, t + n)
            X = self._sublayer(self.addnorm1, X,
                               lambda H: attention_with_cache(self.attention1, H, H, self_cache, causal))
            # The encoder's keys and values are projected once, at the first step, then reused.
            new = enc_outputs if len(cross_cache) == 0 else None
            X = self._sublayer(self.addnorm2, X,
                               lambda H: attention_with_cache(self.attention2, H, new, cross_cache, enc_valid_lens))
        return self._sublayer(self.addnorm3, X, self.ffn)


@dataclass
class TransformerDecoderState:
    """What the decoder carries from one call to the next (chapter 9).

    Shapes: enc_outputs (batch, T_src, d); enc_valid_lens None or (batch,); caches None (no cache) or one
    (self-attention, encoder-decoder attention) pair of KVCache per block; offset = positions decoded so far.
    """

    enc_outputs: Tensor
    enc_valid_lens: Optional[Tensor]
    caches: Optional[list[tuple[KVCache, KVCache]]]
    offset: int = 0


class TransformerDecoder(nn.Module):
    """Embedding times sqrt(d), positions, num_blks decoder blocks, a linear layer to the vocabulary (chapter 9).

    Shapes: forward(X (batch, n) token ids, state) -> logits (batch, n, vocab_size), state.
    positions: "sinusoidal" (chapter 7's table) or "learned" (a table of max_len rows, started at the tokens' scale).
    ``attention_weights`` is the last block's encoder-decoder attention averaged over the heads,
    (batch, n, T_src), the counterpart of chapter 5's alignment.
    """

    def __init__(
        self,
        vocab_size: int,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        num_blks: int,
        dropout: float,
        use_bias: bool = False,
        norm_first: bool = False,
        max_len: int = 1000,
        positions: str = "sinusoidal",
    ) -> None:
        super().__init__()
        check_positive_int("num_blks", num_blks)
        self.num_hiddens = num_hiddens
        self.embedding = token_embedding(vocab_size, num_hiddens)  # as the encoder's (chapters 7, 8)
        self.pos_encoding = position_encoding(positions, num_hiddens, dropout, max_len)
        self.blks = nn.ModuleList(
            TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias, norm_first)
            for _ in range(num_blks)
        )
        self.final_norm: nn.Module = nn.LayerNorm(num_hiddens) if norm_first else nn.Identity()
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(
        self, enc_outputs: Tensor, enc_valid_lens: Optional[Tensor] = None, use_cache: bool = True
    ) -> TransformerDecoderState:
        """The start state: the encoder's outputs and, with use_cache, empty caches (d2l name).

        Shapes: enc_outputs (batch, T_src, d), enc_valid_lens None or (batch,).
        With use_cache (the default, so that chapter 5's greedy_decode can feed one token per call) each call
        continues where the last one stopped; without, each call must hold the whole target from position 0.
        """
        if not isinstance(enc_outputs, Tensor) or enc_outputs.dim() != 3 or enc_outputs.shape[-1] != self.num_hiddens:
            raise ValueError(f"enc_outputs must be (batch, T_src, {self.num_hiddens}), "
                             f"got {getattr(enc_outputs, 'shape', type(enc_outputs).__name__)}")
        caches = [(KVCache(), KVCache()) for _ in self.blks] if use_cache else None
        return TransformerDecoderState(enc_outputs, enc_valid_lens, caches)

    def forward(self, X: Tensor, state: TransformerDecoderState) -> tuple[Tensor, TransformerDecoderState]:
        """Decode new positions: the whole target (teacher forcing) or, with a cache, the next token(s).

        Shapes: X (batch, n) -> logits (batch, n, vocab_size), the state (its caches extended).
        """
        check_token_ids(X)
        if X.shape[0] != state.enc_outputs.shape[0]:
            raise ValueError(f"X and the encoder outputs must have the same batch size, got X {tuple(X.shape)} "
                             f"and enc_outputs {tuple(state.enc_outputs.shape)}")
        offset = state.offset if state.caches is not None else 0
        # New tokens sit at positions offset .. offset + n - 1: the cache holds the ones before.
        H = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), offset)  # (batch, n, d)
        for i, blk in enumerate(self.blks):
            cache = None if state.caches is None else state.caches[i]
            H = blk(H, state.enc_outputs, state.enc_valid_lens, cache)
        if state.caches is not None:
            state.offset += X.shape[1]
        return self.dense(self.final_norm(H)), state  # (batch, n, vocab_size)

    @property
    def self_attention_weights(self) -> list[Tensor]:
        """Per block, the causal self-attention weights of the last call.  Shapes: (batch, heads, n, t)."""
        return [blk.attention1.attention_weights for blk in self.blks]

    @property
    def cross_attention_weights(self) -> list[Tensor]:
        """Per block, the encoder-decoder weights of the last call.  Shapes: (batch, heads, n, T_src)."""
        return [blk.attention2.attention_weights for blk in self.blks]

    @property
    def attention_weights(self) -> Tensor:
        """The last block's encoder-decoder weights, mean over heads.  Shapes: (batch, n, T_src)."""
        return self.blks[-1].attention2.attention_weights.mean(dim=1)


class TransformerEncoderDecoder(EncoderDecoder):
    """Chapter 8's encoder and a TransformerDecoder, trained together (chapter 9).

    Shapes: forward(enc_X (batch, T_src), dec_X (batch, T_dec), enc_valid_lens (batch,)) -> (batch, T_dec, V_tgt).
    The two stacks share the sizes; the decoder has dec_num_blks blocks (num_blks if None). Dropout is off by
    default: the tasks here are small and noise-free. positions="learned" gives both stacks a learned table
    (see TransformerDecoder) in place of the sinusoidal one.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        num_hiddens: int = 64,
        ffn_num_hiddens: int = 128,
        num_heads: int = 4,
        num_blks: int = 2,
        dropout: float = 0.0,
        norm_first: bool = True,
        max_len: int = 1000,
        dec_num_blks: Optional[int] = None,
        positions: str = "sinusoidal",
    ) -> None:
        encoder = TransformerEncoder(src_vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout,
                                     norm_first=norm_first, max_len=max_len, positions=positions)
        decoder = TransformerDecoder(tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                     num_blks if dec_num_blks is None else dec_num_blks, dropout,
                                     norm_first=norm_first, max_len=max_len, positions=positions)
        super().__init__(encoder, decoder)

    def forward(self, enc_X: Tensor, dec_X: Tensor, enc_valid_lens: Optional[Tensor] = None) -> Tensor:
        """Teacher forcing: every target position in one pass, the causal mask keeping each from its future.

        Shapes: enc_X (batch, T_src), dec_X (batch, T_dec) -> logits (batch, T_dec, V_tgt).
        """
        enc_outputs = self.encoder(enc_X, enc_valid_lens)  # (batch, T_src, d)
        state = self.decoder.init_state(enc_outputs, enc_valid_lens, use_cache=False)
        return self.decoder(dec_X, state)[0]


@torch.no_grad()
def transformer_greedy_decode(
    net: TransformerEncoderDecoder,
    X: Tensor,
    X_valid_len: Tensor,
    bos: int,
    eos: int,
    num_steps: int,
    pad: int = 0,
    *,
    use_cache: bool = True,
    stop_at_eos: bool = True,
) -> Tensor:
    """Greedy decoding with or without the KV cache; both give the same tokens (chapter 9, eq. greedy).

    Shapes: X (batch, T_src), X_valid_len (batch,) -> tokens (batch, num_steps) long, <pad> after each <eos>.
    Without the cache every step runs the decoder over the whole prefix and keeps the last position's logits;
    with it every step feeds only the newest token. stop_at_eos=False always runs num_steps steps (for timing).
    """
    check_positive_int("num_steps", num_steps)
    net.eval()
    enc_outputs = net.encoder(X, X_valid_len)  # (batch, T_src, d): computed once in both modes
    state = net.decoder.init_state(enc_outputs, X_valid_len, use_cache=use_cache)
    batch = X.shape[0]
    prefix = torch.full((batch, 1), bos, dtype=torch.long, device=X.device)  # (batch, 1): <bos>
    finished = torch.zeros(batch, dtype=torch.bool, device=X.device)
    tokens: list[Tensor] = []
    for _ in range(num_steps):
        # With the cache, only the newest token goes in; without, the whole prefix is decoded again.
        step_input = prefix[:, -1:] if use_cache else prefix
        logits, state = net.decoder(step_input, state)  # (batch, 1 or t, V)
        next_token = logits[:, -1].argmax(dim=-1)  # (batch,)
        tokens.append(next_token.masked_fill(finished, pad))
        finished |= next_token == eos
        prefix = torch.cat([prefix, next_token[:, None]], dim=1)  # (batch, t + 1)
        if stop_at_eos and finished.all():
            break
    out = torch.stack(tokens, dim=1)  # (batch, steps taken)
    return nn.functional.pad(out, (0, num_steps - out.shape[1]), value=pad)  # (batch, num_steps)


def time_decoding(
    net: TransformerEncoderDecoder, X: Tensor, X_valid_len: Tensor, steps: Sequence[int], *, repeats: int = 3,
) -> dict[bool, list[float]]:
    """Best wall-clock seconds of greedy decoding of m steps, with and without the KV cache, for each m (chapter 9).

    Shapes: X (batch, T_src), X_valid_len (batch,) -> {use_cache: [seconds for each m in steps]}. Decoding never
    stops early at <eos>. Each measurement is the best of `repeats` runs, and the runs are interleaved (every m and
    both modes once, then again), so a burst of other work on the machine spoils one run, not all of them.
    """
    check_positive_int("repeats", repeats)
    steps = list(steps)
    if not steps:
        raise ValueError("steps must hold at least one number of steps, got an empty sequence")
    for m in steps:
        check_positive_int("each number of steps", m)
    device = next(net.parameters()).device
    best = {use_cache: [math.inf] * len(steps) for use_cache in (False, True)}
    with one_thread_on_cpu(device):
        for _ in range(repeats):
            for i, m in enumerate(steps):
                for use_cache in (False, True):
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    start = time.perf_counter()
                    # <bos> = 1 and <eos> = 2 in every Vocab; <eos> ends nothing here (stop_at_eos=False).
                    transformer_greedy_decode(net, X, X_valid_len, 1, 2, m, use_cache=use_cache, stop_at_eos=False)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)  # GPU work is asynchronous: wait for it before reading the clock
                    best[use_cache][i] = min(best[use_cache][i], time.perf_counter() - start)
    return best


def training_flops_per_token(
    net: nn.Module, data: DateSplit, tgt_vocab: Vocab, *, num_examples: int = 512, batch_size: int = 64,
) -> float:
    """Floating-point operations of one training step (forward and backward), per real token (chapter 9).

    Shapes: data.X (n, T_src), data.Y (n, T_tgt) -> float. Counts, with torch's FlopCounterMode, the matrix
    products of the teacher-forced loss and its gradient on the first num_examples training examples, batched
    as in training (padding included, as training computes it), and divides by their source and target tokens.
    The parameters' gradients are left as they were.
    """
    from torch.utils.flop_counter import FlopCounterMode

    check_positive_int("num_examples", num_examples)
    check_positive_int("batch_size", batch_size)
    device = next(net.parameters()).device
    subset = DateSplit(data.sources[:num_examples], data.targets[:num_examples], data.formats[:num_examples],
                       data.X[:num_examples], data.X_valid_len[:num_examples], data.Y[:num_examples],
                       data.Y_valid_len[:num_examples])
    saved = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    tokens = 0
    with FlopCounterMode(display=False) as counter:
        for X, X_valid_len, Y, Y_valid_len in subset.batches(batch_size):
            X, X_valid_len, Y = X.to(device), X_valid_len.to(device), Y.to(device)  # (b, T_b), (b,), (b, T)
            logits = net(X, teacher_forcing_inputs(Y, tgt_vocab.bos), X_valid_len)  # (b, T, V)
            sequence_loss(logits, Y, tgt_vocab.pad).backward()
            tokens += int(X_valid_len.sum()) + int(Y_valid_len.sum())
    for p, g in zip(net.parameters(), saved):
        p.grad = g
    return counter.get_total_flops() / tokens


def make_sequence_task(
    n_train: int = 4000,
    n_valid: int = 500,
    n_test: int = 1000,
    *,
    task: str = "reverse",
    min_len: int = 4,
    max_len: int = 16,
    alphabet: str = "abcdefghijklmnopqrstuvwxyz",
    seed: int = 0,
) -> tuple[Vocab, Vocab, DateSplit, DateSplit, DateSplit]:
    """Random letter strings and their reversal (task="reverse") or sorted letters ("sort"), chapter 9.

    Shapes: -> src_vocab, tgt_vocab, and train / valid / test splits in chapter 5's DateSplit layout
    (X (n, max_len + 1), Y (n, max_len + 1), each with <eos> and <pad>). The three splits share no string.
    Uses its own random.Random(seed): the global RNGs are untouched.
    """
    if task not in ("reverse", "sort"):
        raise ValueError(f"task must be 'reverse' or 'sort', got {task!r}")
    for name, value in (("n_train", n_train), ("min_len", min_len), ("max_len", max_len)):
        check_positive_int(name, value)
    for name, value in (("n_valid", n_valid), ("n_test", n_test)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if min_len > max_len:
        raise ValueError(f"min_len must be <= max_len, got min_len={min_len}, max_len={max_len}")
    if len(set(alphabet)) != len(alphabet) or len(alphabet) < 2:
        raise ValueError(f"alphabet must hold at least 2 distinct characters, got {alphabet!r}")
    rng = random.Random(seed)
    total = n_train + n_valid + n_test
    seen: set[str] = set()
    sources: list[str] = []
    for _ in range(100 * total):  # distinct strings; the loop only ends early for impossible sizes
        if len(sources) == total:
            break
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len)))
        if s not in seen:
            seen.add(s)
            sources.append(s)
    if len(sources) < total:
        raise ValueError(f"could not draw {total} distinct strings of length {min_len}..{max_len} "
                         f"over {len(alphabet)} letters")
    targets = [s[::-1] if task == "reverse" else "".join(sorted(s)) for s in sources]
    vocab = Vocab(alphabet)  # every letter, so no test character is <unk>
    splits = []
    for a, b in ((0, n_train), (n_train, n_train + n_valid), (n_train + n_valid, total)):
        src, tgt = sources[a:b], targets[a:b]
        X, X_valid_len = pad_sequences([vocab.encode(s) + [vocab.eos] for s in src], vocab.pad, max_len + 1)
        Y, Y_valid_len = pad_sequences([vocab.encode(t) + [vocab.eos] for t in tgt], vocab.pad, max_len + 1)
        splits.append(DateSplit(src, tgt, [task] * len(src), X, X_valid_len, Y, Y_valid_len))
    return vocab, vocab, splits[0], splits[1], splits[2]
