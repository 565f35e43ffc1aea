"""Small text games shared by tests: exact rules, no engine, so tests check regym's own logic."""

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
