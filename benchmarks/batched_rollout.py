"""Batched stepping of N envs: regym's thin lock-step loop versus Gymnasium's vector envs.

All three play the same expert commands on the same TextWorld games; the table gives
env steps per second and the ratio to regym's loop. Gymnasium's AsyncVectorEnv steps
envs in worker processes, so it can win on many cores when the engine dominates;
regym's loop keeps one process and lets a finished env start its next episode at once.

    python benchmarks/batched_rollout.py [--envs 4] [--episodes 16]
"""

from __future__ import annotations

import argparse
import time
import warnings

import gymnasium as gym

import regym
from regym.agents import ExpertAgent

warnings.filterwarnings("ignore")


def regym_loop(num_envs: int, episodes: int) -> tuple[int, float]:
    envs = [gym.make("regym/TextWorld-v0", num_tasks=episodes) for _ in range(num_envs)]
    start = time.perf_counter()
    trajectories = regym.rollout(envs, ExpertAgent(), episodes=episodes)
    elapsed = time.perf_counter() - start
    for env in envs:
        env.close()
    return sum(t.num_turns for t in trajectories), elapsed


def vector_loop(vector_class, num_envs: int, episodes: int) -> tuple[int, float]:
    """Episodes in waves of num_envs (vector envs reset all slots together with seeds).

    A finished slot auto-resets onto a game of the same (already compiled) pool and
    idles until the wave ends, as vector envs require every slot to step together.
    """
    vector = vector_class([lambda: gym.make("regym/TextWorld-v0", num_tasks=episodes) for _ in range(num_envs)],
                          autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    steps = 0
    start = time.perf_counter()
    for wave in range(0, episodes, num_envs):
        seeds = [min(wave + i, episodes - 1) for i in range(num_envs)]
        _, infos = vector.reset(seed=seeds)
        done = [False] * num_envs
        actions = list(infos["expert_action"])
        while not all(done):
            _, _, terminated, truncated, infos = vector.step(tuple(a or "look" for a in actions))
            steps += sum(not d for d in done)
            done = [d or bool(t) or bool(u) for d, t, u in zip(done, terminated, truncated, strict=True)]
            actions = list(infos["expert_action"])
    elapsed = time.perf_counter() - start
    vector.close()
    return steps, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=16)
    args = parser.parse_args()
    pool = gym.make("regym/TextWorld-v0", num_tasks=args.episodes).unwrapped
    for index in range(args.episodes):  # compile the whole pool once, outside the timings
        pool.game_file(f"tw-id-{index:05d}")
    results = {
        "regym.rollout (thin loop)": regym_loop(args.envs, args.episodes),
        "gymnasium SyncVectorEnv": vector_loop(gym.vector.SyncVectorEnv, args.envs, args.episodes),
        "gymnasium AsyncVectorEnv": vector_loop(gym.vector.AsyncVectorEnv, args.envs, args.episodes),
    }
    reference = results["regym.rollout (thin loop)"]
    reference_rate = reference[0] / reference[1]
    print(f"{'backend':<28} {'steps':>6} {'seconds':>8} {'steps/s':>8} {'ratio':>6}")
    for name, (steps, seconds) in results.items():
        rate = steps / seconds
        print(f"{name:<28} {steps:>6} {seconds:>8.2f} {rate:>8.0f} {rate / reference_rate:>6.2f}")


if __name__ == "__main__":
    main()
