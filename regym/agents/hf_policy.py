"""A local transformers causal LM as a policy: batched sampling with a KV cache.

The sampling loop is written out (prefill once, then one cached forward per token)
rather than calling ``model.generate``, so that it returns exactly what RL needs:
the sampled ids and the log-prob of each under the sampling temperature,
``log_softmax(logits / temperature)``, the same quantity TRL's GRPO loss recomputes.
top-p only decides which token is drawn; the reported log-prob is the untruncated
one (as in TRL and vLLM).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from regym.agents.llm import Generation, chat_token_ids

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def stop_token_ids_for(tokenizer: Any) -> list[int]:
    """The ids that end an assistant turn: EOS plus the chat template's end-of-turn markers."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        if token in vocab:
            ids.add(int(vocab[token]))
    if not ids:
        raise ValueError("the tokenizer has no EOS or end-of-turn token: a policy could never stop")
    return sorted(ids)


class HFPolicy:
    """Sample replies from a ``transformers`` causal LM.

    ``temperature=0`` is greedy (log-probs are then reported at temperature 1).
    ``seed`` makes sampling reproducible through a private ``torch.Generator``.
    ``batch_size`` caps how many sequences one forward pass holds (None: all).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int | None = None,
        batch_size: int | None = None,
        name: str | None = None,
    ):
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        self.model = model
        self.tokenizer = tokenizer
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = batch_size
        self.stop_token_ids = stop_token_ids_for(tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_token_ids[0]
        self.pad_token_id = int(pad)
        self.name = name or str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
        self.generator = torch.Generator(device=self.device)
        self.reseed(seed)
        # transformers >= 5.20 names the KV cache argument ``cache``; earlier versions ``past_key_values``.
        parameters = inspect.signature(model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype = torch.float32, device: str | None = None,
                        gguf_file: str | None = None, **kwargs: Any) -> HFPolicy:
        """Load a Hugging Face folder (or a GGUF file inside one, with ``gguf_file``)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        extra = {"gguf_file": gguf_file} if gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(str(path), **extra)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **extra)
        if device is not None:
            model = model.to(device)
        kwargs.setdefault("name", Path(str(path)).name)
        return cls(model.eval(), tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def reseed(self, seed: int | None) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def chat(self, conversations: list[list[dict[str, str]]]) -> list[Generation]:
        prompt_ids = [chat_token_ids(self.tokenizer, messages) for messages in conversations]
        return self.generate(prompt_ids)

    def generate(self, prompt_ids: list[list[int]], max_new_tokens: int | None = None) -> list[Generation]:
        """Continue each id sequence until a stop token or ``max_new_tokens``."""
        if not prompt_ids:
            return []
        if any(len(ids) == 0 for ids in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        budget = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        size = self.batch_size or len(prompt_ids)
        results: list[Generation] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(prompt_ids), size):
                results.extend(self._generate_batch(prompt_ids[start:start + size], budget))
        finally:
            self.model.train(was_training)
        return results

    @torch.no_grad()
    def _generate_batch(self, prompt_ids: list[list[int]], budget: int) -> list[Generation]:
        device = self.device
        batch, longest = len(prompt_ids), max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((batch, longest), self.pad_token_id, dtype=torch.long, device=device)
        attention_mask = torch.zeros((batch, longest), dtype=torch.long, device=device)
        for row, ids in enumerate(prompt_ids):  # left padding: every row's next token is at the end
            input_ids[row, longest - len(ids):] = torch.tensor(ids, device=device)
            attention_mask[row, longest - len(ids):] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, L)
        stop = torch.tensor(self.stop_token_ids, device=device)

        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1)  # the LM head on the last position only
        cache, logits = _cache_of(out), out.logits[:, -1, :].float()  # (B, V)
        sampled, sampled_logprobs = [], []
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        lengths = torch.zeros(batch, dtype=torch.long, device=device)
        next_position = position_ids[:, -1:]
        for _ in range(budget):
            tokens, logprobs = self._sample(logits)
            tokens = torch.where(finished, torch.full_like(tokens, self.pad_token_id), tokens)
            sampled.append(tokens)
            sampled_logprobs.append(logprobs)
            lengths += (~finished).long()
            finished |= torch.isin(tokens, stop)
            if bool(finished.all()) or len(sampled) == budget:
                break
            attention_mask = torch.cat([attention_mask, torch.ones((batch, 1), dtype=torch.long, device=device)], 1)
            next_position = next_position + 1
            out = self.model(input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=next_position,
                             use_cache=True, **{self._cache_argument: cache})
            cache, logits = _cache_of(out), out.logits[:, -1, :].float()

        if not sampled:
            return [Generation("", [], [], "length") for _ in range(batch)]
        token_matrix = torch.stack(sampled, 1).tolist()  # (B, T)
        logprob_matrix = torch.stack(sampled_logprobs, 1).tolist()
        generations = []
        for row in range(batch):
            n = int(lengths[row])
            ids, logprobs = token_matrix[row][:n], logprob_matrix[row][:n]
            reason = "stop" if ids and ids[-1] in self.stop_token_ids else "length"
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            generations.append(Generation(text, ids, logprobs, reason))
        return generations

    def _sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one token per row; return (tokens (B,), their log-probs (B,))."""
        if self.temperature == 0:
            tokens = logits.argmax(-1)
            return tokens, torch.log_softmax(logits, -1).gather(-1, tokens[:, None])[:, 0]
        logprobs = torch.log_softmax(logits / self.temperature, -1)  # (B, V)
        probs = logprobs.exp()
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(-1, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > self.top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        tokens = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
        return tokens, logprobs.gather(-1, tokens[:, None])[:, 0]


def _cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
