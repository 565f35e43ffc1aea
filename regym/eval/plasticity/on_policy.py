"""Plasticity measured where RL will act: on the policy's own sampled turns (and held-out text), token for token.

Teacher-forced on SFT-style text, an over-trained model's loss is ~0 and its Hessian vanishes, so over-SFT
looks flat by construction. ``on_policy_metrics`` measures entropy, loss and sharpness on the turns RL would
train on, with ASAM's scale-invariant sharpness; ``greedy_success`` is the temperature-0 success rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from regym.agents.hf_policy import HFPolicy
from regym.agents.llm import chat_token_ids
from regym.envs import normalize_split, resolve_env_id
from regym.eval.agents import policy_agent
from regym.eval.episodes import episode_key, plan_episodes
from regym.eval.metrics import SplitMetrics
from regym.eval.plasticity.measures import (
    adaptive_sharpness,
    hessian_max_abs_eigenvalue,
    hessian_metrics,
    perturbation_sharpness,
    token_statistics,
)
from regym.eval.runner import MemoryLog, evaluate_episodes
from regym.eval.suites import SuiteEntry
from regym.rejuvenation.calibration import CalibrationExample
from regym.trajectory import Trajectory


class _SampleRecordingPolicy:
    """An ``HFPolicy`` that keeps, for its last ``chat`` call, each prompt's ids and the ids it sampled.

    The prompt ids are ``chat_token_ids`` of the conversation, exactly what ``HFPolicy.chat``
    feeds ``generate``; so nothing is re-tokenised after generation.
    """

    def __init__(self, policy: HFPolicy):
        self._inner = policy
        self.last: list[tuple[list[int], list[int]]] = []

    def chat(self, conversations: list[list[dict[str, str]]]) -> list[Any]:
        generations = self._inner.chat(conversations)
        self.last = [(chat_token_ids(self._inner.tokenizer, messages), list(generation.token_ids))
                     for messages, generation in zip(conversations, generations, strict=True)]
        return generations

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _TurnRecorder:
    """The evaluator's agent for ``policy`` (``policy_agent``), wrapped to keep every turn it plays:
    ``turns[(episode key, turn)]`` = (prompt ids, sampled ids)."""

    def __init__(self, policy: HFPolicy) -> None:
        self.policy = _SampleRecordingPolicy(policy)
        self.agent = policy_agent(self.policy)
        self.name = self.agent.name
        self.turns: dict[tuple[str, int], tuple[list[int], list[int]]] = {}

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        self.policy.last = []
        actions = self.agent.act(trajectories)
        for trajectory, sampled in zip(trajectories, self.policy.last, strict=True):
            self.turns[(episode_key(trajectory), trajectory.num_turns)] = sampled
        return actions

    def release(self, key: str) -> None:
        self.agent.release(key)

    def tokens_generated(self, key: str) -> int:
        return self.agent.tokens_generated(key)


@dataclass
class OnPolicySettings:
    """Knobs of ``on_policy_metrics``: how the policy's own samples are drawn and measured."""

    tasks: int = 16
    """Tasks played (the GRPO groups)."""
    samples: int = 4
    """Sampled episodes per task (the group size G)."""
    temperature: float = 1.0
    """Sampling temperature; entropy and top-1 are those of softmax(logits / temperature)."""
    max_new_tokens: int = 16
    """Token budget of one reply."""
    seed: int = 0
    """Seed of the policy's sampling."""
    first_seed: int = 0
    """Reset seed of the first task; the tasks are first_seed, first_seed + 1, ..."""
    sharpness_examples: int = 8
    """Turns (on-policy) or held-out examples that every sharpness measure uses, spread evenly over the set."""
    hessian_iterations: int = 8
    """Power-iteration steps for the Hessian's eigenvalue of largest magnitude (0: skip it)."""
    perturbation_radius: float = 0.01
    """Relative radius of the random-perturbation sharpness (each tensor moves by r·‖θ‖)."""
    perturbation_samples: int = 3
    """Random directions averaged by the perturbation sharpness (0: skip it)."""
    adaptive_radius: float = 0.05
    """Radius of ASAM's weight-normalised ball (``adaptive_sharpness``)."""
    num_envs: int = 16
    """Env copies played in lock-step: the policy's batch."""


@dataclass
class OnPolicyTurn:
    """One turn the policy played, as a calibration example: the prompt ids it was given followed by
    the ids it sampled (stop token included), only the sampled ids scored: the tokens whose
    log-probs RL's objective holds."""

    key: str
    """The episode's key (``regym.eval.episodes.Episode.key``)."""
    turn: int
    """The turn's index in its episode, from 0."""
    example: CalibrationExample


@dataclass
class OnPolicyRun:
    cell: SplitMetrics
    """The evaluator's scores of the sampled episodes."""
    records: list[dict[str, Any]]
    """Every episode's log record (``regym.eval.log.episode_record``), in plan order."""
    turns: list[OnPolicyTurn]
    """Every turn played, in plan order (task, sample) then turn."""


def _env_options(env_kwargs: dict | None, max_turns: int | None) -> dict:
    kwargs = dict(env_kwargs or {})
    if "split" in kwargs:
        raise ValueError("pass the split as split=..., not in env_kwargs")
    if max_turns is not None:
        kwargs["max_turns"] = max_turns
    return kwargs


def play_on_policy(model: nn.Module, tokenizer, env_id: str, settings: OnPolicySettings,
                   env_kwargs: dict | None = None, *, split: str = "in_distribution",
                   max_turns: int | None = None) -> OnPolicyRun:
    """Play ``settings.tasks`` tasks × ``settings.samples`` sampled episodes with regym's one evaluator,
    keeping every turn's exact prompt ids and sampled ids (``OnPolicyTurn``)."""
    if settings.temperature <= 0:
        raise ValueError("on-policy metrics need a sampling temperature > 0 (greedy_success plays greedily)")
    episodes = plan_episodes([SuiteEntry(resolve_env_id(env_id), normalize_split(split), settings.tasks,
                                         seed=settings.first_seed)], settings.samples)
    policy = HFPolicy(model, tokenizer, temperature=settings.temperature, max_new_tokens=settings.max_new_tokens,
                      seed=settings.seed, reuse_prefixes=True)
    log, recorder = MemoryLog(), _TurnRecorder(policy)
    (cell,) = evaluate_episodes(episodes, recorder, num_envs=settings.num_envs,
                                env_kwargs=_env_options(env_kwargs, max_turns), log=log)
    order = {episode.key: index for index, episode in enumerate(episodes)}
    turns = []
    for (key, turn), (prompt, sampled) in sorted(recorder.turns.items(), key=lambda item: (order[item[0][0]],
                                                                                             item[0][1])):
        ids = torch.tensor([prompt + sampled])  # (1, T)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[0, len(prompt):] = True
        turns.append(OnPolicyTurn(key, turn, CalibrationExample(ids, mask)))
    records = sorted(log.records.values(), key=lambda record: order[record["key"]])
    return OnPolicyRun(cell, records, turns)


def _spread(items: Sequence, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all of them when there are no more)."""
    if count >= len(items):
        return list(items)
    return [items[index * len(items) // count] for index in range(count)]


def _sharpness(model: nn.Module, examples: Sequence[CalibrationExample], settings: OnPolicySettings,
               perturbation: bool) -> dict[str, float]:
    metrics = {"adaptive_sharpness": adaptive_sharpness(model, examples, settings.adaptive_radius)}
    if settings.hessian_iterations:
        metrics.update(hessian_metrics(hessian_max_abs_eigenvalue(model, examples, settings.hessian_iterations,
                                                                  settings.seed)))
    if perturbation and settings.perturbation_samples:
        metrics["perturbation_sharpness"] = perturbation_sharpness(
            model, examples, settings.perturbation_radius, settings.perturbation_samples, settings.seed)
    return metrics


def collapsed_group_share(records: Sequence[dict[str, Any]]) -> float:
    """Share of tasks whose G sampled episodes carry no GRPO signal because of the policy: equal rewards and
    either no episode succeeded or every episode played the very same actions. Solved tasks whose samples
    differ are not counted: that is a task without headroom, not a policy that has stopped exploring."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["task_seed"]].append(record)
    if not groups:
        raise ValueError("no episodes to group")

    def collapsed(group: list[dict[str, Any]]) -> bool:
        if len({record["reward"] for record in group}) > 1:
            return False
        if not all(record["success"] for record in group):
            return True
        plays = {tuple(turn["action"] for turn in record["trajectory"]["turns"]) for record in group}
        return len(plays) == 1

    return sum(collapsed(group) for group in groups.values()) / len(groups)


def on_policy_metrics(model: nn.Module, tokenizer, env_id: str, settings: OnPolicySettings,
                      env_kwargs: dict | None = None, *, split: str = "in_distribution",
                      heldout: Sequence[CalibrationExample] | None = None,
                      max_turns: int | None = None) -> dict[str, float]:
    """Plasticity measured where RL will act: on the policy's own samples (``play_on_policy``).

    - ``sampled_success``: success rate over all sampled episodes;
    - ``zero_signal_groups``: fraction of tasks whose G episodes' total rewards are all equal
      (GRPO groups with zero advantage), i.e. 1 − the evaluator's ``varied_reward_tasks``;
    - ``saturated_groups``: of those, the share of all tasks whose G episodes all succeeded (no signal
      because the task is solved, not because the policy collapsed);
    - ``collapsed_groups``: the share of tasks without signal for the policy's sake (``collapsed_group_share``);
    - ``onpolicy_entropy``, ``onpolicy_top1_prob``: of softmax(logits / temperature) at each sampled token,
      ``onpolicy_loss``: their NLL at temperature 1, ``onpolicy_tokens``: how many;
    - ``onpolicy_hessian_max_abs_eigenvalue`` (signed) and ``onpolicy_hessian_converged`` (``HessianEigenvalue``),
      ``onpolicy_perturbation_sharpness``, ``onpolicy_adaptive_sharpness``: of that NLL (the log-prob term of
      the RL objective, at temperature 1) on ``settings.sharpness_examples`` turns;
    - with ``heldout`` (e.g. expert episodes of games SFT never saw): ``heldout_loss``, ``heldout_entropy``
      (temperature 1), ``heldout_hessian_max_abs_eigenvalue``, ``heldout_hessian_converged``,
      ``heldout_adaptive_sharpness``.

    The Hessian keys are absent when ``settings.hessian_iterations`` is 0, the perturbation key when
    ``settings.perturbation_samples`` is 0.
    """
    run = play_on_policy(model, tokenizer, env_id, settings, env_kwargs, split=split, max_turns=max_turns)
    examples = [turn.example for turn in run.turns]
    if not examples:
        raise ValueError(f"the policy played no turn of {env_id}: every episode ended before its first action")
    stats = token_statistics(model, examples, settings.temperature)
    metrics = {
        "sampled_success": run.cell.success_rate,
        "zero_signal_groups": 1.0 - run.cell.varied_reward_tasks,
        "saturated_groups": run.cell.solved_tasks,
        "collapsed_groups": collapsed_group_share(run.records),
        "onpolicy_entropy": stats["entropy"],
        "onpolicy_top1_prob": stats["top1_prob"],
        "onpolicy_loss": stats["sft_loss"],
        "onpolicy_tokens": float(stats["tokens"]),
    }
    sharp = _sharpness(model, _spread(examples, settings.sharpness_examples), settings, perturbation=True)
    metrics.update({f"onpolicy_{key}": value for key, value in sharp.items()})
    if heldout:
        held = token_statistics(model, heldout)
        metrics.update({"heldout_loss": held["sft_loss"], "heldout_entropy": held["entropy"]})
        sharp = _sharpness(model, _spread(heldout, settings.sharpness_examples), settings, perturbation=False)
        metrics.update({f"heldout_{key}": value for key, value in sharp.items()})
    return metrics


def greedy_success(model: nn.Module, tokenizer, env_id: str, episodes: int, env_kwargs: dict | None = None, *,
                   split: str = "in_distribution", first_seed: int = 0, max_turns: int | None = None,
                   max_new_tokens: int = 16) -> float:
    """Success rate of greedy (temperature-0) play over ``episodes`` tasks, reset seeds first_seed, first_seed + 1, ..."""
    plan = plan_episodes([SuiteEntry(resolve_env_id(env_id), normalize_split(split), episodes, seed=first_seed)], 1)
    policy = HFPolicy(model, tokenizer, temperature=0.0, max_new_tokens=max_new_tokens, reuse_prefixes=True)
    (cell,) = evaluate_episodes(plan, policy_agent(policy), num_envs=min(episodes, 16),
                                env_kwargs=_env_options(env_kwargs, max_turns))
    return cell.success_rate
