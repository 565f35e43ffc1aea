"""rl-train's evaluations, played and scored by regym's one evaluator (``regym.eval.runner``) as rl-eval does."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from regym import seeds
from regym.agents.hf_policy import HFPolicy
from regym.envs import normalize_split, resolve_env_id
from regym.eval.agents import policy_agent
from regym.eval.episodes import plan_episodes
from regym.eval.run_dir import prepare_run_dir
from regym.eval.runner import evaluate as evaluate_run
from regym.eval.runner import evaluate_episodes
from regym.eval.suites import SuiteEntry
from regym.rl.config import RLConfig


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
    spec = config.env_spec()  # the envs of training (less the dense reward): here, on Ray env workers, or a server
    env_kwargs = dict(spec.kwargs)
    hosting = {"env_workers": spec.workers, "env_urls": spec.urls}
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
