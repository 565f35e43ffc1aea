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

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TextIO

from regym.cache import reusable, write_stamp
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
from regym.lab.ledger import Ledger, checkpoint_digest
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
    "smollm2-math": {
        "env": "math",
        "env_kwargs": {"level_set": "smollm2_sft", "mode": "single_turn"},
        "rl_tasks": 512,
        "demo_tasks": 512,
        "demo_episodes": 64,
        "ladder": [1, 2, 4, 8, 16, 32],
        "moderate_epochs": 2,
        "sft_lr": 3e-5,
        "sft_batch_size": 8,
        "sft_max_length": 256,
        "over_max_entropy": 0.15,
        "over_min_collapsed": 0.5,
        "eval_episodes": 1000,
        "eval_greedy": True,
        "diagnostic_tasks": 16,
        "greedy_episodes": 64,
        "heldout_episodes": 16,
        "arms": ["moderate-sft", "over-sft", "over-sft+fusion", "over-sft+fusion+reset",
                 "over-sft+fusion+random-reset", "over-sft@matched-T"],
        "seeds_primary": 3,
        "seeds_other": 3,
        "workers": 1,
        "job_threads": 2,
        "out": "lab-smollm2-math",
        "results": "docs/lab/smollm2-math/jobs",
        "quick": {"demo_episodes": 32, "ladder": [1, 2, 4], "eval_episodes": 32, "greedy_episodes": 16,
                  "heldout_episodes": 4, "diagnostic_tasks": 4, "ladder_sharpness": False, "attribution_targets": 8,
                  "arms": ["moderate-sft", "over-sft", "over-sft+fusion+reset"], "rl_steps": 2},
        "rl": {"preset": "smollm2", "use_cpu": True, "max_turns": 1, "max_new_tokens": 96, "max_episode_tokens": 512,
               "num_generations": 8, "tasks_per_step": 4, "num_envs": 32, "learning_rate": 5e-6, "beta": 0.02,
               "dense_reward": False, "max_steps": 40, "eval_every": 40, "save_steps": 10, "save_total_limit": 1,
               "progress": False, "report_to": []},
    },
}
"""Named designs. ``smollm2-math``: SmolLM2-135M-Instruct on the Math env's SmolLM2 level suite in single-turn
mode (boxed answer, ±1 Math-Verify reward): SFT on 64 worked solutions to 32 epochs, GRPO with G = 8 and the
SFT checkpoint as reference, one job at a time on two threads (a ladder measurement's Hessian and a
32-completion GRPO step in one pass take 8-15 GB each, too much for two side by side on 23 GB; with 4
micro-batches a GRPO step peaks at 6.6 GB and two runs at one thread each are 1.24x as fast:
benchmarks/lab_threads.py), greedy evaluation on 1,000 problems per split (the same problems for every arm),
each finished job recorded under ``docs/lab/smollm2-math/jobs`` (docs/lab/smollm2-math/)."""

TINY_RL = {"max_steps": 16, "eval_every": 16, "progress": False, "report_to": [], "save_steps": 8,
           "save_total_limit": 1}
"""The tiny preset's RL budget, identical for every arm (the rest: the env's ``rl-train`` defaults). One
evaluation, at the end: the start's is the arm's shared pre-RL evaluation, and the curves between are the
runs' training success per step (metrics.jsonl), so no evaluation episodes are spent mid-run."""

QUICK = {"seeds_primary": 1, "seeds_other": 1, "eval_episodes": 32, "diagnostic_tasks": 8, "greedy_episodes": 16,
         "results": None}
"""``--quick``: fewer seeds and episodes, the same stages, rule and verdict. A preset's own ``quick`` may shrink
more: smollm2-math's SFTs to 4 epochs, skips the Hessian, scores 8 attribution targets, runs three arms (every
arm the verdict needs) for 2 RL steps, to fit 20 minutes on 2 cores. Settings given by the user stand."""
QUICK_RL_STEPS = 8
"""``--quick``'s RL steps per run (half the full budget; every arm the same), to fit 20 minutes on 2 cores."""


@dataclass
class HandoffConfig:
    """Settings of ``regym lab handoff``; every budget is a count, so a run is fixed by its config and seeds."""

    env: str = "textworld"
    """Env id or short name."""
    preset: str = "tiny"
    """"tiny" (regym's own tiny base model, CPU), "smollm2" (SmolLM2-135M-Instruct, for a GPU) or
    "smollm2-math" (SmolLM2-135M-Instruct on single-turn math, CPU; see ``PRESETS``)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Env options of every env the lab makes (demos, RL, evaluations, diagnostics), e.g. {"level_set": "smollm2"}."""
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    """The arms to run (a subset of ``regym.lab.arms.ARMS``; over-sft is always needed for the verdict)."""
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
    over_min_collapsed: float = 0.75
    """``OverSFTRule.min_collapsed``: share of collapsed GRPO groups (no signal, and no sample won or all
    samples alike) at or above which RL is starved: three groups in four give no gradient (tiny, seed 0, when
    the rule counted every group without signal: 0.88 from 2 epochs, 1.0 from 8)."""
    sft_lr: float | None = None
    """SFT learning rate (None: the tiny pipeline's)."""
    sft_batch_size: int | None = None
    """SFT batch size (None: the tiny pipeline's)."""
    sft_max_length: int | None = None
    """SFT's longest example in tokens (None: the tiny pipeline's)."""
    sft_threads: int = 2
    """torch threads of the SFT run, fixed so that a lost checkpoint rebuilds bit-identically on any machine."""
    alpha: float = 0.5
    """Fusion weight α of the rejuvenated arms."""
    reset_fraction: float = 0.01
    """ρ of both reset arms (attribution and random)."""
    attribution_targets: int = 64
    """Entropy-gap targets the attribution reset scores units on (its cost grows with them: 17 min for 64 on
    SmolLM2 on 2 cores)."""
    eval_splits: list[str] | None = None
    """Splits evaluated before and after RL. None: in-distribution, near-OOD where the env has it, far-OOD."""
    eval_episodes: int = 128
    """Episodes per split and evaluation point."""
    eval_greedy: bool = False
    """Evaluate greedily (every arm, before and after RL, on the same problems); else at the arm's temperature."""
    diagnostic_tasks: int = 16
    """Ladder diagnostics: tasks (GRPO groups) of the RL pool sampled per checkpoint."""
    greedy_episodes: int = 32
    """Ladder diagnostics: greedy episodes per checkpoint."""
    ladder_sharpness: bool = True
    """Ladder diagnostics: the Hessian's top eigenvalue and perturbation sharpness too (most of a SmolLM2
    mark's 6-30 CPU minutes; the scale-invariant adaptive sharpness is always measured)."""
    heldout_episodes: int = 8
    """Expert episodes on games neither SFT nor RL plays: the held-out text of the sharpness measures."""
    workers: int = 2
    """Jobs (RL runs, evaluations, measurements) run at once, each a process with ``job_threads`` torch threads."""
    job_threads: int = 1
    """torch threads of each job (1 with two workers side by side; 2 for one job at a time on 2 cores)."""
    quick: bool = False
    """Fewer seeds and episodes (``QUICK``), the same design."""
    results: str | None = None
    """The ledger folder (``regym.lab.ledger``): each finished job's small result file, read back on a rerun so
    that only missing jobs run, even on a fresh machine. None: resume from ``out`` only."""
    commit_results: bool = False
    """``git commit`` each result file as it lands (``--commit-results``), so an interruption loses nothing."""
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
        if unknown := sorted(set(self.arms) - set(ARMS)):
            raise ValueError(f"unknown arms {unknown}; arms are {list(ARMS)}")
        if "over-sft" not in self.arms:
            raise ValueError("arms must include over-sft (every comparison is against it)")

    @property
    def rule(self) -> OverSFTRule:
        return OverSFTRule(self.over_max_entropy, self.over_min_collapsed)


HOW_IT_RUNS = ("workers", "job_threads", "results", "commit_results", "seeds_primary", "seeds_other", "arms")
"""Fields that change how (or how much of) the design runs, not its results: a resumed lab may change them."""


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
    if values.get("preset", "tiny") not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {values.get('preset')!r}")
    preset = dict(PRESETS[values.get("preset", "tiny")])
    from regym.rl.config import edit_reporters, translate_legacy

    rl_file = translate_legacy(values.pop("rl", {}), prog="regym lab handoff")  # old RLConfig names still work
    switches = rl_file.pop("_report_to_edits", {})
    rl = {**TINY_RL, **preset.pop("rl", {}), **rl_file}
    if switches:
        rl["report_to"] = edit_reporters(rl.get("report_to", []), switches)
    quick = dict(preset.pop("quick", {}))
    config = HandoffConfig(**{**preset, **values, "rl": rl})
    if not config.quick:
        return config
    steps = min(quick.pop("rl_steps", QUICK_RL_STEPS), int(config.rl.get("max_steps", QUICK_RL_STEPS)))
    out = {} if "out" in values else {"out": f"{config.out}-quick"}  # never mixed with the full design's jobs
    quick = {name: value for name, value in quick.items() if name not in values}  # what the user set stands
    return replace(config, **{**QUICK, **quick, **out}, rl={**config.rl, "max_steps": steps, "eval_every": steps,
                                                           "save_steps": steps})


def default_splits(env_id: str, env_kwargs: dict[str, Any] | None = None) -> list[str]:
    """In-distribution, near-OOD where the env family has that split (with these options), far-OOD."""
    from regym.envs import env_class

    family = env_class(env_id)
    splits = family.splits_with(**(env_kwargs or {})) if hasattr(family, "splits_with") else \
        getattr(family, "splits", None) or ("in_distribution", "out_of_distribution")
    order = ("in_distribution", "near_out_of_distribution", "out_of_distribution")
    return [split for split in order if split in splits] or ["in_distribution"]


# --- shared settings ------------------------------------------------------------------------------
def pool_kwargs(config: HandoffConfig, env_id: str, tasks: int) -> dict[str, Any]:
    """The lab's env options on a pool of ``tasks`` tasks (where the env has a task pool)."""
    from regym.envs.spec import EnvSpec

    return dict(EnvSpec(env_id, kwargs=config.env_kwargs).on_task_pool(tasks).kwargs)


def rl_settings(config: HandoffConfig, env_id: str, *, model: str | Path, reference: str | Path, seed: int,
                output_dir: str | Path, temperature: float = 1.0) -> dict[str, Any]:
    """One run's ``RLConfig`` fields: the env's defaults < the lab's shared budget < this run's own."""
    from regym.rl.config import env_rl_defaults

    return {
        **env_rl_defaults(env_id), **config.rl, "env": env_id, "env_kwargs": pool_kwargs(config, env_id, config.rl_tasks),
        "num_tasks": config.rl_tasks, "model": str(model), "reference": str(reference), "seed": seed,
        "output_dir": str(output_dir), "temperature": temperature,
        "eval_temperature": 0.0 if config.eval_greedy else temperature,
        "eval_episodes": config.eval_episodes, "eval_splits": list(config.eval_splits or default_splits(env_id, config.env_kwargs)),
        "eval_at_start": False, "rejuvenate": False, "pipeline_seed": config.pipeline_seed,
        "threads": config.job_threads,
    }


def rl_field(config: HandoffConfig, env_id: str, name: str) -> Any:
    """One ``RLConfig`` field as the lab's RL runs get it: the lab's ``rl`` settings, else the env's
    ``rl_defaults``, else ``RLConfig``'s default (the same order as ``rl_settings``)."""
    from regym.rl.config import RLConfig, env_rl_defaults

    chosen = {**env_rl_defaults(env_id), **config.rl}
    if name in chosen:
        return chosen[name]
    default = next(item for item in fields(RLConfig) if item.name == name)
    return default.default_factory() if default.default is MISSING else default.default


# --- 1. base model and demonstrations -------------------------------------------------------------
def prepare_base(config: HandoffConfig, env_id: str, out: Path) -> dict[str, Any]:
    """The base model folder, SFT demos from the first ``demo_tasks`` games, and held-out expert text."""
    from regym import seeds
    from regym.demos import collect_demos, load_demos
    from regym.recipes.tiny import TinyPipelineConfig, ensure_tiny_base

    if config.preset.startswith("smollm2"):
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
        heldout_split = "near_out_of_distribution" if "near_out_of_distribution" in default_splits(env_id, config.env_kwargs) \
            else "in_distribution"
        collect_demos(env_id, agent="expert", episodes=config.heldout_episodes, out_dir=heldout_dir,
                      split=heldout_split, seed=seeds.demo_seeds(config.pipeline_seed, 2)[1],
                      env_kwargs=pool_kwargs(config, env_id, config.rl_tasks))
    heldout = [row["messages"] for row in load_demos(heldout_dir) if row["task_id"] not in seen]
    digest = hashlib.sha256(json.dumps([[row["task_id"], row["messages"]] for row in demos]).encode()).hexdigest()
    return {"base_dir": base_dir, "demos": demos, "heldout": [{"messages": messages} for messages in heldout],
            "seen_tasks": sorted(seen), "demos_digest": digest}


# --- 2. the SFT ladder ----------------------------------------------------------------------------
def ladder_paths(config: HandoffConfig, folder: Path) -> dict[float, Path]:
    """Where the SFT ladder's checkpoints are (known before they are built)."""
    return {mark: folder / "epochs" / f"epoch-{mark:g}" for mark in sorted(float(mark) for mark in config.ladder)}


def sft_ladder(config: HandoffConfig, base: dict[str, Any], folder: Path, ledger: Ledger | None = None) -> dict[float, Path]:
    """One SFT run to the largest mark, saving a checkpoint at every mark of the ladder (skipped when every
    checkpoint is there). The SFT runs on ``sft_threads`` threads; a rebuild must match the digests the
    ledger recorded, bit for bit, or the lab stops: later jobs were measured on the recorded checkpoints."""
    import torch
    from transformers import AutoTokenizer

    from regym.recipes.tiny import TinyPipelineConfig
    from regym.rl.sft import sft

    paths = ladder_paths(config, folder)
    if all((path / "config.json").exists() for path in paths.values()):
        return paths
    pipeline = TinyPipelineConfig(**config.tiny)
    settings = {"base": str(base["base_dir"]), "demos": base["demos_digest"], "epochs": sorted(paths),
                "lr": config.sft_lr or pipeline.sft_lr, "batch_size": config.sft_batch_size or pipeline.sft_batch_size,
                "max_length": config.sft_max_length or pipeline.max_length, "seed": config.pipeline_seed,
                "threads": config.sft_threads}
    recorded = ledger.lookup("sft", settings) if ledger is not None else None
    began = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.sft_threads)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base["base_dir"]))
        sft(str(base["base_dir"]), tokenizer, base["demos"], out_dir=folder, epochs=max(paths), save_epochs=sorted(paths),
            lr=settings["lr"], batch_size=settings["batch_size"], max_length=settings["max_length"],
            seed=config.pipeline_seed)
    finally:
        torch.set_num_threads(threads)
    missing = [str(path) for path in paths.values() if not (path / "config.json").exists()]
    if missing:
        raise RuntimeError(f"SFT ladder is missing checkpoints: {missing}")
    digests = {mark_label(mark): checkpoint_digest(path) for mark, path in paths.items()}
    if recorded is not None and recorded["digests"] != digests:
        differing = [label for label in digests if recorded["digests"].get(label) != digests[label]]
        raise RuntimeError(f"the rebuilt SFT checkpoints {differing} differ from the ones the ledger recorded "
                           f"({ledger.path('sft')}): results measured on them cannot be mixed with new ones")
    if ledger is not None and recorded is None:
        ledger.record("sft", settings, {"digests": digests}, [folder / "sft_summary.json"], time.time() - began)
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
            "heldout": base["heldout"] if heldout else None, "sharpness": heldout and config.ladder_sharpness,
            "out": str(out),
            "threads": config.job_threads}


# --- the script -----------------------------------------------------------------------------------
def run_handoff(config: HandoffConfig, stream: TextIO | None = None) -> dict[str, Any]:
    """Run every stage (reusing finished jobs: from ``out``, or from the ledger at ``results``) and write
    ``report.md``; returns the report data. Checkpoints are built only when a job that needs them must run."""
    from regym.envs import resolve_env_id
    from regym.lab.report import write_lab_report

    started = time.time()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    env_id = resolve_env_id(config.env)
    design = {name: value for name, value in asdict(config).items() if name not in HOW_IT_RUNS}
    reusable(out / "config.json", design, fix="this lab folder holds another design; use another --out")
    write_stamp(out / "config.json", design, config=asdict(config))
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
    ledger = make_ledger(config, out, base)
    marks = sorted(float(mark) for mark in config.ladder)
    ladder = ladder_paths(config, out / "sft")

    def build_ladder() -> None:
        with stage(2, "SFT ladder", f"SFT ladder to {', '.join(f'{m:g}' for m in marks)} epochs", 1) as progress:
            sft_ladder(config, base, out / "sft", ledger)
            progress.advance(status=f"{len(ladder)} checkpoints")

    models = {"base": Path(base["base_dir"]), **{mark_label(mark): path for mark, path in ladder.items()}}
    with stage(3, "ladder diagnostics", "on-policy diagnostics along the ladder (models)", len(models)) as progress:
        jobs = [measure_job(config, env_id, base, path, out / "diagnostics" / f"{label}.json")
                | {"label": label, "key": f"measure/{label}"} for label, path in models.items()]
        rows = run_jobs(jobs, config.workers, lambda job, result: progress.advance(status=job["label"]),
                        ledger=ledger, prepare=once(build_ladder))
        diagnostics = {job["label"]: row for job, row in zip(jobs, rows, strict=True)}
    moderate = float(config.moderate_epochs)
    over_mark, rule_met = choose_over_mark(diagnostics, marks, moderate, config.rule)

    with stage(4, "arm starts", "rejuvenated starts, matched temperature, pre-RL evaluations (arms)",
               len(config.arms) + 1) as progress:
        ensure = Starts(config, env_id, base, ladder[over_mark], out / "starts", ledger, once(build_ladder))
        arms, matching = make_arms(config, env_id, base, ladder[moderate], ladder[over_mark], out, progress, ensure)
        pre = run_pre_evaluations(config, env_id, arms, out, progress, ledger, ensure)

    with stage(5, "RL", "RL runs (arms × seeds)", sum(arm.seeds for arm in arms.values())) as progress:
        runs = run_arms(config, env_id, arms, out, progress, ledger, ensure)

    elapsed = time.time() - started  # this invocation's share of the stages already in ``timings``
    with stage(6, "report", "report", 1) as progress:
        data = {"config": asdict(config), "env": env_id, "diagnostics": diagnostics, "marks": marks,
                "moderate_mark": moderate, "over_mark": over_mark, "over_rule_met": rule_met,
                "rule": asdict(config.rule), "arms": {name: asdict(arm) for name, arm in arms.items()},
                "temperature_matching": matching, "pre": pre, "runs": runs, "timings_s": timings,
                "seen_tasks": base["seen_tasks"], "ledger_seconds": ledger_seconds(ledger)}
        data["timings_s"] = {**timings, "total": round(sum(timings.values()) + time.time() - started - elapsed, 1)}
        paths = write_lab_report(data, out)
        data["report"] = {name: str(path) for name, path in paths.items()}
        (out / "lab.json").write_text(json.dumps(data, indent=2, default=str))
        if config.results:
            publish_report(paths, Path(config.results).parent)
        progress.advance(status=str(paths["markdown"]))
    return data


def once(function: Callable[[], object]) -> Callable[[], None]:
    """``function`` run at most once however often it is called (a lazy build step)."""
    done: list[bool] = []

    def call() -> None:
        if not done:
            function()
            done.append(True)
    return call


def make_ledger(config: HandoffConfig, out: Path, base: dict[str, Any]) -> Ledger | None:
    if not config.results:
        return None
    from regym.numerics import cpu_numerics

    return Ledger(Path(config.results), out, commit=config.commit_results,
                  aliases={str(Path(base["base_dir"]).resolve()): "<base>", str(base["base_dir"]): "<base>"},
                  stamp={"numerics": cpu_numerics()})


def ledger_seconds(ledger: Ledger | None) -> dict[str, float]:
    """Each recorded job's own wall time (the ledger's ``seconds``), for the report's time per stage."""
    if ledger is None or not ledger.folder.is_dir():
        return {}
    entries = (json.loads(path.read_text()) for path in sorted(ledger.folder.glob("*.json")))
    return {entry["key"]: entry["seconds"] for entry in entries if entry.get("seconds") is not None}


def publish_report(paths: dict[str, Path], folder: Path) -> None:
    """Copy the report and its figures next to the ledger (the committed folder)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for path in paths.values():
        shutil.copyfile(path, folder / Path(path).name)


class Starts:
    """The rejuvenated starts, built on first need: fusion, fusion + attribution reset and fusion + random reset
    of the over-SFT checkpoint. Their small summaries are restored from the ledger even when nothing is built,
    and a rebuilt start must match the recorded digest."""

    RECIPES = {"over-sft+fusion": ("none", False), "over-sft+fusion+reset": ("attribution", True),
               "over-sft+fusion+random-reset": ("random", True)}

    def __init__(self, config: HandoffConfig, env_id: str, base: dict[str, Any], over: Path, folder: Path,
                 ledger: Ledger | None, build_ladder: Callable[[], None]):
        self.config, self.env_id, self.base, self.over, self.folder = config, env_id, base, over, folder
        self.ledger, self.build_ladder = ledger, build_ladder
        self.paths = {name: folder / name.replace("+", "_") for name in self.RECIPES}
        self.settings = {"over": str(over), "alpha": config.alpha, "reset_fraction": config.reset_fraction,
                         "sft": self._recorded_sft()}
        if config.attribution_targets != HandoffConfig.attribution_targets:  # starts recorded before the knob
            self.settings["attribution_targets"] = config.attribution_targets
        self.recorded = ledger.lookup("starts", self.settings) if ledger is not None else None
        self._built = False

    def _recorded_sft(self) -> Any:
        path = self.ledger.path("sft") if self.ledger is not None else None
        return json.loads(path.read_text())["result"] if path is not None and path.is_file() else None

    def __call__(self) -> None:
        if self._built:
            return
        self.build_ladder()
        if not all((path / "config.json").exists() for path in self.paths.values()):
            began = time.time()
            calibration = expert_calibration(self.config, self.env_id, self.base)
            make_rejuvenated_starts(Path(self.base["base_dir"]), self.over, self.folder, alpha=self.config.alpha,
                                    reset_fraction=self.config.reset_fraction, calibration=calibration,
                                    attribution_targets=self.config.attribution_targets)
            digests = {name: checkpoint_digest(path) for name, path in self.paths.items()}
            if self.recorded is not None and self.recorded["digests"] != digests:
                raise RuntimeError("rebuilt rejuvenated starts differ from the ones the ledger recorded: "
                                   f"{[n for n in digests if self.recorded['digests'].get(n) != digests[n]]}")
            if self.ledger is not None and self.recorded is None:
                self.settings["sft"] = self._recorded_sft()
                self.ledger.record("starts", self.settings, {"digests": digests},
                                   [path / "rejuvenation.json" for path in self.paths.values()], time.time() - began)
        self._built = True


def make_arms(config: HandoffConfig, env_id: str, base: dict[str, Any], moderate: Path, over: Path, out: Path,
              progress: StageProgress, starts: Starts) -> tuple[dict[str, Arm], dict[str, Any]]:
    """Every chosen arm's start, reference and temperature; the rejuvenated starts' and matched-T measurements."""
    measured = out / "diagnostics" / "starts"
    wanted = [name for name in starts.paths if name in config.arms or
              (name == REJUVENATED and "over-sft@matched-T" in config.arms)]
    jobs = [measure_job(config, env_id, base, starts.paths[name], measured / f"{name}.json")
            | {"label": name, "key": f"measure/start/{name}"} for name in wanted]
    rows = run_jobs(jobs, config.workers, ledger=starts.ledger, prepare=starts)
    start_diagnostics = {job["label"]: row for job, row in zip(jobs, rows, strict=True)}
    progress.advance(status="rejuvenated starts")
    seeds = {name: config.seeds_primary if name in PRIMARY else config.seeds_other for name in ARMS}
    over_ref = str(over)
    temperature, tried, target = 1.0, [], None
    if "over-sft@matched-T" in config.arms:
        target = start_diagnostics[REJUVENATED]["onpolicy_entropy"]

        def entropy_at(temperature: float) -> float:
            job = measure_job(config, env_id, base, over, measured / f"over-sft@T{temperature:.4f}.json",
                              temperature=temperature, greedy=False, heldout=False)
            job |= {"key": f"measure/over-sft@T{temperature:.4f}"}
            return run_jobs([job], 1, ledger=starts.ledger, prepare=starts.build_ladder)[0]["onpolicy_entropy"]

        temperature, tried = match_temperature(entropy_at, target)
    every = {
        "base": Arm("base", str(base["base_dir"]), str(base["base_dir"]), seeds=seeds["base"]),
        "moderate-sft": Arm("moderate-sft", str(moderate), str(moderate), seeds=seeds["moderate-sft"]),
        "over-sft": Arm("over-sft", over_ref, over_ref, seeds=seeds["over-sft"]),
        **{name: Arm(name, str(path), over_ref, seeds=seeds[name]) for name, path in starts.paths.items()},
        "over-sft@matched-T": Arm("over-sft@matched-T", over_ref, over_ref, temperature, seeds["over-sft@matched-T"]),
    }
    arms = {name: arm for name, arm in every.items() if name in config.arms}
    matching = {"target_entropy": target, "temperature": temperature, "tried": tried, "starts": start_diagnostics}
    return arms, matching


def expert_calibration(config: HandoffConfig, env_id: str, base: dict[str, Any]) -> list[dict[str, Any]]:
    """The attribution criterion's calibration set: expert turns of the games SFT was trained on."""
    from transformers import AutoTokenizer

    from regym.agents.prompts import PromptFormat
    from regym.demos import expert_calibration as expert_turns
    from regym.envs.spec import EnvSpec

    spec = EnvSpec(env_id, kwargs=pool_kwargs(config, env_id, config.demo_tasks))
    envs = spec.with_options(max_turns=rl_field(config, env_id, "max_turns")).make(2)
    try:
        return expert_turns(envs, AutoTokenizer.from_pretrained(str(base["base_dir"])), episodes=16,
                            prompt_format=PromptFormat(style=rl_field(config, env_id, "prompt_style")))
    finally:
        for env in envs:
            env.close()


def run_pre_evaluations(config: HandoffConfig, env_id: str, arms: dict[str, Arm], out: Path,
                        progress: StageProgress, ledger: Ledger | None, starts: Starts) -> dict[str, Any]:
    """Each arm's start evaluated once on every split (its runs' step-0 point, shared by their seeds)."""
    jobs = [{"kind": "pre", "name": f"{arm.name} (before RL)", "arm": arm.name, "folder": str(out / "pre" / arm.slug),
             "rl": rl_settings(config, env_id, model=arm.start, reference=arm.reference, seed=0,
                               output_dir=out / "pre" / arm.slug, temperature=arm.temperature),
             "key": f"pre/{arm.slug}", "threads": config.job_threads}
            for arm in arms.values()]
    results = run_jobs(jobs, config.workers, lambda job, result: progress.advance(status=job["arm"]),
                       ledger=ledger, prepare=starts)
    return {job["arm"]: {"metrics": result, "folder": job["folder"] + "/eval"}
            for job, result in zip(jobs, results, strict=True)}


def run_arms(config: HandoffConfig, env_id: str, arms: dict[str, Arm], out: Path,
             progress: StageProgress, ledger: Ledger | None, starts: Starts) -> list[dict[str, Any]]:
    """Every arm × its seeds, seed-major so that an interrupted lab has every arm's first seeds."""
    jobs = []
    for seed in range(max(arm.seeds for arm in arms.values())):
        for arm in arms.values():
            if seed < arm.seeds:
                folder = out / "rl" / arm.slug / f"seed{seed}"
                jobs.append({"kind": "rl", "arm": arm.name, "seed": seed, "key": f"rl/{arm.slug}/seed{seed}",
                             "threads": config.job_threads,
                             "rl": rl_settings(config, env_id, model=arm.start, reference=arm.reference, seed=seed,
                                               output_dir=folder, temperature=arm.temperature)})
    summaries = run_jobs(jobs, config.workers,
                         lambda job, result: progress.advance(status=f"{job['arm']} seed {job['seed']}"),
                         ledger=ledger, prepare=starts)
    return [{"arm": job["arm"], "seed": job["seed"], "folder": job["rl"]["output_dir"], "summary": summary}
            for job, summary in zip(jobs, summaries, strict=True)]
