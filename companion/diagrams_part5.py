"""Architecture diagrams of Part V, drawn with chapter 5-9's primitives (diagrams):
the Vision Transformer (chapter 13) and one graph attention layer, GAT or GATv2
(chapter 14), labelled with the names and shape letters of the chapters' code.
"""
from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle

from .diagrams import (
    Box, _grid_inset, _title, diagram_canvas, draw_add, draw_arrow, draw_box,
    draw_path, draw_repeat_frame, draw_shape, draw_sublayer,
)

__all__ = ["draw_vit", "draw_gat_layer"]


def _image_inset(
    ax: Axes, x: float, y: float, patches: int = 3, pixels: int = 5,
) -> Box:
    """An image of a ring cut into patches x patches patches, drawn a little apart."""
    size, cell, gap = patches * pixels, 0.045, 0.04
    centre, step = (size - 1) / 2, pixels * cell + gap

    def grey(i: int, j: int) -> str:
        r = ((i - centre) ** 2 + (j - centre) ** 2) ** 0.5
        return "0.3" if 0.2 * size < r < 0.4 * size else "0.93"

    for pi in range(patches):
        for pj in range(patches):
            _grid_inset(ax, x + (pj - (patches - 1) / 2) * step,
                        y - (pi - (patches - 1) / 2) * step,
                        lambda i, j: grey(pi * pixels + i, pj * pixels + j), pixels,
                        cell, edge="none")
    return Box(x, y, patches * step - gap, patches * step - gap)


def draw_vit(*, ax: Axes | None = None) -> Figure:
    """Chapter 13: ViT, patches to tokens, class token, positions, blocks, the head."""
    ax = diagram_canvas(6.4, 7.75, ax)
    x, side = 2.1, 4.55
    image = _image_inset(ax, x, 0.5)
    draw_shape(ax, image.right[0] + 0.15, image.y + 0.12,
               "X (B, in_channels, height, width)")
    draw_shape(ax, image.right[0] + 0.15, image.y - 0.14,
               "patches of patch_size × patch_size,\nrow by row", va="top")
    patch = draw_box(ax, x, 1.3, "PatchEmbedding: Conv2d,\n"
                     "kernel = stride = patch_size", height=0.46, width=2.4)
    draw_arrow(ax, image.top, patch.bottom)
    draw_shape(ax, x + 0.08, 1.72, "(B, d, rows, cols) -> (B, n, d),  n = num_patches")
    cat = draw_box(ax, x, 2.12, "cat: the class token in front", kind="reshape",
                   width=2.4, height=0.34)
    draw_arrow(ax, patch.top, cat.bottom)
    draw_shape(ax, x + 0.08, 2.47, "(B, n + 1, d)")
    add = draw_add(ax, x, 2.75)
    draw_arrow(ax, cat.top, add.bottom)
    for y, name, shape, end in [(cat.y, "cls_token", "(B, 1, d)", cat.right),
                                (add.y, "pos_embedding", "(1, n + 1, d)", add.right)]:
        box = draw_box(ax, side, y, name, kind="data", width=1.2, height=0.32)
        draw_arrow(ax, box.left, end)
        draw_shape(ax, (box.left[0] + end[0]) / 2, y + 0.06, shape, ha="center",
                   va="bottom")
    attention, y = draw_sublayer(ax, x, add.top[1], "Multi-head\nself-attention",
                                 norm_first=True, width=2.0)
    draw_shape(ax, x + 0.08, y + 0.1, "(B, n + 1, d)")
    ffn, y = draw_sublayer(ax, x, y, "Position-wise FFN\nd -> mlp_num_hiddens -> d",
                           kind="ffn", norm_first=True, width=2.0)
    draw_repeat_frame(ax, attention + ffn, "num_blks × ViTBlock",
                      extra_right=0.0)
    top = y + 0.65
    cls = draw_box(ax, x, top, "X[:, 0]: the class token", kind="reshape", width=1.9,
                   height=0.34)
    draw_arrow(ax, (x, y), cls.bottom)
    draw_shape(ax, x + 0.08, (y + cls.bottom[1]) / 2, "(B, n + 1, d)")
    norm = draw_box(ax, 4.05, top, "LayerNorm", kind="norm", width=0.95, height=0.3)
    head = draw_box(ax, 5.55, top, "Linear d -> C", width=1.1, height=0.34)
    draw_arrow(ax, cls.right, norm.left)
    draw_arrow(ax, norm.right, head.left)
    draw_shape(ax, (cls.right[0] + norm.left[0]) / 2, top + 0.06, "(B, d)",
               ha="center", va="bottom")
    draw_shape(ax, 4.8, top - 0.3, "head = Sequential(LayerNorm, Linear)",
               ha="center", va="top")
    draw_arrow(ax, head.top, (head.x, head.top[1] + 0.28))
    draw_shape(ax, head.x, head.top[1] + 0.38, "logits (B, C)\nC = num_classes",
               ha="center", va="bottom")
    _title(ax, x, head.top[1] + 0.45, "ViT: a Transformer encoder on image patches")
    return ax.figure


def _neighbourhood_inset(ax: Axes, x: float, y: float) -> Box:
    """Node i and its neighbours j: an edge j -> i per arrow, k no neighbour of i."""
    radius, nodes = 0.09, {"i": (x, y + 0.2), "j₁": (x - 0.36, y - 0.2),
                           "j₂": (x, y - 0.25), "j₃": (x + 0.36, y - 0.2),
                           "k": (x + 0.4, y + 0.22)}
    for name, (u, v) in nodes.items():
        colour = "C1" if name == "i" else ("0.6" if name == "k" else "C0")
        ax.add_patch(Circle((u, v), radius, facecolor="white", edgecolor=colour,
                            linewidth=1.2, zorder=2))
        ax.text(u, v, name, ha="center", va="center", fontsize=7, zorder=3)
    for a, b in [("j₁", "i"), ("j₂", "i"), ("j₃", "i"), ("k", "j₃")]:
        (u, v), (ui, vi) = nodes[a], nodes[b]
        length = ((ui - u) ** 2 + (vi - v) ** 2) ** 0.5
        du, dv = (ui - u) / length * radius, (vi - v) / length * radius
        draw_arrow(ax, (u + du, v + dv), (ui - du, vi - dv),
                   colour="0.6" if a == "k" else "C0")
    frame = Box(x + 0.02, y + 0.02, 0.96, 0.74)
    ax.add_patch(Rectangle((frame.left[0], frame.bottom[1]), frame.w, frame.h,
                           fill=False, edgecolor="0.6", linewidth=0.8, zorder=0))
    return frame


def draw_gat_layer(v2: bool = False, *, ax: Axes | None = None) -> Figure:
    """Chapter 14: one GATLayer, the score e_ij of GAT or (v2=True) GATv2 per edge."""
    ax = diagram_canvas(3.9, 7.05, ax)
    x, lane, right = 1.35, 0.1, 3.3
    draw_shape(ax, x, 0.18, "X (nodes, in_features)", ha="center")
    maps = [("W", x - 0.6), ("W_dst", x + 0.6)] if v2 else [("W", x)]
    boxes = []
    for name, u in maps:
        boxes.append(draw_box(ax, u, 0.8, name, width=0.9 if v2 else 1.6, height=0.34))
        draw_arrow(ax, (u, 0.3), boxes[-1].bottom)
    if v2:
        draw_shape(ax, x, 1.19, "(nodes, h,\nout_features)", ha="center")
    else:
        draw_shape(ax, x + 0.08, 1.19, "W h (nodes, h, out_features)")
    gather = draw_box(ax, x, 1.6, "add_self_loops, then gather\nalong the edges j -> i",
                      kind="reshape", width=2.3, height=0.44)
    for box in boxes:
        draw_arrow(ax, box.top, (box.x, gather.bottom[1]))
    graph = _neighbourhood_inset(ax, right, 0.68)
    draw_shape(ax, graph.right[0], 0.18, "edge_index (2, edges)", ha="right")
    if v2:  # the pair meets inside the nonlinearity, then a
        steps = [("$W_{dst}\\, h_i + W h_j$", "linear"), ("LeakyReLU", "ffn"),
                 ("$a^\\top \\cdot$  (per head)", "linear")]
    else:  # a splits into a_dst . W h_i + a_src . W h_j, then the nonlinearity
        steps = [("$a^\\top [W h_i \\,\\|\\, W h_j]$", "linear"), ("LeakyReLU", "ffn")]
    y = gather.top[1]
    for text, kind in steps:
        box = draw_box(ax, x, y + 0.3, text, kind=kind, width=1.9, height=0.3)
        draw_arrow(ax, (x, y), box.bottom)
        y = box.top[1]
    scores = gather.top[1] + 3 * 0.45  # where v2's three steps end: the panels align
    draw_shape(ax, x + 0.08, scores + 0.17, "scores $e_{ij}$ (edges, h)")
    softmax = draw_box(ax, x, scores + 0.75, "masked_softmax over each\nnode's "
                       "neighbours (ch. 4)", kind="attention", width=2.3, height=0.46)
    draw_arrow(ax, (x, y), softmax.bottom)
    mask = _grid_inset(ax, right, softmax.y, lambda i, j: "C1" if abs(i - j) < 2
                       or i + j == 4 else "white")
    draw_arrow(ax, mask.left, softmax.right)
    draw_shape(ax, right, mask.top[1] + 0.05, "neighbour_mask\n(nodes, nodes)",
               ha="center", va="bottom")
    draw_path(ax, [graph.top, (right, gather.y), gather.right])
    draw_arrow(ax, (right, gather.y), mask.bottom)
    draw_shape(ax, x + 0.08, softmax.top[1] + 0.3, "attention_weights\n"
               "(h, nodes, nodes)")
    total = draw_box(ax, x, softmax.top[1] + 0.8,
                     "$h'_i = \\sum_{j \\in N(i)} \\alpha_{ij}\\, W h_j$", width=2.3,
                     height=0.4, kind="attention")
    draw_arrow(ax, softmax.top, total.bottom)
    draw_path(ax, [boxes[0].left, (lane, boxes[0].y), (lane, total.y), total.left])
    draw_shape(ax, x + 0.08, total.top[1] + 0.22, "(h, nodes, out_features)")
    heads = draw_box(ax, x, total.top[1] + 0.7, "concat=True: concatenate the\n"
                     "heads, else average; + bias", kind="reshape", width=2.3,
                     height=0.44)
    draw_arrow(ax, total.top, heads.bottom)
    draw_arrow(ax, heads.top, (x, heads.top[1] + 0.25))
    draw_shape(ax, x, heads.top[1] + 0.3, "(nodes, h * out_features)\n"
               "or (nodes, out_features)", ha="center", va="bottom")
    _title(ax, 1.95, 6.9, "GATv2 (v2=True)" if v2 else "GAT (v2=False)")
    return ax.figure
