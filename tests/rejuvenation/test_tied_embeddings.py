"""Tied embeddings (``tie_word_embeddings``, as in SmolLM2 and the tiny models) through fusion and reset.

A tied checkpoint stores only ``model.embed_tokens.weight``; in memory ``lm_head.weight`` is
the same Parameter. Rejuvenation must keep it so: one tensor, moved by the formula once,
saved once, reloaded tied, with the logits of the in-memory result.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from regym.models.loading import load_causal_lm
from regym.models.testing import perturbed_copy, save_checkpoint, tiny_llama, tiny_tokenizer
from regym.rejuvenation import (
    encode_calibration,
    fuse,
    fuse_checkpoints,
    fuse_tensor,
    rejuvenate,
    rejuvenate_checkpoint,
    reset_neurons,
    select_units,
)
from regym.rejuvenation.reset import ResetPlan, UnitGroup

EMBED = "model.embed_tokens.weight"
IDS = torch.tensor([[4, 9, 17, 30, 41, 5]])
CALIB = [
    "the red key is in the box and the box is on the table",
    {"prompt": "open the door", "response": "go north then take key and open door"},
]


def tied(model) -> bool:
    return model.lm_head.weight is model.model.embed_tokens.weight


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def pair():
    base = tiny_llama(seed=0, tie_word_embeddings=True)
    sft = perturbed_copy(base, scale=0.3, seed=1)
    assert tied(base) and tied(sft)
    return base, sft


@pytest.fixture(scope="module")
def folders(tmp_path_factory, pair):
    root = tmp_path_factory.mktemp("tied")
    tokenizer = tiny_tokenizer()
    base, sft = (save_checkpoint(model, tokenizer, root / name) for model, name in zip(pair, ("base", "sft"),
                                                                                       strict=True))
    assert "lm_head.weight" not in load_file(sft / "model.safetensors")  # stored once
    return base, sft


def test_fuse_keeps_one_tied_parameter_at_the_formula(pair):
    base, sft = pair
    fused = fuse(base, sft, alpha=0.3)
    assert tied(fused)
    expected = 0.3 * sft.model.embed_tokens.weight + 0.7 * base.model.embed_tokens.weight
    torch.testing.assert_close(fused.lm_head.weight, expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(fused.model.embed_tokens.weight,
                       fuse_tensor(base.model.embed_tokens.weight, sft.model.embed_tokens.weight, 0.3))
    assert tied(sft) and not torch.equal(sft.lm_head.weight, fused.lm_head.weight)  # sft untouched


def test_streamed_fusion_reloads_tied_with_the_in_memory_logits(pair, folders, tmp_path):
    out = fuse_checkpoints(*folders, tmp_path / "fused", alpha=0.3, max_block_bytes=2048)
    stored = load_file(out / "model.safetensors")
    assert set(stored) == set(load_file(folders[1] / "model.safetensors"))  # no lm_head.weight appears
    expected = fuse(*pair, alpha=0.3)
    assert torch.equal(stored[EMBED], expected.model.embed_tokens.weight)
    loaded, _ = load_causal_lm(out)
    assert tied(loaded)
    assert torch.equal(logits(loaded), logits(expected))


@pytest.mark.parametrize("criterion", ["drift", "attribution"])
def test_reset_keeps_tied_weights_and_the_saved_model_matches_memory(folders, tmp_path, criterion):
    base, sft = (load_causal_lm(folder)[0] for folder in folders)
    calib = encode_calibration(tiny_tokenizer(), CALIB) if criterion == "attribution" else None
    model, summary = rejuvenate(base, sft, alpha=0.5, reset_fraction=0.05, criterion=criterion, calib=calib,
                                top_n_targets=4)
    assert tied(model) and summary.units_reset == round(0.05 * summary.total_units)
    # The embedding is not a unit: it is fused, never reset, and the head moves with it.
    expected = fuse_tensor(base.model.embed_tokens.weight, sft.model.embed_tokens.weight, 0.5)
    assert torch.equal(model.model.embed_tokens.weight, expected)
    plan = select_units(base, sft, calib, criterion, 0.05, top_n_targets=4)
    assert all(group.module.startswith("model.layers.") for group in plan.groups)
    modules, base_modules = dict(model.named_modules()), dict(base.named_modules())
    for group in plan.groups:
        for index in group.indices:
            pick = (lambda w: w[index]) if group.axis == "row" else (lambda w: w[:, index])  # noqa: B023
            assert torch.equal(pick(modules[group.module].weight), pick(base_modules[group.module].weight))

    out = tmp_path / "rejuvenated"
    rejuvenate_checkpoint(*folders, out, alpha=0.5, reset_fraction=0.05, criterion=criterion,
                          calib_texts=CALIB if calib else None, top_n_targets=4)
    stored = load_file(out / "model.safetensors")
    assert "lm_head.weight" not in stored and torch.equal(stored[EMBED], expected)
    loaded, _ = load_causal_lm(out)
    assert tied(loaded)
    assert torch.equal(logits(loaded), logits(model))


def test_a_reset_of_head_rows_moves_the_tied_embedding_rows_with_them(pair):
    """No criterion selects head rows; a hand-made plan may, and the tie must hold through it."""
    base, sft = pair
    model = perturbed_copy(sft, 0.0)
    assert tied(model)
    plan = ResetPlan("manual", 0.0, [UnitGroup("lm_head", -1, "head", "row", [3, 7], [1.0, 1.0], 256)], 256)
    reset_neurons(model, base, plan, strength=0.75)
    assert tied(model)
    head, base_head, sft_head = model.lm_head.weight, base.lm_head.weight, sft.lm_head.weight
    torch.testing.assert_close(head[[3, 7]], 0.75 * base_head[[3, 7]] + 0.25 * sft_head[[3, 7]])
    keep = [row for row in range(256) if row not in (3, 7)]
    assert torch.equal(model.model.embed_tokens.weight[keep], sft.model.embed_tokens.weight[keep])


def test_shrink_perturb_moves_the_tied_tensor_once(pair):
    base, sft = pair
    model, _ = rejuvenate(base, sft, alpha=1.0, criterion="shrink_perturb", shrink=0.25)
    assert tied(model)
    torch.testing.assert_close(model.lm_head.weight,
                               0.25 * sft.lm_head.weight + 0.75 * base.lm_head.weight, rtol=1e-6, atol=1e-7)
