"""The local and chunked masks (WeNet's subsequent_chunk_mask), the receptive field, the frame tagger."""

from __future__ import annotations

import pytest
import torch

from companion.local_attention import FrameTagger, chunk_mask, local_attention_mask, receptive_field


def _wenet_subsequent_chunk_mask(size, chunk_size, num_left_chunks=-1):
    """WeNet's loop (wenet/utils/mask.py), written out as the reference."""
    ret = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size):
        start = 0 if num_left_chunks < 0 else max((i // chunk_size - num_left_chunks) * chunk_size, 0)
        ending = min((i // chunk_size + 1) * chunk_size, size)
        ret[i, start:ending] = True
    return ret


def test_chunk_mask_of_the_spec() -> None:
    assert chunk_mask(4, 2).int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert chunk_mask(4, 2).dtype == torch.bool


@pytest.mark.parametrize("n, chunk, left", [(1, 1, -1), (7, 3, -1), (10, 2, 0), (10, 2, 1), (17, 4, 2),
                                            (9, 20, -1), (12, 1, 3)])
def test_chunk_mask_equals_wenet(n, chunk, left) -> None:
    assert torch.equal(chunk_mask(n, chunk, left), _wenet_subsequent_chunk_mask(n, chunk, left))


def test_chunk_of_one_frame_with_all_left_chunks_is_causal() -> None:
    assert torch.equal(chunk_mask(6, 1), torch.tril(torch.ones(6, 6, dtype=torch.bool)))


def test_local_attention_mask_is_a_band() -> None:
    mask = local_attention_mask(6, 1)
    band = torch.ones(6, 6).triu(-1).tril(1).bool()
    assert torch.equal(mask, band)
    assert torch.equal(local_attention_mask(4, 0), torch.eye(4, dtype=torch.bool))
    assert local_attention_mask(5, 10).all()


def test_masks_check_their_arguments() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_mask(4, 0)
    with pytest.raises(ValueError, match="num_left_chunks"):
        chunk_mask(4, 2, 1.5)
    with pytest.raises(ValueError, match="window"):
        local_attention_mask(4, -1)
    with pytest.raises(ValueError, match="n"):
        local_attention_mask(0, 1)


def test_receptive_field_of_a_window_grows_by_2w_per_layer() -> None:
    mask = local_attention_mask(101, 2)
    for L in range(1, 6):
        assert int(receptive_field(mask, L)[50].sum()) == 4 * L + 1


def test_receptive_field_of_chunks_grows_to_the_left_only() -> None:
    mask = chunk_mask(64, 4, 1)
    for L in range(1, 5):
        field = receptive_field(mask, L)[30]  # chunk 7: frames 28..31
        assert not field[32:].any()
        assert int(field.nonzero().min()) == max(28 - 4 * L, 0)


def test_receptive_field_equals_a_path_search() -> None:
    mask = torch.rand(9, 9, generator=torch.Generator().manual_seed(0)) > 0.7
    step = mask | torch.eye(9, dtype=torch.bool)
    expected = torch.zeros(9, 9, dtype=torch.bool)
    for i in range(9):
        reached = {j for j in range(9) if step[i, j]}  # one layer
        for _ in range(2):  # two more: follow each frame's own mask
            reached |= {j for t in reached for j in range(9) if step[t, j]}
        expected[i, sorted(reached)] = True
    assert torch.equal(receptive_field(mask, 3), expected)
    with pytest.raises(ValueError, match="square"):
        receptive_field(torch.ones(2, 3, dtype=torch.bool), 1)


def test_frame_tagger_respects_its_mask() -> None:
    torch.manual_seed(0)
    model = FrameTagger(4, 3)
    X = torch.randn(2, 12, 4)
    mask = local_attention_mask(12, 1)
    out = model(X, mask)
    assert out.shape == (2, 12, 3)
    X2 = X.clone()
    X2[:, 8] += 5.0  # frame 8 is seen by frames 7, 8, 9 only
    moved = (model(X2, mask) - out).abs().amax(dim=(0, 2)) > 1e-6
    assert moved.nonzero().flatten().tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="square"):
        model(X, mask[:5])
