"""Shared test set-up: GPU tests skip without CUDA; caches stay inside the test run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    import importlib.util

    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is visible on this machine")
    skip_vllm = pytest.mark.skip(reason="needs vLLM: `make test-vllm` runs these in .venv-vllm (vLLM's CPU build)")
    has_vllm = importlib.util.find_spec("vllm") is not None
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "vllm" in item.keywords and not has_vllm:
            item.add_marker(skip_vllm)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Compiled games and tiny models go to a per-session folder, never the user's cache."""
    if "REGYM_TEST_CACHE" in os.environ:  # reuse one across runs while developing
        os.environ["REGYM_CACHE"] = os.environ["REGYM_TEST_CACHE"]
    else:
        os.environ["REGYM_CACHE"] = str(tmp_path_factory.mktemp("regym-cache"))
    yield


@pytest.fixture
def one_thread():
    """Two torch threads on a loaded 2-core machine run many times slower than one."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory):
    """A tiny random chat model saved as a Hugging Face folder (the RL tests' SFT checkpoint)."""
    from tiny_chat import save_tiny_chat

    return save_tiny_chat(tmp_path_factory.mktemp("tiny-sft"), seed=0)


@pytest.fixture(scope="module")
def generated_alfworld_cache(tmp_path_factory):
    """A module's own regym cache and no downloaded ALFWorld data: ALFWorld generates its games afresh."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REGYM_CACHE", str(tmp_path_factory.mktemp("regym-cache")))
        patch.delenv("ALFWORLD_DATA", raising=False)
        yield
