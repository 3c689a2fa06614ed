"""GRU encoder-decoders with and without Bahdanau attention, and their loss under teacher forcing, chapter 5.

Names follow d2l: ``Seq2SeqEncoder``, ``Seq2SeqDecoder`` (no attention: the encoder's last state is the only
context), ``Seq2SeqAttentionDecoder`` (additive attention over every encoder output at every step),
``EncoderDecoder``. Tensors are batch-first: (batch, time, features). Training is ``training.train_seq2seq``,
decoding ``decoding.greedy_decode`` and ``decoding.predict_seq2seq``.
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
    """GRU encoder: embeds the source characters and returns every hidden state (d2l name), chapter 5.

    Shapes: X (B, T) long, valid_lens (B,) -> outputs (B, T, H), state (num_layers, B, H).

    With bidirectional=True, a forward and a backward GRU of H/2 units each read the source; their outputs are
    concatenated, so each position's output describes the character in its context on both sides.
    """

    def __init__(
        self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int = 1, dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        if bidirectional and num_hiddens % 2:
            raise ValueError(f"a bidirectional encoder splits num_hiddens in two, so it must be even, "
                             f"got {num_hiddens}")
        self.num_layers, self.bidirectional = num_layers, bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_size)
        size = num_hiddens // 2 if bidirectional else num_hiddens
        self.rnn = nn.GRU(embed_size, size, num_layers, dropout=dropout, batch_first=True,
                          bidirectional=bidirectional)

    def forward(self, X: Tensor, valid_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        embs = self.embedding(X)  # (B, T, E)
        if valid_lens is None:
            outputs, state = self.rnn(embs)  # (B, T, H), (L * dirs, B, H / dirs)
        else:
            # Packing stops each sequence at its own length, so the final state is the state after the last real
            # character and never sees the padding (the no-attention decoder depends on that state alone).
            packed = pack_padded_sequence(embs, valid_lens.cpu(), batch_first=True, enforce_sorted=False)
            outputs, state = self.rnn(packed)  # packed outputs, state (L * dirs, B, H / dirs)
            outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=X.shape[1])  # (B, T, H)
        if self.bidirectional:
            # Per layer, the forward GRU's last state (end of the source) beside the backward GRU's (its start).
            L, B = self.num_layers, X.shape[0]
            state = state.view(L, 2, B, -1).permute(0, 2, 1, 3).reshape(L, B, -1)  # (L, B, H)
        return outputs, state


def _check_encoder_state(enc_all_outputs: tuple[Tensor, Tensor], num_layers: int, num_hiddens: int) -> None:
    """The decoder starts from the encoder's state, so their layers and widths must agree."""
    enc_outputs, state = enc_all_outputs
    if state.dim() != 3 or state.shape[0] != num_layers or state.shape[2] != num_hiddens:
        raise ValueError(
            f"the encoder's state must have shape (num_layers, B, num_hiddens) = ({num_layers}, B, {num_hiddens}) "
            f"to start this decoder, got {tuple(state.shape)}; give encoder and decoder the same num_layers and "
            "num_hiddens (a bidirectional encoder splits num_hiddens between its two directions)"
        )
    if enc_outputs.shape[-1] != num_hiddens:
        raise ValueError(f"the encoder outputs must have {num_hiddens} features, got {tuple(enc_outputs.shape)}")


class Seq2SeqDecoder(nn.Module):
    """GRU decoder without attention: every step sees the same context, the encoder's last state (d2l), chapter 5.

    Shapes: X (B, T_dec) long, state -> logits (B, T_dec, V), state.
    """

    def __init__(
        self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.num_layers, self.num_hiddens = num_layers, num_hiddens
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout, batch_first=True)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_all_outputs: tuple[Tensor, Tensor], enc_valid_lens: Tensor | None = None) -> tuple:
        """(context (B, H), hidden (L, B, H)): the encoder's last top-layer state is the fixed context."""
        _check_encoder_state(enc_all_outputs, self.num_layers, self.num_hiddens)
        _, enc_state = enc_all_outputs  # (L, B, H)
        return enc_state[-1], enc_state

    def forward(self, X: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        context, hidden = state  # (B, H), (L, B, H)
        embs = self.embedding(X)  # (B, T_dec, E)
        # The context stays the encoder's summary at every step (it is not the decoder's own changing state).
        ctx = context.unsqueeze(1).expand(-1, X.shape[1], -1)  # (B, T_dec, H)
        outputs, hidden = self.rnn(torch.cat((embs, ctx), dim=-1), hidden)  # (B, T_dec, H), (L, B, H)
        return self.dense(outputs), (context, hidden)  # (B, T_dec, V)


class Seq2SeqAttentionDecoder(nn.Module):
    """GRU decoder with Bahdanau (additive) attention over the encoder outputs (d2l name), chapter 5.

    Shapes: X (B, T_dec) long, state -> logits (B, T_dec, V), state; attention_weights (B, T_dec, T_src).
    """

    def __init__(
        self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.num_layers, self.num_hiddens = num_layers, num_hiddens
        # Sizes given, so the attention's weights exist before the optimizer is built (no lazy layers).
        self.attention = AdditiveAttention(num_hiddens, dropout, key_size=num_hiddens, query_size=num_hiddens)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout, batch_first=True)
        # As in Bahdanau et al. (2015), the output layer sees the context too: a copied digit goes straight out.
        self.dense = nn.Linear(2 * num_hiddens, vocab_size)
        self._attention_weights: list[Tensor] = []

    def init_state(self, enc_all_outputs: tuple[Tensor, Tensor], enc_valid_lens: Tensor | None = None) -> tuple:
        """(enc_outputs (B, T_src, H), hidden (L, B, H), enc_valid_lens (B,)): keys, values and the start state."""
        _check_encoder_state(enc_all_outputs, self.num_layers, self.num_hiddens)
        enc_outputs, hidden = enc_all_outputs  # (B, T_src, H), (L, B, H)
        return enc_outputs, hidden, enc_valid_lens

    def forward(self, X: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        enc_outputs, hidden, enc_valid_lens = state  # (B, T_src, H), (L, B, H), (B,)
        embs = self.embedding(X)  # (B, T_dec, E)
        outputs, self._attention_weights = [], []
        for t in range(X.shape[1]):
            # The query is the decoder's state before step t: "where do I look to write the next character?"
            query = hidden[-1].unsqueeze(1)  # (B, 1, H)
            context = self.attention(query, enc_outputs, enc_outputs, enc_valid_lens)  # (B, 1, H)
            x = torch.cat((embs[:, t : t + 1], context), dim=-1)  # (B, 1, E + H)
            out, hidden = self.rnn(x, hidden)  # (B, 1, H), (L, B, H)
            outputs.append(torch.cat((out, context), dim=-1))  # (B, 1, 2H)
            self._attention_weights.append(self.attention.attention_weights)  # (B, 1, T_src)
        logits = self.dense(torch.cat(outputs, dim=1))  # (B, T_dec, 2H) -> (B, T_dec, V)
        return logits, (enc_outputs, hidden, enc_valid_lens)

    @property
    def attention_weights(self) -> Tensor:
        """Weights of the last forward call, one distribution over the source per output step.

        Shapes: (B, T_dec, T_src).
        """
        if not self._attention_weights:
            raise ValueError("no attention weights yet: call the decoder on a batch first")
        return torch.cat(self._attention_weights, dim=1)


class EncoderDecoder(nn.Module):
    """An encoder and a decoder trained together (d2l name), chapter 5.

    Shapes: enc_X (B, T_src), dec_X (B, T_dec), enc_valid_lens (B,) -> logits (B, T_dec, V).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, enc_X: Tensor, dec_X: Tensor, enc_valid_lens: Tensor | None = None) -> Tensor:
        enc_all_outputs = self.encoder(enc_X, enc_valid_lens)  # (B, T_src, H), (L, B, H)
        dec_state = self.decoder.init_state(enc_all_outputs, enc_valid_lens)
        return self.decoder(dec_X, dec_state)[0]  # (B, T_dec, V)


def teacher_forcing_inputs(Y: Tensor, bos: int) -> Tensor:
    """Decoder inputs under teacher forcing: <bos>, then the target shifted right by one, chapter 5.

    Shapes: Y (B, T) long -> (B, T) long.
    """
    if Y.dim() != 2:
        raise ValueError(f"Y must be a (batch, time) tensor of indices, got shape {tuple(Y.shape)}")
    bos_column = torch.full((Y.shape[0], 1), bos, dtype=Y.dtype, device=Y.device)  # (B, 1)
    # Step t sees the true character t - 1, never character t itself (which it must predict).
    return torch.cat((bos_column, Y[:, :-1]), dim=1)  # (B, T)


def sequence_loss(logits: Tensor, Y: Tensor, pad: int) -> Tensor:
    """Mean cross-entropy over the real target tokens, <pad> positions left out (d2l's masked loss), chapter 5.

    Shapes: logits (B, T, V), Y (B, T) long -> ().
    """
    if logits.shape[:2] != Y.shape:
        raise ValueError(f"logits (B, T, V) must match Y (B, T), got {tuple(logits.shape)} and {tuple(Y.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1), ignore_index=pad)
