"""What crosses between the judge and the learner's process: data only, in frames.

A frame is a 4-byte header length, a JSON header and the raw bytes of the
tensors it names. Values are encoded as JSON nodes: numbers, strings, booleans
and ``null`` as themselves, everything else as a tagged object
(``{"$": "tensor", ...}``, ``"tuple"``, ``"list"``, ``"dict"``, ``"ellipsis"``,
``"complex"``, ``"dtype"``, ``"size"``). Anything else the learner's code
returns crosses as ``{"$": "opaque"}``, its type name and a short repr, and
arrives as an ``Opaque`` placeholder: the judge never unpickles, and never
runs code that came from the learner's process. The judge adds two tags of its
own for arguments, ``"module"`` (how to build a model: the course's class, its
arguments and weights) and ``"callback"`` (a function the learner may call back).

Decoding checks every node (sizes, dtypes, depth) and raises ``WireError`` on
anything malformed; the judge treats that like a crash of the learner process.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any, Callable

__all__ = [
    "Channel",
    "LearnerGone",
    "Opaque",
    "WireError",
    "decode",
    "encode",
]

MAX_HEADER = 16 * 2**20
MAX_BUFFERS = 512 * 2**20
MAX_DEPTH = 40
MAX_NODES = 200_000
REPR_CHARS = 300

_DTYPES = (
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
    "uint8", "int8", "int16", "int32", "int64", "bool",
)


class WireError(Exception):
    """A frame or value that does not follow the format (a broken or forging learner process)."""


class LearnerGone(Exception):
    """The learner's process ended, or stopped answering in time."""


class Opaque:
    """Stands in for a value of a type that cannot cross (an ndarray, a custom object)."""

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return self.text


def _opaque_class(type_name: str) -> type:
    # Named after the learner's type, so a hint reads "returned a ndarray".
    safe = type_name if type_name.isidentifier() else "object"
    return type(safe, (Opaque,), {})


# --------------------------------------------------------------------------- values


def encode(value: Any, buffers: list[bytes], special: Callable[[Any], Any] | None = None,
           depth: int = 0) -> Any:
    """``value`` as a JSON node; tensor bytes are appended to ``buffers``.

    ``special`` (the judge's) may return a node for values it knows how to send
    (models, callbacks), or None.
    """
    import torch

    if depth > MAX_DEPTH:
        return _opaque(value, "nested too deeply")
    if special is not None:
        node = special(value)
        if node is not None:
            return node
    if value is None or isinstance(value, (bool, str)):
        return str(value) if isinstance(value, str) and type(value) is not str else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, complex):
        return {"$": "complex", "re": value.real, "im": value.imag}
    if value is Ellipsis:
        return {"$": "ellipsis"}
    if isinstance(value, torch.dtype):
        return {"$": "dtype", "name": str(value).removeprefix("torch.")}
    if isinstance(value, torch.Tensor):
        return _encode_tensor(value, buffers)
    if isinstance(value, torch.Size):
        return {"$": "size", "items": [int(n) for n in value]}
    if type(value) in (tuple, list):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {"$": kind, "items": [encode(v, buffers, special, depth + 1) for v in value]}
    if type(value) is dict:
        items = [[encode(k, buffers, special, depth + 1), encode(v, buffers, special, depth + 1)]
                 for k, v in value.items()]
        return {"$": "dict", "items": items}
    return _opaque(value)


def _encode_tensor(t: Any, buffers: list[bytes]) -> dict[str, Any]:
    import torch

    plain = torch.Tensor.detach(t).cpu()
    name = str(plain.dtype).removeprefix("torch.")
    if name not in _DTYPES:
        return _opaque(t, f"a tensor of dtype {name}")
    if plain.is_conj():
        plain = plain.resolve_conj()
    data = plain.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b""
    buffers.append(data)
    return {"$": "tensor", "dtype": name, "shape": list(plain.shape), "grad": bool(t.requires_grad),
            "buf": len(buffers) - 1}


def _opaque(value: Any, why: str = "") -> dict[str, Any]:
    try:
        text = repr(value)
    except Exception:  # a learner's __repr__ may raise
        text = "<unprintable>"
    if len(text) > REPR_CHARS:
        text = text[:REPR_CHARS] + "..."
    return {"$": "opaque", "type": type(value).__name__, "repr": text, "why": why}


def decode(node: Any, buffers: list[bytes], special: Callable[[dict[str, Any]], Any] | None = None,
           _state: list[int] | None = None, depth: int = 0) -> Any:
    """The value a node stands for; ``special`` decodes the tags the format leaves to its user."""
    state = _state if _state is not None else [0]
    state[0] += 1
    if state[0] > MAX_NODES or depth > MAX_DEPTH:
        raise WireError("the value is too large or nested too deeply")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if not isinstance(node, dict) or not isinstance(node.get("$"), str):
        raise WireError(f"expected a tagged value, got {type(node).__name__}")
    tag = node["$"]

    def inner(n: Any) -> Any:
        return decode(n, buffers, special, state, depth + 1)

    if tag in ("tuple", "list", "size"):
        items = _field(node, "items", list)
        if tag == "size":
            import torch

            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in items):
                raise WireError("expected non-negative sizes")
            return torch.Size(items)
        values = [inner(n) for n in items]
        return tuple(values) if tag == "tuple" else values
    if tag == "dict":
        out = {}
        for pair in _field(node, "items", list):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise WireError("expected [key, value] pairs")
            key = inner(pair[0])
            try:
                out[key] = inner(pair[1])
            except TypeError:
                raise WireError("expected hashable dictionary keys") from None
        return out
    if tag == "tensor":
        return _decode_tensor(node, buffers)
    if tag == "ellipsis":
        return Ellipsis
    if tag == "complex":
        return complex(_field(node, "re", (int, float)), _field(node, "im", (int, float)))
    if tag == "dtype":
        import torch

        name = _field(node, "name", str)
        if name not in _DTYPES:
            raise WireError(f"unknown dtype {name!r}")
        return getattr(torch, name)
    if tag == "opaque":
        type_name = _field(node, "type", str)[:100]
        return _opaque_class(type_name)(type_name, _field(node, "repr", str)[: REPR_CHARS + 3])
    if special is not None:
        return special(node)
    raise WireError(f"unknown tag {tag!r}")


def _field(node: dict[str, Any], key: str, kind: Any) -> Any:
    value = node.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise WireError(f"expected field {key!r} of a {node.get('$')} node")
    return value


def _decode_tensor(node: dict[str, Any], buffers: list[bytes]) -> Any:
    import torch

    name, shape, index = _field(node, "dtype", str), _field(node, "shape", list), _field(node, "buf", int)
    if name not in _DTYPES:
        raise WireError(f"unknown dtype {name!r}")
    if len(shape) > 32 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise WireError("expected a tensor shape of non-negative sizes")
    if not 0 <= index < len(buffers):
        raise WireError("a tensor names a buffer that is not there")
    dtype = getattr(torch, name)
    numel = 1
    for n in shape:
        numel *= n
    data = buffers[index]
    if len(data) != numel * dtype.itemsize:
        raise WireError("a tensor's bytes do not match its shape")
    if numel == 0:
        tensor = torch.empty(shape, dtype=dtype)
    else:
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
    if node.get("grad") is True and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_()
    return tensor


# --------------------------------------------------------------------------- frames


class Channel:
    """Frames over a pair of pipe descriptors; ``receive`` waits at most until a deadline."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd

    def send(self, message: dict[str, Any], buffers: list[bytes] = ()) -> None:
        header = dict(message, sizes=[len(b) for b in buffers])
        data = json.dumps(header, allow_nan=True).encode()
        try:
            self._write(struct.pack("!I", len(data)) + data)
            for buf in buffers:
                self._write(buf)
        except (BrokenPipeError, OSError) as err:
            raise LearnerGone(f"the other process is gone ({err})") from None

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.write_fd, view[: 1 << 20])
            view = view[written:]

    def receive(self, deadline: float | None = None) -> tuple[dict[str, Any], list[bytes]]:
        """The next message and its buffers; ``LearnerGone`` at end of file or past ``deadline``
        (a ``time.monotonic()`` value)."""
        (size,) = struct.unpack("!I", self._read(4, deadline))
        if size > MAX_HEADER:
            raise WireError("a header larger than the limit")
        try:
            header = json.loads(self._read(size, deadline))
        except (ValueError, RecursionError):
            raise WireError("a header that is not JSON") from None
        sizes = header.pop("sizes", None) if isinstance(header, dict) else None
        if not (isinstance(sizes, list) and all(isinstance(n, int) and n >= 0 for n in sizes)):
            raise WireError("a header without buffer sizes")
        if sum(sizes) > MAX_BUFFERS:
            raise WireError(f"more than {MAX_BUFFERS >> 20} MB of tensors in one message")
        return header, [self._read(n, deadline) for n in sizes]

    def _read(self, n: int, deadline: float | None) -> bytes:
        chunks, left = [], n
        while left:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([self.read_fd], [], [], wait)[0]:
                    raise LearnerGone("no answer in time")
            chunk = os.read(self.read_fd, min(left, 1 << 20))
            if not chunk:
                raise LearnerGone("the other process closed its end")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
