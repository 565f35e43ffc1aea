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


class EndpointError(RuntimeError):
    """The endpoint failed a request after every retry (or refused it outright).

    Raised instead of the client's own exception so that a command can report it in one
    line: an evaluation must stop on a dead endpoint, not score it as a failing policy.
    """


class OpenAIPolicy:
    """Send each conversation to ``/chat/completions``; ``max_workers`` requests run at once.

    ``base_url`` defaults to ``$OPENAI_BASE_URL`` and ``api_key`` to ``$OPENAI_API_KEY``
    (or "EMPTY" for local servers that ignore it). Each attempt may take ``timeout``
    seconds; timeouts, refused connections and 408/409/429/5xx answers are retried
    ``max_retries`` times by the openai client itself, with exponential backoff and jitter
    (0.5 s doubling to at most 8 s, or the server's ``Retry-After``). After the last
    try, or on an answer that retrying cannot fix (400, 401, 404...), ``chat`` raises
    ``EndpointError``: an evaluation should not silently score a dead endpoint.
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
        timeout: float = 60.0,
        max_retries: int = 2,
        name: str | None = None,
    ):
        from openai import OpenAI

        if not timeout > 0 or max_retries < 0:
            raise ValueError(f"timeout must be > 0 and max_retries >= 0, got {timeout} and {max_retries}")
        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.logprobs = logprobs
        self.max_workers = max(1, int(max_workers))
        self.name = name or model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.client = OpenAI(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        self.base_url = str(self.client.base_url).rstrip("/")

    def chat(self, conversations: list[list[dict[str, str]]]) -> list[Generation]:
        if len(conversations) <= 1 or self.max_workers == 1:
            return [self._complete(messages) for messages in conversations]
        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(conversations)))
        try:
            return list(pool.map(self._complete, conversations))
        finally:  # after a failure, queued requests are dropped rather than each waiting out its retries
            pool.shutdown(wait=True, cancel_futures=True)

    def _complete(self, messages: list[dict[str, str]]) -> Generation:
        import openai

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
        try:
            response = self.client.chat.completions.create(**request)
        except openai.APIError as error:
            raise self._endpoint_error(error) from error
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            logprobs = []
            if choice.logprobs is not None and choice.logprobs.content:
                logprobs = [float(item.logprob) for item in choice.logprobs.content]
            finish_reason = "length" if choice.finish_reason == "length" else "stop"
        except (AttributeError, IndexError, TypeError, ValueError) as error:
            raise EndpointError(f"endpoint {self.base_url} sent an answer that is not a chat completion "
                                f"({type(error).__name__}: {error})") from error
        return Generation(text, [], logprobs, finish_reason)

    def _endpoint_error(self, error: Exception) -> EndpointError:
        """One sentence: which endpoint, how many tries, what went wrong."""
        import openai

        tries = f"{self.max_retries + 1} {'try' if self.max_retries == 0 else 'tries'}"
        if isinstance(error, openai.APITimeoutError):
            return EndpointError(f"endpoint {self.base_url} did not answer after {tries} "
                                 f"(timeout {self.timeout:g} s each)")
        if isinstance(error, openai.APIConnectionError):
            cause = error
            while cause.__cause__ is not None:
                cause = cause.__cause__
            reason = " ".join(str(cause).split()) or type(cause).__name__
            return EndpointError(f"endpoint {self.base_url} could not be reached after {tries}: {reason}")
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            retried = status in (408, 409, 429) or status >= 500
            body = error.body if isinstance(error.body, dict) else {}
            detail = " ".join(str(body.get("message") or error.message).split())[:200]
            return EndpointError(f"endpoint {self.base_url} answered HTTP {status}"
                                 f"{f' after {tries}' if retried else ''}: {detail}")
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        return EndpointError(f"endpoint {self.base_url} sent an answer that is not a chat completion: {detail}")
