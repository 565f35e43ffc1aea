"""The body of ``rl-train``, top to bottom: models → envs → TRL trainer → train → eval → files.

1. Models: the SFT checkpoint (``--model``; the ``rl-train`` command defaults it to the tiny
   pipeline regym builds and caches), optionally rejuvenated against ``--base``; the KL reference is the SFT model,
   or ``--reference``.
2. Envs: ``num_envs`` copies of the env (ID split) for training rollouts; evaluations
   play through regym's one evaluator, ``regym.eval.runner`` (as ``rl-eval`` does).
3. Trainer: TRL's ``GRPOTrainer`` with regym's rollout (``regym.rl.trl_bridge``).
4. Logging: ``metrics.jsonl`` (every step), ``eval.jsonl`` (every ``eval_every`` steps,
   and before the first unless ``--no-eval-at-start``; each evaluation's episodes and metrics in the run folder
   ``evals/step-<N>/``), ``rollouts.jsonl`` (every episode's turns), TensorBoard,
   a rich progress bar with reward, success rate, entropy and KL.
5. Checkpoints every ``save_steps`` steps (atomic); ``--resume`` cuts the logs back to
   the checkpoint and continues with the same step count.
6. At the end: the final model (``final/``), ``summary.json`` with the before/after
   success rates, and ``learning_curve.png``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from regym import seeds
from regym.agents.hf_policy import HFPolicy
from regym.agents.prompts import PromptFormat
from regym.cache import reusable, write_stamp
from regym.checkpoints import save_model
from regym.envs import normalize_split, resolve_env_id
from regym.eval.agents import policy_agent
from regym.eval.episodes import plan_episodes
from regym.eval.run_dir import prepare_run_dir
from regym.eval.runner import evaluate as evaluate_run
from regym.eval.runner import evaluate_episodes
from regym.eval.suites import SuiteEntry
from regym.rejuvenation import rejuvenate_checkpoint
from regym.rejuvenation.criteria import NEEDS_CALIBRATION
from regym.rl.accounting import StepAccounting
from regym.rl.checkpoints import (
    last_checkpoint,
    list_checkpoints,
    log_offsets,
    read_state,
    truncate_logs,
    write_state,
)
from regym.rl.config import RLConfig
from regym.rl.vllm_rollout import check_generation_backend
from regym.trajectory import Trajectory, read_jsonl

EVALS = "evals"
"""``OUTPUT_DIR/evals/step-<N>/``: each evaluation as a leaderboard run folder."""
PROGRESS_KEYS = (("reward", "reward"), ("success_rate", "success"), ("entropy", "entropy"), ("kl", "kl"))


# --- 1. models ------------------------------------------------------------------------------
def resolve_checkpoints(config: RLConfig, env_id: str) -> tuple[Path | None, Path, dict[str, Any]]:
    """(base, sft, env options) from ``config.model`` (a Hugging Face folder, or "smollm2").

    The model is always named here: ``rl-train`` with no ``--model`` fills it from the
    tiny pipeline before training (``regym.recipes.tiny.with_tiny_pipeline``), so
    ``config.yaml`` records the checkpoint the run actually started from.
    """
    if config.model is None:
        raise ValueError("no model to train: pass --model PATH (a Hugging Face folder) or --model smollm2; "
                         "the rl-train command fills it from the tiny pipeline "
                         "(regym.recipes.tiny.with_tiny_pipeline) when none is given")
    return (Path(config.base) if config.base else None), model_folder(config.model, "model"), dict(config.env_kwargs)


def reference_checkpoint(config: RLConfig, sft: Path) -> Path | None:
    """The KL reference's folder: ``config.reference``, else the SFT checkpoint (also under ``--rejuvenate``);
    None when ``beta`` is 0. A ``reference`` that names no model folder raises even then: a typo in a lab's
    arm must stop the run before anything trains, not pass unnoticed."""
    reference = model_folder(config.reference, "reference") if config.reference is not None else sft
    return reference if config.beta != 0 else None


def model_folder(name: str, field: str) -> Path:
    """The Hugging Face folder a model field names ("smollm2": the packaged one); FileNotFoundError naming
    the field's flag when it holds no model."""
    if name == "smollm2":
        from regym.models import smollm2_checkpoint

        return smollm2_checkpoint()
    folder = Path(name)
    if not (folder / "config.json").is_file():
        missing = "does not exist" if not folder.exists() else "is not a Hugging Face model folder (no config.json)"
        raise FileNotFoundError(f"--{field.replace('_', '-')} {folder} {missing}")
    return folder


def rejuvenated_checkpoint(config: RLConfig, base: Path | None, sft: Path, folder: Path,
                           calibration_envs: Sequence[gym.Env]) -> Path:
    """rejuvenate(base, sft) into ``folder`` (reused when it was made with the same settings).

    The attribution and redo criteria score tokens of a calibration set: expert episodes of
    the training env in THE prompt format (``calibration_episodes`` of them). When that set
    cannot be made (the env has no expert), this raises naming the fix, unless
    ``reset_fallback_criterion`` asks for another criterion then; the switch is recorded
    (``rejuvenation.json``: ``fallback_from``, ``warnings``; ``regym_rejuvenation.json``:
    ``calibration_error``). ``regym_rejuvenation.json`` records the settings (the fallback
    included, so a folder made without it is not reused) and rejuvenation's summary. With
    ``config.progress``, each stage of the rejuvenation shows its progress on stderr.
    """
    import sys

    from regym.progress import StageProgress
    from regym.rejuvenation.stages import silent

    if base is None:
        raise ValueError("--rejuvenate needs the base checkpoint: pass --base PATH")
    settings = {"base": str(base), "sft": str(sft), "alpha": config.alpha, "reset_fraction": config.reset_fraction,
                "reset_strength": config.reset_strength, "criterion": config.reset_criterion,
                "calibration_episodes": config.calibration_episodes,
                "fallback_criterion": config.reset_fallback_criterion}
    stamp = folder / "regym_rejuvenation.json"
    if reusable(stamp, settings, rebuild=True):  # other settings: rejuvenate again into the same folder
        return folder
    calibration, calibration_error = None, None
    if config.reset_criterion in NEEDS_CALIBRATION and config.reset_fraction > 0:
        try:
            calibration = expert_calibration(config, calibration_envs, load_tokenizer(sft))
        except ValueError as error:
            if config.reset_fallback_criterion is None:
                raise
            calibration_error = str(error)  # rejuvenate_checkpoint then uses the fallback and records it
    stages = (lambda description, total: StageProgress(f"rejuvenate: {description}", total, stream=sys.stderr)) \
        if config.progress else silent
    summary = rejuvenate_checkpoint(base, sft, folder, alpha=config.alpha, reset_fraction=config.reset_fraction,
                                    reset_strength=config.reset_strength, criterion=config.reset_criterion,
                                    calib_texts=calibration, fallback_criterion=config.reset_fallback_criterion,
                                    overwrite=True, seed=config.seed, stages=stages)
    write_stamp(stamp, settings, summary=summary.to_dict(), calibration_error=calibration_error)
    return folder


def expert_calibration(config: RLConfig, envs: Sequence[gym.Env], tokenizer: Any) -> list[dict[str, Any]]:
    """``regym.demos.expert_calibration`` of ``config.calibration_episodes`` in the policy's prompt format;
    a ``ValueError`` naming the flags that avoid calibration when no set can be made."""
    from regym.demos import CalibrationError
    from regym.demos import expert_calibration as expert_turns

    instead = ("pass --reset-criterion drift (it needs no calibration data), --reset-fallback-criterion drift "
               "(drift only when this calibration set cannot be made; recorded in rejuvenation.json), "
               "or --reset-fraction 0 (fusion alone)")
    if config.calibration_episodes <= 0:
        raise ValueError(f"--reset-criterion {config.reset_criterion} calibrates on expert episodes, and "
                         f"--calibration-episodes is {config.calibration_episodes}: raise it, or {instead}")
    try:
        return expert_turns(envs, tokenizer, episodes=config.calibration_episodes,
                            prompt_format=PromptFormat(style=config.prompt_style))
    except CalibrationError as error:
        raise ValueError(f"--reset-criterion {config.reset_criterion} calibrates on expert episodes of "
                         f"{config.env}: {error}. Instead, {instead}") from error


def load_model(folder: Path, use_cpu: bool):
    """The checkpoint in float32 on this process's device: its own GPU when several processes train."""
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return model.to("cpu" if use_cpu else PartialState().device)


def join_processes(use_cpu: bool):
    """accelerate's ``PartialState``: this process's rank among those a launcher started (``accelerate launch``,
    ``torchrun``; gloo on CPU, NCCL on GPUs), or a lone process. Made before the trainer so that the run's
    files, the rejuvenation and the models' devices can follow it; TRL's trainer joins the same process group.
    The timeout is ``TrainingArguments.ddp_timeout``'s default: the others wait that long at a barrier while
    the main process rejuvenates or evaluates."""
    from datetime import timedelta

    from accelerate import PartialState

    return PartialState(cpu=use_cpu, timeout=timedelta(seconds=1800))


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


# --- 2. envs and evaluation -----------------------------------------------------------------
def make_envs(config: RLConfig, env_id: str, split: str, count: int, env_kwargs: dict[str, Any]) -> list[gym.Env]:
    """``count`` copies of the env: in this process, on Ray env workers, or on a server (``env_hosting``)."""
    from regym.envs.workers import make_envs as make_env_copies

    return make_env_copies(env_id, count, split=split, max_turns=config.max_turns, **env_hosting(config),
                           **env_kwargs)


def env_hosting(config: RLConfig) -> dict[str, Any]:
    """Where the envs run: ``env_workers`` Ray workers, or the ``regym serve-env`` server at ``env_url``."""
    return {"env_workers": config.env_workers, "env_urls": {config.env: config.env_url} if config.env_url else None}


def training_env_kwargs(config: RLConfig, env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` plus the env's dense reward when ``config.dense_reward`` and the env offers one."""
    from regym.envs import accepts_option

    if config.dense_reward and "dense_reward" not in env_kwargs and accepts_option(env_id, "dense_reward"):
        return {**env_kwargs, "dense_reward": True}
    return dict(env_kwargs)


def evaluate(model, tokenizer, config: RLConfig, splits: Sequence[str], episodes: int, *,
             run_dir: Path | None = None, name: str | None = None) -> dict[str, dict[str, float]]:
    """Per split: success rate (95 % Wilson interval), mean reward, mean turns and errors on ``episodes``
    fixed tasks (reset seeds ``seeds.rl_eval_seeds``), played and scored by regym's one evaluator.

    The agent is ``rl-eval``'s (``regym.eval.agents.policy_agent``) and the sampling seed is fixed
    (``seeds.RL_EVAL_FIRST``), so ``rl-eval --model CHECKPOINT --task-seed 10000 --num-tasks EPISODES
    --k 1 --seed 10000`` with the same temperature, max_new_tokens, max_turns, num_envs and env kwargs
    (and ``--history-turns K`` for ``context: window``: the policy is evaluated on the window it was
    trained on) plays the same episodes; and runs that differ only in their RL seed measure their shared starting
    checkpoint identically, so their curves differ by what RL did, not by eval draws. With
    ``run_dir`` the evaluation is a leaderboard run folder (replaced if it exists); else in memory.
    """
    env_id = resolve_env_id(config.env)
    entries = [SuiteEntry(env_id, normalize_split(split), episodes, seeds.RL_EVAL_FIRST) for split in splits]
    planned = plan_episodes(entries, k=1)
    policy = HFPolicy(model, tokenizer, temperature=config.eval_temperature, top_p=1.0,
                      max_new_tokens=config.max_new_tokens, seed=seeds.RL_EVAL_FIRST,  # same draws for every RL seed
                      reuse_prefixes=True)  # as rl-eval's policy: the same episodes, each turn prefilling only new text
    agent = policy_agent(policy, prompt_style=config.prompt_style, name=name,
                         history_turns=config.history_turns if config.context == "window" else None)
    env_kwargs = {**config.env_kwargs, "max_turns": config.max_turns}
    hosting = env_hosting(config)  # the same envs as training: here, on Ray env workers, or on a server
    if run_dir is None:
        cells = evaluate_episodes(planned, agent, num_envs=config.num_envs, env_kwargs=env_kwargs, **hosting)
    else:
        identity = {"env_id": env_id, "entries": [asdict(entry) for entry in entries], "k": 1,
                    "seed": seeds.RL_EVAL_FIRST, "temperature": config.eval_temperature, "top_p": 1.0,
                    "max_new_tokens": config.max_new_tokens, "prompt_style": config.prompt_style,
                    "env_kwargs": env_kwargs}
        shutil.rmtree(run_dir, ignore_errors=True)  # a re-evaluation (after --resume) replaces stale episodes
        prepare_run_dir(run_dir, config.to_dict(), identity)
        summary = {"run": Path(run_dir).name, "model": name or Path(run_dir).name, "agent": "llm",
                   "suite": f"rl-train eval: {', '.join(entry.split for entry in entries)}", "k": 1}
        cells = evaluate_run(run_dir, planned, agent, num_envs=config.num_envs, env_kwargs=env_kwargs, **hosting,
                             summary=summary).metrics
    by_split = {cell.split: cell for cell in cells}
    return {split: _eval_row(by_split[normalize_split(split)]) for split in splits}


def _eval_row(cell) -> dict[str, float]:
    """One split's row of ``eval.jsonl``."""
    return {"success_rate": cell.success_rate, "ci_low": cell.ci_low, "ci_high": cell.ci_high,
            "reward": cell.mean_reward, "turns": cell.mean_turns, "errors": cell.errors}


# --- 4. logging -------------------------------------------------------------------------------
class RunLog(TrainerCallback):
    """JSONL + TensorBoard + progress bar, and the periodic evaluation.

    Every process of a multi-process run calls these hooks; only the ``main`` one writes, shows progress
    and evaluates, while the others wait for its evaluation at a barrier (one process: no wait).
    """

    def __init__(self, config: RLConfig, paths: dict[str, Path], main: bool = True):
        self.config, self.paths, self.main = config, paths, main
        self.trainer = None  # set once the trainer exists
        self.writer = None
        if "tensorboard" in config.report_to and main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(config.output_dir) / "tensorboard"))
        self.progress = self.task = None
        self.last_eval_step = -1

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with self.paths[name].open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        if self.config.progress and self.main:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("rl-train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.description}"), TimeElapsedColumn())
            self.progress.start()
            self.task = self.progress.add_task("", total=state.max_steps, completed=state.global_step)
        if state.global_step == 0 and self.config.eval_every > 0 and self.config.eval_at_start:
            self.run_eval(0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
        if self.config.eval_every > 0 and state.global_step % self.config.eval_every == 0:
            self.run_eval(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float) and math.isfinite(v)}
        if "loss" not in logs or not self.main:  # the end-of-training summary Trainer logs; another process
            return
        self._append("metrics", {"step": state.global_step, "time": time.time(), **logs})
        if self.writer is not None:
            for key, value in logs.items():
                self.writer.add_scalar(f"train/{key}", value, state.global_step)
        if self.progress is not None:
            shown = "  ".join(f"{label} {logs[key]:.3f}" for key, label in PROGRESS_KEYS if key in logs)
            self.progress.update(self.task, description=shown)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def run_eval(self, step: int) -> dict[str, dict[str, float]]:
        """Evaluate at ``step`` on the main process (once per step); the other processes wait for it."""
        if step == self.last_eval_step:
            return {}
        results = self._evaluate(step) if self.main else {}
        self.trainer.accelerator.wait_for_everyone()
        self.last_eval_step = step
        return results

    def _evaluate(self, step: int) -> dict[str, dict[str, float]]:
        model, tokenizer = self.trainer.accelerator.unwrap_model(self.trainer.model), self.trainer.processing_class
        out = Path(self.config.output_dir)
        results = evaluate(model, tokenizer, self.config, self.config.eval_splits, self.config.eval_episodes,
                           run_dir=out / EVALS / f"step-{step}", name=f"{out.name}@step-{step}")
        self._append("eval", {"step": step, "time": time.time(), **results})
        if self.writer is not None:
            for split, values in results.items():
                for key, value in values.items():
                    self.writer.add_scalar(f"eval/{split}/{key}", value, step)
            self.writer.flush()
        text = "  ".join(f"{split}: success {values['success_rate']:.3f}" for split, values in results.items())
        console = self.progress.console if self.progress is not None else _console()
        console.print(f"eval at step {step}: {text}", markup=False, soft_wrap=True)  # one line in a log file too
        return results

    def log_rollout(self, step: int, trajectories: list[Trajectory]) -> None:
        """Append the step's episodes; with several processes, every process's, gathered in process order."""
        if self.trainer is not None and self.trainer.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            trajectories = gather_object(trajectories)
        if not self.main:
            return
        with self.paths["rollouts"].open("a", encoding="utf-8") as handle:
            for trajectory in trajectories:
                record = trajectory.to_dict()
                for key in ("token_ids", "loss_mask", "logprobs"):
                    record.pop(key, None)
                handle.write(json.dumps({"step": step + 1, **record}) + "\n")


def drop_evals_after(folder: Path, step: int) -> None:
    """Delete the ``step-<N>`` eval folders past ``step``: a resumed run cuts its evaluations back
    to the checkpoint, as ``truncate_logs`` cuts ``eval.jsonl``."""
    for path in folder.glob("step-*"):
        if path.is_dir() and path.name[len("step-"):].isdigit() and int(path.name[len("step-"):]) > step:
            shutil.rmtree(path)


def _console():
    from rich.console import Console

    return Console()


def plot_learning_curve(paths: dict[str, Path], out: Path, title: str) -> Path | None:
    """Training reward/success per step and eval success per split, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, evals = read_jsonl(paths["metrics"]), read_jsonl(paths["eval"])
    if not metrics and not evals:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    if metrics:
        steps = [row["step"] for row in metrics]
        for key in ("success_rate", "reward"):
            if all(key in row for row in metrics):
                axis.plot(steps, [row[key] for row in metrics], alpha=0.4, label=f"train {key}")
    for split in sorted({key for row in evals for key in row if isinstance(row[key], dict)}):
        points = [(row["step"], row[split]["success_rate"]) for row in evals if split in row]
        axis.plot(*zip(*points, strict=True), marker="o", label=f"eval {split} success")
    axis.set_xlabel("RL step")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


# --- the script ----------------------------------------------------------------------------------
def train(config: RLConfig) -> dict[str, Any]:
    """Run one RL job end to end; returns the summary also written to ``summary.json``."""
    from regym.rl.trl_bridge import RegymGRPOTrainer, env_reward, grpo_config, task_dataset

    check_generation_backend(config)  # --generation vllm without CUDA or vLLM: stop before anything loads
    started = time.time()
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    use_cpu = config.use_cpu if config.use_cpu is not None else not torch.cuda.is_available()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    process = join_processes(use_cpu)
    main = process.is_main_process  # the run's files are written once, by the main process
    env_id = resolve_env_id(config.env)
    paths = {name: out / f"{name}.jsonl" for name in ("metrics", "eval", "rollouts")}

    resume_from = last_checkpoint(out) if config.resume else None
    if config.resume and resume_from is None and main:
        _console().print(f"--resume: no checkpoint in {out}; starting from scratch")
    if resume_from is None and list_checkpoints(out):
        raise FileExistsError(f"{out} already holds checkpoints: pass --resume, or another --output-dir")
    if main and resume_from is not None:
        truncate_logs(paths, read_state(resume_from).get("log_offsets", {}))
        drop_evals_after(out / EVALS, int(resume_from.name.rsplit("-", 1)[1]))
    elif main:
        for path in paths.values():
            path.unlink(missing_ok=True)
        shutil.rmtree(out / EVALS, ignore_errors=True)
    import yaml

    if main:
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    # 1. models
    base_dir, sft_dir, env_kwargs = resolve_checkpoints(config, env_id)
    ref_dir = reference_checkpoint(config, sft_dir)
    train_envs = make_envs(config, env_id, "in_distribution", config.num_envs,
                           training_env_kwargs(config, env_id, env_kwargs))
    init_dir = sft_dir
    if config.rejuvenate:  # made once, by the main process; the others wait for it, then load it
        init_dir = out / "rejuvenated"
        if main:
            rejuvenated_checkpoint(config, base_dir, sft_dir, init_dir, train_envs)
    process.wait_for_everyone()  # the run folder is ready before any process reads it
    tokenizer = load_tokenizer(init_dir)
    model = load_model(init_dir, use_cpu)
    ref_model = load_model(ref_dir, use_cpu) if ref_dir is not None else None

    # 3. trainer (2. the eval envs are made by regym.eval.runner at each evaluation)
    run_log = RunLog(config, paths, main=main)
    accounting = StepAccounting(log_update_norm=config.log_update_norm)  # every process: norms may all-reduce
    trainer = RegymGRPOTrainer(
        model,
        args=grpo_config(config, out, use_cpu),
        regym_config=config,
        envs=train_envs,
        ref_model=ref_model,
        reward_funcs=[env_reward],
        train_dataset=task_dataset(range(config.num_tasks)),
        processing_class=tokenizer,
        callbacks=[accounting, run_log],
        before_save=lambda folder: write_state(folder, {"log_offsets": log_offsets(paths)}),
    )
    run_log.trainer = trainer
    accounting.attach(trainer)
    trainer.remove_callback(PrinterCallback)  # the progress bar and metrics.jsonl replace its raw prints
    trainer.rollout_listeners.append(run_log.log_rollout)

    # 4-5. train (TRL restores model, optimizer, scheduler, RNG and step count on resume)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    if config.eval_every > 0:
        run_log.run_eval(trainer.state.global_step)
    if run_log.writer is not None:
        run_log.writer.close()

    # 6. files (the main process writes them; every process returns the summary)
    final = out / "final"
    if main:
        save_model(trainer.accelerator.unwrap_model(trainer.model), final, tokenizer=tokenizer)
    evals = read_jsonl(paths["eval"])
    summary = {
        "env": env_id,
        "steps": trainer.state.global_step,
        "init": str(init_dir),
        "sft": str(sft_dir),
        "base": str(base_dir) if base_dir else None,
        "reference": str(ref_dir) if ref_dir else None,
        "rejuvenated": config.rejuvenate,
        "env_kwargs": env_kwargs,
        "final_model": str(final),
        "before": {k: v for k, v in evals[0].items() if isinstance(v, dict)} if evals and evals[0]["step"] == 0
        else {},  # no step-0 evaluation (eval_at_start off): never a later one in its place
        "after": {k: v for k, v in evals[-1].items() if isinstance(v, dict)} if evals else {},
        "seconds": round(time.time() - started, 1),
    }
    if main:
        curve = plot_learning_curve(paths, out / "learning_curve.png", f"{env_id} · seed {config.seed}")
        summary["learning_curve"] = str(curve) if curve else None
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    trainer.accelerator.wait_for_everyone()  # no process returns before the run's files exist
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    """Before/after success rates as a Markdown table; a sentence instead when the run evaluated nothing
    (``eval_every`` 0), so an empty table never stands for "no change"."""
    if not summary.get("after"):
        return (f"no evaluation in this run (--eval-every 0): {summary.get('steps', 0)} RL steps, no before/after "
                "success rates; training reward per step is in metrics.jsonl, and rl-eval --model FINAL_MODEL "
                "measures the final model")
    lines = ["| split | before RL | after RL |", "|---|---|---|"]
    for split in summary.get("after", {}):
        before = summary["before"].get(split, {}).get("success_rate")
        after = summary["after"][split]["success_rate"]
        lines.append(f"| {split} | {'—' if before is None else f'{before:.3f}'} | {after:.3f} |")
    return "\n".join(lines)
