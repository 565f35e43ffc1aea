"""Rollout tokens/s and GRPO step time: transformers ``generate`` against vLLM's CPU build, SmolLM2-135M.

Each measurement is one ``rl-train`` run of ``--steps`` GRPO steps on TextWorld (multi-turn, the same tasks:
training seeds 0..; ``--env``, ``--env-kwargs`` and the shape flags pick another, e.g. the SmolLM2 lab's
single-turn Math), SmolLM2-135M-Instruct in float32 for training, at batch 8 (2 tasks x 4 episodes) and
32 (8 x 4), with ``--generation hf`` (regym's HFPolicy, KV cache kept across turns) and ``--generation
vllm`` (TRL's colocated engine, bf16, compiled; regym's weight sync by reload). A step plays its whole
batch as one rollout, then trains on it in micro-batches of ``--micro-batch`` episodes (``rl-train
--gradient-accumulation-steps batch / micro-batch``, as a TRL user fits a batch in memory), the same for
both generations. Every run is its own process, one after another, so only one vLLM engine exists at a
time; this script reads their ``metrics.jsonl`` and prints, for the last step (the first pays for
first-call warm-ups):

- rollout tokens/s: policy tokens sampled / rollout seconds (generation and env steps, no sync);
- step s: the whole optimizer step (rollout, weight sync, log-prob passes, loss, backward, Adam);
- step ms per token: step time / policy tokens (the two engines sample replies of different lengths);
- each as a ratio to transformers at the same batch;
- peak GiB: the training process's peak resident memory (``memory/rss_peak_gib``; the colocated engine is
  in that process).

The machine's load (``uptime``) is printed before and after each run: on a shared machine the figures are
noisy. Threads: TRL's colocated engine runs inside the training process (vLLM's ``external_launcher``
executor), so it computes on that process's torch threads (``--threads``, rl-train's); vLLM's own
placement (``VLLM_CPU_OMP_THREADS_BIND``, ``VLLM_CPU_NUM_OF_RESERVED_CPU``) is applied only by its
multi-process executor, not here. ``--vllm-env KEY=VALUE`` still passes such settings to the vLLM runs,
to check that. ``--keep DIR`` keeps every run's folder and its log.

    .venv-vllm/bin/python benchmarks/vllm_cpu.py [--steps 2] [--batches 8 32] [--threads 2] [--micro-batch 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_rl_train(generation: str, batch: int, args, out: Path) -> dict | None:
    """One rl-train run; its last step's metrics, and its wall time; None (said why) if it did not finish.
    Its output (stdout and stderr) is kept in ``out``/run.log."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    if generation == "vllm":
        env.update(dict(item.split("=", 1) for item in args.vllm_env))
    micro_batch = min(args.micro_batch, batch)
    if batch % micro_batch or batch % args.group:
        raise SystemExit(f"--micro-batch {micro_batch} and --group {args.group} must divide batch {batch}")
    command = [sys.executable, "-m", "regym.cli.rl_train", "--env", args.env, "--env-kwargs", args.env_kwargs,
               "--model", "smollm2", "--generation", generation, "--max-steps", str(args.steps),
               "--num-generations", str(args.group), "--tasks-per-step", str(batch // args.group),
               "--num-envs", str(batch), "--num-tasks", "64", "--gradient-accumulation-steps", str(batch // micro_batch),
               "--max-turns", str(args.turns), "--max-new-tokens", str(args.tokens),
               "--max-episode-tokens", str(args.episode_tokens),
               "--learning-rate", "1e-6", "--beta", "0", "--eval-every", "0", "--save-steps", "0",
               "--report-to", "none", "--no-progress", "--threads", str(args.threads), "--output-dir", str(out)]
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with (out / "run.log").open("w") as log:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        last = (out / "run.log").read_text().strip().splitlines()[-1:]
        why = f"killed by signal {-result.returncode} (SIGKILL: the kernel's OOM killer?)" if result.returncode < 0 \
            else f"exit {result.returncode}: {last}"
        print(f"  {generation} batch {batch}: rl-train did not finish, {why}", flush=True)
        return None
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {**rows[-1], "wall_s": time.perf_counter() - started}


def _ratio(value: float, of: float | None) -> str:
    return "—" if of is None else f"{value / of:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--env", default="textworld")
    parser.add_argument("--env-kwargs", default="{}", help="the env's options, a JSON object (rl-train --env-kwargs)")
    parser.add_argument("--group", type=int, default=4, help="episodes per task (rl-train --num-generations)")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=24, help="max new tokens per turn")
    parser.add_argument("--episode-tokens", type=int, default=1024, help="rl-train --max-episode-tokens")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads of the training process, the colocated engine's too (rl-train --threads)")
    parser.add_argument("--micro-batch", type=int, default=8,
                        help="episodes per forward/backward pass (rl-train --gradient-accumulation-steps batch / this)")
    parser.add_argument("--generations", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    parser.add_argument("--vllm-env", nargs="*", default=[], help="KEY=VALUE for the vLLM runs' environment")
    parser.add_argument("--keep", type=Path, default=None, help="keep every run's folder and log here")
    args = parser.parse_args()
    if importlib.util.find_spec("vllm") is None:
        print("benchmarks/vllm_cpu.py needs vLLM: `make vllm`, then .venv-vllm/bin/python benchmarks/vllm_cpu.py")
        return
    print(f"load before: {load()}")
    print(f"{args.env} {args.env_kwargs}, {args.group} episodes per task, {args.turns} turns x {args.tokens} tokens; "
          f"vLLM environment: {args.vllm_env or 'none set'}; torch threads {args.threads} (trainer and colocated "
          f"engine); micro-batches of {args.micro_batch}; {args.steps} steps")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        for batch in args.batches:
            for generation in args.generations:
                row = run_rl_train(generation, batch, args, folder / f"{generation}-{batch}")
                results[generation, batch] = row
                if row is None:
                    continue
                print(f"  {generation} batch {batch}: {row['tokens/generated']:.0f} tokens, rollout "
                      f"{row['time/rollout_s']:.1f} s, sync {row['time/sync_s']:.2f} s, step {row['time/step_s']:.1f} s, "
                      f"peak {row['memory/rss_peak_gib']:.1f} GiB (run {row['wall_s']:.0f} s); {load()}", flush=True)
    print(f"load after: {load()}\n")
    print("| batch | generation | rollout tokens/s | x HF | step s | step ms / token | x HF (per token) | sync s "
          "| peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in args.batches:
        hf = results.get(("hf", batch))
        for generation in args.generations:
            row = results[generation, batch]
            if row is None:
                print(f"| {batch} | {generation} | did not finish | | | | | | |")
                continue
            per_token = 1000 * row["time/step_s"] / row["tokens/generated"]
            hf_per_token = None if hf is None else 1000 * hf["time/step_s"] / hf["tokens/generated"]
            print(f"| {batch} | {generation} | {row['tokens/per_s']:.1f} | "
                  f"{_ratio(row['tokens/per_s'], hf and hf['tokens/per_s'])} | {row['time/step_s']:.1f} | "
                  f"{per_token:.1f} | {_ratio(per_token, hf_per_token)} | {row['time/sync_s']:.2f} | "
                  f"{row['memory/rss_peak_gib']:.1f} |")


if __name__ == "__main__":
    main()
