"""Playing a suite: every task k times, batched across env copies, logged to JSONL.

An *episode* is ``(env_id, split, task_seed, sample)``: sample ``j`` of the task
``reset(seed=task_seed)``. Each finished episode is appended to
``trajectories.jsonl`` (flushed and fsynced line by line), so a killed run loses at
most the episodes in flight; the rerun skips every logged episode. Scripted agents
get one instance per episode seeded from the episode's key, so which episodes share a
batch never changes what an agent does: a resumed run is identical to an
uninterrupted one. All scores are computed from the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from regym.agents.base import Agent
from regym.eval.metrics import EpisodeRecord, SplitMetrics, score_run, split_averages
from regym.eval.suites import SuiteEntry, column_name
from regym.rollout import rollout
from regym.trajectory import Trajectory

TRAJECTORIES = "trajectories.jsonl"
EPISODE_OPTION = "eval_episode"
"""Reset option (and reset-info key) that carries an episode's key to the agent."""


@dataclass(frozen=True)
class Episode:
    """Sample ``sample`` of the task ``(env_id, split, task_seed)``."""

    env_id: str
    split: str
    task_seed: int
    sample: int

    @property
    def key(self) -> str:
        return f"{self.env_id}|{self.split}|{self.task_seed}|{self.sample}"

    def agent_seed(self, base_seed: int = 0) -> int:
        """A seed for the agent's randomness in this episode, fixed by the key alone."""
        digest = hashlib.sha256(f"{base_seed}|{self.key}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1


def plan_episodes(entries: Sequence[SuiteEntry], k: int) -> list[Episode]:
    """Every (task, sample) of the suite, in a fixed order."""
    if k < 1:
        raise ValueError("k must be >= 1")
    return [
        Episode(entry.env_id, entry.split, seed, sample)
        for entry in entries
        for seed in entry.task_seeds
        for sample in range(k)
    ]


# --- agents -----------------------------------------------------------------------


def episode_key(trajectory: Trajectory) -> str:
    key = trajectory.reset_info.get(EPISODE_OPTION)
    if key is None:
        raise RuntimeError("trajectory has no eval episode key: play it through regym.eval.runner")
    return key


class PerEpisodeAgent:
    """One inner agent per episode, made by ``make_agent(seed)`` with the episode's seed.

    A shared random agent would draw from one stream in whatever order episodes are
    batched; per-episode instances make every episode's play depend on its key only.
    """

    def __init__(self, make_agent: Callable[[int], Agent], base_seed: int = 0, name: str | None = None):
        self.make_agent = make_agent
        self.base_seed = base_seed
        self.name = name or getattr(make_agent(0), "name", "agent")
        self._agents: dict[str, Agent] = {}

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        actions = []
        for trajectory in trajectories:
            key = episode_key(trajectory)
            if key not in self._agents:
                episode = _episode_from_key(key)
                self._agents[key] = self.make_agent(episode.agent_seed(self.base_seed))
            actions.extend(self._agents[key].act([trajectory]))
        return actions

    def release(self, key: str) -> None:
        self._agents.pop(key, None)

    def tokens_generated(self, key: str) -> int:
        return 0


class TokenCountingAgent:
    """Wraps an ``LLMAgent``: counts the tokens its policy generates for each episode.

    The policy is wrapped so each batched ``chat`` call's generations are seen, in the
    order of the trajectories ``act`` was given.
    """

    def __init__(self, agent: Any):
        self.agent = agent
        self.name = agent.name
        self._policy = _RecordingPolicy(agent.policy)
        agent.policy = self._policy
        self._tokens: dict[str, int] = {}

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        self._policy.last = []
        actions = self.agent.act(trajectories)
        generations = self._policy.last
        if len(generations) == len(trajectories):
            for trajectory, generation in zip(trajectories, generations, strict=True):
                key = episode_key(trajectory)
                self._tokens[key] = self._tokens.get(key, 0) + _token_count(generation)
        return actions

    def release(self, key: str) -> None:
        self._tokens.pop(key, None)

    def tokens_generated(self, key: str) -> int:
        return self._tokens.get(key, 0)


class ReseededLLMAgent:
    """An ``LLMAgent`` whose sampling depends on the episode alone: one episode per call,
    the policy reseeded from (episode key, turn) before each.

    Batched sampling draws every row from one random stream, so which episodes share
    a batch changes their samples; this trades batching for exact resumes.
    """

    def __init__(self, agent: Any, base_seed: int = 0):
        self._reseed = _reseeder(agent.policy)
        self.counter = TokenCountingAgent(agent)
        self.name = agent.name
        self.base_seed = base_seed

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        actions = []
        for trajectory in trajectories:
            episode = _episode_from_key(episode_key(trajectory))
            self._reseed((episode.agent_seed(self.base_seed) + trajectory.num_turns) % 2**63)
            actions.extend(self.counter.act([trajectory]))
        return actions

    def release(self, key: str) -> None:
        self.counter.release(key)

    def tokens_generated(self, key: str) -> int:
        return self.counter.tokens_generated(key)


def _reseeder(policy: Any) -> Callable[[int], None]:
    if hasattr(policy, "reseed"):
        return policy.reseed
    from regym.agents.openai_policy import OpenAIPolicy

    if isinstance(policy, OpenAIPolicy):  # sends ``seed`` with every request

        def reseed(seed: int) -> None:
            policy.seed = seed % 2**31

        return reseed
    raise ValueError(f"{type(policy).__name__} cannot be reseeded per episode (HFPolicy and OpenAIPolicy can)")


class _RecordingPolicy:
    def __init__(self, policy: Any):
        self._inner = policy
        self.last: list[Any] = []

    def chat(self, conversations):
        self.last = list(self._inner.chat(conversations))
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _token_count(generation: Any) -> int:
    token_ids = getattr(generation, "token_ids", None)
    if token_ids:
        return len(token_ids)
    return int(getattr(generation, "num_tokens", 0) or 0)


def _episode_from_key(key: str) -> Episode:
    env_id, split, task_seed, sample = key.rsplit("|", 3)
    return Episode(env_id, split, int(task_seed), int(sample))


# --- the log ------------------------------------------------------------------------


class TrajectoryLog:
    """An append-only JSONL of finished episodes, durable line by line.

    Opening repairs a torn last line (a writer killed mid-line), so appends start on a
    fresh line.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self.records = {record["key"]: record for record in read_log(self.path)}
        self._handle = self.path.open("a", encoding="utf-8")

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.records[record["key"]] = record

    def close(self) -> None:
        self._handle.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The episode records of a log, first record per key, unreadable lines skipped."""
    records: dict[str, dict[str, Any]] = {}
    path = Path(path)
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "key" in record:
                records.setdefault(record["key"], record)
    return list(records.values())


def episode_record(episode: Episode, trajectory: Trajectory, tokens_generated: int = 0) -> dict[str, Any]:
    """One log line: the scores the metrics need, then the full trajectory."""
    return {
        "key": episode.key,
        "env_id": episode.env_id,
        "split": episode.split,
        "task_seed": episode.task_seed,
        "sample": episode.sample,
        "task_id": trajectory.task_id,
        "success": trajectory.success,
        "reward": trajectory.total_reward,
        "turns": trajectory.num_turns,
        "invalid_actions": trajectory.invalid_actions,
        "tokens_generated": int(tokens_generated),
        "error": trajectory.error,
        "trajectory": trajectory.to_dict(),
    }


# --- playing ----------------------------------------------------------------------------


class _TagEpisode(gym.Wrapper):
    """Moves the episode key from the reset options into the reset info."""

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        key = options.pop(EPISODE_OPTION, None)
        observation, info = self.env.reset(seed=seed, options=options or None)
        return observation, {**info, EPISODE_OPTION: key}


def make_env(env_id: str, split: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make`` for one split; a failure names the env."""
    try:
        return gym.make(env_id, split=split, **(env_kwargs or {}))
    except Exception as error:
        raise RuntimeError(f"could not make env {env_id} (split {split}): {type(error).__name__}: {error}") from error


@dataclass
class PlayStats:
    played: int
    skipped: int


def play(
    episodes: Sequence[Episode],
    agent: Any,
    log: TrajectoryLog,
    *,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> PlayStats:
    """Play every episode not yet in ``log``, ``num_envs`` env copies per (env, split).

    ``workers > 1`` plays (env, split) groups in forked processes (for CPU-bound envs
    and scripted agents; the parent stays the log's only writer). An env whose
    ``reset`` raises stops the run with its name (the env is broken); an error during
    a step ends only that episode, logged as a failure.
    """
    if num_envs < 1 or workers < 1:
        raise ValueError("num_envs and workers must be >= 1")
    todo = [episode for episode in episodes if episode.key not in log.records]
    groups: dict[tuple[str, str], list[Episode]] = {}
    for episode in todo:
        groups.setdefault((episode.env_id, episode.split), []).append(episode)
    bar = _Progress(len(todo)) if progress and todo else None

    def write(record: dict[str, Any]) -> None:
        log.append(record)
        if bar is not None:
            bar.advance()

    try:
        if workers == 1 or len(groups) == 1:
            for group in groups.values():
                play_group(group, agent, write, num_envs=num_envs, env_kwargs=env_kwargs)
        else:
            _play_in_processes(list(groups.values()), agent, write, num_envs, env_kwargs, workers)
    finally:
        if bar is not None:
            bar.close()
    return PlayStats(played=len(todo), skipped=len(episodes) - len(todo))


def play_group(
    group: Sequence[Episode],
    agent: Any,
    emit: Callable[[dict[str, Any]], None],
    *,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
) -> None:
    """Play the episodes of one (env, split) in lock-step; ``emit`` each record as it ends."""
    env_id, split = group[0].env_id, group[0].split
    envs = [_TagEpisode(make_env(env_id, split, env_kwargs)) for _ in range(min(num_envs, len(group)))]

    def on_done(index: int, trajectory: Trajectory) -> None:
        episode = group[index]
        if trajectory.error is not None and trajectory.error.startswith("reset failed"):
            raise RuntimeError(f"{episode.env_id} ({episode.split}) reset(seed={episode.task_seed}) failed: "
                               f"{trajectory.error}")
        tokens = agent.tokens_generated(episode.key) if hasattr(agent, "tokens_generated") else 0
        emit(episode_record(episode, trajectory, tokens))
        if hasattr(agent, "release"):
            agent.release(episode.key)

    try:
        rollout(envs, agent, seeds=[episode.task_seed for episode in group],
                options=[{EPISODE_OPTION: episode.key} for episode in group], on_done=on_done)
    finally:
        for env in envs:
            env.close()


def _play_in_processes(groups, agent, write, num_envs, env_kwargs, workers) -> None:
    """Forked workers take the next group in turn and send finished records back."""
    import multiprocessing
    import queue as queue_module

    context = multiprocessing.get_context("fork")
    next_group, results = context.Value("i", 0), context.Queue()

    def work() -> None:
        try:
            while True:
                with next_group.get_lock():
                    index, next_group.value = next_group.value, next_group.value + 1
                if index >= len(groups):
                    break
                play_group(groups[index], agent, lambda record: results.put(("record", record)),
                           num_envs=num_envs, env_kwargs=env_kwargs)
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises
            results.put(("error", _portable(error)))
        results.put(("done", None))

    processes = [context.Process(target=work, daemon=True) for _ in range(min(workers, len(groups)))]
    for process in processes:
        process.start()
    running = len(processes)
    try:
        while running:
            try:
                kind, payload = results.get(timeout=1.0)
            except queue_module.Empty:
                if not any(process.is_alive() for process in processes):
                    raise RuntimeError("an eval worker died without reporting") from None
                continue
            if kind == "record":
                write(payload)
            elif kind == "error":
                raise payload  # episodes still in other workers are replayed on resume
            else:
                running -= 1
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _portable(error: BaseException) -> Exception:
    """``error`` itself if it crosses a process boundary intact (so a dead endpoint stays an
    ``EndpointError`` in the parent), else a ``RuntimeError`` with its type and message."""
    if isinstance(error, Exception):
        try:
            if type(pickle.loads(pickle.dumps(error))) is type(error):
                return error
        except Exception:  # noqa: BLE001 - anything unpicklable is sent as text
            pass
    return RuntimeError(f"{type(error).__name__}: {error}")


class _Progress:
    """One rich progress bar over the run's episodes."""

    def __init__(self, total: int):
        from rich.progress import Progress

        self._progress = Progress(transient=True)
        self._progress.start()
        self._task = self._progress.add_task("episodes", total=total)

    def advance(self) -> None:
        self._progress.advance(self._task, 1)

    def close(self) -> None:
        self._progress.stop()


# --- a run directory ---------------------------------------------------------------------


@dataclass
class RunResult:
    run_dir: Path
    metrics: list[SplitMetrics]
    played: int
    skipped: int


def prepare_run_dir(run_dir: str | Path, config: dict[str, Any], identity: dict[str, Any],
                    overwrite: bool = False) -> Path:
    """Create or reopen a run folder; refuse to mix episodes of a different run into it.

    ``identity`` holds what decides the results (agent, suite entries, k, seeds); a
    folder whose saved identity differs is only replaced with ``overwrite``.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        if saved.get("identity") != _plain(identity):
            if not overwrite:
                raise ValueError(
                    f"{run_dir} holds a different run (its config.json identity differs); "
                    "choose another --run-name or pass --overwrite"
                )
            for name in (TRAJECTORIES, "metrics.json", "metrics.md"):
                (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(config_path, {**_plain(config), "identity": _plain(identity)})
    return run_dir


def evaluate(
    run_dir: str | Path,
    episodes: Sequence[Episode],
    agent: Any,
    *,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    workers: int = 1,
    ci_method: str = "wilson",
    summary: dict[str, Any] | None = None,
    progress: bool = False,
) -> RunResult:
    """Play what is missing from ``run_dir`` and write ``metrics.json`` and ``metrics.md``."""
    run_dir = Path(run_dir)
    log = TrajectoryLog(run_dir / TRAJECTORIES)
    unknown = set(log.records) - {episode.key for episode in episodes}
    if unknown:
        log.close()
        raise ValueError(f"{run_dir / TRAJECTORIES} holds {len(unknown)} episodes outside this plan "
                         f"(e.g. {sorted(unknown)[0]}): use another run folder")
    try:
        stats = play(episodes, agent, log, num_envs=num_envs, env_kwargs=env_kwargs, workers=workers,
                     progress=progress)
    finally:
        log.close()
    records = [EpisodeRecord.from_log(record) for record in read_log(run_dir / TRAJECTORIES)]
    metrics = score_run(records, ci_method=ci_method)
    write_metrics(run_dir, metrics, summary or {}, complete=len(records) == len(episodes))
    return RunResult(run_dir, metrics, stats.played, stats.skipped)


def write_metrics(run_dir: Path, metrics: Iterable[SplitMetrics], summary: dict[str, Any], complete: bool) -> None:
    cells = [cell.to_dict() for cell in metrics]
    data = {
        **_plain(summary),
        "complete": complete,
        "episodes": sum(cell["episodes"] for cell in cells),
        **split_averages(cells),
        "trajectories": TRAJECTORIES,
        "cells": cells,
    }
    _write_json(run_dir / "metrics.json", data)
    (run_dir / "metrics.md").write_text(metrics_markdown(data), encoding="utf-8")


def metrics_markdown(data: dict[str, Any]) -> str:
    """A run's metrics as a Markdown table, one row per (env, split)."""
    title = data.get("model") or data.get("run") or "run"
    lines = [f"# {title}", ""]
    for name in ("suite", "agent", "k"):
        if name in data:
            lines.append(f"- {name}: {data[name]}")
    for name in ("id_average", "ood_average"):
        if data.get(name) is not None:
            lines.append(f"- {name}: {data[name]:.3f}")
    lines += [
        "",
        "| env/split | tasks | episodes | success (95% CI) | pass@1 | pass@k | mean reward | mean turns "
        "| invalid rate | tokens | errors |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in data["cells"]:
        k = str(cell["k"])
        lines.append(
            f"| {column_name(cell['env_id'], cell['split'])} | {cell['tasks']} | {cell['episodes']} "
            f"| {cell['success_rate']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}] "
            f"| {cell['pass_at']['1']:.3f} | {cell['pass_at'][k]:.3f} (k={k}) | {cell['mean_reward']:.3f} "
            f"| {cell['mean_turns']:.2f} | {cell['invalid_action_rate']:.3f} | {cell['tokens_generated']} "
            f"| {cell['errors']} |"
        )
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _write_json(path: Path, data: Any) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


__all__ = [
    "EPISODE_OPTION",
    "Episode",
    "PerEpisodeAgent",
    "PlayStats",
    "ReseededLLMAgent",
    "RunResult",
    "TokenCountingAgent",
    "TrajectoryLog",
    "episode_record",
    "evaluate",
    "make_env",
    "plan_episodes",
    "play",
    "play_group",
    "prepare_run_dir",
    "read_log",
]
