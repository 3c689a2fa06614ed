"""d2l's own library (``d2l.torch``, 1.0.3), imported for the parity tests (tests/test_d2l_parity.py).

``d2l/torch.py`` starts with ``import torchvision`` and ``from torchvision import transforms``, but its attention
code (masked_softmax, the attention classes, the Transformer encoder, the GRU encoder) never calls torchvision:
only its image data sets do. The CPU build of torch here has no matching torchvision (the registry's build is for
CUDA and breaks the CPU torch), so where ``import torchvision`` fails, a placeholder module with empty
``transforms`` and ``datasets`` submodules stands in while d2l is imported, and is taken out of ``sys.modules``
again afterwards, so that no other test mistakes it for the real package. Where torchvision imports, it is used.

Where d2l itself is not installed, importing this module skips the calling test module, with a reason that says how
to install it (scripts/setup.sh does); any other failure to import d2l is an error, never a skip.
"""
from __future__ import annotations

import importlib.util
import sys
import types

import pytest

INSTALL = 'python -m pip install --no-deps "d2l==1.0.3"'
TORCHVISION_PARTS = ("torchvision", "torchvision.transforms", "torchvision.datasets")


def _torchvision_placeholder() -> dict[str, types.ModuleType]:
    """Empty modules torchvision, torchvision.transforms and torchvision.datasets, linked as a package."""
    root = types.ModuleType("torchvision", "placeholder for d2l's import; d2l's attention code never calls it")
    parts = {"torchvision": root}
    for name in TORCHVISION_PARTS[1:]:
        parts[name] = types.ModuleType(name, "placeholder")
        setattr(root, name.rsplit(".", 1)[1], parts[name])
    return parts


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # ImportError where it is missing, RuntimeError from a build that does not fit torch
        # A failed import can leave submodules behind; the placeholder replaces all of them.
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def import_d2l() -> types.ModuleType:
    """``d2l.torch``, with torchvision's placeholder only where torchvision does not import."""
    if importlib.util.find_spec("d2l") is None:
        pytest.skip(f"d2l is not installed; install it with: {INSTALL} (scripts/setup.sh does)",
                    allow_module_level=True)
    if _torchvision_imports():
        import d2l.torch as d2l
        return d2l
    sys.modules.update(_torchvision_placeholder())
    try:
        import d2l.torch as d2l
    finally:
        for name in TORCHVISION_PARTS:
            del sys.modules[name]
    return d2l


d2l = import_d2l()
