"""SmolLM2-135M-Instruct zero-shot greedy accuracy on each Math level, single-turn mode.

Plays ``--problems`` problems of each level through regym's one evaluator (``evaluate_episodes``:
``regym/Math-v0`` with ``level=<name>, mode="single_turn"``, the project's chat prompt, greedy
``HFPolicy`` generation on left-padded batches) and prints a Markdown table: accuracy with its
Wilson 95 % interval, the share of correct answers given in a ``\\boxed{}`` (the paper's strict
reward), the share of replies with no answer at all, and reply lengths in tokens.

    python benchmarks/math_levels.py [--levels chain_sum.1 products.1] [--problems 64] [--threads 1]

The default measures the levels of the ``smollm2_*`` splits (8 levels, 20 minutes of one shared core).

Reset seeds are ``regym.eval.suites.TASK_SEED_BASE + i`` on an env of that one level, so a rerun scores
the same problems. The table in docs/math.md was made with the defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def suite_levels() -> list[str]:
    """The levels of the SmolLM2 splits: ID, then near, then far."""
    from regym.envs.math.levels import LEVEL_SPLITS

    return list(dict.fromkeys(name for split in LEVEL_SPLITS.values() for name in split))


def measure_level(agent, level: str, problems: int, batch: int) -> dict:
    from regym.eval.episodes import plan_episodes
    from regym.eval.metrics import wilson_interval
    from regym.eval.runner import MemoryLog, evaluate_episodes
    from regym.eval.suites import SuiteEntry

    log = MemoryLog()
    episodes = plan_episodes([SuiteEntry("regym/Math-v0", "in_distribution", problems)], k=1)
    started = time.perf_counter()
    evaluate_episodes(episodes, agent, num_envs=batch, env_kwargs={"level": level, "mode": "single_turn"}, log=log)
    seconds = time.perf_counter() - started
    records = list(log.records.values())
    final_infos = [record["trajectory"]["turns"][-1]["info"] for record in records]
    correct = sum(bool(record["success"]) for record in records)
    boxed = sum(bool(record["success"]) and info.get("answer_source") == "boxed"
                for record, info in zip(records, final_infos, strict=True))
    unanswered = sum(info.get("answer_source") is None for info in final_infos)
    tokens = sorted(int(record["tokens_generated"]) for record in records)
    low, high = wilson_interval(correct, len(records))
    return {"level": level, "problems": len(records), "correct": correct, "accuracy": correct / len(records),
            "ci_low": low, "ci_high": high, "boxed_correct": boxed, "unanswered": unanswered,
            "median_tokens": tokens[len(tokens) // 2], "max_tokens": tokens[-1], "seconds": seconds}


def table(rows: list[dict], max_new_tokens: int) -> str:
    from regym.envs.math.levels import LEVEL_SPLITS, LEVELS

    split_of = {name: split for split, names in LEVEL_SPLITS.items() for name in names}
    lines = ["| level | split | asks | accuracy (95 % CI) | correct, boxed | no answer | reply tokens "
             f"(median / max of {max_new_tokens}) |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        level = LEVELS[row["level"]]
        lines.append(f"| `{row['level']}` | {split_of.get(row['level'], '-')} | {level.description} | "
                     f"{row['accuracy']:.2f} ({row['ci_low']:.2f}-{row['ci_high']:.2f}), {row['correct']}/"
                     f"{row['problems']} | {row['boxed_correct']} | {row['unanswered']} | "
                     f"{row['median_tokens']} / {row['max_tokens']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", nargs="+", default=None,
                        help="levels to measure (default: those of the smollm2_* splits)")
    parser.add_argument("--problems", type=int, default=64, help="problems per level")
    parser.add_argument("--max-new-tokens", type=int, default=192, help="reply budget in tokens")
    parser.add_argument("--batch", type=int, default=32, help="problems generated together (left-padded)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--model", type=Path, default=None,
                        help="a transformers checkpoint folder to measure instead (e.g. an SFT epoch of the lab)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()

    import torch

    from regym.agents.hf_policy import HFPolicy
    from regym.envs.math.levels import get_level
    from regym.eval.agents import policy_agent
    from regym.models import load_smollm2

    torch.set_num_threads(args.threads)
    levels = args.levels or suite_levels()
    for name in levels:
        get_level(name)  # an unknown name fails before the model loads
    if args.model is None:
        model, tokenizer = load_smollm2()
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model, tokenizer = AutoModelForCausalLM.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)
    name = "SmolLM2-135M-Instruct" if args.model is None else args.model.name
    agent = policy_agent(HFPolicy(model, tokenizer, temperature=0.0, max_new_tokens=args.max_new_tokens, name=name))
    rows = []
    for name in levels:
        rows.append(measure_level(agent, name, args.problems, args.batch))
        row = rows[-1]
        print(f"{name}: {row['correct']}/{row['problems']} in {row['seconds']:.0f} s", flush=True)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1))
    print(table(rows, args.max_new_tokens))
    print(f"total generation time: {sum(row['seconds'] for row in rows):.0f} s on {args.threads} thread(s)")


if __name__ == "__main__":
    main()
