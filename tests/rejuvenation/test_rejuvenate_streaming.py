"""Rejuvenation at checkpoint size: the reset streams with fusion, one model at a time, bounded memory.

``rejuvenate_checkpoint`` never holds two models: it scores units on one model at a time,
then fuses row blocks from both checkpoints and resets the chosen units in the same pass.
These tests hold it to the in-memory ``rejuvenate`` bit for bit, across shards, row blocks,
stored dtypes and biases, and measure its peak memory in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from regym.models.loading import load_causal_lm
from regym.models.testing import perturbed_copy, save_checkpoint, tiny_llama, tiny_qwen2, tiny_tokenizer
from regym.rejuvenation import (
    encode_calibration,
    fuse,
    fuse_checkpoints,
    rejuvenate,
    rejuvenate_checkpoint,
    reset_neurons,
)
from regym.rejuvenation.checkpoint import tensor_index
from regym.rejuvenation.criteria import select_units
from regym.rejuvenation.pipeline import cast_to_stored_dtypes, scoring_dtype
from regym.rejuvenation.reset import StreamingReset

CALIB = [
    "the red key is in the box and the box is on the table",
    {"prompt": "open the door", "response": "go north then take key and open door"},
]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    state = {}
    for path in sorted(folder.glob("*.safetensors")):
        state.update(load_file(path))
    return state


def _pair(root: Path, build, dtype: torch.dtype) -> tuple[Path, Path]:
    """Base and SFT in several small shards, weights stored in ``dtype``, norms in float32."""
    base = build(seed=0)
    sft = perturbed_copy(base, scale=0.3, seed=1)
    for model in (base, sft):
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.data = parameter.data.to(dtype)
    tokenizer = tiny_tokenizer()
    return (save_checkpoint(base, tokenizer, root / "base", max_shard_size="60KB"),
            save_checkpoint(sft, tokenizer, root / "sft", max_shard_size="60KB"))


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def qwen_folders(request, tmp_path_factory):
    """Qwen2: q/k/v have biases, which a row reset moves with their rows."""
    return _pair(tmp_path_factory.mktemp("qwen"), tiny_qwen2, request.param)


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def llama_folders(request, tmp_path_factory):
    # Not Qwen2 here: AutoTokenizer reloads the tiny word-level tokenizer of a qwen2 folder as a
    # Qwen2Tokenizer, which encodes the calibration texts differently from tiny_tokenizer().
    return _pair(tmp_path_factory.mktemp("llama"), tiny_llama, request.param)


def _in_memory(folders, alpha, strength, plan):
    """The reference: float32 models, ``fuse`` then ``reset_neurons``, cast to the SFT's stored dtypes."""
    base, sft = (load_causal_lm(folder)[0] for folder in folders)
    model = reset_neurons(fuse(base, sft, alpha), base, plan, strength)
    cast_to_stored_dtypes(model, tensor_index(folders[1]))
    return model.state_dict()


@pytest.mark.parametrize("alpha,strength", [(0.5, 1.0), (0.37, 0.4), (1.0, 0.75)])
def test_streamed_reset_equals_fuse_then_reset_in_memory(qwen_folders, tmp_path, alpha, strength):
    folders = qwen_folders
    """Row blocks of 1 KB split matrices across blocks and shards; rows, columns and biases all reset."""
    assert len(list(folders[1].glob("*.safetensors"))) > 3
    base, sft = (load_causal_lm(folder)[0] for folder in folders)
    plan = select_units(base, sft, None, "random", 0.1, seed=3)
    assert {group.axis for group in plan.groups if group.indices} == {"row", "column"}
    assert any(group.role == "q" and group.indices for group in plan.groups)  # q_proj has a bias
    out = fuse_checkpoints(*folders, tmp_path / "out", alpha, max_block_bytes=1024, max_shard_bytes=50_000,
                           fuse_block=StreamingReset(plan, alpha, strength))
    streamed, expected = _weights(out), _in_memory(folders, alpha, strength, plan)
    assert set(streamed) == set(_weights(folders[1]))
    for name, tensor in streamed.items():
        assert tensor.dtype == expected[name].dtype and torch.equal(tensor, expected[name]), name
    unit = next(group for group in plan.groups if group.role == "q" and group.indices)
    bias = streamed[f"{unit.module}.bias"][unit.indices].float()
    base_bias = _weights(folders[0])[f"{unit.module}.bias"][unit.indices].float()
    fused_bias = fuse(base, sft, alpha).get_submodule(unit.module).bias[unit.indices].detach()
    torch.testing.assert_close(bias, strength * base_bias + (1 - strength) * fused_bias, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("criterion", ["attribution", "drift", "redo"])
def test_rejuvenate_checkpoint_equals_rejuvenate_in_memory(llama_folders, tmp_path, criterion):
    folders = llama_folders
    """Scored in float32 (``dtype``), the checkpoint path writes exactly what the in-memory path computes."""
    out = tmp_path / "out"
    summary = rejuvenate_checkpoint(*folders, out, alpha=0.5, reset_fraction=0.03, reset_strength=0.6,
                                    criterion=criterion, calib_texts=CALIB, top_n_targets=6, dtype="float32")
    base, sft = (load_causal_lm(folder)[0] for folder in folders)
    calib = encode_calibration(tiny_tokenizer(), CALIB)
    model, expected_summary = rejuvenate(base, sft, 0.5, 0.03, 0.6, criterion, calib, top_n_targets=6)
    cast_to_stored_dtypes(model, tensor_index(folders[1]))
    expected = model.state_dict()
    assert summary.units_reset == expected_summary.units_reset and summary.per_layer == expected_summary.per_layer
    for name, tensor in _weights(out).items():
        assert torch.equal(tensor, expected[name]), name
    assert json.loads((out / "rejuvenation.json").read_text())["diagnostics"]["scored_on"] == "cpu F32"
    side_files = {path.name for path in folders[1].iterdir() if "safetensors" not in path.name}
    assert {path.name for path in out.iterdir()} == side_files | {"model.safetensors", "rejuvenation.json"}


def test_bfloat16_checkpoint_is_scored_in_bfloat16_on_cpu(tmp_path):
    """The default keeps a bfloat16 checkpoint in bfloat16 (a float32 copy would be twice its size)."""
    base = tiny_llama(seed=0).to(torch.bfloat16)
    sft = perturbed_copy(base, scale=0.3, seed=1)
    tokenizer = tiny_tokenizer()
    folders = save_checkpoint(base, tokenizer, tmp_path / "b"), save_checkpoint(sft, tokenizer, tmp_path / "s")
    stored = tensor_index(folders[1])
    assert scoring_dtype(None, torch.device("cpu"), stored) == torch.bfloat16
    assert scoring_dtype("auto", torch.device("cuda"), tensor_index(folders[0])) == torch.bfloat16
    assert scoring_dtype("float32", torch.device("cpu"), stored) == torch.float32
    summary = rejuvenate_checkpoint(*folders, tmp_path / "out", reset_fraction=0.02, calib_texts=CALIB,
                                    top_n_targets=4)
    assert summary.diagnostics["scored_on"] == "cpu BF16" and summary.units_reset == round(0.02 * 1152)
    assert summary.diagnostics["reconstruction_max_rel_error"] < 0.1  # bfloat16 activations, float32 sums


MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from regym.rejuvenation import fuse_checkpoints, rejuvenate_checkpoint

    def peak_kib():
        return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmHWM:"))

    def reset_peak():
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        return peak_kib()

    base, sft, warm_base, warm_sft, out = map(Path, sys.argv[1:6])
    calib = ["the red key is in the box", {"prompt": "open the door", "response": "go north"}]
    # Warm-up on a tiny pair: imports, allocator pools and kernels are not what is measured.
    rejuvenate_checkpoint(warm_base, warm_sft, out / "warm", calib_texts=calib, top_n_targets=2)
    start = reset_peak()
    fuse_checkpoints(base, sft, out / "fused", 0.5, max_block_bytes=1 << 20)
    fusion = peak_kib() - start
    start = reset_peak()
    rejuvenate_checkpoint(base, sft, out / "rejuvenated", calib_texts=calib, top_n_targets=2)
    print(json.dumps({"fusion_kib": fusion, "rejuvenate_kib": peak_kib() - start}))
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_is_bounded_by_the_checkpoint_size(tmp_path):
    """In a fresh process, after a warm-up: streamed fusion adds ≤ 0.5× the checkpoint to its peak RSS
    (loading both models would add ≥ 2×), and the whole attribution rejuvenation ≤ 1.5× (one model at a time).

    Measured on 2 cores: fusion 0.20–0.24× (a fixed ~10 MB of headers, tokenizer JSON and allocator
    pools, not blocks), rejuvenation 0.84–0.99×; the former in-memory path added 3.2×.
    """
    tokenizer = tiny_tokenizer(vocab_size=4096)
    base = tiny_llama(seed=0, vocab_size=4096, hidden_size=384, num_layers=4, intermediate_size=1536)
    sft = perturbed_copy(base, scale=0.1, seed=1)
    folders = [save_checkpoint(m, tokenizer, tmp_path / n) for m, n in ((base, "base"), (sft, "sft"))]
    warm = [save_checkpoint(tiny_llama(seed=s), tiny_tokenizer(), tmp_path / f"warm{s}") for s in (0, 1)]
    size = sum(path.stat().st_size for path in folders[1].glob("*.safetensors"))
    assert size > 30e6  # large enough that a model copy stands out of the allocator's noise
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *map(str, folders), *map(str, warm), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["fusion_kib"] * 1024 <= 0.5 * size, (measured, size)
    assert measured["rejuvenate_kib"] * 1024 <= 1.5 * size, (measured, size)
