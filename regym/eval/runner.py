"""Playing a suite: every task k times, batched across env copies, logged to JSONL.

This is regym's one evaluator: ``rl-eval``, ``rl-train``'s evaluations and the handoff
report's env metrics all play through ``play`` and score with ``score_run``.
``evaluate`` opens a run folder's log (``evaluate_episodes`` keeps one in memory),
``play`` plays each episode not yet in it, one (env, split) group at a time
(``play_group``, in lock-step through ``regym.rollout.rollout``) or several groups in
forked workers, and every score is then computed from the log. The parts live beside
this module: ``episodes`` (what an episode is and its key), ``agents`` (wrappers that
make each episode's play depend on its key alone, so a resumed run is identical to an
uninterrupted one; ``policy_agent``, the one way to wrap an LLM policy), ``log`` (the
fsync'd JSONL), ``workers`` (the forked processes) and ``run_dir`` (the folder and its
metrics files).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regym.envs.spec import EnvSpec
from regym.eval.agents import PerEpisodeAgent, ReseededLLMAgent, TokenCountingAgent
from regym.eval.episodes import EPISODE_OPTION, Episode, TagEpisode, plan_episodes
from regym.eval.log import TrajectoryLog, episode_record, read_log
from regym.eval.metrics import EpisodeRecord, SplitMetrics, score_run
from regym.eval.run_dir import TRAJECTORIES, prepare_run_dir, write_metrics
from regym.eval.workers import play_in_processes
from regym.progress import StageProgress
from regym.rollout import rollout
from regym.trajectory import Trajectory


@dataclass
class RunResult:
    run_dir: Path
    metrics: list[SplitMetrics]
    played: int
    skipped: int


def evaluate(
    run_dir: str | Path,
    episodes: Sequence[Episode],
    agent: Any,
    *,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    workers: int = 1,
    env_workers: int = 0,
    env_urls: dict[str, str] | None = None,
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
                     env_workers=env_workers, env_urls=env_urls,
                     progress=progress)
    finally:
        log.close()
    records = [EpisodeRecord.from_log(record) for record in read_log(run_dir / TRAJECTORIES)]
    metrics = score_run(records, ci_method=ci_method)
    write_metrics(run_dir, metrics, summary or {}, complete=len(records) == len(episodes))
    return RunResult(run_dir, metrics, stats.played, stats.skipped)


def evaluate_episodes(
    episodes: Sequence[Episode],
    agent: Any,
    *,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    ci_method: str = "wilson",
    pass_ks: Sequence[int] = (),
    log: MemoryLog | None = None,
    env_workers: int = 0,
    env_urls: dict[str, str] | None = None,
) -> list[SplitMetrics]:
    """``evaluate`` without a run folder: play every episode, score the records in memory.

    For callers that only want the numbers (the handoff report); ``log`` receives every
    episode's record (its trajectory included) for those that also want the episodes.
    """
    log = MemoryLog() if log is None else log
    play(episodes, agent, log, num_envs=num_envs, env_kwargs=env_kwargs, env_workers=env_workers, env_urls=env_urls)
    records = [EpisodeRecord.from_log(record) for record in log.records.values()]
    return score_run(records, ci_method=ci_method, pass_ks=pass_ks)


class MemoryLog:
    """``TrajectoryLog``'s ``records``/``append``/``close`` with nothing on disk."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def append(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record

    def close(self) -> None:
        pass


@dataclass
class PlayStats:
    played: int
    skipped: int


def play(
    episodes: Sequence[Episode],
    agent: Any,
    log: TrajectoryLog | MemoryLog,
    *,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    workers: int = 1,
    env_workers: int = 0,
    env_urls: dict[str, str] | None = None,
    progress: bool = False,
) -> PlayStats:
    """Play every episode not yet in ``log``, ``num_envs`` env copies per (env, split).

    ``workers > 1`` plays (env, split) groups in forked processes (for CPU-bound envs
    and scripted agents; the parent stays the log's only writer). An env whose
    ``reset`` raises stops the run with its name (the env is broken); an error during
    a step ends only that episode, logged as a failure. ``progress`` shows the count of
    finished episodes on stderr (stdout is left to results). ``env_workers > 0`` hosts each
    group's env copies on Ray env workers instead (then ``workers`` must be 1).
    """
    if num_envs < 1 or workers < 1:
        raise ValueError("num_envs and workers must be >= 1")
    if env_workers and workers > 1:
        raise ValueError("env_workers needs workers=1: forked players and Ray env workers do not mix")
    todo = [episode for episode in episodes if episode.key not in log.records]
    groups: dict[tuple[str, str], list[Episode]] = {}
    for episode in todo:
        groups.setdefault((episode.env_id, episode.split), []).append(episode)

    def play_one(group: Sequence[Episode], emit: Callable[[dict[str, Any]], None]) -> None:
        play_group(group, agent, emit, num_envs=num_envs, env_kwargs=env_kwargs, env_workers=env_workers,
                   env_urls=env_urls)

    stage = StageProgress("episodes", len(todo), stream=sys.stderr) if progress and todo else nullcontext()
    with stage as bar:

        def write(record: dict[str, Any]) -> None:
            log.append(record)
            if bar is not None:
                bar.advance()

        if workers == 1 or len(groups) == 1:
            for group in groups.values():
                play_one(group, write)
        else:
            play_in_processes(list(groups.values()), play_one, write, workers)
    return PlayStats(played=len(todo), skipped=len(episodes) - len(todo))


def play_group(
    group: Sequence[Episode],
    agent: Any,
    emit: Callable[[dict[str, Any]], None],
    *,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    env_workers: int = 0,
    env_urls: dict[str, str] | None = None,
) -> None:
    """Play the episodes of one (env, split) in lock-step; ``emit`` each record as it ends.

    ``env_workers > 0`` hosts the env copies on that many Ray env workers (``regym.envs.workers``)."""
    spec = EnvSpec(group[0].env_id, group[0].split, env_kwargs or {}, workers=env_workers, urls=env_urls)
    try:
        envs = [TagEpisode(env) for env in spec.make(min(num_envs, len(group)))]
    except Exception as error:
        raise RuntimeError(f"could not make env {spec.id} (split {spec.split}): {type(error).__name__}: {error}") \
            from error

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
                options=[{EPISODE_OPTION: episode.key, **episode.reset_options} for episode in group], on_done=on_done)
    finally:
        for env in envs:
            env.close()


__all__ = [
    # this module's own
    "MemoryLog",
    "PlayStats",
    "RunResult",
    "evaluate",
    "evaluate_episodes",
    "play",
    "play_group",
    # re-exported for ``regym.cli.rl_eval`` and tests/eval/test_dead_endpoint.py, which import them from here
    "TRAJECTORIES",
    "PerEpisodeAgent",
    "ReseededLLMAgent",
    "TokenCountingAgent",
    "plan_episodes",
    "prepare_run_dir",
    "read_log",
]
