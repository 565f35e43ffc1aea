"""Handoff diagnostics: drift, entropy, sharpness, dormancy and pass@k measure what they claim."""

from __future__ import annotations

import math

import pytest
import torch

from oversft import finetune
from regym.eval.metrics import pass_at_k
from regym.eval.plasticity import (
    ReportSettings,
    build_report,
    calibration_loss,
    dormant_fraction,
    hessian_max_abs_eigenvalue,
    markdown,
    perturbation_sharpness,
    token_statistics,
    write_report,
)
from regym.models.testing import perturbed_copy, tiny_llama, tiny_tokenizer
from regym.rejuvenation import encode_calibration
from regym.rejuvenation.diagnostics import next_token_stats
from regym.rejuvenation.drift import drift

TEXTS = [{"prompt": "where is the key", "response": "the key is in the red box"},
         {"prompt": "open the door", "response": "go north and open the door"}]


@pytest.fixture(scope="module")
def calib():
    return encode_calibration(tiny_tokenizer(), TEXTS)


def test_layer_drift_matches_definition():
    base = tiny_llama(seed=0)
    model = perturbed_copy(base, 0.0)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.add_(0.5)
    rows = {row["group"]: row for row in drift(base, model, "layer")}
    assert rows["layer 0"]["relative_drift"] == 0.0 and rows["embeddings"]["relative_drift"] == 0.0
    layer = base.model.layers[1]
    base_norm = math.sqrt(sum(float(p.detach().pow(2).sum()) for p in layer.parameters()))
    count = sum(p.numel() for p in layer.parameters())
    changed = layer.mlp.up_proj.weight.numel()
    assert rows["layer 1"]["relative_drift"] == pytest.approx(math.sqrt(changed * 0.25) / base_norm, rel=1e-4)
    assert rows["layer 1"]["mean_squared_difference"] == pytest.approx(changed * 0.25 / count, rel=1e-4)


def test_one_drift_function_reads_per_unit_layer_or_total_relative_to_the_base():
    """drift(base, model): relative to the base's norm, so the order matters (doubling a weight is a drift of
    1 from the base, 0.5 back from the doubled model); total drift pools every parameter's squares."""
    base = tiny_llama(seed=0)
    model = perturbed_copy(base, 0.1, seed=1)
    total = drift(base, model, "total")
    base_squared = sum(float(p.detach().pow(2).sum()) for p in base.parameters())
    delta_squared = sum(float((p.detach() - q.detach()).pow(2).sum())
                        for p, q in zip(model.parameters(), base.parameters(), strict=True))
    assert total["drift_relative"] == pytest.approx(math.sqrt(delta_squared / base_squared), rel=1e-5)
    doubled = perturbed_copy(base, 0.0)
    with torch.no_grad():
        doubled.model.layers[0].mlp.up_proj.weight.mul_(2)
    name = "model.layers.0.mlp.up_proj"
    assert torch.allclose(drift(base, doubled, "unit")[name], torch.ones(1))
    assert torch.allclose(drift(doubled, base, "unit")[name], torch.full((1,), 0.5))
    assert float(drift(base, doubled, "unit")["model.layers.1.mlp.up_proj"].max()) == 0.0
    with pytest.raises(ValueError, match="choose one of"):
        drift(base, model, "row")


def test_token_statistics_only_count_response_tokens(calib):
    model = tiny_llama(seed=1)
    stats = token_statistics(model, calib)
    assert stats["tokens"] == sum(e.num_scored for e in calib) == 13
    per = next_token_stats(model, calib[0])
    mask = per["mask"]
    assert stats["entropy"] == pytest.approx(float(torch.cat([next_token_stats(model, e)["entropy"][
        next_token_stats(model, e)["mask"]] for e in calib]).mean()), rel=1e-5)
    assert 0 < float(per["top1"][mask].min()) <= 1 and float(per["entropy"].max()) <= math.log(256) + 1e-4
    with torch.no_grad():
        assert stats["sft_loss"] == pytest.approx(float(calibration_loss(model, calib)), rel=1e-5)


@pytest.fixture(scope="module")
def overtrained():
    base = tiny_llama(seed=2)
    sft = perturbed_copy(base, 0.0)
    finetune(sft, tiny_tokenizer(), TEXTS, epochs=25, lr=1e-2, batch_size=2)
    return base, sft


def test_overtraining_lowers_entropy_and_loss(calib, overtrained):
    base, sft = overtrained
    before, after = token_statistics(base, calib), token_statistics(sft, calib)
    assert after["entropy"] < 0.5 * before["entropy"] and after["sft_loss"] < 0.2 * before["sft_loss"]
    assert after["top1_prob"] > before["top1_prob"]


def test_hessian_eigenvalue_by_power_iteration_matches_dense_hessian(calib):
    # Freeze everything but one small tensor so the dense Hessian is cheap to compute exactly.
    model = tiny_llama(seed=3, vocab_size=64, hidden_size=16, num_heads=2, num_kv_heads=1, intermediate_size=8,
                       num_layers=1)
    example = encode_calibration(tiny_tokenizer(vocab_size=64), ["the red key is in the box"])
    target = model.model.layers[0].mlp.down_proj.weight
    others = [p for p in model.parameters() if p is not target]
    for p in others:
        p.requires_grad_(False)

    class Only(torch.nn.Module):  # exposes just the one tensor as the model's parameters
        def __init__(self):
            super().__init__()
            self.inner = [model]
            self.weight = target

        def forward(self, **kwargs):
            return self.inner[0](**kwargs)

    def loss_of(flat):
        return torch.func.functional_call(model, {"model.layers.0.mlp.down_proj.weight": flat.view_as(target)},
                                          (), {"input_ids": example[0].input_ids}).logits

    def scalar(flat):
        logits = loss_of(flat)[0, :-1]
        mask = example[0].loss_mask[0, 1:]
        nll = torch.nn.functional.cross_entropy(logits, example[0].input_ids[0, 1:], reduction="none")
        return (nll * mask).sum() / mask.sum()

    dense = torch.autograd.functional.hessian(scalar, target.detach().reshape(-1))
    eigenvalues = torch.linalg.eigvalsh(dense)
    expected = float(eigenvalues[eigenvalues.abs().argmax()])
    got = hessian_max_abs_eigenvalue(Only(), example, iterations=100)
    assert got.value == pytest.approx(expected, rel=2e-2)  # signed: the eigenvalue of largest magnitude
    assert got.converged and got.relative_change <= 0.01 and got.iterations == 100
    early = hessian_max_abs_eigenvalue(Only(), example, iterations=1)
    assert not early.converged and early.relative_change == float("inf")  # one step cannot show convergence


def test_perturbation_sharpness_is_deterministic_and_restores_weights(calib, overtrained):
    model = overtrained[1]
    before = [p.detach().clone() for p in model.parameters()]
    first = perturbation_sharpness(model, calib, radius=0.05, samples=3, seed=7)
    assert first == perturbation_sharpness(model, calib, radius=0.05, samples=3, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert perturbation_sharpness(model, calib, radius=0.0, samples=2) == 0.0
    # The untrained base sits on a flat plateau (loss ≈ log V); the over-trained copy is sharper.
    flat = perturbation_sharpness(overtrained[0], calib, radius=0.05, samples=3, seed=7)
    assert abs(flat) < abs(first)


def test_dormant_fraction_counts_dead_neurons(calib):
    model = tiny_llama(seed=5)
    assert dormant_fraction(model, calib) == 0.0
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[:32] = 0.0
    assert dormant_fraction(model, calib) == pytest.approx(32 / 256)


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_report_writes_json_markdown_and_plots(calib, tmp_path):
    tokenizer = tiny_tokenizer()
    base = tiny_llama(seed=0)
    sft = perturbed_copy(base, 0.2, seed=1)
    report = build_report({"base": (base, tokenizer), "sft": (sft, tokenizer)}, "base", calib,
                          ReportSettings(hessian_iterations=3, perturbation_samples=2))
    paths = write_report(report, tmp_path)
    assert all(path.stat().st_size > 0 for path in paths.values())
    table = markdown(report)
    assert "| token entropy (nats) |" in table and "| layer 1 |" in table
    for label in ("base", "sft"):  # the signed largest-magnitude eigenvalue, never called "top", and its flag
        metrics = report["models"][label]["metrics"]
        assert isinstance(metrics["hessian_converged"], bool) and "hessian_top_eigenvalue" not in metrics
    assert "| Hessian eigenvalue, largest magnitude (signed) |" in table and "top Hessian" not in table
    assert ("(not converged)" in table) == (not all(report["models"][label]["metrics"]["hessian_converged"]
                                                    for label in ("base", "sft")))
    assert report["models"]["base"]["metrics"]["drift_relative"] == 0.0
    assert report["models"]["sft"]["metrics"]["drift_relative"] > 0.0


@pytest.mark.slow
def test_env_metrics_and_expert_calibration_on_math():
    """Samples a tiny model through LLMAgent(HFPolicy) on the Math env (tens of seconds on CPU)."""
    from regym.eval.plasticity import calibration_from_env, env_metrics

    tokenizer = tiny_tokenizer()
    calib = calibration_from_env("math", tokenizer, episodes=2)
    assert len(calib) >= 2 and all(example.num_scored > 0 for example in calib)  # one per expert turn
    metrics = env_metrics(tiny_llama(seed=0), tokenizer, "math",
                          ReportSettings(env_tasks=2, env_samples=2, env_k=2, env_max_new_tokens=8))
    assert set(metrics) == {"pass@1", "pass@2", "nonzero_variance_groups"}
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
