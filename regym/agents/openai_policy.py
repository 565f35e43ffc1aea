"""Any OpenAI-compatible chat endpoint as a policy (OpenAI, vLLM serve, llama.cpp, TGI...).

Used for evaluation and for models served elsewhere. It is text-level: the server
tokenises, so it cannot feed RL's token view; log-probs are reported when the
server returns them (``logprobs=True``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from regym.agents.llm import Generation


class OpenAIPolicy:
    """Send each conversation to ``/chat/completions``; ``max_workers`` requests run at once.

    ``base_url`` defaults to ``$OPENAI_BASE_URL`` and ``api_key`` to ``$OPENAI_API_KEY``
    (or "EMPTY" for local servers that ignore it). Failed requests raise after the
    client's own retries: an evaluation should not silently score a dead endpoint.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int | None = None,
        logprobs: bool = False,
        max_workers: int = 8,
        timeout: float = 120.0,
        max_retries: int = 2,
        name: str | None = None,
    ):
        from openai import OpenAI

        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.logprobs = logprobs
        self.max_workers = max(1, int(max_workers))
        self.name = name or model
        self.client = OpenAI(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout,
            max_retries=max_retries,
        )

    def chat(self, conversations: list[list[dict[str, str]]]) -> list[Generation]:
        if len(conversations) <= 1 or self.max_workers == 1:
            return [self._complete(messages) for messages in conversations]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(conversations))) as pool:
            return list(pool.map(self._complete, conversations))

    def _complete(self, messages: list[dict[str, str]]) -> Generation:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_new_tokens,
        }
        if self.seed is not None:
            request["seed"] = self.seed
        if self.logprobs:
            request["logprobs"] = True
        response = self.client.chat.completions.create(**request)
        choice = response.choices[0]
        logprobs = []
        if choice.logprobs is not None and choice.logprobs.content:
            logprobs = [float(item.logprob) for item in choice.logprobs.content]
        finish_reason = "length" if choice.finish_reason == "length" else "stop"
        return Generation(choice.message.content or "", [], logprobs, finish_reason)
