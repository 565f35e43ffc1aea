"""Small text games shared by tests: exact rules, no engine, so tests check regym's own logic.

Imported as ``from games import ...`` from any folder under tests/ (pytest's ``pythonpath`` holds tests/support)."""

import time

import gymnasium as gym

from regym.envs.actions import ParsedAction
from regym.envs.base import Outcome, TextEnv


class CountingGame(TextEnv):
    """Say the numbers up to a target; the target is the task. "boom" crashes the engine."""

    def _task_id_for(self, rng):
        return f"count-{int(rng.integers(2, 6))}"

    def _begin(self, task_id):
        self.target, self.count = int(task_id.split("-")[1]), 0
        return Outcome(f"Count to {self.target}.", info=self._extras())

    def _act(self, action):
        if action == "boom":
            raise RuntimeError("engine crashed")
        if action != str(self.count + 1):
            return Outcome("Wrong number.", valid=False, info=self._extras())
        self.count += 1
        won = self.count == self.target
        return Outcome(f"{self.count}.", reward=1.0 if won else 0.0, terminated=won, won=won, info=self._extras())

    def _extras(self):
        return {"admissible_actions": [str(self.count + 1), "0"], "expert_action": str(self.count + 1)}


class VowelGame(TextEnv):
    """Two replies; each earns the share of its characters that are "e" (success: above a quarter)."""

    instructions = "Write words full of the letter e."

    def _task_id_for(self, rng):
        return f"vowels-{int(rng.integers(0, 4))}"

    def _begin(self, task_id):
        self.replies = 0
        return Outcome("Say something with many e.")

    def parse(self, text):
        return ParsedAction(text)

    def _act(self, action):
        self.replies += 1
        share = action.count("e") / max(1, len(action))
        done = self.replies == 2
        return Outcome("Again." if not done else "Done.", reward=share, terminated=done,
                       won=done and share > 0.25)


class EchoGame(TextEnv):
    """Every reply comes back as the observation, verbatim: what an engine, a tool or a page might send."""

    def _task_id_for(self, rng):
        return "echo-0"

    def _begin(self, task_id):
        return Outcome("Say \x1b[1manything\x1b[0m.\r\n")

    def parse(self, text):
        return ParsedAction(text)

    def _act(self, action):
        return Outcome(action)


class BrokenResets(CountingGame):
    """Reset raises for even seeds; odd seeds above 10 show a first observation too long for the token budget."""

    def reset(self, *, seed=None, options=None):
        if seed % 2 == 0:
            raise OSError("no game file")
        observation, info = super().reset(seed=seed, options=options)
        return (observation + " pad" * 200 if seed > 10 else observation), info


class SplitCountingGame(CountingGame):
    """CountingGame with splits, for the eval runner: in-distribution targets are 2-4, out-of-distribution 5-7;
    task "count-99" cannot start; ``step_delay`` slows each step."""

    instructions = "Count up to the target, one number per turn."

    def __init__(self, split="in_distribution", max_turns=8, step_delay=0.0, **kwargs):
        super().__init__(split=split, max_turns=max_turns, **kwargs)
        self.step_delay = step_delay

    def _task_id_for(self, rng):
        low = 2 if self.split == "in_distribution" else 5
        return f"count-{int(rng.integers(low, low + 3))}"

    def _begin(self, task_id):
        if task_id == "count-99":
            raise RuntimeError("task 99 cannot start")
        return super()._begin(task_id)

    def _act(self, action):
        time.sleep(self.step_delay)
        return super()._act(action)

    def _extras(self):
        return {"admissible_actions": [str(self.count + 1), "0", "9"], "expert_action": str(self.count + 1)}


EVAL_COUNT_ID = "regym/EvalCount-v0"


def register_eval_count() -> None:
    """``SplitCountingGame`` under ``EVAL_COUNT_ID``, by module path so a fresh process resolves it too."""
    if EVAL_COUNT_ID not in gym.registry:
        gym.register(EVAL_COUNT_ID, entry_point="games:SplitCountingGame")


COLORS = ("red", "blue", "green", "yellow", "white", "black")
PICK_GAME = "regym-test/PickGame-v0"


class PickGame(TextEnv):
    """Take the ball the objective names, then put it in the box."""

    instructions = "You are in a room with balls. Do what the objective says."

    def _task_id_for(self, rng):
        return f"pick-{COLORS[int(rng.integers(len(COLORS)))]}"

    def _begin(self, task_id):
        self.target, self.holding = task_id.split("-", 1)[1], None
        balls = ", ".join(f"a {color} ball" for color in sorted(set(COLORS[:3]) | {self.target}))
        return Outcome(f"Objective: put the {self.target} ball in the box.\nYou see {balls} and a box.",
                       info=self._extras())

    def _act(self, action):
        if action not in self._extras()["admissible_actions"]:
            return Outcome("You can't do that.", valid=False, info=self._extras())
        if action.startswith("take "):
            self.holding = action.split()[1]
            return Outcome(f"You take the {self.holding} ball.", info=self._extras())
        if action.startswith("put "):
            won = self.holding == self.target
            text = "The ball drops into the box. You win!" if won else "Wrong ball. You lose."
            return Outcome(text, reward=float(won), terminated=True, won=won, info=self._extras())
        return Outcome("A room with balls and a box.", info=self._extras())

    def _extras(self):
        if self.holding is None:
            actions = sorted({f"take {color} ball" for color in COLORS[:3] + (self.target,)} | {"look"})
            expert = f"take {self.target} ball"
        else:
            actions = [f"put {self.holding} ball in box", "look"]
            expert = f"put {self.holding} ball in box" if self.holding == self.target else None
        return {"admissible_actions": actions, "expert_action": expert}


def register_pick_game() -> str:
    if PICK_GAME not in gym.registry:
        gym.register(id=PICK_GAME, entry_point=PickGame, kwargs={"max_turns": 6})
    return PICK_GAME
