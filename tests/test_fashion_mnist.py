"""The IDX reader and the Fashion-MNIST loader, on small files the tests write in the real format."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from companion.tasks.fashion_mnist import (FASHION_MNIST_FILES, download_fashion_mnist, load_fashion_mnist,
                                           read_idx)


def idx_bytes(array: np.ndarray, type_code: int = 0x08, big_endian_dtype: str = ">u1") -> bytes:
    """The IDX encoding, written out by hand: 0, 0, type code, number of axes, sizes (>i4), values."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(big_endian_dtype).tobytes()


def write(path, array, **kwargs) -> None:
    data = idx_bytes(array, **kwargs)
    path.write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


@pytest.fixture
def fake_root(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 7), ("test", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        image_name, label_name = FASHION_MNIST_FILES[split]
        write(tmp_path / image_name, images)
        write(tmp_path / label_name, labels)
        arrays[split] = images, labels
    return tmp_path, arrays


@pytest.mark.parametrize("name", ["plain.idx", "packed.idx.gz"])
def test_read_idx_reads_bytes_in_row_major_order(tmp_path, name) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write(tmp_path / name, array)
    out = read_idx(tmp_path / name)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    assert np.array_equal(out, array)


def test_read_idx_reads_big_endian_ints_and_floats(tmp_path) -> None:
    ints = np.array([[1, -2, 70000]], dtype=np.int32)
    write(tmp_path / "ints.idx", ints, type_code=0x0C, big_endian_dtype=">i4")
    assert np.array_equal(read_idx(tmp_path / "ints.idx"), ints)
    floats = np.array([0.5, -1.25], dtype=np.float32)
    write(tmp_path / "floats.idx", floats, type_code=0x0D, big_endian_dtype=">f4")
    assert np.array_equal(read_idx(tmp_path / "floats.idx"), floats)


def test_read_idx_rejects_other_files_and_truncated_ones(tmp_path) -> None:
    (tmp_path / "text.idx").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "text.idx")
    data = idx_bytes(np.zeros((4, 5), dtype=np.uint8))
    (tmp_path / "short.idx").write_bytes(data[:-3])
    with pytest.raises(ValueError, match="header announces"):
        read_idx(tmp_path / "short.idx")


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_fashion_mnist_scales_and_keeps_labels(fake_root, split) -> None:
    root, arrays = fake_root
    X, y = load_fashion_mnist(root, split)
    images, labels = arrays[split]
    assert X.shape == (len(labels), 1, 28, 28) and X.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    assert torch.allclose(X[:, 0] * 255, torch.from_numpy(images).float(), atol=1e-4)
    assert 0 <= X.min() and X.max() <= 1


def test_load_fashion_mnist_rejects_an_unknown_split_and_mismatched_files(fake_root) -> None:
    root, _ = fake_root
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(root, "validation")
    write(root / FASHION_MNIST_FILES["test"][1], np.zeros(5, dtype=np.uint8))  # 5 labels for 3 images
    with pytest.raises(ValueError, match="labels"):
        load_fashion_mnist(root, "test")


def test_download_copies_missing_files_from_a_file_url(fake_root, tmp_path) -> None:
    source, arrays = fake_root
    target = tmp_path / "downloaded"
    target.mkdir()
    (target / FASHION_MNIST_FILES["train"][0]).write_bytes(b"kept")  # already there: not fetched again
    assert download_fashion_mnist(target, base_url=source.as_uri()) == target
    assert (target / FASHION_MNIST_FILES["train"][0]).read_bytes() == b"kept"
    X, y = load_fashion_mnist(target, "test")
    assert y.tolist() == arrays["test"][1].tolist()
    assert not list(target.glob("*.part"))
