"""The Transformer block (chapter 8): position-wise FFN, add & norm, encoder blocks in post-norm and pre-norm form.

Names and call signatures follow d2l 1.0 (``PositionWiseFFN``, ``AddNorm``,
``TransformerEncoderBlock``, ``TransformerEncoder``). The flag ``norm_first``
means what it means in ``torch.nn.TransformerEncoderLayer``: ``False`` is the
post-norm block of the 2017 paper and of d2l, ``True`` the pre-norm block of
GPT-2 and most models since. ``TransformerEncoder`` initialises its embedding
small, N(0, 1/d), before the sqrt(d) scaling, as the paper's code does (chapter 7
measures why). The second half of the module holds chapter 8's experiment: a
synthetic tagging task (ranks), a minibatch trainer, gradient norms per block.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .multihead import MultiHeadAttention, load_torch_mha_weights
from .positional import position_encoding
from .utils import check_positive_int, one_thread_on_cpu, progress_enabled, try_gpu

__all__ = [
    "PositionWiseFFN",
    "AddNorm",
    "TransformerEncoderBlock",
    "token_embedding",
    "TransformerEncoder",
    "load_torch_encoder_layer",
    "make_rank_data",
    "TransformerTagger",
    "block_gradient_norms",
    "train_tagger",
    "tagging_accuracy",
]


def _check_dropout(dropout: float) -> None:
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


class PositionWiseFFN(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, the same two layers at every position (chapter 8, eq. ffn; d2l name).

    Shapes: forward(X (..., ffn_num_inputs)) -> (..., ffn_num_outputs), usually (batch, n, d) -> (batch, n, d).
    Without ffn_num_inputs the first layer is created on the first call (LazyLinear, as in d2l 1.0).
    """

    def __init__(self, ffn_num_hiddens: int, ffn_num_outputs: int, ffn_num_inputs: Optional[int] = None) -> None:
        super().__init__()
        check_positive_int("ffn_num_hiddens", ffn_num_hiddens)
        check_positive_int("ffn_num_outputs", ffn_num_outputs)
        if ffn_num_inputs is None:
            self.dense1: nn.Module = nn.LazyLinear(ffn_num_hiddens)
        else:
            check_positive_int("ffn_num_inputs", ffn_num_inputs)
            self.dense1 = nn.Linear(ffn_num_inputs, ffn_num_hiddens)
        self.relu = nn.ReLU()
        self.dense2 = nn.Linear(ffn_num_hiddens, ffn_num_outputs)

    def forward(self, X: Tensor) -> Tensor:
        """Apply the two layers to the last axis; every other axis (batch, position) is left alone.

        Shapes: X (..., ffn_num_inputs) -> (..., ffn_num_outputs).
        """
        if not isinstance(X, Tensor) or X.dim() < 1:
            raise ValueError(f"X must be a tensor (..., features), got {getattr(X, 'shape', type(X).__name__)}")
        if isinstance(self.dense1, nn.Linear) and not isinstance(self.dense1, nn.LazyLinear) \
                and X.shape[-1] != self.dense1.in_features:
            raise ValueError(
                f"X must have {self.dense1.in_features} features (last dim), got X {tuple(X.shape)}"
            )
        # nn.Linear multiplies the last axis only, so position i's output depends on position i's input
        # alone: nothing flows between positions here (attention's job).
        return self.dense2(self.relu(self.dense1(X)))


class AddNorm(nn.Module):
    """Residual connection, then layer normalisation: LayerNorm(X + dropout(Y)) (chapter 8, eq. post-pre; d2l name).

    Shapes: forward(X (..., *norm_shape), Y like X) -> like X. Y is the sublayer's output for input X.
    """

    def __init__(self, norm_shape: int | tuple[int, ...], dropout: float) -> None:
        super().__init__()
        _check_dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(norm_shape)

    def forward(self, X: Tensor, Y: Tensor) -> Tensor:
        """Add the sublayer's output to its input, then normalise each position's features.

        Shapes: X (..., *norm_shape), Y like X -> like X.
        """
        if not isinstance(X, Tensor) or not isinstance(Y, Tensor) or X.shape != Y.shape:
            raise ValueError(
                "X (the sublayer's input) and Y (its output) must be tensors of the same shape, got "
                f"X {getattr(X, 'shape', type(X).__name__)} and Y {getattr(Y, 'shape', type(Y).__name__)}"
            )
        return self.ln(self.dropout(Y) + X)


class TransformerEncoderBlock(nn.Module):
    """Self-attention, then a position-wise FFN, each with a residual and a LayerNorm (chapter 8; d2l name).

    Shapes: forward(X (batch, n, num_hiddens), valid_lens None or (batch,)) -> (batch, n, num_hiddens).
    norm_first=False (post-norm, the paper, d2l): X <- LN(X + f(X)) for each sublayer f;
    norm_first=True (pre-norm): X <- X + f(LN(X)). Both use the same parameters.
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
        _check_dropout(dropout)
        self.norm_first = bool(norm_first)
        # Sizes given, so every weight exists at once (countable, copyable) instead of lazily.
        self.attention = MultiHeadAttention(
            num_hiddens, num_heads, dropout, use_bias, num_hiddens, num_hiddens, num_hiddens
        )
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens, num_hiddens)
        self.addnorm2 = AddNorm(num_hiddens, dropout)

    def forward(self, X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
        """One block: attention mixes positions, the FFN transforms each position.

        Shapes: X (batch, n, num_hiddens), valid_lens None or (batch,) -> (batch, n, num_hiddens).
        """
        if self.norm_first:
            # Pre-norm: the same LayerNorms move to the sublayers' inputs. The sum X + ... is never
            # normalised, so an identity path runs from the last block back to the first.
            H = self.addnorm1.ln(X)
            X = X + self.addnorm1.dropout(self.attention(H, H, H, valid_lens))
            H = self.addnorm2.ln(X)
            return X + self.addnorm2.dropout(self.ffn(H))
        # Post-norm: every residual sum goes through a LayerNorm before the next sublayer.
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))


def token_embedding(vocab_size: int, num_hiddens: int) -> nn.Embedding:
    """The token table of a Transformer stack (chapters 8-9).  Shapes: weight (vocab_size, num_hiddens).

    Entries are drawn from N(0, 1/d), so that after the sqrt(d) scaling each coordinate has variance 1, like the
    paper's setup (nn.Embedding's own N(0, 1) times sqrt(d) would give rows of norm d; chapter 7).
    """
    check_positive_int("vocab_size", vocab_size)
    embedding = nn.Embedding(vocab_size, num_hiddens)
    nn.init.normal_(embedding.weight, std=num_hiddens**-0.5)
    return embedding


def check_token_ids(X: object) -> None:
    """Raise ValueError unless X is a 2-D integer tensor of token ids (batch, n)."""
    if not isinstance(X, Tensor) or X.dim() != 2 or X.is_floating_point():
        raise ValueError(
            f"X must be a 2-D tensor of token ids (batch, n), got {getattr(X, 'shape', type(X).__name__)}"
            + (f" of dtype {X.dtype}" if isinstance(X, Tensor) else "")
        )


class TransformerEncoder(nn.Module):
    """Token embedding times sqrt(d), positional encoding, then num_blks encoder blocks (chapter 8; d2l name).

    Shapes: forward(X (batch, n) token ids, valid_lens None or (batch,)) -> (batch, n, num_hiddens).
    A pre-norm stack ends with a LayerNorm: its residual stream is otherwise never normalised.
    positions: "sinusoidal" (chapter 7's table, as in d2l) or "learned" (see positional.position_encoding).
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
        self.embedding = token_embedding(vocab_size, num_hiddens)
        self.blks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias, norm_first)
            for _ in range(num_blks)
        )
        self.pos_encoding = position_encoding(positions, num_hiddens, dropout, max_len)
        self.final_norm: nn.Module = nn.LayerNorm(num_hiddens) if norm_first else nn.Identity()
        self.attention_weights: list[Optional[Tensor]] = [None] * num_blks

    def forward(self, X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
        """Embed, add positions, run the blocks; each block's attention weights are kept.

        Shapes: X (batch, n) -> (batch, n, num_hiddens); self.attention_weights[i] (batch, heads, n, n).
        """
        check_token_ids(X)
        # Scaled by sqrt(d) as in the paper and d2l (chapter 7 measures what that does).
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))  # (batch, n, d)
        for i, blk in enumerate(self.blks):
            X = blk(X, valid_lens)
            self.attention_weights[i] = blk.attention.attention_weights
        return self.final_norm(X)


@torch.no_grad()
def load_torch_encoder_layer(
    block: TransformerEncoderBlock, layer: nn.TransformerEncoderLayer
) -> TransformerEncoderBlock:
    """Copy the weights of a torch.nn.TransformerEncoderLayer into a TransformerEncoderBlock (chapter 8, parity).

    Shapes: self_attn -> attention; linear1 (ffn, d) -> ffn.dense1; linear2 (d, ffn) -> ffn.dense2;
    norm1, norm2 (d,) -> addnorm1.ln, addnorm2.ln. Returns block.
    """
    if not isinstance(layer, nn.TransformerEncoderLayer):
        raise ValueError(f"layer must be a torch.nn.TransformerEncoderLayer, got {type(layer).__name__}")
    if layer.norm_first != block.norm_first:
        raise ValueError(
            f"both must place the LayerNorms alike, got block.norm_first={block.norm_first} "
            f"and layer.norm_first={layer.norm_first}"
        )
    # torch stores the activation as a function (F.relu by default) or a module.
    if layer.activation is not F.relu and not isinstance(layer.activation, nn.ReLU):
        raise ValueError(f"PositionWiseFFN uses ReLU, got a layer with activation {layer.activation!r}")
    load_torch_mha_weights(block.attention, layer.self_attn)
    pairs = (
        (block.ffn.dense1, layer.linear1),
        (block.ffn.dense2, layer.linear2),
        (block.addnorm1.ln, layer.norm1),
        (block.addnorm2.ln, layer.norm2),
    )
    for ours, theirs in pairs:
        if ours.weight.shape != theirs.weight.shape:
            raise ValueError(
                f"weight shapes differ: expected {tuple(ours.weight.shape)}, got {tuple(theirs.weight.shape)}"
            )
        ours.weight.copy_(theirs.weight)
        ours.bias.copy_(theirs.bias)
    for ours, theirs in ((block.addnorm1.ln, layer.norm1), (block.addnorm2.ln, layer.norm2)):
        ours.eps = theirs.eps
    return block


# ---------------------------------------------------------------------------------------------------------
# The experiment: the rank task, a tagger, gradient norms per block, a minibatch trainer.
# ---------------------------------------------------------------------------------------------------------


def make_rank_data(
    num_samples: int, seq_len: int = 8, vocab_size: int = 16, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """The rank task: distinct random tokens, label = how many tokens of the sequence are smaller (chapter 8).

    Shapes: -> X (num_samples, seq_len) token ids in [0, vocab_size), Y (num_samples, seq_len) ranks in
    [0, seq_len). Y[b, i] is where token X[b, i] lands when the sequence is sorted.
    """
    check_positive_int("num_samples", num_samples)
    check_positive_int("seq_len", seq_len)
    check_positive_int("vocab_size", vocab_size)
    if seq_len > vocab_size:
        raise ValueError(
            f"the tokens of a sequence are distinct, so seq_len <= vocab_size, got {seq_len} > {vocab_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    # The first seq_len entries of a random permutation: seq_len distinct tokens in random order.
    X = torch.rand(num_samples, vocab_size, generator=gen).argsort(dim=-1)[:, :seq_len]  # (N, T)
    Y = (X[:, None, :] < X[:, :, None]).sum(dim=-1)  # (N, T, T) -> (N, T): count of smaller tokens
    return X, Y


class TransformerTagger(nn.Module):
    """A TransformerEncoder with a linear read-out at every position: one class per token (chapter 8, experiment).

    Shapes: forward(X (batch, n) token ids, valid_lens None or (batch,)) -> logits (batch, n, num_classes).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        num_blks: int,
        dropout: float = 0.0,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.encoder = TransformerEncoder(
            vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, norm_first=norm_first
        )
        self.head = nn.Linear(num_hiddens, num_classes)

    def forward(self, X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
        """Encode the sequence, then classify each position.

        Shapes: X (batch, n) -> (batch, n, num_classes).
        """
        return self.head(self.encoder(X, valid_lens))


def block_gradient_norms(model: TransformerTagger, X: Tensor, Y: Tensor) -> dict[str, Tensor]:
    """One backward pass of the tagging loss; per block, the gradient norms of its input and weights (chapter 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> {"input": (num_blks,), "params": (num_blks,)};
    entry 0 is the block next to the embedding. "input" is ||dL/dX_l|| for the block's input X_l
    (the signal sent back towards the embedding), "params" the norm of all the block's weight gradients.
    """
    if not isinstance(model, TransformerTagger):
        raise ValueError(f"model must be a TransformerTagger, got {type(model).__name__}")
    inputs: list[Tensor] = []

    def keep_input(module: nn.Module, args: tuple) -> None:
        args[0].retain_grad()  # a non-leaf tensor keeps its .grad only when asked
        inputs.append(args[0])

    hooks = [blk.register_forward_pre_hook(keep_input) for blk in model.encoder.blks]
    device = next(model.parameters()).device
    try:
        model.zero_grad()
        with one_thread_on_cpu(device):
            logits = model(X.to(device))  # (N, n, C)
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.to(device).reshape(-1)).backward()
    finally:
        for h in hooks:
            h.remove()
    params = [
        torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in blk.parameters()]))
        for blk in model.encoder.blks
    ]
    return {
        "input": torch.stack([torch.linalg.vector_norm(x.grad) for x in inputs]).detach().cpu(),
        "params": torch.stack(params).detach().cpu(),
    }


def train_tagger(
    model: nn.Module,
    X: Tensor,
    Y: Tensor,
    *,
    num_steps: int,
    lr: float,
    batch_size: int = 64,
    warmup_steps: int = 0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: Optional[bool] = None,
) -> list[float]:
    """Minibatch Adam on the per-token cross-entropy, with an optional linear warm-up (chapter 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> num_steps floats (the loss of each step's batch).
    A step whose loss is not finite is recorded (as nan or inf) and skipped, so a diverging run shows as a gap.
    """
    check_positive_int("num_steps", num_steps)
    check_positive_int("batch_size", batch_size)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if not isinstance(X, Tensor) or not isinstance(Y, Tensor) or X.dim() != 2 or X.shape != Y.shape:
        raise ValueError(
            "X and Y must be 2-D tensors (N, n) of the same shape, got "
            f"X {getattr(X, 'shape', type(X).__name__)} and Y {getattr(Y, 'shape', type(Y).__name__)}"
        )
    device = torch.device(device) if device is not None else try_gpu()
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)  # batch order reproducible, global RNG untouched
    losses: list[float] = []
    bar = tqdm(range(num_steps), desc="train", disable=not progress_enabled(progress))
    with one_thread_on_cpu(device):
        for step in bar:
            # Linear warm-up: lr / warmup_steps, 2 lr / warmup_steps, ..., then lr.
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
            idx = torch.randint(0, X.shape[0], (batch_size,), generator=gen)
            Xb, Yb = X[idx].to(device), Y[idx].to(device)  # (b, n), (b, n)
            logits = model(Xb)  # (b, n, C)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Yb.reshape(-1))
            losses.append(loss.item())
            optimizer.zero_grad()
            if math.isfinite(losses[-1]):  # a non-finite loss would put NaN into every weight
                loss.backward()
                optimizer.step()
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return losses


@torch.no_grad()
def tagging_accuracy(model: nn.Module, X: Tensor, Y: Tensor, batch_size: int = 1024) -> float:
    """Fraction of tokens whose class the model predicts correctly (chapter 8).

    Shapes: X (N, n) token ids, Y (N, n) class ids -> float.
    """
    if not isinstance(X, Tensor) or not isinstance(Y, Tensor) or X.dim() != 2 or X.shape != Y.shape:
        raise ValueError(
            "X and Y must be 2-D tensors (N, n) of the same shape, got "
            f"X {getattr(X, 'shape', type(X).__name__)} and Y {getattr(Y, 'shape', type(Y).__name__)}"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    with one_thread_on_cpu(device):
        for start in range(0, X.shape[0], batch_size):
            Xb, Yb = X[start:start + batch_size].to(device), Y[start:start + batch_size].to(device)
            correct += (model(Xb).argmax(dim=-1) == Yb).sum().item()
    model.train(was_training)
    return correct / Y.numel()
