"""The body of ``rl-train``, top to bottom: models → envs → TRL trainer → train → eval → files.

1. Models: the SFT checkpoint (``--model``; the ``rl-train`` command defaults it to the tiny
   pipeline regym builds and caches), optionally rejuvenated against ``--base`` (``regym.rl.rejuvenated_start``);
   the KL reference is the SFT model, or ``--reference``. Loaded by ``regym.models.loading``.
2. Envs: ``num_envs`` copies of the env (ID split) for training rollouts; evaluations
   play through regym's one evaluator, ``regym.eval.runner`` (as ``rl-eval`` does; ``regym.rl.evaluation``).
3. Trainer: TRL's ``GRPOTrainer`` with regym's rollout (``regym.rl.trl_bridge``).
4. Logging (``regym.rl.run_log``): ``metrics.jsonl`` (every step), ``eval.jsonl`` (every ``eval_every`` steps,
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
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_callback import PrinterCallback

from regym.checkpoints import save_model
from regym.envs import resolve_env_id
from regym.models.loading import SMOLLM2, load_model, resolve_checkpoint
from regym.models.loading import load_tokenizer as load_tokenizer_files
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
from regym.rl.rejuvenated_start import rejuvenated_checkpoint
from regym.rl.run_log import EVALS, RunLog, console, drop_evals_after, plot_learning_curve
from regym.rl.vllm_rollout import check_generation_backend
from regym.trajectory import read_jsonl


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
    if name == SMOLLM2:
        return resolve_checkpoint(name)
    folder = Path(name)
    if not (folder / "config.json").is_file():
        missing = "does not exist" if not folder.exists() else "is not a Hugging Face model folder (no config.json)"
        raise FileNotFoundError(f"--{field.replace('_', '-')} {folder} {missing}")
    return folder


def load_training_model(folder: Path, use_cpu: bool):
    """The checkpoint in float32 on this process's device: its own GPU when several processes train."""
    from accelerate import PartialState

    return load_model(folder).to("cpu" if use_cpu else PartialState().device)


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
    """The checkpoint's tokenizer, set up for batched generation: a pad token, padding on the left."""
    tokenizer = load_tokenizer_files(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


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
        console().print(f"--resume: no checkpoint in {out}; starting from scratch")
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
    train_envs = config.env_spec(training=True).make(config.num_envs)  # evaluations make their own (regym.rl.evaluation)
    init_dir = sft_dir
    if config.rejuvenate:  # made once, by the main process; the others wait for it, then load it
        init_dir = out / "rejuvenated"
        if main:
            rejuvenated_checkpoint(config, base_dir, sft_dir, init_dir, train_envs)
    process.wait_for_everyone()  # the run folder is ready before any process reads it
    tokenizer = load_tokenizer(init_dir)
    model = load_training_model(init_dir, use_cpu)
    ref_model = load_training_model(ref_dir, use_cpu) if ref_dir is not None else None

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


