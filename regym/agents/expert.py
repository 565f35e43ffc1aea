"""The ceiling of every leaderboard and the source of SFT demonstrations."""

from __future__ import annotations

from collections.abc import Sequence

from regym.trajectory import Trajectory


class ExpertAgent:
    """Plays ``info["expert_action"]``, the env's own expert move from the current state.

    Each env computes its expert from the true game state (TextWorld's walkthrough
    policy, ALFWorld's planner, the reference solution), so the expert stays valid
    even when an episode started from an arbitrary state.
    """

    name = "expert"

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        actions = []
        for trajectory in trajectories:
            action = trajectory.info.get("expert_action")
            if action is None:
                raise RuntimeError(
                    f"{trajectory.env_id} gave no expert_action for task {trajectory.task_id!r}: "
                    "this env (or its options) provides no expert"
                )
            actions.append(str(action))
        return actions
