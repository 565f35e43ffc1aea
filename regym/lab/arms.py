"""The lab's arms: where each RL run starts, what it is held to, and the jobs that run them.

Every arm's RL has the same budget and the same KL-reference rule: the reference is the arm's
SFT checkpoint (the paper's rule: base for the base arm, the over-SFT checkpoint for every arm
made from it). Each arm's starting checkpoint is made once and evaluated once before RL (the
evaluation episodes and sampling seed are fixed, so every seed of an arm would measure it
identically); its seeds then differ only in RL's own sampling and task order.

Jobs are plain dicts run by ``run_job`` in a pool of worker processes (one torch thread each):
on a 2-core machine two runs side by side take about the time of one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regym.cache import read_stamp, reusable, write_stamp, write_text
from regym.lab.ledger import Ledger, small_files

ARMS = ("base", "moderate-sft", "over-sft", "over-sft+fusion", "over-sft+fusion+reset",
        "over-sft+fusion+random-reset", "over-sft@matched-T")
"""Every arm; the last two are controls: a reset of the same ρ without targeting, and the over-SFT model
sampled at the temperature at which its entropy equals the rejuvenated model's (exploration without plasticity)."""
PRIMARY = ("over-sft", "over-sft+fusion+reset")
"""The two arms of the primary comparison (more seeds)."""
REJUVENATED = "over-sft+fusion+reset"


@dataclass(frozen=True)
class Arm:
    """Where an arm's RL starts, its KL reference, and the temperature it samples (and is evaluated) at."""

    name: str
    start: str
    reference: str
    temperature: float = 1.0
    seeds: int = 3

    @property
    def slug(self) -> str:
        return self.name.replace("+", "_").replace("@", "_at_")


def make_rejuvenated_starts(base_dir: Path, over: Path, folder: Path, *, alpha: float, reset_fraction: float,
                            calibration: list[dict[str, Any]] | None, attribution_targets: int = 64) -> dict[str, Path]:
    """Fusion alone, fusion + attribution reset, fusion + random reset of the same ρ (each made once);
    ``attribution_targets``: the entropy-gap targets the attribution criterion scores units on."""
    from regym.rejuvenation.pipeline import rejuvenate_checkpoint

    recipes = {"over-sft+fusion": ("none", 0.0), "over-sft+fusion+reset": ("attribution", reset_fraction),
               "over-sft+fusion+random-reset": ("random", reset_fraction)}
    starts = {}
    for name, (criterion, fraction) in recipes.items():
        out = folder / name.replace("+", "_")
        if not (out / "config.json").exists():
            rejuvenate_checkpoint(base_dir, over, out, alpha=alpha, reset_fraction=fraction, criterion=criterion,
                                  calib_texts=calibration if criterion == "attribution" else None, seed=0,
                                  overwrite=True, top_n_targets=attribution_targets)
        starts[name] = out
    return starts


def match_temperature(measure: Callable[[float], float], target: float, *, low: float = 1.0, high: float = 4.0,
                      steps: int = 6) -> tuple[float, list[tuple[float, float]]]:
    """The temperature T at which ``measure(T)`` (on-policy entropy, rising with T) reaches ``target``, by
    bisection on [low, high]; every (T, entropy) tried is returned. At or below ``measure(low)``: ``low``."""
    tried = [(low, measure(low))]
    if tried[0][1] >= target:
        return low, tried
    tried.append((high, measure(high)))
    if tried[-1][1] <= target:
        return high, tried
    for _ in range(steps):
        middle = (low + high) / 2
        value = measure(middle)
        tried.append((middle, value))
        low, high = (middle, high) if value < target else (low, middle)
    best = min(tried, key=lambda pair: abs(pair[1] - target))
    return best[0], tried


# --- jobs ---------------------------------------------------------------------------------------
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one lab job in this process: "measure" (a ladder row), "pre" (an arm's pre-RL evaluation) or "rl"."""
    import torch

    torch.set_num_threads(int(job.get("threads", 1)))
    if job["kind"] == "measure":
        from regym.lab.ladder import measure_checkpoint

        return measure_checkpoint(job)
    if job["kind"] == "pre":
        return pre_evaluation(job)
    if job["kind"] == "rl":
        return rl_run(job)
    raise ValueError(f"unknown lab job {job['kind']!r}")


def pre_evaluation(job: dict[str, Any]) -> dict[str, Any]:
    """An arm's starting checkpoint played on every eval split exactly as its RL runs' own evaluations play."""
    from regym.rl.config import RLConfig
    from regym.rl.evaluation import evaluate
    from regym.rl.train import load_tokenizer, load_training_model

    folder = Path(job["folder"])
    done = folder / "pre.json"
    if reusable(done, job, rebuild=True):  # a pre.json of another job's settings is measured again
        return read_stamp(done)["result"]
    config = RLConfig(**job["rl"])
    model = load_training_model(Path(config.model), use_cpu=True)
    results = evaluate(model, load_tokenizer(Path(config.model)), config, config.eval_splits, config.eval_episodes,
                       run_dir=folder / "eval", name=job["name"])
    write_outcomes(folder / "eval")
    write_stamp(done, job, result=results)
    return results


def rl_run(job: dict[str, Any]) -> dict[str, Any]:
    """One RL run through ``regym.rl.train.train``; finished runs are read back, interrupted ones resume."""
    from regym.rl.config import RLConfig
    from regym.rl.train import train

    folder = Path(job["rl"]["output_dir"])
    if (folder / "summary.json").exists():
        summary = json.loads((folder / "summary.json").read_text())
    else:
        config = RLConfig(**job["rl"])
        config.resume = folder.exists() and any(folder.glob("checkpoint-*"))
        summary = train(config)
    final = folder / "evals" / f"step-{summary['steps']}"
    if final.is_dir() and not (final / OUTCOMES).is_file():
        write_outcomes(final)
    return summary


def run_jobs(jobs: Iterable[dict[str, Any]], workers: int,
             done: Callable[[dict[str, Any], dict[str, Any]], object] = lambda job, result: None, *,
             ledger: Ledger | None = None, prepare: Callable[[], object] | None = None) -> list[dict]:
    """Every job's result, in the jobs' order; ``done(job, result)`` as each finishes. Jobs recorded in the
    ``ledger`` are read from it (``prepare`` runs once, before the first job that is not: e.g. rebuilding
    the checkpoints the jobs need); each finished job is recorded at once. One worker: in this process;
    more: that many spawned processes, each with one torch thread."""
    jobs = list(jobs)
    results: list[dict | None] = [None] * len(jobs)
    pending = []
    for index, job in enumerate(jobs):
        recorded = ledger.lookup(job["key"], job_settings(job)) if ledger is not None and "key" in job else None
        if recorded is None:
            pending.append(index)
        else:
            results[index] = recorded
            done(job, recorded)
    if pending and prepare is not None:
        prepare()

    def finish(index: int, result: dict[str, Any], seconds: float) -> None:
        results[index] = result
        if ledger is not None and "key" in jobs[index]:
            ledger.record(jobs[index]["key"], job_settings(jobs[index]), result, job_files(jobs[index]), seconds)
        done(jobs[index], result)

    if workers <= 1 or len(pending) <= 1:
        for index in pending:
            began = time.time()
            finish(index, run_job(jobs[index]), time.time() - began)
        return results  # type: ignore[return-value]
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(timed_job, jobs[index]): index for index in pending}
        for future in as_completed(futures):
            result, seconds = future.result()  # a failed job fails the stage (finished ones are kept)
            finish(futures[future], result, seconds)
    return results  # type: ignore[return-value]


def timed_job(job: dict[str, Any]) -> tuple[dict[str, Any], float]:
    began = time.time()
    return run_job(job), time.time() - began


def job_settings(job: dict[str, Any]) -> dict[str, Any]:
    """What fixes a job's result (its ledger settings): the job without its key and bookkeeping."""
    return {name: value for name, value in job.items() if name not in ("key", "label", "threads")}


def job_files(job: dict[str, Any]) -> list[Path]:
    """The small files a finished job leaves that the report reads."""
    if job["kind"] == "measure":
        return [Path(job["out"])]
    folder = Path(job["folder"] if job["kind"] == "pre" else job["rl"]["output_dir"])
    return small_files(folder)


def episode_outcomes(run_dir: Path) -> dict[str, list[float]]:
    """Per split: the success (0/1) of each episode of one evaluation folder, in episode order (from its
    ``outcomes.json`` when written, e.g. restored from the ledger without the episodes' texts)."""
    from regym.eval.log import read_log

    compact = Path(run_dir) / OUTCOMES
    if compact.is_file():
        return {split: [float(mark == "1") for mark in marks] for split, marks in json.loads(compact.read_text()).items()}
    by_split: dict[str, list[tuple[Any, float]]] = {}
    for record in read_log(run_dir / "trajectories.jsonl"):
        by_split.setdefault(record["split"], []).append(((record["task_seed"], record["sample"]),
                                                         float(bool(record["success"]))))
    return {split: [value for _, value in sorted(rows)] for split, rows in by_split.items()}


OUTCOMES = "outcomes.json"
"""Per split, one character per episode (``"1"`` won), in episode order: what the verdict needs of an evaluation."""


def write_outcomes(run_dir: Path) -> dict[str, list[float]]:
    """Write ``run_dir/outcomes.json`` from its episodes (small enough for the ledger) and return them."""
    found = episode_outcomes(run_dir)
    write_text(Path(run_dir) / OUTCOMES,
                 json.dumps({split: "".join("1" if value else "0" for value in values) for split, values in found.items()}))
    return found
