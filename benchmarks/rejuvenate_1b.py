"""``rejuvenate`` at real size: a random ~1.1B Llama, fusion α = 0.5 + attribution reset ρ = 0.01.

    .venv/bin/python benchmarks/rejuvenate_1b.py [--out DIR] [--top-n 16] [--vocab-size 32000]

Builds (once per ``--out``) a random Llama from a config (hidden 2048, MLP 8192, 16 layers,
32 heads, 8 KV heads, untied head: 1.10B parameters), saved in bfloat16 as ``base``, and a
copy with every tensor moved by 1% of its std as ``sft``; the tokenizer is regym's offline
word-level one; nothing is downloaded. It then runs the ``rejuvenate`` command in a
subprocess on a few short calibration texts and prints parameters, checkpoint size, wall
seconds per stage (timed here from the command's progress lines), the command's peak
resident memory (its own VmHWM, read by polling /proc while it runs, and ``ru_maxrss`` of the
child as a cross-check) and peak RSS / checkpoint size, which issue 18 bounds by 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CALIBRATION = [
    {"prompt": "where is the key", "response": "the key is in the red box on the table"},
    {"messages": [{"role": "user", "content": "open the door"}, {"role": "assistant", "content": "go north then open door"}]},
    {"text": "take apple and open chest then go east and look inventory"},
]
MEMORY_BOUND = 1.5


def build_pair(folder: Path, vocab_size: int) -> tuple[Path, Path, int]:
    """``(base, sft, parameters)``: written once; a second run with the same ``--out`` reuses them."""
    base, sft = folder / "base", folder / "sft"
    if (sft / "config.json").is_file():
        return base, sft, json.loads((folder / "parameters.json").read_text())["parameters"]
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from regym.models.testing import tiny_tokenizer

    config = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=vocab_size, tie_word_embeddings=False,
                         max_position_embeddings=2048, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    tokenizer = tiny_tokenizer(vocab_size=vocab_size)
    model.save_pretrained(base, max_shard_size="1GB")
    tokenizer.save_pretrained(base)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_((0.01 * parameter.float().std() * noise).to(parameter.dtype))
    model.save_pretrained(sft, max_shard_size="1GB")
    tokenizer.save_pretrained(sft)
    (folder / "parameters.json").write_text(json.dumps({"parameters": parameters}))
    return base, sft, parameters


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory of a live process (Linux VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_rejuvenate(base: Path, sft: Path, out: Path, calib: Path, top_n: int) -> dict:
    """Run the command; wall seconds per stage from its ``started``/``done`` lines, and its peak RSS."""
    command = [sys.executable, "-m", "regym.cli.rejuvenate", "--base", str(base), "--sft", str(sft), "--out", str(out),
               "--calib", str(calib), "--alpha", "0.5", "--reset-frac", "0.01", "--top-n", str(top_n), "--overwrite"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    peak = [0]

    def poll() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], vm_hwm_kib(process.pid))
            time.sleep(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stages: dict[str, float] = {}
    opened: dict[str, float] = {}
    log = []
    for line in process.stderr:
        log.append(line)
        line = line.rstrip("\n")
        now = time.perf_counter()
        if started := re.fullmatch(r"(.+): started \(\d+ to do\)", line):
            opened[started[1]] = now
        elif done := re.fullmatch(r"(.+): done in .+", line):
            stages[done[1]] = now - opened.pop(done[1], now)
        print(line, file=sys.stderr, flush=True)
    stdout = process.stdout.read()
    process.wait()
    poller.join()
    if process.returncode != 0:
        raise RuntimeError(f"rejuvenate failed ({process.returncode}):\n{''.join(log)[-3000:]}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"stages": stages, "seconds": time.perf_counter() - start, "peak_kib": peak[0], "children_maxrss_kib":
            children, "summary": json.loads(stdout.strip().splitlines()[-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="folder for base/sft/rejuvenated (default: a temp dir)")
    parser.add_argument("--top-n", type=int, default=16, help="entropy-gap target tokens for attribution")
    parser.add_argument("--vocab-size", type=int, default=32000)
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="rejuvenate-1b-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base, sft, parameters = build_pair(folder, args.vocab_size)
    print(f"built base and sft in {folder} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    calib = folder / "calib.jsonl"
    calib.write_text("".join(json.dumps(row) + "\n" for row in CALIBRATION))
    result = run_rejuvenate(base, sft, folder / "rejuvenated", calib, args.top_n)

    size = sum(path.stat().st_size for path in sft.glob("*.safetensors"))
    peak = max(result["peak_kib"], 1) * 1024
    ratio = peak / size
    rows = [("parameters", f"{parameters / 1e9:.3f} B"), ("checkpoint (bf16 safetensors)", f"{size / 1e9:.2f} GB"),
            *((f"stage: {name}", f"{seconds:.1f} s") for name, seconds in result["stages"].items()),
            ("rejuvenate process, wall", f"{result['seconds']:.1f} s"),
            ("units reset", str(result["summary"]["units_reset"])),
            ("peak RSS (VmHWM, polled)", f"{peak / 1e9:.2f} GB"),
            ("peak RSS (ru_maxrss of children)", f"{result['children_maxrss_kib'] * 1024 / 1e9:.2f} GB"),
            ("peak RSS / checkpoint size", f"{ratio:.2f} (bound {MEMORY_BOUND})")]
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0 if ratio <= MEMORY_BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
