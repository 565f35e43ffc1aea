"""What an rl-train run leaves behind while it trains: ``metrics.jsonl``, ``eval.jsonl`` (and each evaluation's
run folder under ``evals/step-<N>/``), ``rollouts.jsonl``, TensorBoard, the progress bar, and at the end the
learning curve PNG and the before/after table."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from regym.rl.config import RLConfig
from regym.rl.evaluation import evaluate
from regym.trajectory import Trajectory, read_jsonl

EVALS = "evals"
"""``OUTPUT_DIR/evals/step-<N>/``: each evaluation as a leaderboard run folder."""
PROGRESS_KEYS = (("reward", "reward"), ("success_rate", "success"), ("entropy", "entropy"), ("kl", "kl"))


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
        shown = self.progress.console if self.progress is not None else console()
        shown.print(f"eval at step {step}: {text}", markup=False, soft_wrap=True)  # one line in a log file too
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


def console():
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
