"""The rejuvenate and plasticity-report commands on tiny checkpoints (and SmolLM2 when marked slow)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from oversft import finetune
from regym.cli import plasticity_report, rejuvenate
from regym.models.testing import perturbed_copy, save_checkpoint, tiny_llama, tiny_tokenizer
from regym.rejuvenation import rejuvenate_checkpoint

CALIB = [
    {"prompt": "where is the key", "response": "the key is in the red box"},
    {"messages": [{"role": "user", "content": "open the door"}, {"role": "assistant", "content": "go north"}]},
    {"text": "take apple and open chest then go east"},
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    tokenizer = tiny_tokenizer()
    base = tiny_llama(seed=0)
    sft = perturbed_copy(base, 0.0)
    finetune(sft, tokenizer, CALIB, epochs=25, lr=1e-2, batch_size=3)
    calib = root / "calib.jsonl"
    calib.write_text("".join(json.dumps(row) + "\n" for row in CALIB))
    return save_checkpoint(base, tokenizer, root / "base"), save_checkpoint(sft, tokenizer, root / "sft"), calib


def _weights(folder):
    state = {}
    for path in folder.glob("*.safetensors"):
        state.update(load_file(path))
    return state


def test_rejuvenate_cli_prints_what_it_reset(checkpoints, tmp_path, capsys):
    base, sft, calib = checkpoints
    out = tmp_path / "rejuvenated"
    code = rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(out), "--calib", str(calib),
                            "--reset-frac", "0.02", "--top-n", "8"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "criterion attribution: reset 23 of 1152 units" in printed and "layer 1:" in printed
    summary = json.loads((out / "rejuvenation.json").read_text())
    assert summary["units_reset"] == 23 and sum(summary["per_role"].values()) == 23
    assert summary["diagnostics"]["reconstruction_max_rel_error"] < 1e-4
    # Said where the units are and what the reset did to the target tokens.
    assert "by layer band:" in printed and "target tokens' entropy (nats): base" in printed
    assert sum(sum(row.values()) for row in summary["per_band"].values()) == 23
    assert set(summary["target_entropy"]) == {"base", "sft", "fused", "rejuvenated"}
    assert summary["target_entropy"]["rejuvenated"] != summary["target_entropy"]["sft"]
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()
    fused = _weights(out)
    base_w, sft_w = _weights(base), _weights(sft)
    name = "model.layers.0.input_layernorm.weight"
    torch.testing.assert_close(fused[name], 0.5 * base_w[name] + 0.5 * sft_w[name])


def test_fusion_only_streams_and_alpha_one_is_exact(checkpoints, tmp_path, capsys):
    base, sft, _ = checkpoints
    out = tmp_path / "fused"
    assert rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(out), "--alpha", "1",
                            "--reset-frac", "0"]) == 0
    fused, original = _weights(out), _weights(sft)
    assert all(torch.equal(fused[n], original[n]) for n in original)


def _stages(stderr: str) -> dict[str, dict[str, object]]:
    """Per stage, in order: its announced total, the counts of its progress lines, whether it finished."""
    stages: dict[str, dict[str, object]] = {}
    for line in stderr.splitlines():
        if line.startswith("rejuvenate: base="):  # the config line, printed once before the stages
            continue
        if started := re.fullmatch(r"(.+): started \((\d+) to do\)", line):
            stages[started[1]] = {"total": int(started[2]), "counts": [], "done": False}
        elif step := re.fullmatch(r"(.+): (\d+)/(\d+), .*about .+ left", line):
            assert int(step[3]) == stages[step[1]]["total"], line
            stages[step[1]]["counts"].append(int(step[2]))
        elif done := re.fullmatch(r"(.+): done in .+", line):
            stages[done[1]]["done"] = True
        else:
            raise AssertionError(f"not a progress line: {line!r}")
    return stages


@pytest.mark.parametrize("flags,expected", [
    (["--reset-frac", "0"], {"fusing tensors": 21}),
    (["--criterion", "drift", "--reset-frac", "0.02"], {  # base weights are read from its files, not loaded
        "checking base and SFT weights (tensors)": 42, "loading the SFT model": 1,
        "scoring units by drift (matrices)": 14, "fusing tensors": 21}),
    (["--calib", "CALIB", "--reset-frac", "0.02", "--top-n", "8"], {  # one model at a time, then one streamed pass
        "checking base and SFT weights (tensors)": 42, "loading the base model": 1,
        "base token entropies (calibration examples)": 3, "loading the SFT model": 1,
        "attribution 1/3: entropy gaps (calibration examples)": 3, "attribution 2/3: reset effects (target tokens)": 8,
        "attribution 3/3: logit reconstruction check (examples)": None, "fusing tensors": 21,
        "target tokens' entropy of the result (models)": 1}),
    (["--criterion", "shrink_perturb"], {
        "checking base and SFT weights (tensors)": 42, "loading base and SFT models": 2, "fusing tensors": 21,
        "shrink & perturb toward the base (tensors)": 21, "checking the result (tensors)": 21, "saving OUT": 1}),
], ids=["fusion", "drift", "attribution", "shrink_perturb"])
def test_every_stage_reports_its_known_total_on_stderr(checkpoints, tmp_path, capsys, flags, expected):
    """On a pipe: each stage announces its total, prints a line per tenth of it, and says when it is done;
    stdout stays the summary."""
    base, sft, calib = checkpoints
    out = tmp_path / "out"
    flags = [str(calib) if flag == "CALIB" else flag for flag in flags]
    assert rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(out), *flags]) == 0
    printed = capsys.readouterr()
    stages = _stages(printed.err)
    assert list(stages) == [name.replace("OUT", str(out)) for name in expected]
    for name, stage in stages.items():
        step, counts = max(1, stage["total"] // 10), stage["counts"]
        assert stage["done"] and all(b - a >= step for a, b in zip([0, *counts], counts, strict=False)), name
        if name != "attribution 2/3: reset effects (target tokens)":  # the others advance a unit at a time: a line per tenth
            assert counts == list(range(step, stage["total"], step)), name
        assert stage["total"] > 0 and expected[name.replace(str(out), "OUT")] in (None, stage["total"]), name
    assert "started" not in printed.out and f"wrote {out}" in printed.out


def test_missing_calibration_stops_with_the_fix_and_writes_nothing(checkpoints, tmp_path, capsys):
    base, sft, _ = checkpoints
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"'attribution' criterion needs calibration texts.*--calib.*--criterion drift"):
        rejuvenate_checkpoint(base, sft, out, reset_fraction=0.01)
    assert rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(out), "--criterion", "redo"]) == 2
    assert "'redo' criterion needs calibration texts" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_fallback_criterion_is_opt_in_and_recorded(checkpoints, tmp_path):
    base, sft, _ = checkpoints
    summary = rejuvenate_checkpoint(base, sft, tmp_path / "fallback", reset_fraction=0.01, fallback_criterion="drift")
    assert summary.criterion == "drift" and summary.units_reset == round(0.01 * 1152)
    recorded = json.loads((tmp_path / "fallback" / "rejuvenation.json").read_text())
    assert recorded["criterion"] == "drift" and recorded["fallback_from"] == "attribution"
    assert any("fallback_criterion 'drift'" in warning for warning in recorded["warnings"])
    rejuvenate_checkpoint(base, sft, tmp_path / "drift", reset_fraction=0.01, criterion="drift")
    assert json.loads((tmp_path / "drift" / "rejuvenation.json").read_text())["fallback_from"] is None
    fallback, drift = _weights(tmp_path / "fallback"), _weights(tmp_path / "drift")
    assert all(torch.equal(fallback[name], drift[name]) for name in drift)  # the same model as asking for drift
    # Given calibration texts, the fallback is not used.
    used = rejuvenate_checkpoint(base, sft, tmp_path / "calibrated", reset_fraction=0.01, calib_texts=CALIB,
                                 fallback_criterion="drift", top_n_targets=8)
    assert used.criterion == "attribution" and used.fallback_from is None
    with pytest.raises(ValueError, match="needs calibration texts too"):
        rejuvenate_checkpoint(base, sft, tmp_path / "bad", fallback_criterion="redo")


def test_cli_errors_are_clean(checkpoints, tmp_path, capsys):
    base, _, _ = checkpoints
    other = save_checkpoint(tiny_llama(seed=0, intermediate_size=96), tiny_tokenizer(), tmp_path / "other")
    out = tmp_path / "out"
    assert rejuvenate.main(["--base", str(base), "--sft", str(other), "--out", str(out)]) == 2
    assert "shape" in capsys.readouterr().err and not out.exists()
    assert rejuvenate.main(["--base", str(base), "--sft", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_plasticity_report_shows_over_sft_and_rejuvenation(checkpoints, tmp_path, capsys):
    base, sft, calib = checkpoints
    rejuvenated = tmp_path / "rejuvenated"
    rejuvenate_checkpoint(base, sft, rejuvenated, calib_texts=CALIB, reset_fraction=0.02, top_n_targets=8)
    out = tmp_path / "report"
    code = plasticity_report.main(["--base", str(base), "--sft", str(sft), "--rejuvenated", str(rejuvenated),
                                   "--calib", str(calib), "--out", str(out), "--hessian-iters", "3",
                                   "--perturbations", "2"])
    assert code == 0
    assert "| token entropy (nats) |" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    metrics = {label: entry["metrics"] for label, entry in report["models"].items()}
    assert metrics["sft"]["entropy"] < metrics["base"]["entropy"]
    assert metrics["sft"]["drift_relative"] > metrics["rejuvenated"]["drift_relative"] > 0
    assert metrics["rejuvenated"]["entropy"] > metrics["sft"]["entropy"]
    assert (out / "drift.png").stat().st_size > 0 and (out / "entropy.png").stat().st_size > 0


@pytest.mark.slow
def test_smollm2_over_sft_loses_entropy_and_rejuvenation_restores_it(tmp_path):
    """Minutes on CPU: fine-tune SmolLM2-135M for many epochs on a tiny set, then rejuvenate."""
    from regym.eval.plasticity import token_statistics
    from regym.models.smollm2 import load_smollm2, smollm2_checkpoint
    from regym.rejuvenation import encode_calibration

    rows = [{"messages": [{"role": "user", "content": f"What is the code word number {i}?"},
                          {"role": "assistant", "content": f"The code word number {i} is {word}."}]}
            for i, word in enumerate(["falcon", "harbor", "copper", "meadow"])]
    base_dir = smollm2_checkpoint()
    model, tokenizer = load_smollm2()
    finetune(model, tokenizer, rows, epochs=8, lr=3e-4, batch_size=4)
    sft_dir = save_checkpoint(model, tokenizer, tmp_path / "sft", max_shard_size="2GB")
    out = tmp_path / "rejuvenated"
    rejuvenate_checkpoint(base_dir, sft_dir, out, calib_texts=rows, top_n_targets=16)
    from regym.models.loading import load_causal_lm

    calib = encode_calibration(tokenizer, rows)
    entropy = {label: token_statistics(load_causal_lm(path)[0], calib)["entropy"]
               for label, path in (("base", base_dir), ("sft", sft_dir), ("rejuvenated", out))}
    assert entropy["sft"] < entropy["base"] and entropy["rejuvenated"] > entropy["sft"]


def test_rejuvenate_with_env_reports_the_start_success_before_and_after(checkpoints, tmp_path, capsys):
    base, sft, calib = checkpoints
    out = tmp_path / "out"
    code = rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(out), "--calib", str(calib),
                            "--reset-frac", "0.02", "--top-n", "8", "--env", "math", "--episodes", "2"])
    printed = capsys.readouterr().out
    assert code == 0
    line = next(line for line in printed.splitlines() if line.startswith("greedy success on math"))
    assert "(2 episodes): SFT 0.000 -> rejuvenated 0.000" in line  # random tiny models answer nothing right
