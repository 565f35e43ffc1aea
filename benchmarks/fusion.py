"""Fusion benchmark: regym's streaming fusion vs mergekit's linear merge on SmolLM2-135M.

    .venv/bin/python benchmarks/fusion.py [--alpha 0.5] [--repeats 1]

Base = SmolLM2-135M-Instruct (exported once from the packaged GGUF); SFT = a perturbed copy
(every tensor + 1% of its std as noise, seed 0). Each fuser runs in its own subprocess so its
peak resident memory (VmHWM, else ``ru_maxrss``; includes Python/torch start-up) and wall time are its own.
mergekit is an optional benchmark dependency (LGPL; ``pip install mergekit`` into .venv only).
Also checks that the two outputs agree and that α = 1 reproduces the SFT checkpoint bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def perturbed_checkpoint(base: Path, folder: Path) -> Path:
    """A copy of ``base`` with small Gaussian noise on every tensor, written once."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * parameter.std() * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def run_regym(base: str, sft: str, out: str, alpha: float) -> None:
    from regym.rejuvenation import fuse_checkpoints

    fuse_checkpoints(base, sft, out, alpha, overwrite=True)


def run_mergekit(base: str, sft: str, out: str, alpha: float) -> None:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    config = MergeConfiguration.model_validate({
        "merge_method": "linear", "dtype": "float32",
        "models": [{"model": sft, "parameters": {"weight": alpha}},
                   {"model": base, "parameters": {"weight": 1.0 - alpha}}],
    })
    run_merge(config, out, MergeOptions(copy_tokenizer=True, quiet=True, write_model_card=False))


def child(fuser: str, base: str, sft: str, out: str, alpha: float) -> None:
    start = time.perf_counter()
    {"regym": run_regym, "mergekit": run_mergekit}[fuser](base, sft, out, alpha)
    seconds = time.perf_counter() - start
    print(json.dumps({"fuser": fuser, "fuse_seconds": seconds, "peak_rss_mib": peak_rss_kib() / 1024}))


def peak_rss_kib() -> int:
    """This process's peak resident memory. Linux VmHWM belongs to the process's own address space;
    ru_maxrss can carry over the parent's peak across fork + exec, so it is only the fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(fuser: str, base: Path, sft: Path, out: Path, alpha: float) -> dict:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(HERE), "--child", fuser, str(base), str(sft), str(out), str(alpha)],
                            capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if result.returncode != 0:
        raise RuntimeError(f"{fuser} failed:\n{result.stderr[-3000:]}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["process_seconds"] = time.perf_counter() - start
    return row


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    state = {}
    for path in sorted(folder.glob("*.safetensors")):
        state.update(load_file(path))
    return state


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=1, help="runs per fuser (best time, max memory reported)")
    args = parser.parse_args()

    import importlib.util

    import torch

    from regym.models.smollm2 import smollm2_checkpoint
    from regym.paths import cache_dir

    base = smollm2_checkpoint()
    sft = perturbed_checkpoint(base, cache_dir("bench") / "smollm2-135m-perturbed")
    work = cache_dir("bench", "fusion-out")
    fusers = ["regym"] + (["mergekit"] if importlib.util.find_spec("mergekit") else [])
    if len(fusers) == 1:
        print("mergekit is not installed (pip install mergekit into .venv); measuring regym only")
    rows = {}
    for fuser in fusers:
        runs = [measure(fuser, base, sft, work / fuser, args.alpha) for _ in range(args.repeats)]
        rows[fuser] = {"fuse_seconds": min(r["fuse_seconds"] for r in runs),
                       "process_seconds": min(r["process_seconds"] for r in runs),
                       "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}
    print(f"\nSmolLM2-135M (float32, {sum(p.stat().st_size for p in base.glob('*.safetensors')) / 2**20:.0f} MiB), "
          f"alpha={args.alpha}")
    print(f"{'fuser':<10} {'fuse time (s)':>14} {'process time (s)':>17} {'peak RSS (MiB)':>15}")
    for fuser, row in rows.items():
        print(f"{fuser:<10} {row['fuse_seconds']:>14.2f} {row['process_seconds']:>17.2f} {row['peak_rss_mib']:>15.0f}")
    if "mergekit" in rows:
        ours, theirs = weights(work / "regym"), weights(work / "mergekit")
        common = set(ours) & set(theirs)
        worst = max(float((ours[n].float() - theirs[n].float()).abs().max()) for n in common)
        print(f"regym vs mergekit: {len(common)} common tensors, max |difference| = {worst:.3e}; "
              f"time ratio {rows['regym']['fuse_seconds'] / rows['mergekit']['fuse_seconds']:.2f}, "
              f"memory ratio {rows['regym']['peak_rss_mib'] / rows['mergekit']['peak_rss_mib']:.2f}")
    exact = measure("regym", base, sft, work / "alpha1", 1.0)
    fused, original = weights(work / "alpha1"), weights(sft)
    same = set(fused) == set(original) and all(torch.equal(fused[n], original[n]) for n in original)
    print(f"alpha=1 reproduces the SFT checkpoint bit for bit: {same} ({exact['fuse_seconds']:.2f} s)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
