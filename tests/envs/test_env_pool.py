"""Ray env workers play the same trajectories as in-process envs, and fail as they do.

Real Ray actors on this machine host real regym envs (Math with its sandbox, TextWorld).
Killing workers mid-run is tests/envs/test_env_pool_healing.py.
"""

from __future__ import annotations

import time

import gymnasium as gym
import pytest

ray = pytest.importorskip("ray")

import regym  # noqa: E402,F401 - registers the env ids
from regym.agents import ExpertAgent, RandomAgent  # noqa: E402
from regym.envs.workers import EnvPool, make_envs  # noqa: E402
from regym.rollout import rollout  # noqa: E402

TEXTWORLD = ("regym/TextWorld-v0", {"num_tasks": 4, "max_turns": 8})
MATH = ("regym/Math-v0", {"max_turns": 3})


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    from regym.envs.workers import ensure_ray

    started = ensure_ray(num_cpus=4)
    yield
    if started:
        ray.shutdown()


def local_rollout(env_id, kwargs, count, agent, seeds):
    envs = [gym.make(env_id, **kwargs) for _ in range(count)]
    return rollout(envs, agent, seeds=seeds)


@pytest.mark.parametrize("env_id, kwargs", [TEXTWORLD, MATH], ids=["textworld", "math"])
def test_ray_envs_play_the_local_trajectories_bit_for_bit(env_id, kwargs):
    """Same seeds, same agent: every trajectory (observations, rewards, infos, errors) is the local one.

    The random agent draws from one RNG across the batch, so this also checks that the agent sees
    its batches in the same order as on the in-process path.
    """
    seeds = list(range(12))
    with EnvPool(env_id, 3, workers=2, **kwargs) as pool:
        for make_agent in (ExpertAgent, lambda: RandomAgent(seed=3)):
            local = local_rollout(env_id, kwargs, 3, make_agent(), seeds)
            remote = rollout(pool.envs, make_agent(), seeds=seeds)
            assert [t.to_dict() for t in remote] == [t.to_dict() for t in local]
            assert any(t.turns for t in remote)
        assert pool.restarts == pool.deaths == pool.timeouts == 0


def test_make_envs_is_in_process_at_zero_workers_and_closes_the_pool_with_its_last_env():
    local = make_envs(*MATH[:1], 2, **MATH[1])
    assert not any(getattr(env.unwrapped, "runs_remotely", False) for env in local)
    remote = make_envs(*MATH[:1], 2, env_workers=1, **MATH[1])
    assert [env.spec.id for env in remote] == ["regym/Math-v0"] * 2
    pool = remote[0].pool
    observation, info = remote[0].reset(seed=5)
    assert (observation, info) == local[0].reset(seed=5)
    remote[0].close()
    assert remote[1].reset(seed=1)[1]["task_id"] == local[1].reset(seed=1)[1]["task_id"]  # the worker still serves
    remote[1].close()
    assert actor_dies(pool.workers[0].actor, within=30)


def actor_dies(actor, within: float) -> bool:
    """Whether calls to ``actor`` fail as a dead actor's within ``within`` s (``ray.kill`` is asynchronous)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            ray.get(actor.describe.remote(), timeout=within)
        except ray.exceptions.RayActorError:
            return True
        except ray.exceptions.RayTaskError:  # alive for a moment more, its copies already closed
            pass
        time.sleep(0.1)
    return False


def test_an_env_that_cannot_be_made_fails_the_pool_loudly():
    with pytest.raises(RuntimeError, match="could not make regym/Math-v0"):
        EnvPool("regym/Math-v0", 1, workers=1, start_timeout=60, split="no-such-split")


def test_an_env_error_reads_as_it_does_in_process():
    """The env's own exception crosses the worker boundary as itself, not as a Ray wrapper."""
    with pytest.raises(Exception) as local:
        gym.make(MATH[0], **MATH[1]).step("Answer: 1")
    with EnvPool(*MATH[:1], 1, workers=1, **MATH[1]) as pool:
        with pytest.raises(Exception) as remote:
            pool.envs[0].step("Answer: 1")
    assert (type(remote.value), str(remote.value)) == (type(local.value), str(local.value))


def test_a_step_past_the_call_timeout_fails_and_the_worker_is_restarted():
    """A sandboxed program that sleeps past the timeout: the call returns TimeoutError, nothing hangs."""
    with EnvPool(*MATH[:1], 1, workers=1, call_timeout=2.0, **MATH[1]) as pool:
        env = pool.envs[0]
        env.reset(seed=0)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="within 2 s"):
            env.step("<python>import time; time.sleep(8)</python>")
        assert time.monotonic() - started < 6
        assert env.reset(seed=0)[1]["task_id"] is not None  # waits for the restart, then plays on
        assert (pool.timeouts, pool.restarts) == (1, 1)


class SleepThenAnswer:
    """Asks the Math env's sandbox to sleep 1.5 s, then answers: env steps that wait, not compute."""

    name = "sleeper"

    def act(self, trajectories):
        return ["<python>import time; time.sleep(1.5)</python>" if not t.turns else "Answer: 0" for t in trajectories]


def test_the_steps_of_different_workers_overlap():
    """Two episodes on two workers: the turn where both envs wait 1.5 s takes 1.5 s, not 3 s."""
    with EnvPool(*MATH[:1], 2, workers=2, **MATH[1]) as pool:
        rollout(pool.envs, SleepThenAnswer(), seeds=[0, 1])  # warm: the sandboxes are up
        started = time.perf_counter()
        trajectories = rollout(pool.envs, SleepThenAnswer(), seeds=[0, 1])
        elapsed = time.perf_counter() - started
    assert [t.error for t in trajectories] == [None, None] and all(t.num_turns == 2 for t in trajectories)
    assert elapsed < 2.4, f"{elapsed:.2f} s: the two sandboxed sleeps ran one after the other"


def test_rl_train_on_env_workers_plays_the_in_process_rollouts(tmp_path, one_thread):
    """``rl-train --env-workers 2``: the same seed logs the same training episodes as in-process envs."""
    from regym.rl.config import RLConfig
    from regym.rl.train import train
    from tiny_chat import tiny_chat_model

    model, tokenizer = tiny_chat_model(seed=0)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    logs = {}
    for env_workers in (0, 2):
        out = tmp_path / f"workers-{env_workers}"
        train(RLConfig(env="math", model=str(tmp_path / "model"), output_dir=str(out), env_workers=env_workers,
                       num_generations=2, tasks_per_step=2, num_envs=4, num_tasks=4, max_turns=2, max_new_tokens=6,
                       max_episode_tokens=256, max_steps=2, eval_every=0, save_steps=0, report_to=[],
                       progress=False, use_cpu=True))
        logs[env_workers] = (out / "rollouts.jsonl").read_text().splitlines()
    assert len(logs[0]) == 2 * 2 * 2 and logs[2] == logs[0]
