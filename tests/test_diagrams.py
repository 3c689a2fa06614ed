"""The architecture diagrams draw, name the blocks and the shapes of the chapters' code,
fit the book's width, and place the LayerNorm where norm_first says."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import companion  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text()]


def joined(fig) -> str:
    return "\n".join(t.get_text() for t in texts(fig))


def centre_y(fig, label: str) -> list[float]:
    """Heights of the texts that are exactly label, bottom to top."""
    return sorted(t.get_position()[1] for t in texts(fig) if t.get_text() == label)


DIAGRAMS = {
    "bahdanau": (companion.draw_bahdanau, {}, [
        "X (B, T_src)", "(B, T_src, E)", "enc_outputs (B, T_src, H)", "query (B, 1, H)",
        "(B, 1, H)", "(B, 1, E + H)", "(B, 1, 2H)", "logits (B, 1, V)",
        "hidden (L, B, H)", "weights (B, 1, T_src)", "Embedding", "bidirectional GRU",
        "additive attention", "GRU, step t", "dense"]),
    "multihead": (companion.draw_multihead_attention, {"num_heads": 3}, [
        "queries (B, n_q, query_size)", "keys (B, n_k, key_size)",
        "values (B, n_k, value_size)", "(B, n_q, d)", "(B, n_q, h, d_h)",
        "(B, h, n_q, d_h)", "(B * h, n_q, d_h)", "(B * h, n_q, n_k)",
        "attention_weights (B, h, n_q, n_k)", "W_q", "W_k", "W_v", "W_o",
        "transpose_qkv", "transpose_output", "head 1", "head 3", "h = 3"]),
    "block": (companion.draw_transformer_block, {"norm_first": False}, [
        "X (B, n, d)", "(B, n, d)", "d -> d_ff -> d", "valid_lens", "num_blks ×",
        "Multi-head\nself-attention", "Position-wise FFN", "Add & LayerNorm"]),
    "encoder_decoder": (companion.draw_transformer_encoder_decoder, {}, [
        "enc_X (B, T_src)", "dec_X (B, T_tgt)", "(B, T_src, d)", "(B, T_tgt, d)",
        "enc_outputs (B, T_src, d)", "logits (B, T_tgt, V_tgt)",
        "causal_mask\n(T_tgt, T_tgt)", "Masked multi-head", "cross-attention",
        "Position-wise FFN", "num_blks ×", "dec_num_blks ×", "dense"]),
    "vit": (companion.draw_vit, {}, [
        "X (B, in_channels, height, width)", "(B, d, rows, cols) -> (B, n, d)",
        "n = num_patches", "(B, 1, d)", "(B, n + 1, d)", "(1, n + 1, d)", "(B, d)",
        "logits (B, C)", "C = num_classes", "PatchEmbedding: Conv2d",
        "kernel = stride = patch_size", "cls_token", "pos_embedding",
        "num_blks × ViTBlock", "Multi-head\nself-attention", "Position-wise FFN",
        "mlp_num_hiddens", "X[:, 0]: the class token", "LayerNorm", "Linear d -> C"]),
    **{name: (companion.draw_gat_layer, {"v2": v2}, [
        "X (nodes, in_features)", "edge_index (2, edges)", "(nodes, h,",
        "out_features)", "scores $e_{ij}$ (edges, h)",
        "attention_weights\n(h, nodes, nodes)", "neighbour_mask\n(nodes, nodes)",
        "(h, nodes, out_features)", "(nodes, h * out_features)",
        "or (nodes, out_features)", "add_self_loops", "masked_softmax", "LeakyReLU",
        "concat=True", "W", f"v2={v2}"])
       for name, v2 in [("gat", False), ("gatv2", True)]},
}


@pytest.mark.parametrize("name", DIAGRAMS)
def test_diagram_names_the_blocks_and_shapes_of_the_chapter(name: str) -> None:
    draw, kwargs, expected = DIAGRAMS[name]
    fig = draw(**kwargs)
    assert isinstance(fig, matplotlib.figure.Figure)
    everything = joined(fig)
    missing = [label for label in expected if label not in everything]
    assert not missing, f"{name}: labels missing from the figure: {missing}"


@pytest.mark.parametrize("name", DIAGRAMS)
def test_diagram_fits_the_page_and_keeps_its_text_inside(name: str) -> None:
    draw, kwargs, _ = DIAGRAMS[name]
    fig = draw(**kwargs)
    width, height = fig.get_size_inches()
    assert width <= 8.0 and height <= 8.0
    fig.canvas.draw()
    frame = fig.bbox
    outside = [t.get_text() for t in texts(fig)
               if not frame.contains(*t.get_window_extent().p0)
               or not frame.contains(*t.get_window_extent().p1)]
    assert not outside, f"{name}: text cut off by the figure's edge: {outside}"


def test_post_norm_normalises_after_each_sublayer() -> None:
    fig = companion.draw_transformer_block(norm_first=False)
    (attention,) = centre_y(fig, "Multi-head\nself-attention")
    (ffn,) = centre_y(fig, "Position-wise FFN\nd -> d_ff -> d")
    norms = centre_y(fig, "Add & LayerNorm")
    assert len(norms) == 2 and not centre_y(fig, "LayerNorm")
    assert attention < norms[0] < ffn < norms[1]  # sublayer, then add & norm


def test_pre_norm_normalises_before_each_sublayer_and_sums_after() -> None:
    fig = companion.draw_transformer_block(norm_first=True)
    (attention,) = centre_y(fig, "Multi-head\nself-attention")
    (ffn,) = centre_y(fig, "Position-wise FFN\nd -> d_ff -> d")
    norms, sums = centre_y(fig, "LayerNorm"), centre_y(fig, "+")
    assert len(norms) == 2 and not centre_y(fig, "Add & LayerNorm")
    assert norms[0] < attention < sums[0] < norms[1] < ffn < sums[1]


def test_encoder_decoder_pre_norm_ends_each_stack_with_a_layernorm() -> None:
    pre = companion.draw_transformer_encoder_decoder(norm_first=True)
    post = companion.draw_transformer_encoder_decoder(norm_first=False)
    # Two per encoder block, three per decoder block, and final_norm in each stack.
    assert len(centre_y(pre, "LayerNorm")) == 2 + 3 + 2
    assert len(centre_y(post, "Add & LayerNorm")) == 2 + 3
    assert not centre_y(post, "LayerNorm")


@pytest.mark.parametrize("num_heads", [1, 4, 8])
def test_multihead_draws_one_box_per_head_or_elides_the_middle(num_heads: int) -> None:
    fig = companion.draw_multihead_attention(num_heads=num_heads)
    heads = [t.get_text() for t in texts(fig) if t.get_text().startswith("head ")]
    expected = num_heads if num_heads <= 4 else 3  # heads 1, 2, ..., h
    assert len(heads) == expected and heads[-1].startswith(f"head {num_heads}\n")


def test_multihead_rejects_a_bad_number_of_heads() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        companion.draw_multihead_attention(num_heads=0)


def test_primitives_draw_on_a_given_axes_and_check_their_arguments() -> None:
    fig, ax = plt.subplots()
    assert companion.diagram_canvas(3.0, 2.0, ax) is ax
    box = companion.draw_box(ax, 1.0, 1.0, "FFN", kind="ffn", width=1.0, height=0.4)
    assert box.top == (1.0, 1.2) and box.left == (0.5, 1.0)
    boxes, y = companion.draw_sublayer(ax, 1.5, 0.2, "f", norm_first=True)
    assert len(boxes) == 3 and y == pytest.approx(boxes[-1].top[1])
    frame = companion.draw_repeat_frame(ax, boxes, "L ×")
    assert frame.h > y - boxes[0].bottom[1]
    with pytest.raises(ValueError, match="kind"):
        companion.draw_box(ax, 0, 0, "x", kind="unknown")
    with pytest.raises(ValueError, match="positive"):
        companion.diagram_canvas(0, 1)


def starts_y(fig, prefix: str) -> list[float]:
    """Heights of the texts that begin with prefix, bottom to top."""
    return sorted(t.get_position()[1] for t in texts(fig)
                  if t.get_text().startswith(prefix))


def test_vit_embeds_patches_adds_positions_then_runs_pre_norm_blocks() -> None:
    fig = companion.draw_vit()
    (patches,) = starts_y(fig, "PatchEmbedding")
    (cls_in,) = starts_y(fig, "cat: the class token")
    (attention,) = centre_y(fig, "Multi-head\nself-attention")
    (ffn,) = starts_y(fig, "Position-wise FFN")
    (cls_out,) = starts_y(fig, "X[:, 0]")
    norms, sums = centre_y(fig, "LayerNorm"), centre_y(fig, "+")
    assert centre_y(fig, "pos_embedding") == [sums[0]]  # the first sum adds positions
    assert patches < cls_in < sums[0] < norms[0] < attention < sums[1] < norms[1] < ffn
    assert ffn < sums[2] < cls_out  # pre-norm: each block ends in a sum
    # The head, LayerNorm then Linear, reads the class token beside it.
    assert len(norms) == 3 and norms[2] == cls_out == centre_y(fig, "Linear d -> C")[0]


def test_gat_applies_a_before_the_leaky_relu_and_gatv2_after() -> None:
    gat, gatv2 = (companion.draw_gat_layer(v2=v2) for v2 in (False, True))
    (score,), (relu,) = starts_y(gat, "$a^\\top"), centre_y(gat, "LeakyReLU")
    assert score < relu and not starts_y(gat, "W_dst")
    (score_v2,), (relu_v2,) = starts_y(gatv2, "$a^\\top"), centre_y(gatv2, "LeakyReLU")
    assert relu_v2 < score_v2 and centre_y(gatv2, "W_dst")
    (pair,) = starts_y(gatv2, "$W_{dst}")  # the pair meets inside the nonlinearity
    assert pair < relu_v2
    # Side by side, the softmax and the weighted sum sit at the same heights.
    for prefix in ("masked_softmax", "$h'_i"):
        (below,), (above,) = starts_y(gat, prefix), starts_y(gatv2, prefix)
        assert below == above and max(score, relu, score_v2, relu_v2) < below


def test_the_two_gat_layers_fit_the_page_side_by_side() -> None:
    fig, axes = plt.subplots(1, 2, figsize=(7.8, 7.05))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, wspace=0)
    for ax, v2 in zip(axes, (False, True)):
        assert companion.draw_gat_layer(v2=v2, ax=ax) is fig
    fig.canvas.draw()
    spans = [[t.get_window_extent() for t in ax.texts] for ax in axes]
    assert max(b.x1 for b in spans[0]) <= min(b.x0 for b in spans[1])
