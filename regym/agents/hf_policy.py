"""A local transformers causal LM as a policy: batched sampling with a KV cache.

The sampling loop is written out (prefill once, then one cached forward per token)
rather than calling ``model.generate``, so that it returns exactly what RL needs:
the sampled ids and the log-prob of each under the sampling temperature,
``log_softmax(logits / temperature)``, the same quantity TRL's GRPO loss recomputes.
top-p only decides which token is drawn; the reported log-prob is the untruncated
one (as in TRL and vLLM).

A multi-turn caller may keep each conversation's KV cache across calls (``PrefixCache``):
a turn then prefills only the tokens added since the policy last spoke, instead of the
whole growing conversation. Without a cache, each call prefills its prompts in full.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
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


@dataclass
class _CachedConversation:
    token_ids: list[int]
    """The ids whose keys and values are held, in order."""
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer, (keys, values) of ``token_ids``: each (heads, len(token_ids), head_dim)."""


class PrefixCache:
    """The KV cache of each live conversation, kept across ``HFPolicy.generate`` calls.

    A multi-turn episode's prompt at turn t+1 is its prompt at turn t, the sampled reply
    and the env's text, so with this cache a turn prefills only the new tokens. Entries
    are keyed by the caller's episode handle; an entry serves the longest common prefix
    of its ids and the new prompt, so a stale entry costs speed, never correctness. The
    caller drops the entries of episodes that have ended (``drop``, ``keep_only``).
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, _CachedConversation] = {}
        self.enabled = True
        self.reused_tokens = 0
        """Prompt tokens served from the cache (not prefilled again), over the cache's life."""
        self.prefilled_tokens = 0
        """Prompt tokens prefilled, over the cache's life."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def drop(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def keep_only(self, keys: Sequence[Hashable]) -> None:
        kept = set(keys)
        for key in [key for key in self._entries if key not in kept]:
            del self._entries[key]

    def reusable(self, keys: Sequence[Hashable], prompt_ids: list[list[int]]) -> list[int]:
        """Per prompt, how many of its leading tokens the cache holds: the common prefix with its
        conversation's entry, at most all but the last token (whose logits the next token needs)."""
        reused = []
        for key, ids in zip(keys, prompt_ids, strict=True):
            entry, n = self._entries.get(key) if self.enabled else None, 0
            if entry is not None:
                limit = min(len(entry.token_ids), len(ids) - 1)
                while n < limit and entry.token_ids[n] == ids[n]:
                    n += 1
            reused.append(n)
        return reused

    def past(self, keys: Sequence[Hashable], reused: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the batch's cached (keys, values), each (B, heads, max(reused), head_dim): row b's
        first ``reused[b]`` tokens right-aligned, left-padded with zeros (to be masked)."""
        entries = [self._entries[key] if n else None for key, n in zip(keys, reused, strict=True)]
        template = next(entry for entry in entries if entry is not None).layers
        batch, past = len(keys), max(reused)
        layers = []
        for index, (keys_like, values_like) in enumerate(template):
            layer_keys = keys_like.new_zeros((batch, keys_like.shape[0], past, keys_like.shape[-1]))
            layer_values = values_like.new_zeros((batch, values_like.shape[0], past, values_like.shape[-1]))
            for row, (entry, n) in enumerate(zip(entries, reused, strict=True)):
                if entry is not None:
                    layer_keys[row, :, past - n:] = entry.layers[index][0][:, :n]
                    layer_values[row, :, past - n:] = entry.layers[index][1][:, :n]
            layers.append((layer_keys, layer_values))
        return layers

    def store(self, keys: Sequence[Hashable], token_ids: list[list[int]], cache: Any, fed: torch.Tensor) -> None:
        """Keep, per row, the keys and values of ``cache`` at its real positions (``fed``, (B, L)),
        which hold ``token_ids[row]`` in order."""
        from transformers.cache_utils import DynamicLayer

        layers = getattr(cache, "layers", None)
        if layers is None or any(type(layer) is not DynamicLayer for layer in layers):
            if self.enabled:  # sliding-window or recurrent layers cannot be cut per row this way
                warnings.warn(f"{type(cache).__name__} cannot be kept across turns; every turn prefills in full",
                              stacklevel=4)
            self.enabled = False
            return
        for row, (key, ids) in enumerate(zip(keys, token_ids, strict=True)):
            positions = fed[row].nonzero()[:, 0]  # (n,)
            if len(positions) != len(ids):
                raise RuntimeError(f"the cache holds {len(positions)} tokens of a row, not {len(ids)}")
            self._entries[key] = _CachedConversation(
                list(ids), [(layer.keys[row].index_select(1, positions), layer.values[row].index_select(1, positions))
                            for layer in layers])


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
        reuse_prefixes: bool = False,
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
        self.conversations = PrefixCache() if reuse_prefixes else None
        """With ``reuse_prefixes``: the KV cache of the conversations of the last ``chat`` call, so a multi-turn
        caller's next turn prefills only the new text (see ``chat``)."""
        self.generator = torch.Generator(device=self.device)
        self.reseed(seed)
        # transformers >= 5.20 names the KV cache argument ``cache``; earlier versions ``past_key_values``.
        parameters = inspect.signature(model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype = torch.float32, device: str | None = None,
                        gguf_file: str | None = None, **kwargs: Any) -> HFPolicy:
        """Load a Hugging Face folder (or a GGUF file inside one, with ``gguf_file``) through ``regym.models.loading``."""
        from regym.models.loading import load_model, load_tokenizer

        model = load_model(path, dtype=dtype, gguf_file=gguf_file or None)
        if device is not None:
            model = model.to(device)
        kwargs.setdefault("name", Path(str(path)).name)
        return cls(model, load_tokenizer(path, gguf_file=gguf_file or None), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def reseed(self, seed: int | None) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def chat(self, conversations: list[list[dict[str, str]]]) -> list[Generation]:
        """One reply per conversation. With ``reuse_prefixes``, each conversation is keyed by its opening
        messages (and its rank among the call's conversations that open alike) and reuses what the previous
        call left for that key: an episode's next prompt extends its last one, so only the new text is
        prefilled. The cache serves only a common token prefix, so a wrong match costs speed, never the
        result; entries of conversations absent from this call (ended episodes) are dropped."""
        prompt_ids = [chat_token_ids(self.tokenizer, messages) for messages in conversations]
        if self.conversations is None:
            return self.generate(prompt_ids)
        keys, seen = [], {}
        for messages in conversations:
            opening = json.dumps(messages[:2], sort_keys=True)
            seen[opening] = seen.get(opening, -1) + 1
            keys.append((opening, seen[opening]))
        self.conversations.keep_only(keys)
        return self.generate(prompt_ids, cache=self.conversations, keys=keys)

    def prefix_cache(self) -> PrefixCache:
        """A new, empty cache of conversations for ``generate(..., cache=, keys=)``."""
        return PrefixCache()

    def generate(self, prompt_ids: list[list[int]], max_new_tokens: int | None = None, *,
                 cache: PrefixCache | None = None, keys: Sequence[Hashable] | None = None) -> list[Generation]:
        """Continue each id sequence until a stop token or ``max_new_tokens``.

        With ``cache`` (and one ``keys`` entry per prompt, naming its conversation), each
        prompt reuses the keys and values its conversation left in the cache and prefills
        only the rest; the cache then holds every prompt with its reply.
        """
        if not prompt_ids:
            return []
        if any(len(ids) == 0 for ids in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        if cache is not None and (keys is None or len(keys) != len(prompt_ids)):
            raise ValueError("a cache needs one key per prompt")
        budget = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        size = self.batch_size or len(prompt_ids)
        results: list[Generation] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(prompt_ids), size):
                chunk_keys = None if cache is None else keys[start:start + size]
                results.extend(self._generate_batch(prompt_ids[start:start + size], budget, cache, chunk_keys))
        finally:
            self.model.train(was_training)
        return results

    @torch.no_grad()
    def _generate_batch(self, prompt_ids: list[list[int]], budget: int, prefix_cache: PrefixCache | None = None,
                        keys: Sequence[Hashable] | None = None) -> list[Generation]:
        device = self.device
        batch = len(prompt_ids)
        stop = torch.tensor(self.stop_token_ids, device=device)
        reused = [0] * batch if prefix_cache is None else prefix_cache.reusable(keys, prompt_ids)
        if prefix_cache is not None:
            prefix_cache.reused_tokens += sum(reused)
            prefix_cache.prefilled_tokens += sum(len(ids) for ids in prompt_ids) - sum(reused)
        if any(reused):
            out, attention_mask, next_position = self._prefill_after(prefix_cache, keys, prompt_ids, reused)
        else:
            out, attention_mask, next_position = self._prefill(prompt_ids)
        cache, logits = _cache_of(out), out.logits[:, -1, :].float()  # (B, V)
        fed = attention_mask.bool()  # (B, L): the positions of ``cache`` that hold a real token
        sampled, sampled_logprobs = [], []
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        lengths = torch.zeros(batch, dtype=torch.long, device=device)
        for _ in range(budget):
            tokens, logprobs = self._sample(logits)
            tokens = torch.where(finished, torch.full_like(tokens, self.pad_token_id), tokens)
            sampled.append(tokens)
            sampled_logprobs.append(logprobs)
            real = ~finished
            lengths += real.long()
            finished |= torch.isin(tokens, stop)
            if bool(finished.all()) or len(sampled) == budget:
                break
            attention_mask = torch.cat([attention_mask, torch.ones((batch, 1), dtype=torch.long, device=device)], 1)
            fed = torch.cat([fed, real[:, None]], 1)
            next_position = next_position + 1
            out = self.model(input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=next_position,
                             use_cache=True, **{self._cache_argument: cache})
            cache, logits = _cache_of(out), out.logits[:, -1, :].float()

        if prefix_cache is not None:  # each row's prompt, then the sampled ids that were fed back
            fed_back = fed.sum(-1).tolist()
            replies = torch.stack(sampled, 1).tolist() if sampled else [[] for _ in range(batch)]
            prefix_cache.store(keys, [ids + reply[:n - len(ids)] for ids, reply, n in
                                      zip(prompt_ids, replies, fed_back, strict=True)], cache, fed)
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

    def _prefill(self, prompt_ids: list[list[int]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """One forward over the left-padded prompts: (output, attention mask (B, L), last positions (B, 1))."""
        device = self.device
        batch, longest = len(prompt_ids), max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((batch, longest), self.pad_token_id, dtype=torch.long, device=device)
        attention_mask = torch.zeros((batch, longest), dtype=torch.long, device=device)
        for row, ids in enumerate(prompt_ids):  # left padding: every row's next token is at the end
            input_ids[row, longest - len(ids):] = torch.tensor(ids, device=device)
            attention_mask[row, longest - len(ids):] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, L)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1)  # the LM head on the last position only
        return out, attention_mask, position_ids[:, -1:]

    def _prefill_after(self, prefix_cache: PrefixCache, keys: Sequence[Hashable], prompt_ids: list[list[int]],
                       reused: list[int]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """``_prefill`` that feeds only each prompt's tokens after its first ``reused[row]``.

        Row layout: [pad, cached prefix | pad, new tokens]. The padding in the middle is masked,
        and positions count only real tokens (the mask's cumsum), so each row sees exactly the
        sequence a full prefill would give it.
        """
        from transformers import DynamicCache

        device = self.device
        batch = len(prompt_ids)
        past, new = max(reused), max(len(ids) - n for ids, n in zip(prompt_ids, reused, strict=True))
        layers = prefix_cache.past(keys, reused)
        input_ids = torch.full((batch, new), self.pad_token_id, dtype=torch.long, device=device)
        attention_mask = torch.zeros((batch, past + new), dtype=torch.long, device=device)
        for row, (ids, n) in enumerate(zip(prompt_ids, reused, strict=True)):
            attention_mask[row, past - n:past] = 1
            input_ids[row, new - (len(ids) - n):] = torch.tensor(ids[n:], device=device)
            attention_mask[row, past + new - (len(ids) - n):] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, past:]  # (B, new)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1,
                         **{self._cache_argument: DynamicCache(ddp_cache_data=layers)})
        return out, attention_mask, position_ids[:, -1:]

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

