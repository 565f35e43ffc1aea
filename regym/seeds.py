"""Named seed streams: which reset and sampling seeds each job draws, written once.

Episodes are fixed by their reset seed, so two jobs that must not see the same
episodes (SFT demos, the pretraining corpus, RL's evaluation, a leaderboard suite)
draw from disjoint ranges. Each range is named here, and only here, so a reader can
check that they do not overlap and a change to one cannot silently move another.
Changing the demo or corpus ranges (``PIPELINE_STRIDE``, ``CORPUS_OFFSET``) changes what the tiny
pipeline builds: bump ``regym.recipes.tiny.PIPELINE_VERSION`` with them. The others move evaluations
(``RL_EVAL_FIRST``, ``EVAL_SUITE_FIRST``) or RL's sampling (``rl_sampling_seed``), not the pipeline.
"""

from __future__ import annotations

PIPELINE_STRIDE = 100_000
"""Pipeline seed ``s`` owns reset seeds ``s * PIPELINE_STRIDE`` up to the next multiple."""
CORPUS_OFFSET = 50_000
"""Within a pipeline's range, the pretraining corpus starts here (its demos start at 0)."""
RL_EVAL_FIRST = 10_000
"""``rl-train`` evaluates on reset seeds ``10_000 + i``, and samples with seed 10_000 for every RL seed."""
EVAL_SUITE_FIRST = 1_000_000
"""Leaderboard suites play reset seeds ``1_000_000 + i``: far from what training draws."""
RL_SAMPLING_STRIDE = 1_000_003
"""RL rollouts sample with ``rl_sampling_seed``: ``rl_seed * 1_000_003 + step`` on the first process (a prime
stride: the seeds of two RL seeds never collide), further processes ``7_919`` strides apart."""


def demo_seeds(pipeline_seed: int, count: int) -> list[int]:
    """Reset seeds of the tiny pipeline's expert demos."""
    first = pipeline_seed * PIPELINE_STRIDE
    return list(range(first, first + count))


def corpus_seeds(pipeline_seed: int, count: int, skip: int = 0) -> list[int]:
    """Reset seeds of the pretraining corpus (``skip`` moves past seeds already used)."""
    first = pipeline_seed * PIPELINE_STRIDE + CORPUS_OFFSET + skip
    return list(range(first, first + count))


def rl_eval_seeds(count: int) -> list[int]:
    """Reset seeds of ``rl-train``'s evaluation episodes (the same for every RL seed)."""
    return list(range(RL_EVAL_FIRST, RL_EVAL_FIRST + count))


def rl_sampling_seed(rl_seed: int, step: int, process: int = 0) -> int:
    """The sampling seed of one RL step's rollouts on one training process (reproducible on resume).

    Processes are ``7_919`` RL seeds apart, so two processes of one run never sample alike."""
    return rl_seed * RL_SAMPLING_STRIDE + step + 7_919 * RL_SAMPLING_STRIDE * process
