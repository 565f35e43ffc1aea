"""Base-anchored fusion: the formula, exact endpoints, streaming == in-memory, safe failure."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from regym.models.testing import perturbed_copy, save_checkpoint, tiny_llama, tiny_tokenizer
from regym.rejuvenation import CheckpointError, fuse, fuse_checkpoints, fuse_tensor


@pytest.fixture(scope="module")
def pair():
    base = tiny_llama(seed=0)
    sft = perturbed_copy(base, scale=0.1, seed=1)
    return base, sft


@pytest.fixture(scope="module")
def folders(tmp_path_factory, pair):
    root = tmp_path_factory.mktemp("fusion")
    base, sft = pair
    tokenizer = tiny_tokenizer()
    # Small shards force the multi-shard (index json) path.
    return (save_checkpoint(base, tokenizer, root / "base", max_shard_size="100KB"),
            save_checkpoint(sft, tokenizer, root / "sft", max_shard_size="100KB"))


def _weights(folder):
    state = {}
    for path in sorted(folder.glob("*.safetensors")):
        state.update(load_file(path))
    return state


def test_fuse_matches_formula(pair):
    base, sft = pair
    fused = fuse(base, sft, alpha=0.3)
    for name, parameter in fused.named_parameters():
        expected = 0.3 * dict(sft.named_parameters())[name] + 0.7 * dict(base.named_parameters())[name]
        torch.testing.assert_close(parameter, expected, rtol=1e-6, atol=1e-7)
    assert fused is not sft and not torch.equal(fused.lm_head.weight, sft.lm_head.weight)


@pytest.mark.parametrize("alpha,which", [(1.0, 1), (0.0, 0)])
def test_fuse_endpoints_are_exact(pair, alpha, which):
    source = pair[which]
    fused = fuse(*pair, alpha=alpha)
    for (name, parameter), (_, expected) in zip(fused.named_parameters(), source.named_parameters(), strict=True):
        assert torch.equal(parameter, expected), name


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.37, 1.0])
def test_streaming_equals_in_memory_bit_for_bit(pair, folders, tmp_path, alpha):
    out = fuse_checkpoints(*folders, tmp_path / "fused", alpha=alpha, max_block_bytes=4096, max_shard_bytes=60_000)
    streamed = _weights(out)
    fused = fuse(*pair, alpha=alpha)
    state = fused.state_dict()
    assert set(streamed) == set(_weights(folders[1]))
    for name, tensor in streamed.items():
        assert tensor.dtype == state[name].dtype
        assert torch.equal(tensor, state[name]), name
    assert json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    if alpha == 1.0:
        sft_state = _weights(folders[1])
        assert all(torch.equal(streamed[n], sft_state[n]) for n in sft_state)


def test_streamed_output_is_a_loadable_checkpoint(pair, folders, tmp_path):
    out = fuse_checkpoints(*folders, tmp_path / "fused", alpha=0.5)
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[4, 9, 17, 30]])
    expected = fuse(*pair, alpha=0.5)(ids).logits
    torch.testing.assert_close(loaded(ids).logits, expected)


def test_bfloat16_checkpoints_fuse_in_float32_and_keep_dtype(pair, tmp_path):
    base, sft = (m.to(torch.bfloat16) for m in (tiny_llama(seed=0), perturbed_copy(pair[0], 0.1, seed=1)))
    tokenizer = tiny_tokenizer()
    folders = save_checkpoint(base, tokenizer, tmp_path / "b"), save_checkpoint(sft, tokenizer, tmp_path / "s")
    streamed = _weights(fuse_checkpoints(*folders, tmp_path / "fused", alpha=0.5, max_block_bytes=1000))
    state = fuse(base, sft, 0.5).state_dict()
    assert all(streamed[n].dtype == torch.bfloat16 and torch.equal(streamed[n], state[n]) for n in streamed)


def test_shape_mismatch_names_the_tensor_and_writes_nothing(folders, tmp_path):
    tokenizer = tiny_tokenizer()
    other = save_checkpoint(tiny_llama(seed=0, intermediate_size=96), tokenizer, tmp_path / "other")
    out = tmp_path / "fused"
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.mlp\.(down|gate|up)_proj\.weight.*shape"):
        fuse_checkpoints(folders[0], other, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fused")]


def test_missing_tensor_is_named(folders, tmp_path):
    other = save_checkpoint(tiny_llama(seed=0, num_layers=3), tiny_tokenizer(), tmp_path / "deeper")
    with pytest.raises(CheckpointError, match=r"model\.layers\.2\..*not in the base"):
        fuse_checkpoints(folders[0], other, tmp_path / "fused")
    assert not (tmp_path / "fused").exists()


def test_tokenizer_mismatch_names_the_token(pair, tmp_path):
    base, sft = pair
    first = save_checkpoint(base, tiny_tokenizer(["alpha", "beta"]), tmp_path / "b")
    second = save_checkpoint(sft, tiny_tokenizer(["beta", "alpha"]), tmp_path / "s")
    with pytest.raises(CheckpointError, match=r"tokenizers differ.*'alpha'"):
        fuse_checkpoints(first, second, tmp_path / "fused")
    assert not (tmp_path / "fused").exists()


def test_failure_midway_leaves_no_output(folders, tmp_path, monkeypatch):
    import regym.rejuvenation.fusion as fusion

    monkeypatch.setattr(fusion, "fuse_tensor", _failing_after(fusion.fuse_tensor, 3))
    with pytest.raises(RuntimeError, match="disk full"):
        fuse_checkpoints(*folders, tmp_path / "fused")
    assert list(tmp_path.iterdir()) == []


def _failing_after(function, count):
    calls = []

    def wrapper(*args):
        calls.append(1)
        if len(calls) > count:
            raise RuntimeError("disk full")
        return function(*args)

    return wrapper


def test_existing_output_needs_overwrite(folders, tmp_path):
    out = fuse_checkpoints(*folders, tmp_path / "fused")
    with pytest.raises(FileExistsError):
        fuse_checkpoints(*folders, out)
    fuse_checkpoints(*folders, out, alpha=1.0, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused"]


def test_alpha_out_of_range(pair):
    with pytest.raises(ValueError, match="alpha"):
        fuse(*pair, alpha=1.5)


@pytest.mark.parametrize("criterion,reset_fraction", [("drift", 0.05), ("none", 0.0)])
def test_rejuvenated_checkpoint_keeps_each_tensors_stored_dtype(tmp_path, criterion, reset_fraction):
    """bfloat16 weights beside float32 norms come out the same way, on the reset and the streaming path."""
    from regym.rejuvenation import rejuvenate_checkpoint

    base = tiny_llama(seed=0)
    sft = perturbed_copy(base, 0.1, seed=1).to(torch.bfloat16)
    for name, parameter in sft.named_parameters():
        if "norm" in name:
            parameter.data = parameter.data.float()
    tokenizer = tiny_tokenizer()
    base_dir, sft_dir = save_checkpoint(base, tokenizer, tmp_path / "b"), save_checkpoint(sft, tokenizer, tmp_path / "s")
    sft_state, base_state = _weights(sft_dir), _weights(base_dir)
    assert {t.dtype for n, t in sft_state.items() if "norm" in n} == {torch.float32}
    assert {t.dtype for n, t in sft_state.items() if "norm" not in n} == {torch.bfloat16}
    out = tmp_path / "out"
    rejuvenate_checkpoint(base_dir, sft_dir, out, alpha=0.5, criterion=criterion, reset_fraction=reset_fraction)
    stored = _weights(out)
    assert {n: t.dtype for n, t in stored.items()} == {n: t.dtype for n, t in sft_state.items()}
    for name in ("model.norm.weight", "model.layers.1.input_layernorm.weight", "model.embed_tokens.weight",
                 "lm_head.weight"):  # never reset: exactly the fused value, in the SFT's dtype
        assert torch.equal(stored[name], fuse_tensor(base_state[name], sft_state[name], 0.5)), name
