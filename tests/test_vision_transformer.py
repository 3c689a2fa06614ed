"""The ViT's parts: patch embedding (conv = patchify + linear), the pre-norm block, the class token and
positions, attention rollout; the CNN baseline; the training loop and the digits experiments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import companion
from companion.experiments import vision_transformer as exp
from companion.vision_transformer import (PatchEmbedding, ViT, ViTBlock, attention_rollout, patchify,
                                          permute_patches)

SMALL = dict(img_size=8, patch_size=4, num_hiddens=16, mlp_num_hiddens=32, num_heads=2, num_blks=2,
             emb_dropout=0.0, blk_dropout=0.0)


def images(B=3, C=1, H=8, W=8, seed=0):
    return torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(seed))


# --- patches -----------------------------------------------------------------------------------------------------


def test_patchify_cuts_rows_of_patches_channel_first() -> None:
    X = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)  # 2 channels, 2 x 3 patches of 2 x 2
    P = patchify(X, 2)
    assert P.shape == (1, 6, 8)
    # Patch 1 is row 0, column 1: pixels (0..1, 2..3) of channel 0, then of channel 1.
    assert P[0, 1].tolist() == [2, 3, 8, 9, 26, 27, 32, 33]
    assert P[0, 3].tolist() == X[0, :, 2:4, 0:2].flatten().tolist()


@pytest.mark.parametrize("C, H, W, p", [(1, 8, 8, 2), (1, 8, 8, 4), (3, 12, 8, 4), (2, 6, 9, 3)])
def test_patch_embedding_equals_patchify_then_linear(C, H, W, p) -> None:
    torch.manual_seed(0)
    emb = PatchEmbedding((H, W), p, 5, in_channels=C)
    X = images(4, C, H, W)
    out = emb(X)
    n = (H // p) * (W // p)
    assert out.shape == (4, n, 5) and emb.num_patches == n
    W_flat = emb.conv.weight.flatten(1)  # (d, C * p * p)
    expected = patchify(X, p) @ W_flat.T + emb.conv.bias
    assert torch.allclose(out, expected, atol=1e-6)


def test_permute_patches_moves_whole_patches() -> None:
    X = images(2, 3, 8, 12)
    perm = torch.tensor([5, 0, 3, 1, 2, 4])
    moved = permute_patches(X, 4, perm)
    assert torch.equal(patchify(moved, 4), patchify(X, 4)[:, perm])
    assert torch.equal(permute_patches(moved, 4, torch.argsort(perm)), X)


@pytest.mark.parametrize("bad", [dict(patch_size=3), dict(num_hiddens=0), dict(in_channels=0)])
def test_patch_embedding_rejects_bad_sizes(bad) -> None:
    with pytest.raises(ValueError):
        PatchEmbedding(**{**dict(img_size=8, patch_size=4, num_hiddens=8), **bad})


def test_patch_embedding_rejects_images_of_another_shape() -> None:
    emb = PatchEmbedding(8, 4, 8)
    with pytest.raises(ValueError, match="images"):
        emb(images(2, 3, 8, 8))
    with pytest.raises(ValueError, match="images"):
        emb(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="divide"):
        patchify(torch.zeros(1, 1, 8, 8), 3)


# --- block and model ---------------------------------------------------------------------------------------------


def test_vit_block_is_torchs_pre_norm_encoder_layer() -> None:
    torch.manual_seed(0)
    block = ViTBlock(16, 16, 32, 4, 0.0, use_bias=True).eval()
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=True).eval()
    companion.load_torch_encoder_layer(block, layer)
    X = torch.randn(3, 5, 16)
    assert torch.allclose(block(X), layer(X), atol=1e-5)


def test_vit_block_checks_norm_shape() -> None:
    assert ViTBlock(8, (8,), 16, 2, 0.0).norm_first
    with pytest.raises(ValueError, match="norm_shape"):
        ViTBlock(8, 4, 16, 2, 0.0)


def test_vit_shapes_and_attention_weights() -> None:
    torch.manual_seed(0)
    model = ViT(**SMALL, num_classes=7)
    logits = model(images(3))
    assert logits.shape == (3, 7)
    assert len(model.attention_weights) == 2
    for w in model.attention_weights:
        assert w.shape == (3, 2, 5, 5)  # 4 patches + the class token
        assert torch.allclose(w.sum(-1), torch.ones(3, 2, 5), atol=1e-6)


def test_vit_reads_only_the_class_token() -> None:
    torch.manual_seed(0)
    model = ViT(**SMALL).eval()
    X = images(2)
    out = model(X)
    model.head = nn.Identity()
    # Recompute the class token's final state by hand: the head sees token 0 only.
    H = model.patch_embedding(X)
    H = torch.cat([model.cls_token.expand(2, -1, -1), H], 1) + model.pos_embedding
    for blk in model.blks:
        H = blk(H)
    assert torch.allclose(model(X), H[:, 0], atol=1e-6)
    assert out.shape == (2, 10)


def test_without_positions_permuting_patches_changes_nothing() -> None:
    torch.manual_seed(0)
    X, perm = images(4, 1, 8, 8), torch.tensor([2, 0, 3, 1])
    bag = ViT(**SMALL, positions=False).eval()
    assert bag.pos_embedding is None
    assert torch.allclose(bag(permute_patches(X, 4, perm)), bag(X), atol=1e-5)
    with_positions = ViT(**SMALL).eval()
    nn.init.normal_(with_positions.pos_embedding, std=1.0)  # positions that matter
    gap = (with_positions(permute_patches(X, 4, perm)) - with_positions(X)).abs().max()
    assert gap > 1e-3


def test_vit_keeps_lr_and_rejects_bad_arguments() -> None:
    assert ViT(**SMALL, lr=0.05).lr == 0.05
    for bad in (dict(num_blks=0), dict(num_classes=0), dict(emb_dropout=1.0), dict(num_heads=3)):
        with pytest.raises(ValueError):
            ViT(**{**SMALL, **bad})


# --- attention rollout -------------------------------------------------------------------------------------------


def random_weights(L=3, B=2, h=4, n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(B, h, n, n, generator=gen), -1) for _ in range(L)]


def test_rollout_rows_sum_to_one_and_are_non_negative() -> None:
    for residual in (True, False):
        R = attention_rollout(random_weights(), residual=residual)
        assert R.shape == (2, 5, 5)
        assert torch.allclose(R.sum(-1), torch.ones(2, 5), atol=1e-6) and (R >= 0).all()


def test_rollout_is_the_product_of_mixed_layers_last_on_the_left() -> None:
    W = random_weights(L=3)
    eye = torch.eye(5)
    A = [0.5 * w.mean(1) + 0.5 * eye for w in W]
    assert torch.allclose(attention_rollout(W), A[2] @ A[1] @ A[0], atol=1e-6)
    assert torch.allclose(attention_rollout(W[:1], residual=False), W[0].mean(1), atol=1e-7)
    assert not torch.allclose(attention_rollout(W), A[0] @ A[1] @ A[2], atol=1e-4)


def test_rollout_rejects_what_is_not_a_list_of_weights() -> None:
    for bad in ([], torch.zeros(2, 2, 3, 3), [torch.zeros(2, 3, 3)], random_weights(2, n=4) + random_weights(1)):
        with pytest.raises(ValueError):
            attention_rollout(bad)


# --- CNN, training, experiments ----------------------------------------------------------------------------------


def test_small_cnn_shapes_and_size() -> None:
    cnn = companion.SmallCNN()
    assert cnn(images(5)).shape == (5, 10)
    assert 15_000 < sum(p.numel() for p in cnn.parameters()) < 30_000
    assert companion.SmallCNN(img_size=28, in_channels=3)(images(2, 3, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError):
        companion.SmallCNN(img_size=7)


def test_train_classifier_is_reproducible_and_lowers_the_loss() -> None:
    X, y = images(64), torch.arange(64) % 3
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
        runs.append(exp.train_classifier(model, X, y, num_epochs=30, lr=0.05, batch_size=16, seed=1,
                                         device="cpu", progress=False))
    assert runs[0] == runs[1] and len(runs[0]) == 30
    assert runs[0][-1] < 0.5 * runs[0][0]
    assert exp.classifier_accuracy(model, X, y) > 0.9


def test_train_classifier_rejects_bad_arguments() -> None:
    model, X, y = nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    for bad in (dict(num_epochs=0), dict(lr=0.0), dict(batch_size=0), dict(label_smoothing=1.0)):
        with pytest.raises(ValueError):
            exp.train_classifier(model, X, y, **{**dict(num_epochs=1, lr=0.1), **bad})
    with pytest.raises(ValueError):
        exp.train_classifier(model, X, y[:3], num_epochs=1, lr=0.1)


@pytest.fixture(scope="module")
def digits():
    return companion.load_digits_split()


def test_digits_experiments_run_and_learn(digits) -> None:
    results = exp.accuracy_over_seeds(["vit", "cnn"], digits, num_seeds=2, seed=3, num_epochs=2,
                                      device="cpu", progress=False)
    for kind in ("vit", "cnn"):
        assert len(results[kind]["accuracy"]) == len(results[kind]["models"]) == 2
        assert all(a > 0.3 for a in results[kind]["accuracy"])  # far above chance (0.1) after two epochs
        assert all(t > 0 for t in results[kind]["seconds"])
    assert isinstance(results["vit"]["models"][0], ViT)
    curve = exp.accuracy_by_data_amount(["cnn"], digits, [0.1, 1.0], num_epochs=1, device="cpu", progress=False)
    assert len(curve["cnn"]) == 2 and all(0 <= a <= 1 for a in curve["cnn"])
    with pytest.raises(ValueError, match="kind"):
        exp.digits_model("mlp")


@pytest.mark.gpu
def test_vit_gives_the_same_logits_on_gpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    torch.manual_seed(0)
    model = ViT(**SMALL).eval()
    X = images(4)
    expected = model(X)
    actual = model.to("cuda")(X.to("cuda")).cpu()
    assert torch.allclose(actual, expected, atol=1e-4)


def test_the_benchmark_script_writes_its_table(tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_vision_transformer.py"
    spec = importlib.util.spec_from_file_location("bench_vit", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "table.md"
    result = bench.main(["--seeds", "1", "--curve-seeds", "1", "--fractions", "0.1", "--num-epochs", "1",
                         "--out", str(out)])
    text = out.read_text()
    assert "| vit |" in text and "| cnn |" in text and "| vit, 2x2 patches |" in text
    assert "| 0.1 | 144 |" in text and out.with_suffix(".json").exists()
    assert set(result["runs"]) == set(bench.MODELS) and len(result["curve"]["vit"]) == 1
