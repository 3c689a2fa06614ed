"""GRU encoder-decoders with and without Bahdanau attention, their training loop and greedy decoding, chapter 5.

Names follow d2l: ``Seq2SeqEncoder``, ``Seq2SeqDecoder`` (no attention: the encoder's last state is the only
context), ``Seq2SeqAttentionDecoder`` (additive attention over every encoder output at every step),
``EncoderDecoder``, ``train_seq2seq`` and ``predict_seq2seq``. Tensors are batch-first: (batch, time, features).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from tqdm.auto import tqdm

from .attention import AdditiveAttention
from .dates import DateSplit, Vocab
from .utils import one_thread_on_cpu, progress_enabled, try_gpu

__all__ = [
    "Seq2SeqEncoder",
    "Seq2SeqDecoder",
    "Seq2SeqAttentionDecoder",
    "EncoderDecoder",
    "teacher_forcing_inputs",
    "sequence_loss",
    "train_seq2seq",
    "greedy_decode",
    "predict_seq2seq",
    "evaluate_seq2seq",
    "accuracy_by_length",
    "show_alignment",
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


def train_seq2seq(
    net: EncoderDecoder,
    data: DateSplit,
    tgt_vocab: Vocab,
    *,
    num_epochs: int,
    lr: float,
    batch_size: int = 128,
    grad_clip: float = 1.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> list[float]:
    """Minibatch Adam with teacher forcing, gradient clipping and a cosine learning rate (d2l name), chapter 5.

    Shapes: data.X (n, T_src), data.Y (n, T_tgt) -> num_epochs floats (mean training loss per epoch).
    """
    is_int = isinstance(num_epochs, int) and not isinstance(num_epochs, bool)
    if not is_int or num_epochs < 1:
        raise ValueError(f"num_epochs must be an int >= 1, got {num_epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0, got {grad_clip!r}")
    device = torch.device(device) if device is not None else try_gpu()
    net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = num_epochs * math.ceil(len(data) / batch_size)
    # Cosine decay to zero: large steps early, small ones at the end to settle on exact answers.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    generator = torch.Generator().manual_seed(seed)  # the batch order is reproducible and the global RNG untouched
    losses: list[float] = []
    bar = tqdm(range(num_epochs), desc="train", disable=not progress_enabled(progress))
    with one_thread_on_cpu(device):  # small matrices: a second CPU thread costs more than it saves
        for _ in bar:
            total, count = 0.0, 0
            for X, X_valid_len, Y, _ in data.batches(batch_size, shuffle=True, generator=generator):
                X, X_valid_len, Y = X.to(device), X_valid_len.to(device), Y.to(device)  # (b, T_b), (b,), (b, T)
                dec_X = teacher_forcing_inputs(Y, tgt_vocab.bos)  # (b, T_tgt)
                loss = sequence_loss(net(X, dec_X, X_valid_len), Y, tgt_vocab.pad)  # ()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
                optimizer.step()
                schedule.step()
                total, count = total + loss.item() * len(Y), count + len(Y)
            losses.append(total / count)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return losses


@torch.no_grad()
def greedy_decode(
    net: EncoderDecoder, X: Tensor, X_valid_len: Tensor, bos: int, eos: int, num_steps: int, pad: int = 0
) -> tuple[Tensor, Tensor | None]:
    """Greedy decoding of a batch: feed back the most likely token until <eos>, chapter 5.

    Shapes: X (B, T_src), X_valid_len (B,) -> tokens (B, num_steps) long (<eos>, then <pad> after it),
    attention weights (B, num_steps, T_src) or None for a decoder without attention.
    """
    net.eval()
    enc_all_outputs = net.encoder(X, X_valid_len)  # (B, T_src, H), (L, B, H)
    state = net.decoder.init_state(enc_all_outputs, X_valid_len)
    dec_X = torch.full((X.shape[0], 1), bos, dtype=torch.long, device=X.device)  # (B, 1)
    finished = torch.zeros(X.shape[0], dtype=torch.bool, device=X.device)  # (B,)
    tokens, weights = [], []
    for _ in range(num_steps):
        logits, state = net.decoder(dec_X, state)  # (B, 1, V)
        dec_X = logits.argmax(dim=-1)  # (B, 1): the prediction is the next input
        # A sequence that has produced <eos> is done: what the decoder says afterwards is padding.
        tokens.append(dec_X[:, 0].masked_fill(finished, pad))  # (B,)
        if hasattr(net.decoder, "attention_weights"):
            weights.append(net.decoder.attention_weights)  # (B, 1, T_src)
        finished |= dec_X[:, 0] == eos
        if finished.all():
            break
    out = torch.stack(tokens, dim=1)  # (B, steps taken)
    out = F.pad(out, (0, num_steps - out.shape[1]), value=pad)  # (B, num_steps)
    if not weights:
        return out, None
    attn = torch.cat(weights, dim=1)  # (B, steps taken, T_src)
    return out, F.pad(attn, (0, 0, 0, num_steps - attn.shape[1]))  # (B, num_steps, T_src)


def predict_seq2seq(
    net: EncoderDecoder,
    sources: Sequence[str],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    num_steps: int,
    device: torch.device | str | None = None,
) -> tuple[list[str], Tensor | None]:
    """Translate date strings with greedy decoding (d2l's predict_seq2seq, batched), chapter 5.

    Shapes: n strings -> n strings, attention weights (n, num_steps, T_src) or None.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    seqs = [src_vocab.encode(s) + [src_vocab.eos] for s in sources]
    lens = torch.tensor([len(s) for s in seqs])  # (n,)
    X = torch.full((len(seqs), int(lens.max())), src_vocab.pad, dtype=torch.long)  # (n, T_src)
    for i, s in enumerate(seqs):
        X[i, : len(s)] = torch.tensor(s)
    tokens, weights = greedy_decode(
        net, X.to(device), lens.to(device), tgt_vocab.bos, tgt_vocab.eos, num_steps, tgt_vocab.pad
    )
    return [tgt_vocab.decode(row) for row in tokens.cpu()], None if weights is None else weights.cpu()


@torch.no_grad()
def evaluate_seq2seq(
    net: EncoderDecoder,
    data: DateSplit,
    tgt_vocab: Vocab,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> tuple[list[str], Tensor]:
    """Greedy predictions for a whole split and which of them match the target exactly, chapter 5.

    Shapes: data of n examples -> n strings, correct (n,) bool.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    num_steps = data.Y.shape[1]
    predictions: list[str] = []
    with one_thread_on_cpu(device):
        for X, X_valid_len, _, _ in data.batches(batch_size):
            tokens, _ = greedy_decode(
                net, X.to(device), X_valid_len.to(device), tgt_vocab.bos, tgt_vocab.eos, num_steps, tgt_vocab.pad
            )
            predictions += [tgt_vocab.decode(row) for row in tokens.cpu()]  # (b, num_steps) -> b strings
    correct = torch.tensor([p == t for p, t in zip(predictions, data.targets)], dtype=torch.bool)  # (n,)
    return predictions, correct


def accuracy_by_length(correct: Tensor, lengths: Tensor, edges: Sequence[int]) -> tuple[list[str], Tensor, Tensor]:
    """Exact-match accuracy per bucket of source lengths [edges[i], edges[i+1]), chapter 5.

    Shapes: correct (n,) bool, lengths (n,) -> labels (k,) strings, accuracy (k,), counts (k,), k = len(edges) - 1.
    """
    if correct.shape != lengths.shape:
        raise ValueError(f"correct and lengths must have the same shape, got {tuple(correct.shape)} and "
                         f"{tuple(lengths.shape)}")
    if len(edges) < 2 or any(a >= b for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be at least two increasing numbers, got {list(edges)}")
    labels, acc, counts = [], [], []
    for lo, hi in zip(edges, edges[1:]):
        inside = (lengths >= lo) & (lengths < hi)  # (n,)
        labels.append(f"{lo}-{hi - 1}")
        counts.append(int(inside.sum()))
        acc.append(correct[inside].float().mean().item() if inside.any() else float("nan"))
    return labels, torch.tensor(acc), torch.tensor(counts)


def show_alignment(
    weights: Tensor, src_tokens: Sequence[str], tgt_tokens: Sequence[str], *, ax: Axes | None = None,
    cmap: str = "Reds", title: str | None = None,
) -> Axes:
    """Heat map of one example's attention weights with the characters as tick labels, chapter 5.

    Shapes: weights (T_out, T_in) with T_out = len(tgt_tokens), T_in = len(src_tokens).
    """
    w = weights.detach().cpu().numpy() if isinstance(weights, Tensor) else np.asarray(weights, dtype=float)
    if w.shape != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"weights must have shape (len(tgt_tokens), len(src_tokens)) = "
                         f"({len(tgt_tokens)}, {len(src_tokens)}), got {w.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.22 * len(src_tokens) + 1, 0.22 * len(tgt_tokens) + 0.8))
    ax.imshow(w, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    show = {" ": "␣", "<eos>": "⏎"}  # a space tick would be invisible
    ax.set_xticks(range(len(src_tokens)), [show.get(t, t) for t in src_tokens], fontsize=7)
    ax.set_yticks(range(len(tgt_tokens)), [show.get(t, t) for t in tgt_tokens], fontsize=7)
    ax.set_xlabel("input characters")
    ax.set_ylabel("output characters")
    if title is not None:
        ax.set_title(title, fontsize=8)
    return ax
