"""Fashion-MNIST from its original IDX files (chapter 13, for Colab or a GPU).

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) is 70,000 grey 28x28 pictures of ten
kinds of clothing, in MNIST's file format: IDX, gzip-compressed. No package ships
it, so ``download_fashion_mnist`` fetches the four files once (online only) and
``load_fashion_mnist`` reads them with ``read_idx``, which needs nothing but the
standard library and NumPy. The IDX format: two zero bytes, a type code (0x08 for
unsigned bytes), the number of axes, one big-endian int32 per axis, then the values
in row-major order, big-endian.
"""
from __future__ import annotations

import gzip
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["FASHION_MNIST_FILES", "FASHION_MNIST_CLASSES", "FASHION_MNIST_URL",
           "read_idx", "load_fashion_mnist", "download_fashion_mnist"]

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# split -> (images, labels), the names the data set's authors publish.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot")
# IDX type code -> NumPy type, big-endian as the format stores it.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
              0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in one IDX file, gzip-compressed (name ending .gz) or not (ch. 13).

    Shapes: -> an array with the file's axes, e.g. (N, 28, 28) uint8 for images and
    (N,) uint8 for labels.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file: it starts with {data[:4]!r}")
    dtype, num_axes = np.dtype(_IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * num_axes
    shape = tuple(int(s) for s in np.frombuffer(data[4:header], dtype=">i4"))
    _check_idx_size(path, data, header, shape, dtype)
    values = np.frombuffer(data, dtype=dtype, offset=header)
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def _check_idx_size(path: object, data: bytes, header: int, shape: tuple,
                    dtype: np.dtype) -> None:
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: the header announces shape {shape} ({expected} "
                         f"bytes in all), but the file holds {len(data)} bytes")


def load_fashion_mnist(root: str | os.PathLike,
                       split: str = "train") -> tuple[Tensor, Tensor]:
    """The images and labels of one split, read from the IDX files in root (ch. 13).

    Shapes: -> X (N, 1, 28, 28) float in [0, 1], y (N,) int64 in 0..9 (N = 60,000
    for "train", 10,000 for "test"; FASHION_MNIST_CLASSES names the labels).
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(FASHION_MNIST_FILES)}, "
                         f"got {split!r}")
    images, labels = (read_idx(Path(root) / name)
                      for name in FASHION_MNIST_FILES[split])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"expected images (N, H, W) and labels (N,), got "
                         f"{images.shape} and {labels.shape}")
    # (N, 1, height, width)
    X = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    return X, torch.from_numpy(labels.astype(np.int64))


def download_fashion_mnist(root: str | os.PathLike,
                           base_url: str = FASHION_MNIST_URL) -> Path:
    """Fetch the four IDX files into root, skipping those already there (ch. 13).

    Needs the internet (Colab has it); returns root. base_url may be a file:// URL.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in (n for pair in FASHION_MNIST_FILES.values() for n in pair):
        target = root / name
        if target.exists():
            continue
        partial = target.with_name(name + ".part")  # no half file under the real name
        with urllib.request.urlopen(base_url.rstrip("/") + "/" + name) as response:
            with open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        partial.replace(target)
    return root
