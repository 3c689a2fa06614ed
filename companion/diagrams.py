"""Architecture diagrams drawn with matplotlib (PNG): Bahdanau's encoder-decoder
(chapter 5), multi-head attention (6), the Transformer block (8) and encoder-decoder
(9), from primitives later chapters reuse: boxes, arrows, residual sublayers,
repeated blocks and shape labels, all labelled with the letters of the chapters' code.

A diagram is drawn in inches: one data unit is one inch of the figure, so text sizes
and box sizes agree at any width the book gives the figure (8 inches at most).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

__all__ = [
    "Box", "diagram_canvas", "draw_box", "draw_add", "draw_arrow", "draw_path",
    "draw_shape", "draw_sublayer", "draw_repeat_frame", "draw_bahdanau",
    "draw_multihead_attention", "draw_transformer_block",
    "draw_transformer_encoder_decoder",
]

# The default colour cycle of the other figures (C0, C1, ...), one colour per kind.
KIND_COLOURS = {
    "attention": "C1", "ffn": "C0", "norm": "C8", "linear": "C2", "rnn": "C4",
    "reshape": "C7", "data": "C7",
}
ARROW = "0.25"
SHAPE_FONT = dict(family="monospace", fontsize=7, color="0.3")


def _tint(colour: str, amount: float = 0.22) -> tuple[float, float, float]:
    rgb = to_rgb(colour)
    return tuple(amount * c + (1 - amount) for c in rgb)


@dataclass(frozen=True)
class Box:
    """A drawn box: its centre (x, y) and size (w, h), in inches."""

    x: float
    y: float
    w: float
    h: float

    @property
    def top(self) -> tuple[float, float]:
        return self.x, self.y + self.h / 2

    @property
    def bottom(self) -> tuple[float, float]:
        return self.x, self.y - self.h / 2

    @property
    def left(self) -> tuple[float, float]:
        return self.x - self.w / 2, self.y

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y


def diagram_canvas(width: float, height: float, ax: Axes | None = None) -> Axes:
    """An empty drawing area of width x height inches (a new figure unless ax)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}, {height}")
    if ax is None:
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return ax


def draw_box(
    ax: Axes, x: float, y: float, text: str, *, kind: str = "linear",
    width: float = 1.9, height: float = 0.42, fontsize: float = 8,
) -> Box:
    """A rounded box centred at (x, y), coloured by its kind (KIND_COLOURS)."""
    if kind not in KIND_COLOURS:
        raise ValueError(f"kind must be one of {sorted(KIND_COLOURS)}, got {kind!r}")
    colour = KIND_COLOURS[kind]
    face = "white" if kind == "data" else _tint(colour)
    ax.add_patch(FancyBboxPatch(
        (x - width / 2, y - height / 2), width, height, linewidth=1.0,
        boxstyle="round,pad=0,rounding_size=0.06", facecolor=face, edgecolor=colour,
        zorder=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, zorder=3)
    return Box(x, y, width, height)


def draw_add(ax: Axes, x: float, y: float, radius: float = 0.11) -> Box:
    """The residual sum: a circled plus."""
    ax.add_patch(Circle((x, y), radius, facecolor="white", edgecolor=ARROW, zorder=2))
    ax.text(x, y, "+", ha="center", va="center", fontsize=9, zorder=3)
    return Box(x, y, 2 * radius, 2 * radius)


def draw_arrow(
    ax: Axes, start: tuple[float, float], end: tuple[float, float], *,
    colour: str = ARROW, style: str = "-",
) -> None:
    """A straight arrow from start to end."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9,
                                 color=colour, linewidth=1.0, linestyle=style,
                                 shrinkA=0, shrinkB=0, zorder=1))


def draw_path(
    ax: Axes, points: Sequence[tuple[float, float]], *, colour: str = ARROW,
    style: str = "-",
) -> None:
    """A polyline through points with an arrowhead on its last segment."""
    xs, ys = zip(*points[:-1])
    ax.plot(xs, ys, color=colour, linewidth=1.0, linestyle=style, zorder=1)
    draw_arrow(ax, points[-2], points[-1], colour=colour, style=style)


def draw_shape(
    ax: Axes, x: float, y: float, text: str, *, ha: str = "left", va: str = "center",
    boxed: bool = False,
) -> None:
    """A tensor shape written beside an arrow, e.g. (B, n, d); boxed hides the arrow."""
    box = dict(facecolor="white", edgecolor="none", pad=1.5) if boxed else None
    ax.text(x, y, text, ha=ha, va=va, zorder=3, bbox=box, **SHAPE_FONT)


def draw_sublayer(
    ax: Axes, x: float, y: float, text: str, *, norm_first: bool,
    kind: str = "attention", width: float = 1.9, height: float = 0.46,
    side: float = -1.0, gap: float = 0.2, norm_text: str = "LayerNorm",
) -> tuple[list[Box], float]:
    """One sublayer with its residual path and LayerNorm (chapter 8, eq. post-pre).

    Drawn upwards from y (the sublayer's input): post-norm is the sublayer, then an
    "Add & LayerNorm" box; pre-norm is a LayerNorm, the sublayer, then a sum. The
    residual path leaves at y and runs beside the boxes on the side given (-1 left,
    +1 right). Returns the boxes, bottom to top, and the y of the output.
    """
    norm_h, boxes = 0.3, []
    if norm_first:
        boxes.append(draw_box(ax, x, y + gap + norm_h / 2, norm_text, kind="norm",
                              width=width * 0.7, height=norm_h))
        body_y = boxes[-1].top[1] + gap + height / 2
    else:
        body_y = y + gap + height / 2
    boxes.append(draw_box(ax, x, body_y, text, kind=kind, width=width, height=height))
    if norm_first:
        boxes.append(draw_add(ax, x, boxes[-1].top[1] + gap + 0.11))
        join = boxes[-1].left if side < 0 else boxes[-1].right
    else:
        boxes.append(draw_box(ax, x, boxes[-1].top[1] + gap + norm_h / 2,
                              "Add & " + norm_text, kind="norm", width=width * 0.7,
                              height=norm_h))
        join = boxes[-1].left if side < 0 else boxes[-1].right
    for below, above in zip([Box(x, y, 0, 0)] + boxes[:-1], boxes):
        draw_arrow(ax, below.top, above.bottom)
    lane = x + side * (width / 2 + 0.22)
    branch = y + gap / 2
    draw_path(ax, [(x, branch), (lane, branch), (lane, join[1]), join])
    return boxes, boxes[-1].top[1]


def draw_repeat_frame(
    ax: Axes, boxes: Sequence[Box], label: str, *, pad: float = 0.12,
    extra_left: float = 0.3, extra_right: float = 0.3,
) -> Box:
    """A dashed frame around boxes drawn once and repeated, labelled (num_blks x)."""
    left = min(b.x - b.w / 2 for b in boxes) - pad - extra_left
    right = max(b.x + b.w / 2 for b in boxes) + pad + extra_right
    bottom = min(b.y - b.h / 2 for b in boxes) - pad
    top = max(b.y + b.h / 2 for b in boxes) + pad
    ax.add_patch(Rectangle((left, bottom), right - left, top - bottom, fill=False,
                           edgecolor="0.55", linestyle=(0, (4, 3)), linewidth=1.0,
                           zorder=0))
    # Above the frame's top-left corner: no margin is needed beside the frame.
    ax.text(left, top + 0.04, label, ha="left", va="bottom", fontsize=8, zorder=3)
    return Box((left + right) / 2, (bottom + top) / 2, right - left, top - bottom)


def _title(ax: Axes, x: float, y: float, text: str) -> None:
    ax.text(x, y, text, ha="center", va="center", fontsize=9, fontweight="bold")


def draw_bahdanau(*, ax: Axes | None = None) -> Figure:
    """Chapter 5: the bidirectional GRU encoder, and one decoder step with attention."""
    ax = diagram_canvas(7.8, 4.8, ax)
    for y, name in [(1.05, "encoder"), (2.75, "attention"), (3.85, "decoder")]:
        ax.text(0.15, y, name, rotation=90, ha="center", va="center", fontsize=8,
                fontweight="bold", color="0.35")
    xs, names = [0.85, 1.75, 2.65, 3.55], ["$x_1$", "$x_2$", "$\\cdots$", "$x_n$"]
    embed = draw_box(ax, 2.2, 1.0, "Embedding", width=3.3, height=0.34)
    states = []
    for x, name in zip(xs, names):
        if name == "$\\cdots$":
            ax.text(x, 1.75, name, ha="center", va="center", fontsize=9)
            states.append(Box(x, 1.75, 0.3, 0.4))
            continue
        token = draw_box(ax, x, 0.35, name, kind="data", width=0.5, height=0.32)
        draw_arrow(ax, token.top, (x, embed.bottom[1]))
        states.append(draw_box(ax, x, 1.75, name.replace("x", "h"), kind="rnn",
                               width=0.55, height=0.4, fontsize=9))
        draw_arrow(ax, (x, embed.top[1]), states[-1].bottom)
    for a, b in zip(states, states[1:]):  # forward and backward directions
        draw_arrow(ax, (a.right[0], a.y + 0.08), (b.left[0], b.y + 0.08))
        draw_arrow(ax, (b.left[0], b.y - 0.08), (a.right[0], a.y - 0.08))
    draw_shape(ax, 4.05, 0.35, "X (B, T_src)")
    draw_shape(ax, 4.05, 1.0, "(B, T_src, E)")
    draw_shape(ax, 4.05, 1.75, "bidirectional GRU\nenc_outputs (B, T_src, H):\n"
               "keys and values")
    att = draw_box(ax, 2.2, 2.75, "additive attention (chapter 4)\n"
                   "$c_t = \\sum_j \\alpha_{tj} h_j$,  weights (B, 1, T_src)",
                   kind="attention", width=3.3, height=0.5)
    for x, state, name in zip(xs, states, ["1", "2", None, "n"]):
        if name is not None:
            draw_arrow(ax, state.top, (x, att.bottom[1]))
            ax.text(x + 0.05, 2.25, f"$\\alpha_{{t{name}}}$", fontsize=7, va="center")
    prev = draw_box(ax, 1.2, 3.9, "$s_{t-1}$", kind="rnn", width=0.7, height=0.4,
                    fontsize=9)
    gru = draw_box(ax, 3.3, 3.9, "GRU, step t", kind="rnn", width=1.3, height=0.4)
    cat = draw_box(ax, 5.45, 3.9, "$[s_t\\,;\\,c_t]$", kind="reshape", width=0.9,
                   height=0.4, fontsize=9)
    dense = draw_box(ax, 7.0, 3.9, "dense", width=0.8, height=0.4)
    draw_arrow(ax, prev.right, gru.left)
    draw_arrow(ax, gru.right, cat.left)
    draw_arrow(ax, cat.right, dense.left)
    draw_shape(ax, 4.35, 4.0, "$s_t$ (B, 1, H)", ha="center", va="bottom")
    draw_shape(ax, 6.25, 4.0, "(B, 1, 2H)", ha="center", va="bottom")
    draw_arrow(ax, dense.top, (7.0, 4.55))
    draw_shape(ax, 7.0, 4.65, "logits (B, 1, V)", ha="center")
    draw_arrow(ax, (3.3, 4.7), gru.top)
    draw_shape(ax, 3.4, 4.45, "$e(y_{t-1})$ (B, 1, E); with $c_t$,\n"
               "GRU input (B, 1, E + H)")
    draw_shape(ax, 1.2, 4.25, "hidden (L, B, H)\ns_0: the encoder's\nfinal states",
               ha="center", va="bottom")
    draw_arrow(ax, prev.bottom, (1.2, att.top[1]))
    draw_shape(ax, 1.3, 3.3, "query (B, 1, H)")
    draw_arrow(ax, (3.3, att.top[1]), gru.bottom)
    draw_path(ax, [att.right, (5.45, att.y), cat.bottom])
    draw_shape(ax, 3.4, 3.3, "context $c_t$ (B, 1, H)")
    return ax.figure


def draw_multihead_attention(num_heads: int = 3, *, ax: Axes | None = None) -> Figure:
    """Chapter 6: project, split into heads (transpose_qkv), attend per head, merge."""
    if not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    ax = diagram_canvas(7.6, 5.6, ax)
    inputs = [("queries (B, n_q, query_size)", "W_q", "(B, n_q, d)"),
              ("keys (B, n_k, key_size)", "W_k", "(B, n_k, d)"),
              ("values (B, n_k, value_size)", "W_v", "(B, n_k, d)")]
    split = draw_box(ax, 3.8, 1.75, "transpose_qkv: cut d into h slices of d_h = d / h,"
                     " fold the heads into the batch", kind="reshape", width=6.8,
                     height=0.36)
    for x, (name, weight, shape) in zip([1.45, 3.8, 6.15], inputs):
        draw_shape(ax, x, 0.2, name, ha="center")
        linear = draw_box(ax, x, 0.8, weight, width=1.0, height=0.34)
        draw_arrow(ax, (x, 0.32), linear.bottom)
        draw_arrow(ax, linear.top, (x, split.bottom[1]))
        draw_shape(ax, x + 0.08, 1.3, shape)
    draw_shape(ax, 3.8, 2.13, "(B, n_q, d) -> (B, n_q, h, d_h) -> (B, h, n_q, d_h) "
               "-> (B * h, n_q, d_h)", ha="center", va="bottom")
    shown = list(range(1, num_heads + 1))
    if num_heads > 4:
        shown = [1, 2, None, num_heads]
    span, merge_y = 6.8 / len(shown), 3.9
    merge = draw_box(ax, 3.8, merge_y, "transpose_output: unfold the heads from the "
                     "batch, concatenate their features", kind="reshape", width=6.8,
                     height=0.36)
    for i, head in enumerate(shown):
        x = 0.4 + span * (i + 0.5)
        if head is None:
            ax.text(x, 2.95, "$\\cdots$", ha="center", va="center", fontsize=10)
            continue
        box = draw_box(ax, x, 2.95, f"head {head}\n"
                       "softmax$(q k^\\top / \\sqrt{d_h})\\, v$", kind="attention",
                       width=min(1.9, span - 0.25), height=0.5)
        draw_arrow(ax, (x, 2.4), box.bottom)
        draw_arrow(ax, box.top, (x, merge.bottom[1]))
    draw_shape(ax, 3.8, 3.5, "each head: weights (B * h, n_q, n_k), output "
               "(B * h, n_q, d_h)", ha="center", boxed=True)
    draw_shape(ax, 3.8, 4.13, "(B * h, n_q, d_h) -> (B, h, n_q, d_h) -> "
               "(B, n_q, h, d_h) -> (B, n_q, d)", ha="center", va="bottom")
    out = draw_box(ax, 3.8, 4.75, "W_o: mixes the heads", width=1.8, height=0.34)
    draw_arrow(ax, (3.8, 4.38), out.bottom)
    draw_arrow(ax, out.top, (3.8, 5.25))
    draw_shape(ax, 3.8, 5.37, "output (B, n_q, d);  attention_weights (B, h, n_q, "
               f"n_k);  h = {num_heads}", ha="center")
    return ax.figure


def draw_transformer_block(
    norm_first: bool = False, *, ax: Axes | None = None,
) -> Figure:
    """Chapter 8: TransformerEncoderBlock, post-norm (the paper) or pre-norm."""
    ax = diagram_canvas(3.8, 5.0, ax)
    x = 1.95
    _title(ax, x, 4.8, f"{'pre' if norm_first else 'post'}-norm "
           f"(norm_first={bool(norm_first)})")
    draw_shape(ax, x, 0.15, "X (B, n, d)", ha="center")
    draw_arrow(ax, (x, 0.28), (x, 0.6))
    attention, y = draw_sublayer(ax, x, 0.6, "Multi-head\nself-attention",
                                 norm_first=norm_first)
    draw_shape(ax, x + 0.08, y + 0.1, "(B, n, d)")
    ffn, y = draw_sublayer(ax, x, y, "Position-wise FFN\nd -> d_ff -> d", kind="ffn",
                           norm_first=norm_first)
    body = attention[1 if norm_first else 0]
    draw_arrow(ax, (body.right[0] + 0.6, body.y), body.right)
    draw_shape(ax, body.right[0] + 0.16, body.y + 0.06, "valid_lens\n(B,)",
               va="bottom")
    draw_repeat_frame(ax, attention + ffn, "num_blks ×", extra_right=0.0)
    draw_arrow(ax, (x, y), (x, y + 0.3))
    draw_shape(ax, x, y + 0.42, "(B, n, d)", ha="center")
    return ax.figure


def _grid_inset(
    ax: Axes, x: float, y: float, face: Callable[[int, int], str], size: int = 5,
    cell: float = 0.07, edge: str = "0.5",
) -> Box:
    """A small size x size grid centred at (x, y), cell (row i, column j) face(i, j)."""
    left, top = x - size * cell / 2, y + size * cell / 2
    for i in range(size):
        for j in range(size):
            ax.add_patch(Rectangle((left + j * cell, top - (i + 1) * cell), cell, cell,
                                   facecolor=face(i, j), edgecolor=edge, linewidth=0.4,
                                   zorder=2))
    return Box(x, y, size * cell, size * cell)


def _causal_mask_inset(ax: Axes, x: float, y: float, size: int = 5) -> Box:
    """A small causal mask: filled where a query (row) may see a key (column)."""
    return _grid_inset(ax, x, y, lambda i, j: "C1" if j <= i else "white", size)


def _stack(
    ax: Axes, x: float, name: str, tokens: str, sublayers: Sequence[tuple[str, str]],
    *, norm_first: bool, side: float, repeat: str,
) -> tuple[list[list[Box]], float]:
    """Embedding, repeated sublayers and final norm of a TransformerEncoder/Decoder."""
    _title(ax, x, 0.15, name)
    draw_shape(ax, x, 0.42, tokens, ha="center")
    emb = draw_box(ax, x, 0.95, "Embedding × $\\sqrt{d}$\n+ positions", height=0.46)
    draw_arrow(ax, (x, 0.54), emb.bottom)
    draw_shape(ax, emb.right[0] + 0.05, emb.y, tokens[tokens.index("(B,"):-1] + ", d)")
    y, drawn = emb.top[1], []
    for text, kind in sublayers:
        boxes, y = draw_sublayer(ax, x, y, text, kind=kind, norm_first=norm_first,
                                 side=side, width=1.8)
        drawn.append(boxes)
    draw_repeat_frame(ax, [b for boxes in drawn for b in boxes], repeat)
    if norm_first:  # final_norm: pre-norm's sum is never normalised inside the stack
        final = draw_box(ax, x, y + 0.37, "LayerNorm", kind="norm", width=1.26,
                         height=0.3)
        draw_arrow(ax, (x, y), final.bottom)
        y = final.top[1]
    return drawn, y


def draw_transformer_encoder_decoder(
    norm_first: bool = True, *, ax: Axes | None = None,
) -> Figure:
    """Chapter 9: TransformerEncoderDecoder, with causal self- and cross-attention."""
    ax = diagram_canvas(7.6, 7.7 if norm_first else 5.9, ax)
    xe, xd = 2.0, 5.6
    sub = [("Multi-head\nself-attention", "attention"),
           ("Position-wise FFN", "ffn")]
    _, top = _stack(ax, xe, "encoder", "enc_X (B, T_src)", sub, norm_first=norm_first,
                    side=-1.0, repeat="num_blks ×")
    sub = [("Masked multi-head\nself-attention", "attention"),
           ("Multi-head cross-attention\nqueries: target", "attention"),
           ("Position-wise FFN", "ffn")]
    drawn, y = _stack(ax, xd, "decoder", "dec_X (B, T_tgt)", sub,
                      norm_first=norm_first, side=1.0, repeat="dec_num_blks ×")
    body = 1 if norm_first else 0
    masked, cross = drawn[0][body], drawn[1][body]
    draw_path(ax, [(xe, top), (xe, top + 0.45), (3.85, top + 0.45),
                   (3.85, cross.y), cross.left], colour="C1")
    draw_shape(ax, (xe + 3.85) / 2, top + 0.55, "enc_outputs (B, T_src, d): the keys\n"
               "and values of every cross-attention", ha="center", va="bottom")
    mask = _causal_mask_inset(ax, 3.7, masked.y + 0.12)
    draw_arrow(ax, mask.right, masked.left)
    draw_shape(ax, 3.7, mask.bottom[1] - 0.05, "causal_mask\n(T_tgt, T_tgt)",
               ha="center", va="top")
    dense = draw_box(ax, xd, y + 0.42, "dense", width=1.26, height=0.34)
    draw_arrow(ax, (xd, y), dense.bottom)
    draw_arrow(ax, dense.top, (xd, dense.top[1] + 0.3))
    draw_shape(ax, xd, dense.top[1] + 0.4, "logits (B, T_tgt, V_tgt)", ha="center")
    return ax.figure
