"""Reset and step latency of regym/ALFWorld-v0 next to ALFWorld's raw engine.

Raw engine = the same ``game.tw-pddl`` driven through ALFWorld's own stack
(``AlfredInfos(AlfredDemangler(textworld PddlEnv))``) with the same request_infos
(won, admissible_commands, extras=["gamefile"]). Both backends play the same seeded
sequence of admissible commands. ``ratio`` is regym's step time over the raw engine's.

Run: ``.venv/bin/python benchmarks/env_step_alfworld.py --steps 200``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from regym.envs.alfworld import ALFWorldEnv, tasks
from regym.envs.alfworld import engine as alfworld_engine

SPLIT = "in_distribution"
TASK_INDEX = 0


def _action_sequence(game_file: str, n_steps: int, seed: int = 0) -> list[str]:
    """A seeded random walk over admissible commands (replayed from the start after a win)."""
    engine = alfworld_engine.make_engine()
    rng = np.random.default_rng(seed)
    with alfworld_engine.keep_argv():
        engine.load(game_file)
        state = engine.reset()
        actions = []
        for _ in range(n_steps):
            commands = state["admissible_commands"]
            action = str(commands[int(rng.integers(len(commands)))])
            actions.append(action)
            state, _, done = engine.step(action)
            if done:
                state = engine.reset()
                actions.append(None)  # marks a reset
    return actions


def _time_raw(game_file: str, actions: list[str | None]) -> dict:
    engine = alfworld_engine.make_engine(cached=False)
    with alfworld_engine.keep_argv():
        start = time.perf_counter()
        engine.load(game_file)
        engine.reset()
        cold = time.perf_counter() - start
        start = time.perf_counter()
        engine.reset()
        cached = time.perf_counter() - start
        steps, elapsed = 0, 0.0
        for action in actions:
            start = time.perf_counter()
            if action is None:
                engine.reset()
            else:
                engine.step(action)
                steps += 1
            elapsed += time.perf_counter() - start
    return {"reset_ms_cold": cold * 1e3, "reset_ms_cached": cached * 1e3, "seconds": elapsed, "steps": steps}


def _time_regym(task_id: str, actions: list[str | None], expert: bool) -> dict:
    alfworld_engine._COMPILED.clear()
    env = ALFWorldEnv(split=SPLIT, max_turns=len(actions) + 1, expert=expert)
    start = time.perf_counter()
    env.reset(options={"task_id": task_id})
    cold = time.perf_counter() - start
    start = time.perf_counter()
    env.reset(options={"task_id": task_id})
    cached = time.perf_counter() - start
    steps, elapsed = 0, 0.0
    for action in actions:
        start = time.perf_counter()
        if action is None:
            env.reset(options={"task_id": task_id})
        else:
            env.step(action)
            steps += 1
        elapsed += time.perf_counter() - start
    return {"reset_ms_cold": cold * 1e3, "reset_ms_cached": cached * 1e3, "seconds": elapsed, "steps": steps}


def bench_alfworld(n_steps: int = 200) -> list[dict]:
    """Rows: env, backend, reset_ms_cold, reset_ms_cached, reset_ms, step_ms, steps_per_s, ratio."""
    task_id = tasks.generated_task_id(SPLIT, TASK_INDEX)
    game_file = str(tasks.generate_task(SPLIT, TASK_INDEX) / "game.tw-pddl")
    actions = _action_sequence(game_file, n_steps)
    measured = [
        ("raw engine", _time_raw(game_file, actions)),
        ("regym", _time_regym(task_id, actions, expert=False)),
        ("regym+expert", _time_regym(task_id, actions, expert=True)),
    ]
    raw_step = measured[0][1]["seconds"] / measured[0][1]["steps"]
    rows = []
    for backend, m in measured:
        step = m["seconds"] / m["steps"]
        rows.append({
            "env": "regym/ALFWorld-v0",
            "backend": backend,
            "reset_ms_cold": round(m["reset_ms_cold"], 2),
            "reset_ms_cached": round(m["reset_ms_cached"], 2),
            "reset_ms": round(m["reset_ms_cached"], 2),
            "step_ms": round(step * 1e3, 3),
            "steps_per_s": round(1 / step, 1),
            "ratio": round(step / raw_step, 3),
        })
    return rows


def format_table(rows: list[dict]) -> str:
    header = ["env", "backend", "reset_ms_cold", "reset_ms_cached", "step_ms", "steps_per_s", "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps timed per backend")
    args = parser.parse_args(argv)
    print(format_table(bench_alfworld(args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
