"""Rejuvenation end to end: fuse toward the base, then reset selected units toward the base.

Algorithm 1 of Liu et al., arXiv 2606.09932: θ_fuse = α·θ_sft + (1 − α)·θ_base, then the
top-ρ units (chosen on the over-SFT model) get θ ← ω·θ_base + (1 − ω)·θ_fuse.

Calibration: the ``attribution`` and ``redo`` criteria need calibration texts (a sample of
the SFT data). Without them, ``rejuvenate`` and ``rejuvenate_checkpoint`` raise an error that
names the fixes. They never invent a calibration set (texts made up from a chat template
would measure nothing about the SFT data) and never switch criterion on their own: only
``fallback_criterion`` does that, and the switch is then recorded in ``rejuvenation.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from regym.checkpoints import save_model
from regym.models.loading import load_causal_lm, resolve_checkpoint
from regym.rejuvenation.attribution import token_entropies
from regym.rejuvenation.blocks import ROLES
from regym.rejuvenation.calibration import CalibrationExample, encode_calibration
from regym.rejuvenation.checkpoint import (
    DTYPE_NAMES,
    CheckpointError,
    ShardReader,
    TensorInfo,
    check_checkpoints,
    check_output,
    copy_side_files,
    require_finite,
    tensor_index,
)
from regym.rejuvenation.criteria import (
    NEEDS_CALIBRATION,
    check_criteria,
    select_units,
    shrink_perturb,
)
from regym.rejuvenation.diagnostics import next_token_stats
from regym.rejuvenation.fusion import fuse, fuse_checkpoints, fuse_tensor
from regym.rejuvenation.reset import ResetPlan, StreamingReset, reset_neurons
from regym.rejuvenation.stages import Stages, silent

SUMMARY_FILE = "rejuvenation.json"
"""The summary ``rejuvenate_checkpoint`` writes into its output folder."""


@dataclass
class RejuvenationSummary:
    """What ``rejuvenate`` did: settings, units reset per (layer, module type), diagnostics, time."""

    alpha: float
    reset_fraction: float
    reset_strength: float
    criterion: str
    units_reset: int = 0
    total_units: int = 0
    per_layer: dict[str, dict[str, int]] = field(default_factory=dict)  # "layer 3" -> {"k": 2, ...}
    per_role: dict[str, int] = field(default_factory=dict)
    per_band: dict[str, dict[str, int]] = field(default_factory=dict)  # "early"/"middle"/"late" -> {"k": 2, ...}
    target_entropy: dict[str, float] = field(default_factory=dict)  # mean over target tokens: base, sft, rejuvenated
    diagnostics: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0
    output: str | None = None
    warnings: list[str] = field(default_factory=list)
    fallback_from: str | None = None  # the criterion asked for, when ``fallback_criterion`` replaced it

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        lines = [f"fused with alpha={self.alpha} (theta = alpha*sft + (1-alpha)*base)"]
        if self.criterion == "shrink_perturb":
            lines.append(f"shrink & perturb toward base: {self.diagnostics}")
        elif self.criterion != "none" and self.reset_fraction > 0:
            lines.append(f"criterion {self.criterion}: reset {self.units_reset} of {self.total_units} units "
                         f"({100 * self.units_reset / max(self.total_units, 1):.2f}%) toward base, "
                         f"strength {self.reset_strength}")
            if self.per_role:
                lines.append("  per module type: " + ", ".join(f"{k}={v}" for k, v in self.per_role.items()))
            if self.per_band:
                roles = [role for role in ROLES if role in self.per_role]
                lines.append("  by layer band: " + "".join(f"{role:>6}" for role in roles))
                for band, counts in self.per_band.items():
                    lines.append(f"  {band:>13}: " + "".join(f"{counts.get(role, 0):>6}" for role in roles))
            for layer, counts in self.per_layer.items():
                lines.append(f"  {layer}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
            if self.target_entropy:
                lines.append("  target tokens' entropy (nats): " + ", ".join(
                    f"{name} {value:.3f}" for name, value in self.target_entropy.items()))
            for key, value in self.diagnostics.items():
                lines.append(f"  {key}: {value}")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.output:
            lines.append(f"wrote {self.output}")
        return "\n".join(lines)


def _summarise(summary: RejuvenationSummary, plan: ResetPlan) -> None:
    summary.units_reset = plan.selected
    summary.total_units = plan.total_units
    summary.diagnostics.update(plan.diagnostics)
    summary.per_band = plan.counts_by_band(max((group.layer for group in plan.groups), default=0) + 1)
    if "target_entropy_sft" in plan.diagnostics:
        sft = float(plan.diagnostics["target_entropy_sft"])
        summary.target_entropy = {"base": sft - float(plan.diagnostics["mean_entropy_gap"]), "sft": sft}
    for (layer, role), count in sorted(plan.counts().items(), key=lambda item: (item[0][0], ROLES.index(item[0][1]))):
        if count:
            summary.per_layer.setdefault(f"layer {layer}", {})[role] = count
            summary.per_role[role] = summary.per_role.get(role, 0) + count
    summary.per_role = {role: summary.per_role[role] for role in ROLES if role in summary.per_role}


def rejuvenate(base: nn.Module, sft: nn.Module, alpha: float = 0.5, reset_fraction: float = 0.01,
               reset_strength: float = 1.0, criterion: str = "attribution",
               calib: Sequence[CalibrationExample] | None = None, *, top_n_targets: int = 64, seed: int = 0,
               shrink: float = 0.8, noise: float = 0.0,
               stages: Stages = silent) -> tuple[nn.Module, RejuvenationSummary]:
    """A new, rejuvenated model (``sft`` and ``base`` are left untouched) and a summary of what changed.

    ``attribution`` and ``redo`` need ``calib``; without it this raises ``ValueError`` naming the fixes.
    Fusing, scoring units and resetting each report through ``stages`` (see ``regym.rejuvenation.stages``).
    """
    check_criteria(criterion)
    if _needs_calibration(criterion, reset_fraction) and not calib:
        raise ValueError(missing_calibration(criterion))
    start = time.perf_counter()
    summary = RejuvenationSummary(alpha, reset_fraction, reset_strength, criterion)
    model = fuse(base, sft, alpha, stages=stages)
    if criterion == "shrink_perturb":
        shrink_perturb(model, base, shrink=shrink, noise=noise, seed=seed, stages=stages)
        summary.diagnostics.update({"shrink": shrink, "noise": noise, "seed": seed})
    elif criterion != "none" and reset_fraction > 0:
        plan = select_units(base, sft, calib, criterion, reset_fraction, top_n_targets=top_n_targets, seed=seed,
                            stages=stages)
        fused_entropy = target_entropy(model, calib, plan.targets) if plan.targets else None
        reset_neurons(model, base, plan, reset_strength, stages=stages)
        _summarise(summary, plan)
        if plan.targets:
            summary.target_entropy["rejuvenated"] = target_entropy(model, calib, plan.targets)
            summary.target_entropy["fused"] = fused_entropy
            _name_the_reset(summary)
    summary.seconds = time.perf_counter() - start
    return model, summary


def rejuvenate_checkpoint(base: str | Path, sft: str | Path, out: str | Path, *, alpha: float = 0.5,
                          reset_fraction: float = 0.01, reset_strength: float = 1.0, criterion: str = "attribution",
                          calib_texts: list[str] | list[dict] | None = None, fallback_criterion: str | None = None,
                          overwrite: bool = False, top_n_targets: int = 64, seed: int = 0,
                          device: str | None = None, dtype: str | torch.dtype | None = None,
                          stages: Stages = silent) -> RejuvenationSummary:
    """Rejuvenate HF checkpoint folders into ``out`` (written atomically; config/tokenizer from ``sft``).

    Sized for 1B–8B checkpoints: peak host memory is about one model in its stored dtype.
    Units are chosen first (``attribution``: the base is loaded alone for its token entropies
    and freed, then the SFT model is loaded once; ``drift`` reads base weights from the base's
    files; ``redo``/``random`` need only the SFT model). The models then go, and fusion streams
    row blocks from both checkpoints, resetting the chosen rows/columns toward the base rows
    of the same blocks as it writes (``reset.StreamingReset``): the result equals ``rejuvenate``
    on float32 models saved in the stored dtypes. ``shrink_perturb`` still works in memory
    (both models in float32). Every tensor keeps the dtype the SFT checkpoint stores it in.
    Models are scored on ``device`` (default: CUDA when present, else CPU) in ``dtype``
    (default: bfloat16 on CUDA; on CPU the SFT checkpoint's own floating dtype, since a float32
    copy of a bfloat16 checkpoint would be twice its size; see ``scoring_dtype``).
    ``calib_texts`` are strings or calibration dicts (see ``regym.rejuvenation.calibration``).
    ``attribution``/``redo`` need them: without them this raises ``ValueError`` naming the fixes,
    unless ``fallback_criterion`` (one that needs no data, e.g. ``"drift"``) is given; that one
    then runs, and the summary (``rejuvenation.json``) records the switch in ``fallback_from``
    and ``warnings``.
    Both folders are checked whole first (``check_checkpoints``: files, config, architecture,
    finite weights) and so is every block written; a fault is a ``CheckpointError`` and nothing
    is written. The summary is written inside the output before it is renamed into place.
    Every step that reads, computes or writes a whole model is a stage of ``stages`` with a known
    total (checking, loading, scoring units, fusing with the reset): the ``rejuvenate`` command
    shows each as a progress bar, or one line per tenth on a pipe.
    """
    base, sft, out = resolve_checkpoint(base), resolve_checkpoint(sft), Path(out)
    check_criteria(criterion, fallback_criterion)
    check_output(out, overwrite)
    start = time.perf_counter()
    requested, warnings = criterion, []
    if _needs_calibration(criterion, reset_fraction) and not calib_texts:
        check_checkpoints({"base": base, "SFT": sft}, weights=False)  # a broken input is reported first
        if fallback_criterion is None:
            raise ValueError(missing_calibration(criterion))
        criterion = fallback_criterion
        warnings.append(f"criterion {requested!r} needs calibration texts and none were given; "
                        f"used fallback_criterion {criterion!r} instead")

    def record(summary: RejuvenationSummary, folder: Path) -> None:
        """Complete the summary and write it into the output folder, before that folder is renamed into place."""
        summary.warnings = warnings + summary.warnings
        summary.fallback_from = requested if criterion != requested else None
        summary.seconds = time.perf_counter() - start
        summary.output = str(out)
        (folder / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")

    if criterion == "none" or (reset_fraction == 0 and criterion != "shrink_perturb"):
        summary = RejuvenationSummary(alpha, reset_fraction, reset_strength, criterion)
        fuse_checkpoints(base, sft, out, alpha, overwrite=overwrite, stages=stages,
                         extra_files=lambda folder: record(summary, folder))
        return summary
    checkpoints = check_checkpoints({"base": base, "SFT": sft}, stages=stages)
    stored = checkpoints["SFT"].tensors

    def finish(folder: Path, summary: RejuvenationSummary) -> None:
        copy_side_files(sft, folder)  # the SFT's config, generation config and tokenizer files, verbatim
        check_stored_like(tensor_index(folder), stored)
        record(summary, folder)

    if criterion == "shrink_perturb":
        return _shrink_perturb_checkpoint(base, sft, out, alpha, seed, stored, finish, stages)
    where = scoring_device(device)
    precision = scoring_dtype(dtype, where, stored)
    plan, calib = _plan_units(base, sft, checkpoints["base"].tensors, criterion, reset_fraction, calib_texts,
                              top_n_targets, seed, where, precision, stages)
    summary = RejuvenationSummary(alpha, reset_fraction, reset_strength, criterion)
    _summarise(summary, plan)
    summary.diagnostics["scored_on"] = f"{where.type} {DTYPE_NAMES.get(precision, precision)}"
    reset = StreamingReset(plan, alpha, reset_strength)
    absent = [name for name in reset.matrices if name not in stored]
    if absent:
        raise CheckpointError(f"{sft}: the model's projection {absent[0]!r} is not a tensor of the checkpoint "
                              "(its files name weights differently from the loaded model), so units cannot be reset")
    fuse_checkpoints(base, sft, out, alpha, overwrite=overwrite, stages=stages,
                     extra_files=lambda folder: finish(folder, summary), fuse_block=reset)
    if plan.targets:
        with stages("target tokens' entropy of the result (models)", 1) as stage:
            model, _ = load_causal_lm(out, precision, where)
            summary.target_entropy["rejuvenated"] = target_entropy(model, calib, plan.targets)
            undo_reset(model, plan, alpha, checkpoints["base"].tensors, stored)
            summary.target_entropy["fused"] = target_entropy(model, calib, plan.targets)
            del model
            release_memory(where)
            stage.advance()
        _name_the_reset(summary)
        temporary = out / f".{SUMMARY_FILE}.tmp"
        temporary.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        temporary.replace(out / SUMMARY_FILE)
    return summary


def undo_reset(model: nn.Module, plan: ResetPlan, alpha: float, base_tensors: Mapping[str, TensorInfo],
               sft_tensors: Mapping[str, TensorInfo]) -> None:
    """Give the planned units of a rejuvenated ``model`` their fused values back: the fusion-only model.

    Reads the planned matrices from both checkpoints one at a time, so that what the reset alone did
    can be measured without a second streamed fusion.
    """
    modules = dict(model.named_modules())
    with ShardReader() as reader, torch.no_grad():
        for group in plan.groups:
            if not group.indices:
                continue
            linear = modules[group.module]
            index = torch.tensor(group.indices)
            for kind, tensor in (("weight", linear.weight), ("bias", linear.bias)):
                if tensor is None or (kind == "bias" and group.axis == "column"):
                    continue
                base_info, sft_info = base_tensors[f"{group.module}.{kind}"], sft_tensors[f"{group.module}.{kind}"]
                fused = fuse_tensor(reader.rows(base_info, 0, base_info.shape[0]),
                                    reader.rows(sft_info, 0, sft_info.shape[0]), alpha).to(tensor.device, tensor.dtype)
                if group.axis == "row":
                    tensor[index] = fused[index]
                else:
                    tensor[:, index] = fused[:, index]


def _name_the_reset(summary: RejuvenationSummary) -> None:
    """One line when the reset itself moved the target tokens' entropy by less than 0.01 nats."""
    entropy = summary.target_entropy
    if "fused" in entropy and "rejuvenated" in entropy and abs(entropy["rejuvenated"] - entropy["fused"]) < 0.01:
        summary.warnings.append(f"the reset changed nothing measurable: the target tokens' entropy is "
                                f"{entropy['rejuvenated']:.3f} nats after it and {entropy['fused']:.3f} with fusion alone")


def target_entropy(model: nn.Module, calib: Sequence[CalibrationExample], targets: Sequence[tuple[int, int]]) -> float:
    """Mean teacher-forced next-token entropy (nats) of ``model`` at the (example, position) targets."""
    by_example: dict[int, list[int]] = {}
    for example, position in targets:
        by_example.setdefault(example, []).append(position)
    total = 0.0
    for example, positions in by_example.items():
        total += float(next_token_stats(model, calib[example])["entropy"][positions].sum())
    return total / max(len(targets), 1)


def _plan_units(base: Path, sft: Path, base_tensors: Mapping[str, TensorInfo], criterion: str, fraction: float,
                calib_texts: list | None, top_n_targets: int, seed: int, device: torch.device, dtype: torch.dtype,
                stages: Stages) -> tuple[ResetPlan, list[CalibrationExample] | None]:
    """The units to reset (and the encoded calibration), holding at most one model at a time."""
    from transformers import AutoTokenizer

    calib = encode_calibration(AutoTokenizer.from_pretrained(sft), calib_texts) if calib_texts else None
    base_entropies = None
    if criterion in ("attribution", "logit_attribution"):
        with stages("loading the base model", 1) as stage:
            base_model, _ = load_causal_lm(base, dtype, device)
            stage.advance()
        with stages("base token entropies (calibration examples)", len(calib)) as stage:
            base_entropies = token_entropies(base_model, calib, advance=stage.advance)
        del base_model
        release_memory(device)
    with stages("loading the SFT model", 1) as stage:
        sft_model, _ = load_causal_lm(sft, dtype, device)
        stage.advance()
    with ShardReader() as reader:
        def base_tensor(name: str) -> torch.Tensor | None:
            info = base_tensors.get(name)
            return None if info is None else reader.rows(info, 0, info.shape[0])

        # Attribution holds base − SFT of some projections beside the SFT model: a quarter of the
        # checkpoint at a time keeps the peak near one model (scored in groups, one forward each).
        budget = sum(info.nbytes for info in base_tensors.values()) // 4
        plan = select_units(None, sft_model, calib, criterion, fraction, top_n_targets=top_n_targets, seed=seed,
                            stages=stages, base_entropies=base_entropies, base_tensor=base_tensor,
                            max_delta_bytes=budget)
    del sft_model
    release_memory(device)
    return plan, calib


def _shrink_perturb_checkpoint(base: Path, sft: Path, out: Path, alpha: float, seed: int,
                               stored: Mapping[str, TensorInfo],
                               finish: Callable[[Path, RejuvenationSummary], None],
                               stages: Stages) -> RejuvenationSummary:
    """Shrink & Perturb in memory: both models in float32 (its noise is drawn per whole parameter)."""
    with stages("loading base and SFT models", 2) as stage:
        base_model, _ = load_causal_lm(base)
        stage.advance(status="base loaded")
        sft_model, _ = load_causal_lm(sft)
        stage.advance(status="SFT loaded")
    model, summary = rejuvenate(base_model, sft_model, alpha, criterion="shrink_perturb", seed=seed, stages=stages)
    cast_to_stored_dtypes(model, stored)
    state = model.state_dict()
    with stages("checking the result (tensors)", len(state)) as stage:
        for name, tensor in state.items():
            require_finite(tensor, f"rejuvenated tensor {name!r}")
            stage.advance()

    with stages(f"saving {out}", 1) as stage:
        save_model(model, out, extra_files=lambda folder: finish(folder, summary))
        stage.advance()
    return summary


def scoring_device(device: str | torch.device | None = None) -> torch.device:
    """Where units are scored: ``device`` if given ("auto" and None mean CUDA when present, else the CPU)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def scoring_dtype(dtype: str | torch.dtype | None, device: torch.device,
                  stored: Mapping[str, TensorInfo]) -> torch.dtype:
    """The dtype models are scored in: ``dtype`` if given, else bfloat16 on CUDA, else the stored one.

    On the CPU the default is the floating dtype holding most of the SFT checkpoint's bytes: a
    float32 checkpoint (the tiny test models) is scored exactly as before, and a bfloat16 one
    stays bfloat16, because a float32 copy would take twice the checkpoint's size and break the
    1.5× host-memory bound (issue 18). Attribution only ranks units, so bfloat16's rounding
    can at most swap units whose scores nearly tie.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None and dtype != "auto":
        if dtype not in DTYPE_BY_NAME:
            raise ValueError(f"unknown dtype {dtype!r}; choose from auto, {', '.join(DTYPE_BY_NAME)}")
        return DTYPE_BY_NAME[dtype]
    if device.type == "cuda":
        return torch.bfloat16
    sizes: dict[torch.dtype, int] = {}
    for info in stored.values():
        if info.dtype.is_floating_point:
            sizes[info.dtype] = sizes.get(info.dtype, 0) + info.nbytes
    return max(sizes, key=sizes.get) if sizes else torch.float32


DTYPE_BY_NAME = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The ``dtype`` names ``rejuvenate_checkpoint`` (and ``rejuvenate --dtype``) accepts."""


def release_memory(device: torch.device) -> None:
    """Hand a freed model's memory back (to the OS, or CUDA's cache), so the next model does not stack on it."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def missing_calibration(criterion: str) -> str:
    """The error for a criterion that needs calibration texts and got none: why, and the three ways out."""
    return (f"the {criterion!r} criterion needs calibration texts (a sample of the SFT data) and none were given: "
            "pass them (calib_texts=..., or rejuvenate --calib FILE.jsonl), choose a criterion that needs none "
            "(criterion='drift', or rejuvenate --criterion drift), or set fallback_criterion='drift' to use drift "
            "whenever calibration texts are missing")


def cast_to_stored_dtypes(model: nn.Module, stored: Mapping[str, TensorInfo]) -> None:
    """Give each parameter and buffer the dtype its tensor has in the checkpoint ``stored`` indexes.

    The work is done in float32; this puts every tensor back in its own stored dtype (bfloat16
    weights stay bfloat16, float32 norms stay float32). A tied lm_head is the embedding's
    Parameter, listed once, so it stays one tensor.
    """
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if name in stored and tensor.dtype != stored[name].dtype:
            tensor.data = tensor.data.to(stored[name].dtype)


def check_stored_like(written: Mapping[str, TensorInfo], stored: Mapping[str, TensorInfo]) -> None:
    """Raise ``CheckpointError`` unless every written tensor has the name, shape and dtype the SFT checkpoint stores."""
    for name, info in sorted(written.items()):
        if name not in stored:
            raise CheckpointError(f"the rejuvenated model has tensor {name!r}, which the SFT checkpoint does not")
        want = stored[name]
        if (info.shape, info.dtype) != (want.shape, want.dtype):
            raise CheckpointError(f"rejuvenated tensor {name!r} came out {DTYPE_NAMES.get(info.dtype, info.dtype)} "
                                  f"{list(info.shape)}; the SFT checkpoint stores "
                                  f"{DTYPE_NAMES.get(want.dtype, want.dtype)} {list(want.shape)}")


def _needs_calibration(criterion: str, reset_fraction: float) -> bool:
    return criterion in NEEDS_CALIBRATION and reset_fraction > 0
