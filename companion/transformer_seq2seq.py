"""The Transformer encoder-decoder (chapter 9): causal and encoder-decoder attention.

The encoder is chapter 8's ``TransformerEncoder``. The decoder block has three
sublayers: masked (causal) self-attention over the target written so far,
encoder-decoder attention (queries from the decoder, keys and values from the encoder's
outputs) and the position-wise FFN, each with chapter 8's residual + norm step
(``AddNorm.sublayer``, post-norm or pre-norm). Names follow d2l
(``TransformerDecoderBlock``, ``TransformerDecoder``, ``init_state``); the decoder
plugs into chapter 5's ``EncoderDecoder``, ``train_seq2seq``, ``greedy_decode`` and
``evaluate_seq2seq``. Decoding can keep the projected keys and values of the positions
already written (``multihead.KVCache``), so that each step projects one new token
instead of the whole prefix. Decoding is in ``decoding``, chapter 9's measurements of
cost in ``experiments.cost``, its tasks in ``tasks``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from .multihead import KVCache, MultiHeadAttention
from .positional import position_encoding
from .seq2seq import EncoderDecoder
from .transformer import (AddNorm, PositionWiseFFN, TransformerEncoder, check_token_ids,
                          embed_tokens, token_embedding)
from .utils import check_positive_int

__all__ = [
    "causal_mask",
    "TransformerDecoderBlock",
    "TransformerDecoderState",
    "TransformerDecoder",
    "TransformerEncoderDecoder",
]


def causal_mask(
    n: int, n_k: Optional[int] = None, device: torch.device | str | None = None
) -> Tensor:
    """Bool mask, True = may attend: query i sees keys 0 .. i (chapter 9, eq. causal).

    Shapes: -> (n, n_k) bool, n_k = n by default. With n_k > n the n queries are the
    last n of n_k positions (the first n_k - n are already in a cache): query i sees
    keys 0 .. n_k - n + i.
    """
    check_positive_int("n", n)
    n_k = n if n_k is None else n_k
    check_positive_int("n_k", n_k)
    if n_k < n:
        raise ValueError(
            f"n_k counts the cached positions plus the n new ones, so n_k >= n, "
            f"got n={n}, n_k={n_k}"
        )
    # Each query's absolute position, and every key's.
    rows = torch.arange(n, device=device)[:, None] + (n_k - n)  # (n, 1)
    cols = torch.arange(n_k, device=device)[None, :]  # (1, n_k)
    return cols <= rows  # (n, n_k): lower triangle, shifted right by the cache length


class TransformerDecoderBlock(nn.Module):
    """Causal self-attention, enc-dec attention, FFN, each with add & norm (ch. 9; d2l).

    Shapes: forward(X (B, n, d), enc_outputs (B, T_src, d), enc_valid_lens None or
    (B,), cache None or (KVCache, KVCache)) -> (B, n, d). Without a cache X is the
    whole target so far; with one, X holds the new positions only and the caches
    (self-attention, encoder-decoder attention) are extended.
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
        sizes = dict(bias=use_bias, query_size=d, key_size=d, value_size=d)
        self.attention1 = MultiHeadAttention(d, num_heads, dropout, **sizes)  # causal
        self.addnorm1 = AddNorm(d, dropout)
        self.attention2 = MultiHeadAttention(d, num_heads, dropout, **sizes)  # enc-dec
        self.addnorm2 = AddNorm(d, dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, d, ffn_num_inputs=d)
        self.addnorm3 = AddNorm(d, dropout)

    def forward(
        self,
        X: Tensor,
        enc_outputs: Tensor,
        enc_valid_lens: Optional[Tensor] = None,
        cache: Optional[tuple[KVCache, KVCache]] = None,
    ) -> Tensor:
        """One decoder block.

        Shapes: X (B, n, d), enc_outputs (B, T_src, d) -> (B, n, d).
        """
        self_cache, cross_cache = cache if cache is not None else (None, None)
        n, t = X.shape[1], len(self_cache) if self_cache is not None else 0
        # (1, n, t + n), shared by the batch and the heads; t positions are cached.
        causal = causal_mask(n, t + n, device=X.device)[None]
        # The encoder's keys and values are projected once, at the first step.
        memory = None if cross_cache is not None and len(cross_cache) else enc_outputs

        def attend_to_target(H: Tensor) -> Tensor:
            return self.attention1(H, H, H, causal, cache=self_cache)

        def attend_to_source(H: Tensor) -> Tensor:
            return self.attention2(H, memory, memory, enc_valid_lens, cache=cross_cache)

        X = self.addnorm1.sublayer(X, attend_to_target, self.norm_first)
        X = self.addnorm2.sublayer(X, attend_to_source, self.norm_first)
        return self.addnorm3.sublayer(X, self.ffn, self.norm_first)


@dataclass
class TransformerDecoderState:
    """What the decoder carries from one call to the next (chapter 9).

    Shapes: enc_outputs (B, T_src, d); enc_valid_lens None or (B,); caches None (no
    cache) or one (self-attention, encoder-decoder attention) pair of KVCache per block;
    offset = positions decoded so far.
    """

    enc_outputs: Tensor
    enc_valid_lens: Optional[Tensor]
    caches: Optional[list[tuple[KVCache, KVCache]]]
    offset: int = 0


class TransformerDecoder(nn.Module):
    """Embedding, positions, num_blks decoder blocks, a linear read-out (ch. 9; d2l).

    Shapes: forward(X (B, n) token ids, state) -> logits (B, n, V), state.
    positions: "sinusoidal" (chapter 7's table) or "learned" (a table of max_len rows,
    started at the tokens' scale). ``attention_weights`` is the last block's
    encoder-decoder attention averaged over the heads, (B, n, T_src), the counterpart
    of chapter 5's alignment.
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
        # As the encoder's (chapters 7, 8).
        self.embedding = token_embedding(vocab_size, num_hiddens)
        self.pos_encoding = position_encoding(positions, num_hiddens, dropout, max_len)
        block = dict(num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                     num_heads=num_heads, dropout=dropout, use_bias=use_bias,
                     norm_first=norm_first)
        self.blks = nn.ModuleList(
            TransformerDecoderBlock(**block) for _ in range(num_blks)
        )
        self.final_norm: nn.Module = (nn.LayerNorm(num_hiddens) if norm_first
                                      else nn.Identity())
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(
        self,
        enc_outputs: Tensor,
        enc_valid_lens: Optional[Tensor] = None,
        use_cache: bool = True,
    ) -> TransformerDecoderState:
        """The start state: the encoder's outputs and, with use_cache, empty caches.

        Shapes: enc_outputs (B, T_src, d), enc_valid_lens None or (B,). With use_cache
        (the default, so that chapter 5's greedy_decode can feed one token per call)
        each call continues where the last one stopped; without, each call must hold
        the whole target from position 0. d2l's name.
        """
        _check_encoder_outputs(enc_outputs, self.num_hiddens)
        caches = [(KVCache(), KVCache()) for _ in self.blks] if use_cache else None
        return TransformerDecoderState(enc_outputs, enc_valid_lens, caches)

    def forward(
        self, X: Tensor, state: TransformerDecoderState
    ) -> tuple[Tensor, TransformerDecoderState]:
        """Decode new positions: the whole target, or with a cache the next token(s).

        Shapes: X (B, n) -> logits (B, n, V), the state (its caches extended).
        """
        _check_decoder_input(X, state)
        offset = state.offset if state.caches is not None else 0
        # New tokens sit at positions offset .. offset + n - 1: the cache holds the
        # ones before.
        H = embed_tokens(self.embedding, self.pos_encoding, X, offset)  # (B, n, d)
        for i, blk in enumerate(self.blks):
            cache = None if state.caches is None else state.caches[i]
            H = blk(H, state.enc_outputs, state.enc_valid_lens, cache)
        if state.caches is not None:
            state.offset += X.shape[1]
        return self.dense(self.final_norm(H)), state  # (B, n, V)

    @property
    def self_attention_weights(self) -> list[Tensor]:
        """Per block, the causal self-attention weights of the last call.

        Shapes: (B, h, n, t).
        """
        return [blk.attention1.attention_weights for blk in self.blks]

    @property
    def cross_attention_weights(self) -> list[Tensor]:
        """Per block, the encoder-decoder weights of the last call.

        Shapes: (B, h, n, T_src).
        """
        return [blk.attention2.attention_weights for blk in self.blks]

    @property
    def attention_weights(self) -> Tensor:
        """The last block's encoder-decoder weights, mean over heads.

        Shapes: (B, n, T_src).
        """
        return self.blks[-1].attention2.attention_weights.mean(dim=1)


def _check_encoder_outputs(enc_outputs: object, d: int) -> None:
    if (not isinstance(enc_outputs, Tensor) or enc_outputs.dim() != 3
            or enc_outputs.shape[-1] != d):
        shape = getattr(enc_outputs, "shape", type(enc_outputs).__name__)
        raise ValueError(f"enc_outputs must be (B, T_src, {d}), got {shape}")


def _check_decoder_input(X: object, state: TransformerDecoderState) -> None:
    check_token_ids(X)
    if X.shape[0] != state.enc_outputs.shape[0]:  # type: ignore[union-attr]
        raise ValueError(
            f"X and the encoder outputs must have the same batch size, got X "
            f"{tuple(X.shape)} and enc_outputs {tuple(state.enc_outputs.shape)}"
        )


class TransformerEncoderDecoder(EncoderDecoder):
    """Chapter 8's encoder and a TransformerDecoder, trained together (chapter 9).

    Shapes: forward(enc_X (B, T_src), dec_X (B, T_tgt), enc_valid_lens (B,))
    -> (B, T_tgt, V_tgt). The two stacks share the sizes; the decoder has dec_num_blks
    blocks (num_blks if None). Dropout is off by default: the tasks here are small and
    noise-free. positions="learned" gives both stacks a learned table (see
    TransformerDecoder) in place of the sinusoidal one.
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
        sizes = dict(num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                     num_heads=num_heads, dropout=dropout, norm_first=norm_first,
                     max_len=max_len, positions=positions)
        encoder = TransformerEncoder(src_vocab_size, num_blks=num_blks, **sizes)
        dec_blks = num_blks if dec_num_blks is None else dec_num_blks
        decoder = TransformerDecoder(tgt_vocab_size, num_blks=dec_blks, **sizes)
        super().__init__(encoder, decoder)

    def forward(
        self, enc_X: Tensor, dec_X: Tensor, enc_valid_lens: Optional[Tensor] = None
    ) -> Tensor:
        """Teacher forcing: every target position in one pass, under the causal mask.

        Shapes: enc_X (B, T_src), dec_X (B, T_tgt) -> logits (B, T_tgt, V_tgt).
        """
        enc_outputs = self.encoder(enc_X, enc_valid_lens)  # (B, T_src, d)
        state = self.decoder.init_state(enc_outputs, enc_valid_lens, use_cache=False)
        return self.decoder(dec_X, state)[0]
