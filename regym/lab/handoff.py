"""The handoff lab: does RL gain less after over-SFT, and does rejuvenation restore it?

One top-down script over regym's public parts, following arXiv 2606.09932 at small scale
(../shared/METHOD.md, docs/lab.md), designed so that the effect can show or fail to show:

1. **base and demos**: a base model (tiny: regym's own, built from ``pipeline_seed``; smollm2:
   SmolLM2-135M-Instruct) and expert demos from only the first ``demo_tasks`` games of the RL
   pool, so RL trains and evaluates on games SFT never saw (headroom by design);
2. **SFT ladder**: one SFT run with a checkpoint at every mark;
3. **ladder diagnostics**: every mark measured on its own samples (entropy, top-1, groups without
   signal, sampled/greedy success, drift, sharpness); over-SFT is the first mark that meets
   ``OverSFTRule``, not a fixed epoch count;
4. **arm starts**: fusion, fusion + attribution reset, fusion + random reset (same ρ), and the
   temperature at which over-SFT's entropy matches the rejuvenated model's; each start evaluated once;
5. **RL**: every arm × its seeds, identical budget, the KL reference its SFT checkpoint;
6. **report**: the verdict on post-RL success (paired per seed, bootstrap over seeds and episodes).

Every stage writes its outputs atomically and skips finished work: rerunning resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TextIO

from regym.lab.arms import (
    ARMS,
    PRIMARY,
    REJUVENATED,
    Arm,
    make_rejuvenated_starts,
    match_temperature,
    run_jobs,
)
from regym.lab.ladder import OverSFTRule, choose_over_mark, mark_label
from regym.progress import StageProgress

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "smollm2": {
        "sft_lr": 2e-5,
        "sft_batch_size": 8,
        "demo_episodes": 200,
        "workers": 1,
        "rl": {"preset": "smollm2", "max_steps": 40, "eval_every": 20},
    },
}

TINY_RL = {"max_steps": 16, "eval_every": 16, "progress": False, "report_to": [], "save_steps": 8,
           "save_total_limit": 1}
"""The tiny preset's RL budget, identical for every arm (the rest: the env's ``rl-train`` defaults). One
evaluation, at the end: the start's is the arm's shared pre-RL evaluation, and the curves between are the
runs' training success per step (metrics.jsonl), so no evaluation episodes are spent mid-run."""

QUICK = {"seeds_primary": 1, "seeds_other": 1, "eval_episodes": 32, "diagnostic_tasks": 8, "greedy_episodes": 16}
"""``--quick``: fewer seeds and episodes, the same design (stages, arms, rule, verdict)."""
QUICK_RL_STEPS = 8
"""``--quick``'s RL steps per run (half the full budget; every arm the same), to fit 20 minutes on 2 cores."""


@dataclass
class HandoffConfig:
    """Settings of ``regym lab handoff``; every budget is a count, so a run is fixed by its config and seeds."""

    env: str = "textworld"
    """Env id or short name."""
    preset: str = "tiny"
    """"tiny" (regym's own tiny base model, CPU) or "smollm2" (SmolLM2-135M-Instruct, for a GPU)."""
    pipeline_seed: int = 0
    """Seed of the base model, the demos and the SFT: explore on 0, confirm on a fresh one."""
    seeds_primary: int = 5
    """RL seeds of the two primary arms (over-SFT, over-SFT + fusion + reset)."""
    seeds_other: int = 3
    """RL seeds of every other arm."""
    out: str = "lab"
    """Output folder (report.md, PNGs, every run's logs and checkpoints)."""
    rl_tasks: int = 16
    """The in-distribution pool RL trains and evaluates on (the env's ``num_tasks``)."""
    demo_tasks: int = 8
    """SFT demos come from the first ``demo_tasks`` games of that pool only; the rest are new to SFT."""
    demo_episodes: int = 64
    """Expert episodes (won ones are kept) for SFT."""
    ladder: list[float] = field(default_factory=lambda: [0.5, 1, 2, 4, 8, 16])
    """SFT epochs at which checkpoints are kept (one SFT run to the largest)."""
    moderate_epochs: float = 2
    """The moderate-SFT mark (the paper's 2 epochs; fixed before the run, the report checks its headroom). On
    pipeline seed 0, 1 epoch won 0.06 of ID episodes and 2 epochs 0.52: the seen games are learnt in between."""
    over_max_entropy: float = 0.15
    """``OverSFTRule.max_entropy``: on-policy entropy (nats) at or below which a mark has collapsed: the sampled
    token then holds about 96 % of the mass, so the G samples of a turn nearly always agree (seed 0: base 1.89,
    2 epochs 0.45, 4 epochs 0.30, 8 and 16 epochs 0.11)."""
    over_min_zero_signal: float = 0.75
    """``OverSFTRule.min_zero_signal``: share of GRPO groups without signal at or above which RL is starved:
    three groups in four give no gradient (seed 0: 0.88 from 2 epochs, 1.0 from 8)."""
    sft_lr: float | None = None
    """SFT learning rate (None: the tiny pipeline's)."""
    sft_batch_size: int | None = None
    """SFT batch size (None: the tiny pipeline's)."""
    alpha: float = 0.5
    """Fusion weight α of the rejuvenated arms."""
    reset_fraction: float = 0.01
    """ρ of both reset arms (attribution and random)."""
    eval_splits: list[str] | None = None
    """Splits evaluated before and after RL. None: in-distribution, near-OOD where the env has it, far-OOD."""
    eval_episodes: int = 128
    """Episodes per split and evaluation point."""
    diagnostic_tasks: int = 16
    """Ladder diagnostics: tasks (GRPO groups) of the RL pool sampled per checkpoint."""
    greedy_episodes: int = 32
    """Ladder diagnostics: greedy episodes per checkpoint."""
    heldout_episodes: int = 8
    """Expert episodes on games neither SFT nor RL plays: the held-out text of the sharpness measures."""
    workers: int = 2
    """Jobs (RL runs, evaluations, measurements) run at once, each a process with one torch thread."""
    quick: bool = False
    """Fewer seeds and episodes (``QUICK``), the same design."""
    rl: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``RLConfig`` fields shared by every arm (identical budget), e.g. {"max_steps": 30}."""
    tiny: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``TinyPipelineConfig`` (base model size, corpus) for the tiny base model."""

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {self.preset!r}")
        if float(self.moderate_epochs) not in [float(mark) for mark in self.ladder]:
            raise ValueError(f"moderate_epochs {self.moderate_epochs} must be one of the ladder's marks {self.ladder}")
        if max(self.ladder) <= self.moderate_epochs:
            raise ValueError("the ladder needs marks past moderate_epochs (where over-SFT is looked for)")
        if min(self.seeds_primary, self.seeds_other) < 1:
            raise ValueError("seeds must be >= 1")
        if not 0 < self.demo_tasks <= self.rl_tasks:
            raise ValueError("demo_tasks must be in 1..rl_tasks")

    @property
    def rule(self) -> OverSFTRule:
        return OverSFTRule(self.over_max_entropy, self.over_min_zero_signal)


def load_handoff_config(path: str | Path | None = None, **overrides: Any) -> HandoffConfig:
    """Defaults < preset < YAML file < explicit overrides; ``quick`` then lowers seeds and episodes."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        values.update(yaml.safe_load(Path(path).read_text()) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(HandoffConfig)}
    if unknown := sorted(set(values) - known):
        raise ValueError(f"unknown lab settings: {unknown}")
    preset = dict(PRESETS[values.get("preset", "tiny")])
    from regym.rl.config import edit_reporters, translate_legacy

    rl_file = translate_legacy(values.pop("rl", {}), prog="regym lab handoff")  # old RLConfig names still work
    switches = rl_file.pop("_report_to_edits", {})
    rl = {**TINY_RL, **preset.pop("rl", {}), **rl_file}
    if switches:
        rl["report_to"] = edit_reporters(rl.get("report_to", []), switches)
    config = HandoffConfig(**{**preset, **values, "rl": rl})
    if not config.quick:
        return config
    return replace(config, **QUICK, rl={**config.rl, "max_steps": QUICK_RL_STEPS, "eval_every": QUICK_RL_STEPS})


def default_splits(env_id: str) -> list[str]:
    """In-distribution, near-OOD where the env family has that split, far-OOD."""
    from regym.envs import env_class

    splits = getattr(env_class(env_id), "splits", None) or ("in_distribution", "out_of_distribution")
    order = ("in_distribution", "near_out_of_distribution", "out_of_distribution")
    return [split for split in order if split in splits] or ["in_distribution"]


# --- shared settings ------------------------------------------------------------------------------
def pool_kwargs(config: HandoffConfig, env_id: str, tasks: int) -> dict[str, Any]:
    from regym.envs import accepts_option

    return {"num_tasks": tasks} if accepts_option(env_id, "num_tasks") else {}


def rl_settings(config: HandoffConfig, env_id: str, *, model: str | Path, reference: str | Path, seed: int,
                output_dir: str | Path, temperature: float = 1.0) -> dict[str, Any]:
    """One run's ``RLConfig`` fields: the env's defaults < the lab's shared budget < this run's own."""
    from regym.rl.config import env_rl_defaults

    return {
        **env_rl_defaults(env_id), **config.rl, "env": env_id, "env_kwargs": pool_kwargs(config, env_id, config.rl_tasks),
        "num_tasks": config.rl_tasks, "model": str(model), "reference": str(reference), "seed": seed,
        "output_dir": str(output_dir), "temperature": temperature, "eval_temperature": temperature,
        "eval_episodes": config.eval_episodes, "eval_splits": list(config.eval_splits or default_splits(env_id)),
        "eval_at_start": False, "rejuvenate": False, "pipeline_seed": config.pipeline_seed,
    }


# --- 1. base model and demonstrations -------------------------------------------------------------
def prepare_base(config: HandoffConfig, env_id: str, out: Path) -> dict[str, Any]:
    """The base model folder, SFT demos from the first ``demo_tasks`` games, and held-out expert text."""
    from regym import seeds
    from regym.recipes.tiny import TinyPipelineConfig, ensure_tiny_base
    from regym.rl.demos import collect_demos, load_demos

    if config.preset == "smollm2":
        from regym.models import smollm2_checkpoint

        base_dir = Path(smollm2_checkpoint())
    else:
        base_dir = ensure_tiny_base(seed=config.pipeline_seed, config=TinyPipelineConfig(**config.tiny))
    demos_dir, heldout_dir = out / "demos", out / "heldout"
    if not (demos_dir / "dataset_info.json").exists():
        collect_demos(env_id, agent="expert", episodes=config.demo_episodes, out_dir=demos_dir,
                      seed=seeds.demo_seeds(config.pipeline_seed, 1)[0], only_successes=True,
                      env_kwargs=pool_kwargs(config, env_id, config.demo_tasks))
    demos = load_demos(demos_dir)
    seen = set(demos["task_id"])
    if not (heldout_dir / "dataset_info.json").exists():
        heldout_split = "near_out_of_distribution" if "near_out_of_distribution" in default_splits(env_id) \
            else "in_distribution"
        collect_demos(env_id, agent="expert", episodes=config.heldout_episodes, out_dir=heldout_dir,
                      split=heldout_split, seed=seeds.demo_seeds(config.pipeline_seed, 2)[1],
                      env_kwargs=pool_kwargs(config, env_id, config.rl_tasks))
    heldout = [row["messages"] for row in load_demos(heldout_dir) if row["task_id"] not in seen]
    return {"base_dir": base_dir, "demos": demos, "heldout": [{"messages": messages} for messages in heldout],
            "seen_tasks": sorted(seen)}


# --- 2. the SFT ladder ----------------------------------------------------------------------------
def sft_ladder(config: HandoffConfig, base: dict[str, Any], folder: Path) -> dict[float, Path]:
    """One SFT run to the largest mark, saving a checkpoint at every mark of the ladder."""
    from transformers import AutoTokenizer

    from regym.recipes.tiny import TinyPipelineConfig
    from regym.rl.sft import sft

    marks = sorted(float(mark) for mark in config.ladder)
    paths = {mark: folder / "epochs" / f"epoch-{mark:g}" for mark in marks}
    if not (folder / "sft_summary.json").exists():
        pipeline = TinyPipelineConfig(**config.tiny)
        tokenizer = AutoTokenizer.from_pretrained(str(base["base_dir"]))
        sft(str(base["base_dir"]), tokenizer, base["demos"], out_dir=folder, epochs=marks[-1], save_epochs=marks,
            lr=config.sft_lr or pipeline.sft_lr, batch_size=config.sft_batch_size or pipeline.sft_batch_size,
            max_length=pipeline.max_length, seed=config.pipeline_seed)
    missing = [str(path) for path in paths.values() if not (path / "config.json").exists()]
    if missing:
        raise RuntimeError(f"SFT ladder is missing checkpoints: {missing}")
    return paths


def measure_job(config: HandoffConfig, env_id: str, base: dict[str, Any], model: Path, out: Path, *,
                temperature: float = 1.0, tasks: int | None = None, greedy: bool = True,
                heldout: bool = True) -> dict[str, Any]:
    """A "measure" job: a checkpoint's on-policy diagnostics on the RL pool, with the training reward."""
    from regym.envs import accepts_option
    from regym.rl.config import RLConfig, env_rl_defaults

    defaults = {**env_rl_defaults(env_id), **config.rl}
    options = pool_kwargs(config, env_id, config.rl_tasks)
    if defaults.get("dense_reward", RLConfig.dense_reward) and accepts_option(env_id, "dense_reward"):
        options["dense_reward"] = True  # the groups' signal is judged on the reward RL trains on
    return {"kind": "measure", "model": str(model), "base": str(base["base_dir"]), "env_id": env_id,
            "env_kwargs": options, "tasks": tasks or config.diagnostic_tasks,
            "samples": int(defaults.get("num_generations", RLConfig.num_generations)), "temperature": temperature,
            "max_turns": int(defaults.get("max_turns", RLConfig.max_turns)),
            "max_new_tokens": int(defaults.get("max_new_tokens", RLConfig.max_new_tokens)),
            "greedy_episodes": config.greedy_episodes if greedy else 0,
            "heldout": base["heldout"] if heldout else None, "sharpness": heldout, "out": str(out)}


# --- the script -----------------------------------------------------------------------------------
def run_handoff(config: HandoffConfig, stream: TextIO | None = None) -> dict[str, Any]:
    """Run every stage (reusing finished ones) and write ``report.md``; returns the report data."""
    from regym.envs import resolve_env_id
    from regym.lab.report import write_lab_report

    started = time.time()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    env_id = resolve_env_id(config.env)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    spent = out / "timings.json"  # wall time per stage, summed over every (resumed) invocation
    timings: dict[str, float] = json.loads(spent.read_text()) if spent.exists() else {}

    @contextmanager
    def stage(number: int, name: str, description: str, total: int) -> Iterator[StageProgress]:
        begun = time.time()
        with StageProgress(f"lab {number}/6: {description}", total, stream=stream, terminal=False) as progress:
            yield progress
        timings[name] = round(timings.get(name, 0.0) + time.time() - begun, 1)
        spent.write_text(json.dumps(timings, indent=2))

    with stage(1, "base and demos", f"{env_id} base model, demos from {config.demo_tasks} of {config.rl_tasks} "
               "games, held-out text", 1) as progress:
        base = prepare_base(config, env_id, out)
        progress.advance(status=f"{len(base['demos'])} demonstrations")
    marks = sorted(float(mark) for mark in config.ladder)
    with stage(2, "SFT ladder", f"SFT ladder to {', '.join(f'{m:g}' for m in marks)} epochs", 1) as progress:
        ladder = sft_ladder(config, base, out / "sft")
        progress.advance(status=f"{len(ladder)} checkpoints")

    models = {"base": Path(base["base_dir"]), **{mark_label(mark): path for mark, path in ladder.items()}}
    with stage(3, "ladder diagnostics", "on-policy diagnostics along the ladder (models)", len(models)) as progress:
        jobs = [measure_job(config, env_id, base, path, out / "diagnostics" / f"{label}.json") | {"label": label}
                for label, path in models.items()]
        rows = run_jobs(jobs, config.workers, lambda job, result: progress.advance(status=job["label"]))
        diagnostics = {job["label"]: row for job, row in zip(jobs, rows, strict=True)}
    moderate = float(config.moderate_epochs)
    over_mark, rule_met = choose_over_mark(diagnostics, marks, moderate, config.rule)

    with stage(4, "arm starts", "rejuvenated starts, matched temperature, pre-RL evaluations (arms)",
               len(ARMS) + 1) as progress:
        arms, matching = make_arms(config, env_id, base, ladder[moderate], ladder[over_mark], out, progress)
        pre = run_pre_evaluations(config, env_id, arms, out, progress)

    with stage(5, "RL", "RL runs (arms × seeds)", sum(arm.seeds for arm in arms.values())) as progress:
        runs = run_arms(config, env_id, arms, out, progress)

    elapsed = time.time() - started  # this invocation's share of the stages already in ``timings``
    with stage(6, "report", "report", 1) as progress:
        data = {"config": asdict(config), "env": env_id, "diagnostics": diagnostics, "marks": marks,
                "moderate_mark": moderate, "over_mark": over_mark, "over_rule_met": rule_met,
                "rule": asdict(config.rule), "arms": {name: asdict(arm) for name, arm in arms.items()},
                "temperature_matching": matching, "pre": pre, "runs": runs, "timings_s": timings,
                "seen_tasks": base["seen_tasks"]}
        data["timings_s"] = {**timings, "total": round(sum(timings.values()) + time.time() - started - elapsed, 1)}
        paths = write_lab_report(data, out)
        data["report"] = {name: str(path) for name, path in paths.items()}
        (out / "lab.json").write_text(json.dumps(data, indent=2, default=str))
        progress.advance(status=str(paths["markdown"]))
    return data


def make_arms(config: HandoffConfig, env_id: str, base: dict[str, Any], moderate: Path, over: Path, out: Path,
              progress: StageProgress) -> tuple[dict[str, Arm], dict[str, Any]]:
    """Every arm's start, reference and temperature; the rejuvenated models' and matched-T measurements."""
    from regym.lab.arms import run_job

    calibration = expert_calibration(config, env_id, base)
    starts = make_rejuvenated_starts(Path(base["base_dir"]), over, out / "starts", alpha=config.alpha,
                                     reset_fraction=config.reset_fraction, calibration=calibration)
    progress.advance(status="rejuvenated starts")
    measured = out / "diagnostics" / "starts"
    jobs = [measure_job(config, env_id, base, path, measured / f"{name}.json") | {"label": name}
            for name, path in starts.items()]
    rows = run_jobs(jobs, config.workers)
    start_diagnostics = {job["label"]: row for job, row in zip(jobs, rows, strict=True)}
    target = start_diagnostics[REJUVENATED]["onpolicy_entropy"]

    def entropy_at(temperature: float) -> float:
        job = measure_job(config, env_id, base, over, measured / f"over-sft@T{temperature:.4f}.json",
                          temperature=temperature, greedy=False, heldout=False)
        return run_job(job)["onpolicy_entropy"]

    temperature, tried = match_temperature(entropy_at, target)
    seeds = {name: config.seeds_primary if name in PRIMARY else config.seeds_other for name in ARMS}
    over_ref = str(over)
    arms = {
        "base": Arm("base", str(base["base_dir"]), str(base["base_dir"]), seeds=seeds["base"]),
        "moderate-sft": Arm("moderate-sft", str(moderate), str(moderate), seeds=seeds["moderate-sft"]),
        "over-sft": Arm("over-sft", over_ref, over_ref, seeds=seeds["over-sft"]),
        **{name: Arm(name, str(path), over_ref, seeds=seeds[name]) for name, path in starts.items()},
        "over-sft@matched-T": Arm("over-sft@matched-T", over_ref, over_ref, temperature, seeds["over-sft@matched-T"]),
    }
    matching = {"target_entropy": target, "temperature": temperature, "tried": tried,
                "starts": start_diagnostics}
    return arms, matching


def expert_calibration(config: HandoffConfig, env_id: str, base: dict[str, Any]) -> list[dict[str, Any]]:
    """The attribution criterion's calibration set: expert turns of the games SFT was trained on."""
    from transformers import AutoTokenizer

    from regym.rl.config import RLConfig
    from regym.rl.train import expert_calibration as expert_turns
    from regym.rl.train import make_envs

    settings = rl_settings(config, env_id, model=base["base_dir"], reference=base["base_dir"], seed=0,
                           output_dir="unused")
    rl_config = replace(RLConfig(**settings), calibration_episodes=16)
    envs = make_envs(rl_config, env_id, "in_distribution", 2, pool_kwargs(config, env_id, config.demo_tasks))
    try:
        return expert_turns(rl_config, envs, AutoTokenizer.from_pretrained(str(base["base_dir"])))
    finally:
        for env in envs:
            env.close()


def run_pre_evaluations(config: HandoffConfig, env_id: str, arms: dict[str, Arm], out: Path,
                        progress: StageProgress) -> dict[str, Any]:
    """Each arm's start evaluated once on every split (its runs' step-0 point, shared by their seeds)."""
    jobs = [{"kind": "pre", "name": f"{arm.name} (before RL)", "arm": arm.name, "folder": str(out / "pre" / arm.slug),
             "rl": rl_settings(config, env_id, model=arm.start, reference=arm.reference, seed=0,
                               output_dir=out / "pre" / arm.slug, temperature=arm.temperature)}
            for arm in arms.values()]
    results = run_jobs(jobs, config.workers, lambda job, result: progress.advance(status=job["arm"]))
    return {job["arm"]: {"metrics": result, "folder": job["folder"] + "/eval"}
            for job, result in zip(jobs, results, strict=True)}


def run_arms(config: HandoffConfig, env_id: str, arms: dict[str, Arm], out: Path,
             progress: StageProgress) -> list[dict[str, Any]]:
    """Every arm × its seeds, seed-major so that an interrupted lab has every arm's first seeds."""
    jobs = []
    for seed in range(max(arm.seeds for arm in arms.values())):
        for arm in arms.values():
            if seed < arm.seeds:
                folder = out / "rl" / arm.slug / f"seed{seed}"
                jobs.append({"kind": "rl", "arm": arm.name, "seed": seed,
                             "rl": rl_settings(config, env_id, model=arm.start, reference=arm.reference, seed=seed,
                                               output_dir=folder, temperature=arm.temperature)})
    summaries = run_jobs(jobs, config.workers,
                         lambda job, result: progress.advance(status=f"{job['arm']} seed {job['seed']}"))
    return [{"arm": job["arm"], "seed": job["seed"], "folder": job["rl"]["output_dir"], "summary": summary}
            for job, summary in zip(jobs, summaries, strict=True)]
