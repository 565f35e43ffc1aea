"""Neuron reset toward the base, unit selection criteria, and the exact logit attribution."""

from __future__ import annotations

import pytest
import torch

from regym.models.testing import (
    perturbed_copy,
    tiny_gemma,
    tiny_llama,
    tiny_qwen2,
    tiny_qwen3,
    tiny_tokenizer,
)
from regym.rejuvenation import encode_calibration, rejuvenate, reset_neurons, select_units
from regym.rejuvenation.attribution import (
    attribute_example,
    attribution_scores,
    entropy_targets,
    logit_attribution_scores,
)
from regym.rejuvenation.blocks import find_structure
from regym.rejuvenation.criteria import shrink_perturb
from regym.rejuvenation.reset import ResetPlan, UnitGroup, plan_from_target_scores

TEXTS = [
    "the red key is in the box and the box is on the table",
    {"prompt": "open the door", "response": "go north then take key and open door"},
    {"messages": [{"role": "user", "content": "what is two plus three"}, {"role": "assistant", "content": "five"}]},
]
# Attribution reconstructs the target logit to this relative tolerance in float32 (see docs/rejuvenation.md).
RECONSTRUCTION_RTOL = 1e-4


@pytest.fixture(scope="module")
def calib():
    return encode_calibration(tiny_tokenizer(), TEXTS)


@pytest.fixture(scope="module")
def pair():
    base = tiny_llama(seed=0)
    return base, perturbed_copy(base, scale=0.3, seed=1)


def test_reset_touches_exactly_the_selected_rows_and_columns(pair):
    base, sft = pair
    model = perturbed_copy(sft, 0.0)
    plan = ResetPlan("manual", 0.0, [
        UnitGroup("model.layers.1.self_attn.k_proj", 1, "k", "row", [0, 5], [1.0, 1.0], 32),
        UnitGroup("model.layers.0.mlp.down_proj", 0, "down", "column", [3, 127], [1.0, 1.0], 128),
    ], total_units=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reset_neurons(model, base, plan, strength=1.0)
    params, base_params = dict(model.named_parameters()), dict(base.named_parameters())
    for name, old in before.items():
        new = params[name]
        if name == "model.layers.1.self_attn.k_proj.weight":
            assert torch.equal(new[[0, 5]], base_params[name][[0, 5]])
            keep = [i for i in range(32) if i not in (0, 5)]
            assert torch.equal(new[keep], old[keep])
        elif name == "model.layers.0.mlp.down_proj.weight":
            assert torch.equal(new[:, [3, 127]], base_params[name][:, [3, 127]])
            keep = [i for i in range(128) if i not in (3, 127)]
            assert torch.equal(new[:, keep], old[:, keep])
        else:
            assert torch.equal(new, old), name


def test_partial_strength_and_bias_rows():
    base = tiny_qwen2(seed=0)
    sft = perturbed_copy(base, 0.3, seed=2)
    model = perturbed_copy(sft, 0.0)
    plan = ResetPlan("manual", 0.0, [UnitGroup("model.layers.0.self_attn.q_proj", 0, "q", "row", [2], [1.0], 64)], 0)
    reset_neurons(model, base, plan, strength=0.25)
    layer, base_layer, sft_layer = (m.model.layers[0].self_attn.q_proj for m in (model, base, sft))
    torch.testing.assert_close(layer.weight[2], 0.25 * base_layer.weight[2] + 0.75 * sft_layer.weight[2])
    torch.testing.assert_close(layer.bias[2], 0.25 * base_layer.bias[2] + 0.75 * sft_layer.bias[2])
    assert torch.equal(layer.bias[3], sft_layer.bias[3])


@pytest.mark.parametrize("builder", [tiny_llama, tiny_qwen2, tiny_qwen3, tiny_gemma])
def test_attribution_reconstructs_the_logit(builder, calib):
    model = builder(seed=3)
    example = calib[0]
    positions = list(range(example.input_ids.shape[1] - 1))
    tokens = example.input_ids[0, 1:].tolist()
    result = attribute_example(model, example, positions, tokens)
    torch.testing.assert_close(result.reconstructed, result.logit, rtol=RECONSTRUCTION_RTOL, atol=1e-6)
    with torch.no_grad():
        logits = model(input_ids=example.input_ids).logits[0]
    torch.testing.assert_close(result.logit, logits[positions, tokens])
    # The pieces are not trivially the logit: each writer carries a real share of it.
    assert all(c.abs().sum() > 0 for c in result.writers.values())


def test_attribution_keeps_its_buffers_on_the_model_device(calib):
    """Every buffer follows the model's device, not torch's default (a CPU buffer broke GPU models).

    Without a GPU, the default device is set to ``meta`` while the model stays on the CPU:
    a buffer made without ``device=`` lands on ``meta`` and the arithmetic fails.
    """
    model = tiny_llama(seed=0)
    example = calib[0]
    tokens = example.input_ids[0, 2:5].tolist()
    expected = attribute_example(model, example, [1, 2, 3], tokens)
    with torch.device("meta"):
        result = attribute_example(model, example, [1, 2, 3], tokens)
    assert result.bias.device.type == "cpu" and all(v.device.type == "cpu" for v in result.readers.values())
    torch.testing.assert_close(result.reconstructed, expected.reconstructed)


def test_attribution_finds_sandwich_norms_of_gemma3(calib):
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape))
    structure = find_structure(model)
    assert set(structure.blocks[0].post_norms) == {"o", "down"} and structure.final_norm.offset == 1.0
    result = attribute_example(model, calib[1], [3, 4, 5], calib[1].input_ids[0, 4:7].tolist(), structure)
    torch.testing.assert_close(result.reconstructed, result.logit, rtol=RECONSTRUCTION_RTOL, atol=1e-6)


def test_grad_times_activation_matches_finite_difference(calib):
    model = tiny_llama(seed=4)
    structure = find_structure(model)
    example, position, token = calib[0], 6, int(calib[0].input_ids[0, 7])
    result = attribute_example(model, example, [position], [token], structure)
    name = structure.blocks[1].names["v"]
    unit = int(result.readers[name][0].abs().argmax())
    linear = structure.blocks[1].linears["v"]
    # Linear estimate of zeroing unit's output = −(grad × act); compare with scaling it by (1 − ε).
    eps = 1e-3
    with torch.no_grad():
        clean = model(input_ids=example.input_ids).logits[0, position, token]
        handle = linear.register_forward_hook(lambda m, i, o: o.index_fill(-1, torch.tensor([unit]), 0) * eps
                                              + o * (1 - eps))
        shifted = model(input_ids=example.input_ids).logits[0, position, token]
        handle.remove()
    torch.testing.assert_close((clean - shifted) / eps, result.readers[name][0, unit], rtol=2e-2, atol=1e-5)


def test_entropy_targets_rank_by_entropy_gap(pair, calib):
    targets = entropy_targets(*pair, calib, top_n=5)
    gaps = [abs(t.entropy_gap) for t in targets]
    assert len(targets) == 5 and gaps == sorted(gaps, reverse=True) and gaps[0] > 0
    for target in targets:
        assert calib[target.example].loss_mask[0, target.position + 1]


@pytest.mark.parametrize("criterion", ["attribution", "logit_attribution", "drift", "random"])
def test_select_units_picks_the_requested_fraction(pair, calib, criterion):
    plan = select_units(*pair, calib, criterion=criterion, fraction=0.02)
    assert plan.selected == round(0.02 * plan.total_units) and plan.total_units == 2 * (64 * 2 + 32 * 2 + 128 * 3)
    if "attribution" in criterion:
        assert plan.diagnostics["reconstruction_max_rel_error"] < RECONSTRUCTION_RTOL


def test_logit_attribution_scores_are_one_global_list(pair, calib):
    scores = logit_attribution_scores(*pair, calib, top_n=4)
    assert len(scores.targets) == 4 and set(scores.scores) == {name for name, *_ in find_structure(pair[1]).units()}


def _single_unit_resets(base, sft, calib, targets, units):
    """The measured change of every target's log p when each (module, axis, index) alone goes back to base."""
    modules, base_modules = dict(sft.named_modules()), dict(base.named_modules())

    def log_probs():
        with torch.no_grad():
            return torch.stack([torch.log_softmax(sft(input_ids=calib[t.example].input_ids).logits[0, t.position], -1)
                                [t.token] for t in targets])
    clean, changes = log_probs(), []
    for name, axis, index in units:
        weight, anchor = modules[name].weight, base_modules[name].weight
        saved = weight.detach().clone()
        with torch.no_grad():
            if axis == "row":
                weight[index] = anchor[index]
            else:
                weight[:, index] = anchor[:, index]
        changes.append(log_probs() - clean)
        with torch.no_grad():
            weight.copy_(saved)
    return torch.stack(changes)  # (units, targets)


@pytest.mark.parametrize("builder", [tiny_llama, tiny_qwen2])
def test_reset_effects_equal_a_single_unit_reset_to_first_order(builder, calib):
    """Small SFT moves: the estimate is the measured change of each target's log p, for every unit type."""
    base = builder(seed=0)
    sft = perturbed_copy(base, 0.03, seed=1)
    result = attribution_scores(base, sft, calib, top_n=6)
    units = [(name, axis, index) for name, _, _, axis, count in find_structure(sft).units() for index in (0, count - 1)]
    measured = _single_unit_resets(base, sft, calib, result.targets, units)
    predicted = torch.stack([result.effects[name][:, index] for name, _, index in units])
    assert measured.abs().max() > 1e-4  # the resets do change the targets
    torch.testing.assert_close(predicted, measured, rtol=0.05, atol=0.03 * float(measured.abs().max()))


def _spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    rank = lambda v: torch.argsort(torch.argsort(v)).float()  # noqa: E731
    return float(torch.corrcoef(torch.stack([rank(x), rank(y)]))[0, 1])


def test_reset_effects_rank_large_sft_moves_as_single_unit_resets_do(calib):
    """At SFT-sized moves (0.3 of each weight's spread), the estimate still ranks the units as their real resets."""
    base = tiny_llama(seed=0)
    sft = perturbed_copy(base, 0.3, seed=1)
    result = attribution_scores(base, sft, calib, top_n=6)
    generator = torch.Generator().manual_seed(0)
    units = [(name, axis, int(index)) for name, _, _, axis, count in find_structure(sft).units()
             for index in torch.randperm(count, generator=generator)[:6]]
    measured = _single_unit_resets(base, sft, calib, result.targets, units).mean(1)
    predicted = torch.stack([result.effects[name][:, index] for name, _, index in units]).mean(1)
    # The same estimator aimed at the wrong move (to zero, as gradient × activation estimates) must fail.
    zero = dict(base.named_parameters())
    zeroing = attribution_scores(base, sft, calib, top_n=6, base_tensor=lambda name: torch.zeros_like(zero[name]))
    wrong = torch.stack([zeroing.effects[name][:, index] for name, _, index in units]).mean(1)
    assert _spearman(predicted, measured) >= 0.8  # measured: 0.9997
    assert _spearman(wrong, measured) < 0.5  # measured: 0.26


def test_reset_effects_in_module_groups_equal_one_pass(pair, calib):
    whole = attribution_scores(*pair, calib, top_n=5)
    grouped = attribution_scores(*pair, calib, top_n=5, max_delta_bytes=20_000)
    for name, effect in whole.effects.items():
        torch.testing.assert_close(grouped.effects[name], effect, rtol=1e-4, atol=1e-6)


def test_union_selection_gives_every_target_its_best_units():
    units = [("a", 0, "k", "row", 4), ("b", 1, "down", "column", 4)]
    # Target 0 is on a scale 1000x larger than target 1: a global list would take only its units.
    scores = {"a": torch.tensor([[900.0, 800.0, 700.0, -1.0], [0.0, 0.0, 0.1, 0.0]]),
              "b": torch.tensor([[600.0, 0.0, 0.0, 0.0], [0.3, 0.2, 0.0, -5.0]])}
    plan = plan_from_target_scores(units, scores, 4 / 8, "attribution")
    chosen = {(g.module, i) for g in plan.groups for i in g.indices}
    # Round 1: a0 (target 0), b0 (target 1); round 2: a1, b1.
    assert chosen == {("a", 0), ("b", 0), ("a", 1), ("b", 1)} and plan.diagnostics["rounds"] == 2
    # A budget that cuts a round keeps its highest score; units that do not support a target are never taken.
    plan = plan_from_target_scores(units, scores, 3 / 8, "attribution")
    assert {(g.module, i) for g in plan.groups for i in g.indices} == {("a", 0), ("b", 0), ("a", 1)}
    plan = plan_from_target_scores(units, scores, 1.0, "attribution")
    assert plan.selected == 5 and plan.diagnostics["selected_below_budget"] == 3  # a0 a1 a2 b0 b1


def test_drift_criterion_finds_the_moved_units():
    base = tiny_llama(seed=0)
    sft = perturbed_copy(base, 0.0)
    with torch.no_grad():
        sft.model.layers[1].self_attn.k_proj.weight[7] += 1.0
        sft.model.layers[0].mlp.down_proj.weight[:, 11] += 1.0
    plan = select_units(base, sft, None, criterion="drift", fraction=2 / 1152)
    chosen = {(g.module, i) for g in plan.groups for i in g.indices}
    assert chosen == {("model.layers.1.self_attn.k_proj", 7), ("model.layers.0.mlp.down_proj", 11)}


def test_redo_selects_dormant_neurons(calib):
    base = tiny_llama(seed=0)
    sft = perturbed_copy(base, 0.0)
    with torch.no_grad():
        sft.model.layers[0].mlp.up_proj.weight[9] = 0.0  # neuron 9 never fires
    plan = select_units(base, sft, calib, criterion="redo", fraction=0.01)
    chosen = {(g.role, i) for g in plan.groups for i in g.indices}
    assert {("gate", 9), ("up", 9), ("down", 9)} <= chosen and plan.diagnostics["dormant_neurons"] >= 1


def test_rejuvenate_fuses_then_resets(pair, calib):
    base, sft = pair
    model, summary = rejuvenate(base, sft, alpha=0.5, reset_fraction=0.02, criterion="attribution", calib=calib)
    assert summary.units_reset == round(0.02 * summary.total_units) and sum(summary.per_role.values()) == 23
    modules = dict(model.named_modules())
    base_modules = dict(base.named_modules())
    weight = modules["model.layers.0.input_layernorm"].weight
    expected = 0.5 * sft.model.layers[0].input_layernorm.weight + 0.5 * base.model.layers[0].input_layernorm.weight
    torch.testing.assert_close(weight, expected)
    plan = select_units(base, sft, calib, "attribution", 0.02)
    for group in plan.groups:
        for index in group.indices:
            got = modules[group.module].weight
            want = base_modules[group.module].weight
            pick = (lambda w: w[index]) if group.axis == "row" else (lambda w: w[:, index])  # noqa: B023
            assert torch.equal(pick(got), pick(want))


def test_shrink_perturb_moves_toward_base(pair):
    base, sft = pair
    model = shrink_perturb(perturbed_copy(sft, 0.0), base, shrink=0.25)
    torch.testing.assert_close(model.lm_head.weight, 0.25 * sft.lm_head.weight + 0.75 * base.lm_head.weight)


def test_attribution_needs_calibration(pair):
    with pytest.raises(ValueError, match="calibration"):
        select_units(*pair, None, criterion="attribution")
