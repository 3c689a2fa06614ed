"""Tests for companion.utils: devices, seeding and source display."""
import random

import numpy as np
import pytest
import torch

from companion import SourceCode, cpu, gpu, nadaraya_watson, set_seed, show_source, try_gpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_returns_cpu_device():
    assert cpu() == torch.device("cpu")


def test_gpu_returns_indexed_cuda_device():
    assert gpu() == torch.device("cuda:0")
    assert gpu(2) == torch.device("cuda:2")


def test_gpu_rejects_negative_index():
    with pytest.raises(ValueError, match="non-negative int, got -1"):
        gpu(-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback on a machine without CUDA")
def test_try_gpu_returns_cpu_without_cuda():
    assert try_gpu() == torch.device("cpu")
    assert try_gpu(3) == torch.device("cpu")


def test_try_gpu_falls_back_to_cpu_for_missing_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert try_gpu(0) == torch.device("cuda:0")
    assert try_gpu(1) == torch.device("cpu")


def test_try_gpu_rejects_negative_index():
    with pytest.raises(ValueError, match="non-negative int, got -2"):
        try_gpu(-2)


@pytest.mark.gpu
@needs_cuda
def test_try_gpu_returns_cuda_when_available():
    device = try_gpu()
    assert device.type == "cuda"
    assert torch.ones(2, device=device).device.type == "cuda"


def test_set_seed_makes_torch_rand_reproducible():
    set_seed(7)
    first = torch.rand(5)
    set_seed(7)
    assert torch.equal(torch.rand(5), first)
    set_seed(8)
    assert not torch.equal(torch.rand(5), first)


def test_set_seed_seeds_python_and_numpy():
    set_seed(3)
    a = (random.random(), np.random.rand())
    set_seed(3)
    assert (random.random(), np.random.rand()) == a


def test_set_seed_rejects_negative_seed():
    with pytest.raises(ValueError, match="non-negative int, got -1"):
        set_seed(-1)


def test_show_source_markdown_holds_def_line_in_python_fence():
    md = show_source(nadaraya_watson)._repr_markdown_()
    assert md.startswith("```python\n")
    assert md.endswith("\n```")
    body = md[len("```python\n"):-len("\n```")]
    assert body.startswith("def nadaraya_watson(")


def test_show_source_text_and_repr_are_plain_source():
    src = show_source(nadaraya_watson)
    assert isinstance(src, SourceCode)
    assert "```" not in src.text
    assert repr(src) == src.text
    assert "return y_hat, weights" in src.text


def test_show_source_pretty_repr_prints_plain_source():
    printed = []

    class Printer:
        def text(self, s):
            printed.append(s)

    src = show_source(nadaraya_watson)
    src._repr_pretty_(Printer(), cycle=False)
    assert printed == [src.text]


def test_show_source_dedents_methods():
    class Holder:
        def method(self):
            return 1

    assert show_source(Holder.method).text.startswith("def method(self):")


def test_show_source_rejects_objects_without_source():
    with pytest.raises(ValueError, match="defined in Python source, got <built-in function len>"):
        show_source(len)


def test_progress_enabled_follows_the_argument_then_the_environment(monkeypatch):
    from companion import progress_enabled

    monkeypatch.setenv("COMPANION_PROGRESS", "0")
    assert progress_enabled(True) is True
    assert progress_enabled(None) is False
    monkeypatch.setenv("COMPANION_PROGRESS", "1")
    assert progress_enabled(None) is True
    assert progress_enabled(False) is False
    monkeypatch.delenv("COMPANION_PROGRESS")
    assert progress_enabled() is True


def test_one_thread_on_cpu_restores_the_thread_count():
    from companion import one_thread_on_cpu

    before = torch.get_num_threads()
    with one_thread_on_cpu("cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with one_thread_on_cpu(torch.device("cpu")):
            raise RuntimeError("the setting is restored on errors too")
    assert torch.get_num_threads() == before
