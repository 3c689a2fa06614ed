"""GRU encoder-decoders with and without Bahdanau attention, and their loss (chapter 5).

Names follow d2l: ``Seq2SeqEncoder``, ``Seq2SeqDecoder`` (no attention: the encoder's
last state is the only context), ``Seq2SeqAttentionDecoder`` (additive attention over
every encoder output at every step), ``EncoderDecoder``. Tensors are batch-first:
(B, T, features). Training is ``training.train_seq2seq``, decoding
``decoding.greedy_decode`` and ``decoding.predict_seq2seq``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .attention import AdditiveAttention

__all__ = [
    "Seq2SeqEncoder",
    "Seq2SeqDecoder",
    "Seq2SeqAttentionDecoder",
    "EncoderDecoder",
    "teacher_forcing_inputs",
    "sequence_loss",
]


class Seq2SeqEncoder(nn.Module):
    """GRU encoder: embeds the source and returns every hidden state (chapter 5; d2l).

    Shapes: X (B, T_src) long, valid_lens (B,) -> outputs (B, T_src, H),
    state (L, B, H), with H = num_hiddens and L = num_layers. With
    bidirectional=True, a forward and a backward GRU of H/2 units each read the
    source; their outputs are concatenated, so each position's output describes the
    character in its context on both sides.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        num_hiddens: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        if bidirectional and num_hiddens % 2:
            raise ValueError(
                "a bidirectional encoder splits num_hiddens in two, so it must be "
                f"even, got {num_hiddens}"
            )
        self.num_layers, self.bidirectional = num_layers, bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_size)
        size = num_hiddens // 2 if bidirectional else num_hiddens
        self.rnn = nn.GRU(embed_size, size, num_layers, dropout=dropout,
                          batch_first=True, bidirectional=bidirectional)

    def forward(
        self, X: Tensor, valid_lens: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        embs = self.embedding(X)  # (B, T_src, E)
        if valid_lens is None:
            outputs, state = self.rnn(embs)  # (B, T_src, H), (L * dirs, B, H / dirs)
        else:
            # Packing stops each sequence at its own length, so the final state is
            # the state after the last real character and never sees the padding
            # (the no-attention decoder depends on that state alone).
            packed = pack_padded_sequence(embs, valid_lens.cpu(), batch_first=True,
                                          enforce_sorted=False)
            outputs, state = self.rnn(packed)  # state (L * dirs, B, H / dirs)
            outputs, _ = pad_packed_sequence(outputs, batch_first=True,
                                             total_length=X.shape[1])  # (B, T_src, H)
        if self.bidirectional:
            # Per layer, the forward GRU's last state (end of the source) beside the
            # backward GRU's (its start).
            L, B = self.num_layers, X.shape[0]
            state = state.view(L, 2, B, -1).permute(0, 2, 1, 3).reshape(L, B, -1)
        return outputs, state  # (B, T_src, H), (L, B, H)


def _check_encoder_state(
    enc_all_outputs: tuple[Tensor, Tensor], num_layers: int, num_hiddens: int
) -> None:
    """The decoder starts from the encoder's state: layers and widths must agree."""
    enc_outputs, state = enc_all_outputs
    L, H = num_layers, num_hiddens
    if state.dim() != 3 or state.shape[0] != L or state.shape[2] != H:
        raise ValueError(
            f"the encoder's state must have shape (num_layers, B, num_hiddens) = "
            f"({num_layers}, B, {num_hiddens}) to start this decoder, got "
            f"{tuple(state.shape)}; give encoder and decoder the same num_layers and "
            "num_hiddens (a bidirectional encoder splits num_hiddens between its two "
            "directions)"
        )
    if enc_outputs.shape[-1] != num_hiddens:
        raise ValueError(
            f"the encoder outputs must have {num_hiddens} features, "
            f"got {tuple(enc_outputs.shape)}"
        )


class Seq2SeqDecoder(nn.Module):
    """GRU decoder without attention: the encoder's last state is the context (ch. 5).

    Shapes: X (B, T_tgt) long, state -> logits (B, T_tgt, V), state.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        num_hiddens: int,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_layers, self.num_hiddens = num_layers, num_hiddens
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers,
                          dropout=dropout, batch_first=True)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(
        self,
        enc_all_outputs: tuple[Tensor, Tensor],
        enc_valid_lens: Tensor | None = None,
    ) -> tuple:
        """(context, hidden): the encoder's last top-layer state is the fixed context.

        Shapes: -> (B, H), (L, B, H).
        """
        _check_encoder_state(enc_all_outputs, self.num_layers, self.num_hiddens)
        _, enc_state = enc_all_outputs  # (L, B, H)
        return enc_state[-1], enc_state

    def forward(
        self, X: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        context, hidden = state  # (B, H), (L, B, H)
        embs = self.embedding(X)  # (B, T_tgt, E)
        # The context stays the encoder's summary at every step (it is not the
        # decoder's own changing state).
        ctx = context.unsqueeze(1).expand(-1, X.shape[1], -1)  # (B, T_tgt, H)
        # (B, T_tgt, H), (L, B, H)
        outputs, hidden = self.rnn(torch.cat((embs, ctx), dim=-1), hidden)
        return self.dense(outputs), (context, hidden)  # (B, T_tgt, V)


class Seq2SeqAttentionDecoder(nn.Module):
    """GRU decoder with Bahdanau (additive) attention over the encoder (ch. 5; d2l).

    Shapes: X (B, T_tgt) long, state -> logits (B, T_tgt, V), state;
    attention_weights (B, T_tgt, T_src).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        num_hiddens: int,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_layers, self.num_hiddens = num_layers, num_hiddens
        # Sizes given, so the attention's weights exist before the optimizer is built.
        self.attention = AdditiveAttention(num_hiddens, dropout, key_size=num_hiddens,
                                           query_size=num_hiddens)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers,
                          dropout=dropout, batch_first=True)
        # As in Bahdanau et al. (2015), the output layer sees the context too: a
        # copied digit goes straight out.
        self.dense = nn.Linear(2 * num_hiddens, vocab_size)
        self._attention_weights: list[Tensor] = []

    def init_state(
        self,
        enc_all_outputs: tuple[Tensor, Tensor],
        enc_valid_lens: Tensor | None = None,
    ) -> tuple:
        """(enc_outputs, hidden, enc_valid_lens): keys and values, and the start state.

        Shapes: -> (B, T_src, H), (L, B, H), (B,).
        """
        _check_encoder_state(enc_all_outputs, self.num_layers, self.num_hiddens)
        enc_outputs, hidden = enc_all_outputs  # (B, T_src, H), (L, B, H)
        return enc_outputs, hidden, enc_valid_lens

    def forward(self, X: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        enc_outputs, hidden, enc_valid_lens = state  # (B, T_src, H), (L, B, H), (B,)
        embs = self.embedding(X)  # (B, T_tgt, E)
        outputs, self._attention_weights = [], []
        for t in range(X.shape[1]):
            # The query is the decoder's state before step t: "where do I look to
            # write the next character?"
            query = hidden[-1].unsqueeze(1)  # (B, 1, H)
            context = self.attention(query, enc_outputs, enc_outputs,
                                     enc_valid_lens)  # (B, 1, H)
            x = torch.cat((embs[:, t : t + 1], context), dim=-1)  # (B, 1, E + H)
            out, hidden = self.rnn(x, hidden)  # (B, 1, H), (L, B, H)
            outputs.append(torch.cat((out, context), dim=-1))  # (B, 1, 2H)
            self._attention_weights.append(self.attention.attention_weights)
        logits = self.dense(torch.cat(outputs, dim=1))  # (B, T_tgt, V)
        return logits, (enc_outputs, hidden, enc_valid_lens)

    @property
    def attention_weights(self) -> Tensor:
        """Weights of the last forward call, a distribution over the source per step.

        Shapes: (B, T_tgt, T_src).
        """
        if not self._attention_weights:
            raise ValueError(
                "no attention weights yet: call the decoder on a batch first"
            )
        return torch.cat(self._attention_weights, dim=1)


class EncoderDecoder(nn.Module):
    """An encoder and a decoder trained together (chapter 5; d2l).

    Shapes: enc_X (B, T_src), dec_X (B, T_tgt), enc_valid_lens (B,)
    -> logits (B, T_tgt, V).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(
        self, enc_X: Tensor, dec_X: Tensor, enc_valid_lens: Tensor | None = None
    ) -> Tensor:
        enc_all_outputs = self.encoder(enc_X, enc_valid_lens)  # outputs and state
        dec_state = self.decoder.init_state(enc_all_outputs, enc_valid_lens)
        return self.decoder(dec_X, dec_state)[0]  # (B, T_tgt, V)


def teacher_forcing_inputs(Y: Tensor, bos: int) -> Tensor:
    """Decoder inputs under teacher forcing: <bos>, then Y shifted right (chapter 5).

    Shapes: Y (B, T_tgt) long -> (B, T_tgt) long.
    """
    if Y.dim() != 2:
        raise ValueError(
            f"Y must be a (B, T) tensor of indices, got shape {tuple(Y.shape)}"
        )
    bos_column = torch.full((Y.shape[0], 1), bos, dtype=Y.dtype, device=Y.device)
    # Step t sees the true character t - 1, never character t itself (which it must
    # predict).
    return torch.cat((bos_column, Y[:, :-1]), dim=1)  # (B, T_tgt)


def sequence_loss(logits: Tensor, Y: Tensor, pad: int) -> Tensor:
    """Mean cross-entropy over the real target tokens, <pad> left out (chapter 5; d2l).

    Shapes: logits (B, T_tgt, V), Y (B, T_tgt) long -> ().
    """
    if logits.shape[:2] != Y.shape:
        raise ValueError(
            f"logits (B, T, V) must match Y (B, T), got {tuple(logits.shape)} and "
            f"{tuple(Y.shape)}"
        )
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1),
                           ignore_index=pad)
