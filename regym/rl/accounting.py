"""Where each ``rl-train`` step spends its time and memory, and how far the update moved the weights.

Issue 18 (item 5) asks every run to say, per step, what a GPU run costs; issue 15 (item 5) asks
for the size of each update next to the gradient norm, to tell a plastic policy from a stuck one.
``StepAccounting`` is one ``TrainerCallback`` that puts these keys into TRL's metric log, so they
reach ``metrics.jsonl``, TensorBoard and W&B with the step's other metrics:

================== =====================================================================================
``time/step_s``    from ``on_step_begin`` to just after ``optimizer.step()`` (evaluation and checkpoint
                   writing, which follow, are not in it)
``time/rollout_s`` inside ``RegymGRPOTrainer._play``: generation and env steps, less any weight sync
``time/sync_s``    TRL pushing the weights to vLLM (``vllm_generation.sync_weights``); 0 with hf generation
``time/train_s``   the rest: TRL's log-prob passes, loss, backward, clipping, optimizer step
``tokens/generated`` policy tokens sampled in the step's rollouts
``tokens/per_s``   ``tokens/generated / time/rollout_s``; absent on a step that reuses a rollout
                   (``num_iterations`` > 1)
``memory/peak_gib`` the step's peak of the trainer's device: ``memory/cuda_peak_gib`` with CUDA, else
                   ``memory/rss_peak_gib``
``memory/cuda_peak_gib`` ``torch.cuda.max_memory_allocated``, reset at each step's start (CUDA only)
``memory/rss_peak_gib`` the process's peak resident memory (``ru_maxrss``): since the process started,
                   the kernel cannot reset it
``memory/rss_gib`` the process's resident memory after the step (psutil, when installed)
``update_norm``    ‖θ_after − θ_before‖₂ over the trainable parameters, for the step's optimizer update
``update_ratio``   ``update_norm / ‖θ_before‖₂``
================== =====================================================================================

Trainer logs ``grad_norm`` itself: the norm before clipping (``clip_grad_norm_`` returns it).
The update norm costs one copy of the trainable weights during the optimizer step
(``RLConfig.log_update_norm`` turns it off). The callback must run on every process: with sharded
parameters (FSDP, DeepSpeed ZeRO-3) the norms are all-reduced.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from regym.trajectory import Trajectory

GIB = 2 ** 30


def policy_tokens(trajectories: Sequence[Trajectory], rows: Sequence[Sequence[Any]] | None = None) -> int:
    """Tokens the policy sampled: ``loss_mask`` 1 in the episodes' token view, or in the window rows
    (context "window", whose trajectories keep no token view)."""
    if rows is not None:
        return sum(sum(row.loss_mask) for episode_rows in rows for row in episode_rows)
    return sum(sum(trajectory.loss_mask) for trajectory in trajectories)


def overlap_seconds(start: float, end: float, intervals: Iterable[tuple[float, float]]) -> float:
    """Seconds of ``[start, end]`` covered by the (disjoint) ``intervals``."""
    return sum(max(0.0, min(end, stop) - max(start, begin)) for begin, stop in intervals)


def host_memory() -> dict[str, float]:
    """Peak resident memory of this process (and the current one, when psutil is installed), in GiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_bytes = peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes
    memory = {"memory/rss_peak_gib": peak_bytes / GIB}
    try:
        import psutil
    except ImportError:
        return memory
    memory["memory/rss_gib"] = psutil.Process().memory_info().rss / GIB
    return memory


def _local(parameter: torch.Tensor) -> torch.Tensor:
    """This process's part of a parameter: a ZeRO-3 partition, an FSDP2 DTensor's shard, or itself."""
    if hasattr(parameter, "ds_tensor"):
        return parameter.ds_tensor
    to_local = getattr(parameter, "to_local", None)
    return (to_local() if to_local is not None else parameter).detach()


class UpdateNorm:
    """‖θ_after − θ_before‖₂ and its ratio to ‖θ_before‖₂, from a copy taken before the update.

    The copy is in each parameter's own dtype and on its device, and is dropped after ``measure``;
    norms accumulate in float32. ``sharded``: each process holds only part of the parameters (FSDP,
    ZeRO-3), so the squared sums are all-reduced; replicated parameters (one process, DDP) need no
    reduction, every process already holds the global value.
    """

    def __init__(self, sharded: bool = False):
        self.sharded = sharded
        self._before: list[torch.Tensor] | None = None
        self._before_squared: torch.Tensor | None = None

    def snapshot(self, parameters: Iterable[torch.Tensor]) -> None:
        with torch.no_grad():
            self._before = [_local(p).clone() for p in parameters if p.requires_grad]
            self._before_squared = _squared_sum(self._before)

    def measure(self, parameters: Iterable[torch.Tensor]) -> dict[str, float]:
        if self._before is None:
            raise RuntimeError("UpdateNorm.measure before snapshot")
        after = [_local(p) for p in parameters if p.requires_grad]
        if len(after) != len(self._before):
            raise RuntimeError(f"{len(self._before)} trainable parameters before the update, {len(after)} after")
        with torch.no_grad():
            for before, now in zip(self._before, after, strict=True):
                before.sub_(now)  # the copy becomes θ_before − θ_after: no second copy
            sums = torch.stack([_squared_sum(self._before), self._before_squared])
            if self.sharded and torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(sums)  # on the parameters' device, as NCCL needs
        self._before = self._before_squared = None
        update, before = sums.sqrt().tolist()
        return {"update_norm": update, "update_ratio": update / before if before > 0 else 0.0}


def _squared_sum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ‖t‖² in float32, on the tensors' device (a scalar)."""
    total = torch.zeros((), dtype=torch.float32, device=tensors[0].device if tensors else None)
    for tensor in tensors:
        total += torch.linalg.vector_norm(tensor, dtype=torch.float32).square()
    return total


def params_are_sharded(accelerator: Any) -> bool:
    """Whether each process holds only part of the parameters: FSDP, or DeepSpeed ZeRO stage 3."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return getattr(accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3
    return False


class StepAccounting(TrainerCallback):
    """Time, tokens, memory and update size of each optimizer step (see the module docstring).

    ``attach(trainer)`` after the trainer is built: it listens to the trainer's rollouts
    (``rollout_listeners``; ``_play`` leaves ``last_rollout_seconds`` and ``last_rollout_rows``) and
    times TRL's vLLM weight sync by wrapping ``vllm_generation.sync_weights`` when there is one.
    """

    def __init__(self, log_update_norm: bool = True):
        self.log_update_norm = log_update_norm
        self.trainer: Any = None
        self.update_norm: UpdateNorm | None = None
        self._step_started = 0.0
        self._rollout_seconds = 0.0
        self._tokens = 0
        self._rollouts = 0
        self._syncs: list[tuple[float, float]] = []

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer
        trainer.rollout_listeners.append(self.on_rollout)
        generation = getattr(trainer, "vllm_generation", None)
        if generation is not None:
            generation.sync_weights = self._timed_sync(generation.sync_weights)
        if self.log_update_norm:
            self.update_norm = UpdateNorm(sharded=params_are_sharded(trainer.accelerator))

    def _timed_sync(self, sync):
        def sync_weights(*args, **kwargs):
            started = time.perf_counter()
            try:
                return sync(*args, **kwargs)
            finally:
                self._syncs.append((started, time.perf_counter()))
        return sync_weights

    def _on_cuda(self) -> bool:
        return self.trainer is not None and self.trainer.accelerator.device.type == "cuda"

    def _snapshot_before(self) -> bool:
        """DeepSpeed steps the optimizer inside ``backward``, before ``on_pre_optimizer_step``: copy at the
        step's start there (the copy then lives through the rollout); elsewhere just before the update."""
        from accelerate.utils import DistributedType

        return self.trainer.accelerator.distributed_type == DistributedType.DEEPSPEED

    def _trainable(self) -> Iterable[torch.Tensor]:
        return self.trainer.model.parameters()

    def on_step_begin(self, args, state, control, **kwargs):
        if self._on_cuda():
            torch.cuda.reset_peak_memory_stats(self.trainer.accelerator.device)
        self._rollout_seconds, self._tokens, self._rollouts, self._syncs = 0.0, 0, 0, []
        if self.update_norm is not None and self._snapshot_before():
            self.update_norm.snapshot(self._trainable())
        self._step_started = time.perf_counter()

    def on_rollout(self, step: int, trajectories: list[Trajectory]) -> None:
        ended = time.perf_counter()
        seconds = self.trainer.last_rollout_seconds
        self._rollout_seconds += seconds - overlap_seconds(ended - seconds, ended, self._syncs)
        self._tokens += policy_tokens(trajectories, self.trainer.last_rollout_rows)
        self._rollouts += 1

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.update_norm is not None and not self._snapshot_before():
            self.update_norm.snapshot(self._trainable())

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self._on_cuda():
            torch.cuda.synchronize(self.trainer.accelerator.device)
        step_seconds = time.perf_counter() - self._step_started
        sync_seconds = sum(stop - start for start, stop in self._syncs)
        record = {"time/step_s": step_seconds, "time/rollout_s": self._rollout_seconds, "time/sync_s": sync_seconds,
                  "time/train_s": max(0.0, step_seconds - self._rollout_seconds - sync_seconds),
                  "tokens/generated": float(self._tokens)}
        if self._rollouts and self._rollout_seconds > 0:
            record["tokens/per_s"] = self._tokens / self._rollout_seconds
        record.update(host_memory())
        if self._on_cuda():
            record["memory/cuda_peak_gib"] = torch.cuda.max_memory_allocated(self.trainer.accelerator.device) / GIB
        record["memory/peak_gib"] = record.get("memory/cuda_peak_gib", record["memory/rss_peak_gib"])
        if self.update_norm is not None:
            record.update(self.update_norm.measure(self._trainable()))
        metrics = self.trainer._metrics["train"]  # TRL averages these into the step's log (GRPOTrainer.log)
        for key, value in record.items():
            metrics[key].append(value)
