"""Does the reset criterion rank units by what their reset really does? Ground truth from single-unit resets.

    .venv/bin/python benchmarks/reset_attribution.py [--model smollm2|tiny|both] [--per-cell 10] [--targets 32]

For each model pair (base, over-SFT) it takes the top-N entropy-gap target tokens of a
calibration set, samples units in every (type, layer band) cell, resets each one alone from its
SFT value to its base value, and measures the change of every target token's log-probability.
Then it prints Spearman's rank correlation between each scorer and that measured change, per
unit type and pooled:

- new (``attribution``): the first-order change of log p(target) for a reset to base, signed,
  against the measured signed change (mean over targets), and |estimate| against |measured|;
- old (``logit_attribution``): mean |logit contribution| (writers exact, readers gradient ×
  activation summed over positions), against |measured change| (its best case: it has no sign).

Pairs: SmolLM2-135M-Instruct (base) and the same model over-trained on short math answers
(``smollm2``); regym's tiny pipeline base (seed 0) and its TextWorld SFT at 16 epochs (``tiny``).
SmolLM2 also reports the greedy accuracy on held-out problems of the over-SFT model, fusion
alone and fusion + each scorer's 1 % reset, and which units each scorer picks.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import torch

from regym.eval.plasticity import token_statistics
from regym.paths import cache_dir
from regym.rejuvenation import encode_calibration, fuse, reset_neurons
from regym.rejuvenation.attribution import attribution_scores, logit_attribution_scores
from regym.rejuvenation.blocks import find_structure
from regym.rejuvenation.criteria import select_units
from regym.rejuvenation.reset import LAYER_BANDS, layer_band, plan_from_scores, plan_from_target_scores


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's ρ with average ranks for ties."""
    def ranks(values: torch.Tensor) -> torch.Tensor:
        order = torch.argsort(values, stable=True)
        ranked = torch.empty(len(values), dtype=torch.float64)
        ranked[order] = torch.arange(len(values), dtype=torch.float64)
        for value in torch.unique(values):
            tied = values == value
            if tied.sum() > 1:
                ranked[tied] = ranked[tied].mean()
        return ranked
    if len(x) < 3:
        return float("nan")
    return float(torch.corrcoef(torch.stack([ranks(x.double()), ranks(y.double())]))[0, 1])


# --- model pairs --------------------------------------------------------------------------------
def math_rows(count: int, seed: int) -> list[dict]:
    """Two-term sums of 1–2 digit numbers (reasoning-gym chain_sum), answered "The answer is \\boxed{N}."."""
    import reasoning_gym

    data = reasoning_gym.create_dataset("chain_sum", min_terms=2, max_terms=2, min_digits=1, max_digits=2,
                                        size=count, seed=seed)
    return [{"messages": [{"role": "user", "content": f"{item['question']} Put the answer in \\boxed{{}}."},
                          {"role": "assistant", "content": f"The answer is \\boxed{{{item['answer']}}}."}],
             "answer": str(item["answer"])} for item in data]


def smollm2_pair(epochs: int) -> tuple[Path, Path, list[dict], list[dict]]:
    """SmolLM2-135M-Instruct and its over-SFT on 32 math answers (TRL SFT, cached), calibration, held-out."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from regym.models.smollm2 import smollm2_checkpoint
    from regym.rl.sft import sft

    base = smollm2_checkpoint()
    train, heldout = math_rows(32, seed=11), math_rows(128, seed=12)
    folder = cache_dir("bench") / f"smollm2-math-sft-{epochs}ep"
    if not (folder / "config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(base)
        rows = Dataset.from_dict({"messages": [row["messages"] for row in train]})
        sft(str(base), tokenizer, rows, out_dir=folder, epochs=epochs, lr=2e-4, batch_size=8, max_length=256,
            seed=0, history_turns=None)
    return base, folder, train[:8], heldout


def tiny_pair(epochs: int) -> tuple[Path, Path, list[dict], list[dict]]:
    from regym.demos import load_demos
    from regym.recipes.tiny import ensure_tiny_pipeline

    pipeline = ensure_tiny_pipeline("textworld", sft_epochs=epochs)
    demos = load_demos(pipeline.demos_dir)
    # Each demo up to its second action (whole episodes run past the 512 scored tokens).
    return pipeline.base_dir, pipeline.sft_dir, [{"messages": m[:5]} for m in demos["messages"][:8]], []


# --- ground truth -------------------------------------------------------------------------------
def sample_units(structure, per_cell: int, seed: int) -> list[tuple[str, int, str, str, int]]:
    """``per_cell`` units of every (type, layer band), uniformly within the cell."""
    generator = torch.Generator().manual_seed(seed)
    layers = len(structure.blocks)
    cells: dict[tuple[str, str], list[tuple[str, int, str, str, int]]] = {}
    for name, layer, role, axis, count in structure.units():
        for index in range(count):
            cells.setdefault((role, layer_band(layer, layers)), []).append((name, layer, role, axis, index))
    chosen = []
    for key in sorted(cells):
        pool = cells[key]
        for pick in torch.randperm(len(pool), generator=generator)[:per_cell].tolist():
            chosen.append(pool[pick])
    return chosen


class TargetBatch:
    """Every calibration example with targets, right-padded into one batch: one forward per measurement."""

    def __init__(self, calib, targets, pad_id: int):
        examples = sorted({target.example for target in targets})
        row_of = {example: row for row, example in enumerate(examples)}
        lengths = [calib[example].input_ids.shape[1] for example in examples]
        self.input_ids = torch.full((len(examples), max(lengths)), pad_id, dtype=torch.long)
        self.attention_mask = torch.zeros_like(self.input_ids)
        for row, example in enumerate(examples):
            self.input_ids[row, :lengths[row]] = calib[example].input_ids[0]
            self.attention_mask[row, :lengths[row]] = 1
        self.rows = torch.tensor([row_of[target.example] for target in targets])
        self.positions = torch.tensor([target.position for target in targets])
        self.tokens = torch.tensor([target.token for target in targets])


def target_log_probs(model, batch: TargetBatch) -> torch.Tensor:
    """log p(target) for every target, from one padded forward and the unembedding at the targets only."""
    with torch.no_grad():
        hidden = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        logits = model.lm_head(hidden[batch.rows, batch.positions]).double()  # (n_targets, V)
    return torch.log_softmax(logits, -1)[torch.arange(len(batch.tokens)), batch.tokens]


def measured_changes(base, sft, batch: TargetBatch, units) -> torch.Tensor:
    """(units, targets): change of log p(target) when each unit alone moves from its SFT value to its base value."""
    modules, base_modules = dict(sft.named_modules()), dict(base.named_modules())
    clean = target_log_probs(sft, batch)
    rows = []
    for name, _, _, axis, index in units:
        linear, anchor = modules[name], base_modules[name]
        with torch.no_grad():
            saved = (linear.weight[index].clone() if axis == "row" else linear.weight[:, index].clone(),
                     linear.bias[index].clone() if axis == "row" and linear.bias is not None else None)
            if axis == "row":
                linear.weight[index] = anchor.weight[index]
                if linear.bias is not None:
                    linear.bias[index] = anchor.bias[index]
            else:
                linear.weight[:, index] = anchor.weight[:, index]
        rows.append(target_log_probs(sft, batch) - clean)
        with torch.no_grad():
            if axis == "row":
                linear.weight[index] = saved[0]
                if saved[1] is not None:
                    linear.bias[index] = saved[1]
            else:
                linear.weight[:, index] = saved[0]
    return torch.stack(rows)


# --- the SmolLM2 start check --------------------------------------------------------------------
def greedy_accuracy(model, tokenizer, rows: list[dict]) -> float:
    from regym.envs.math.answers import last_boxed

    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    right = 0
    for start in range(0, len(rows), 32):
        batch = rows[start:start + 32]
        prompts = [tokenizer.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
                   for row in batch]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**encoded, max_new_tokens=24, do_sample=False, pad_token_id=pad)
        for row, ids in zip(batch, output[:, encoded["input_ids"].shape[1]:], strict=True):
            answer = last_boxed(tokenizer.decode(ids, skip_special_tokens=True))
            right += answer is not None and answer.strip() == row["answer"]
    return right / len(rows)


def composition(plan, layers: int) -> str:
    """Selected units per type, then per layer band (``ResetPlan.counts_by_band``)."""
    bands = plan.counts_by_band(layers)
    by_type = Counter()
    for counts in bands.values():
        by_type.update(counts)
    return (", ".join(f"{role} {count}" for role, count in sorted(by_type.items()) if count) + " | "
            + ", ".join(f"{band} {sum(bands[band].values())}" for band in LAYER_BANDS))


def run(label: str, pair, per_cell: int, top_n: int, seed: int) -> dict:
    from transformers import AutoTokenizer

    from regym.models.loading import load_causal_lm

    base_dir, sft_dir, calibration, heldout = pair
    base, tokenizer = load_causal_lm(base_dir)
    sft, _ = load_causal_lm(sft_dir)
    tokenizer = AutoTokenizer.from_pretrained(sft_dir)
    calib = encode_calibration(tokenizer, calibration, max_length=512)
    structure = find_structure(sft)
    started = time.perf_counter()
    print(f"{label}: scoring", flush=True)
    new = attribution_scores(base, sft, calib, top_n=top_n)
    new_seconds = time.perf_counter() - started
    started = time.perf_counter()
    old = logit_attribution_scores(base, sft, calib, top_n=top_n)
    old_seconds = time.perf_counter() - started
    # Both use the same targets (entropy_targets), new orders them example by example.
    order = {(t.example, t.position): i for i, t in enumerate(new.targets)}
    assert sorted(order) == sorted((t.example, t.position) for t in old.targets)
    units = sample_units(structure, per_cell, seed)
    started = time.perf_counter()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = TargetBatch(calib, new.targets, pad)
    unbatched = torch.stack([torch.log_softmax(sft(input_ids=calib[t.example].input_ids).logits[0, t.position].double(),
                                               -1)[t.token] for t in new.targets[:4]]).detach()
    assert torch.allclose(target_log_probs(sft, batch)[:4], unbatched, atol=1e-4), "padding changed the targets"
    print(f"{label}: measuring {len(units)} single-unit resets", flush=True)
    measured = measured_changes(base, sft, batch, units)  # (units, targets)
    truth_seconds = time.perf_counter() - started
    predicted = torch.stack([new.effects[name][:, index] for name, _, _, _, index in units]).double()
    legacy = torch.tensor([float(old.scores[name][index]) for name, _, _, _, index in units], dtype=torch.float64)
    rows = []
    for role in [*dict.fromkeys(u[2] for u in units), "pooled"]:
        keep = torch.tensor([role in ("pooled", u[2]) for u in units])
        mean_measured, mean_predicted = measured[keep].mean(1), predicted[keep].mean(1)
        rows.append({
            "type": role, "units": int(keep.sum()),
            "new_signed": spearman(mean_predicted, mean_measured),
            "new_abs": spearman(predicted[keep].abs().mean(1), measured[keep].abs().mean(1)),
            "old_abs": spearman(legacy[keep], measured[keep].abs().mean(1)),
            "median_abs_change": float(measured[keep].abs().mean(1).median()),
        })
    pairs = spearman(predicted.flatten(), measured.flatten())
    layers = len(structure.blocks)
    units_all = structure.units()
    # The scores already computed, selected as each criterion selects (no second scoring pass).
    plans = {"attribution": plan_from_target_scores(units_all, new.support, 0.01, "attribution"),
             "logit_attribution": plan_from_scores(units_all, old.scores, 0.01, "logit_attribution"),
             "random": select_units(base, sft, calib, "random", 0.01)}
    result = {"model": label, "rows": rows, "unit_target_pairs_spearman": pairs,
              "targets": len(new.targets), "units_sampled": len(units),
              "reconstruction_max_rel_error": new.reconstruction_max_rel_error,
              "seconds": {"new": round(new_seconds, 1), "old": round(old_seconds, 1),
                          "ground_truth": round(truth_seconds, 1)},
              "selection": {name: composition(plan, layers) for name, plan in plans.items() if name != "random"}}
    print_result(result)  # the ranking table first: the start comparison below takes longer
    entropies = {"base": token_statistics(base, calib)["entropy"], "over-sft": token_statistics(sft, calib)["entropy"]}
    starts = {"over-sft": sft, "fusion": fuse(base, sft, 0.5)}
    entropies["fusion"] = token_statistics(starts["fusion"], calib)["entropy"]
    for name, plan in (("fusion+reset (new)", plans["attribution"]), ("fusion+reset (old)", plans["logit_attribution"]),
                       ("fusion+random reset", plans["random"])):
        starts[name] = reset_neurons(fuse(base, sft, 0.5), base, plan)
        entropies[name] = token_statistics(starts[name], calib)["entropy"]
    result["calibration_entropy"] = {name: round(float(value), 4) for name, value in entropies.items()}
    if heldout:
        result["greedy_accuracy"] = {name: greedy_accuracy(model, tokenizer, heldout) for name, model in
                                     [("base", base), *starts.items()]}
        print("greedy accuracy on 128 held-out sums:", {k: round(v, 3) for k, v in result["greedy_accuracy"].items()})
    return result


def print_result(result: dict) -> None:
    print(f"\n### {result['model']}: {result['units_sampled']} units, {result['targets']} targets "
          f"(writer reconstruction max rel. error {result['reconstruction_max_rel_error']:.1e}; "
          f"scoring s: {result['seconds']})")
    print("| unit type | units | new: signed ρ | new: |·| ρ | old: |·| ρ | median |Δ log p| |")
    print("|---|---|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['type']} | {row['units']} | {row['new_signed']:.3f} | {row['new_abs']:.3f} | "
              f"{row['old_abs']:.3f} | {row['median_abs_change']:.2e} |")
    print(f"new, every (unit, target) pair: ρ = {result['unit_target_pairs_spearman']:.3f}")
    for name, text in result["selection"].items():
        print(f"1 % selected by {name}: {text}")
    if "calibration_entropy" in result:
        print("calibration token entropy (nats):", result["calibration_entropy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2", "tiny", "both"), default="both")
    parser.add_argument("--per-cell", type=int, default=10, help="units per (type, layer band) cell")
    parser.add_argument("--targets", type=int, default=32)
    parser.add_argument("--sft-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results = []
    for label in (("smollm2", "tiny") if args.model == "both" else (args.model,)):
        pair = smollm2_pair(args.sft_epochs) if label == "smollm2" else tiny_pair(args.sft_epochs)
        results.append(run(label, pair, args.per_cell, args.targets, args.seed))
        print("calibration token entropy (nats):", results[-1]["calibration_entropy"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
