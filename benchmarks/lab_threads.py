"""Two CPU cores for the SmolLM2 lab's GRPO runs: one run at two threads, or two runs side by side at one
thread each? (issue 26: "measure which is faster").

Plays the smollm2-math preset's RL step (single-turn Math, 8 samples x 4 problems, replies <= 96 tokens,
beta 0.02 with the SFT checkpoint as reference) with ``rl-train`` in subprocesses, pinned CPU numerics as the
lab runs, and reads each run's seconds per step from its ``metrics.jsonl`` (model loading left out). Prints
steps per second of both layouts and their ratio; run it on an otherwise idle machine.

    python benchmarks/lab_threads.py --model lab-smollm2-math/sft/epochs/epoch-2 --steps 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from regym.lab.handoff import PRESETS as LAB_PRESETS
from regym.numerics import PINNED_CPU_NUMERICS


def flags(settings: dict[str, Any]) -> list[str]:
    """``rl-train`` flags for config fields: booleans as --name / --no-name, lists as several values, dicts as JSON."""
    argv: list[str] = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            argv.extend([flag, *map(str, value)])
        else:
            argv.extend([flag, json.dumps(value) if isinstance(value, dict) else str(value)])
    return argv


def lab_rl_argv(model: str, out: Path, seed: int, threads: int, steps: int, micro_batches: int) -> list[str]:
    """``rl-train``'s arguments for the smollm2-math preset's RL runs (its ``rl`` settings, env and task pool),
    ``steps`` steps long, without evaluations or checkpoints."""
    preset = LAB_PRESETS["smollm2-math"]
    settings = {**preset["rl"], "env": preset["env"], "env_kwargs": preset["env_kwargs"],
                "num_tasks": preset["rl_tasks"], "model": model, "seed": seed, "threads": threads,
                "max_steps": steps, "gradient_accumulation_steps": micro_batches, "eval_every": 0,
                "eval_at_start": False, "save_steps": 0, "output_dir": str(out)}
    settings.pop("save_total_limit", None)
    return flags(settings)


def start_run(model: str, out: Path, seed: int, threads: int, steps: int, micro_batches: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "regym.cli.main", "rl-train",
               *lab_rl_argv(model, out, seed, threads, steps, micro_batches)]
    log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 (closed with the process below)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **PINNED_CPU_NUMERICS})


def seconds_per_step(out: Path) -> float:
    """Mean seconds between logged steps (the first step's start, model loading, is left out)."""
    times = [json.loads(line)["time"] for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if len(times) < 2:
        raise RuntimeError(f"{out}: fewer than two logged steps; see {out.with_suffix('.log')}")
    return (times[-1] - times[0]) / (len(times) - 1)


def measure(model: str, layout: list[int], steps: int, micro_batches: int, root: Path) -> tuple[list[float], float]:
    """(seconds per step of each run, the largest resident set of any run in GB) of ``layout`` (one entry per
    run: its thread count), all started at once."""
    runs = []
    for seed, threads in enumerate(layout):
        out = root / f"{len(layout)}x{threads}-ga{micro_batches}-seed{seed}"
        runs.append((out, start_run(model, out, seed, threads, steps, micro_batches)))
    peak = 0
    while any(process.poll() is None for _, process in runs):  # resident sets sampled each second
        for _, process in runs:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, psutil.Process(process.pid).memory_info().rss)
        time.sleep(1)
    for out, process in runs:
        if process.wait() != 0:
            tail = out.with_suffix(".log").read_text()[-3000:]
            raise RuntimeError(f"rl-train failed ({out.name}):\n{tail}")
    return [seconds_per_step(out) for out, _ in runs], peak / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="the SFT checkpoint RL starts from")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps per run (at least 2)")
    parser.add_argument("--layouts", nargs="+", default=["1x2:1", "1x2:4", "2x1:4"],
                        help="RUNSxTHREADS:MICRO_BATCHES; the first is the reference (two side-by-side runs of the "
                             "lab's step in one pass need about 2 x 13 GB)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lab-threads-") as tmp:
        for layout in args.layouts:
            shape, micro_batches = layout.split(":")
            runs, threads = (int(part) for part in shape.split("x"))
            seconds, peak = measure(args.model, [threads] * runs, args.steps, int(micro_batches), Path(tmp))
            rows.append((f"{runs} run(s) x {threads} thread(s), {micro_batches} micro-batch(es)", seconds, peak))
    reference = 1 / rows[0][1][0]
    print("| layout | seconds per step (each run) | steps per second (all runs) | ratio to the first | peak GB per run |")
    print("|---|---|---|---|---|")
    for name, seconds, peak in rows:
        rate = sum(1 / s for s in seconds)
        print(f"| {name} | {', '.join(f'{s:.1f}' for s in seconds)} | {rate:.4f} | {rate / reference:.2f} | {peak:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
