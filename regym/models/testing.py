"""Tiny random causal LMs and an offline tokenizer, for fast tests on CPU.

Every builder is deterministic in ``seed`` and downloads nothing. The tokenizer is a
word-level ``PreTrainedTokenizerFast`` with a ChatML-style chat template, so code that
renders conversations works the same on tiny and real models.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|> {{ message['role'] }} {{ message['content'] }} <|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)
DEFAULT_WORDS = (
    "the a an is of to and in on you go take open door key room north south east west look inventory "
    "box table chest apple red blue green what answer yes no one two three four five six seven eight nine "
    "zero plus minus equals system user assistant"
).split()


def tiny_tokenizer(words: list[str] | None = None, vocab_size: int = 256):
    """A whitespace word-level tokenizer: special tokens, ``words``, then filler ``w<i>`` up to ``vocab_size``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(dict.fromkeys(words or DEFAULT_WORDS))
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    while len(vocab) < vocab_size:
        vocab[f"w{len(vocab)}"] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _build(config, seed: int):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def _common(vocab_size, hidden_size, num_layers, intermediate_size, num_heads, num_kv_heads, **overrides):
    options = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        intermediate_size=intermediate_size, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=256, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )
    options.update(overrides)
    return options


def tiny_llama(seed: int = 0, vocab_size: int = 256, hidden_size: int = 64, num_layers: int = 2,
               intermediate_size: int = 128, num_heads: int = 4, num_kv_heads: int = 2, **overrides):
    """A random LlamaForCausalLM (2 layers, hidden 64 by default)."""
    from transformers import LlamaConfig

    config = LlamaConfig(**_common(vocab_size, hidden_size, num_layers, intermediate_size, num_heads,
                                   num_kv_heads, **overrides))
    return _build(config, seed)


def tiny_qwen2(seed: int = 0, vocab_size: int = 256, hidden_size: int = 64, num_layers: int = 2,
               intermediate_size: int = 128, num_heads: int = 4, num_kv_heads: int = 2, **overrides):
    """A random Qwen2ForCausalLM (q/k/v have biases)."""
    from transformers import Qwen2Config

    config = Qwen2Config(**_common(vocab_size, hidden_size, num_layers, intermediate_size, num_heads,
                                   num_kv_heads, **overrides))
    return _build(config, seed)


def tiny_qwen3(seed: int = 0, vocab_size: int = 256, hidden_size: int = 64, num_layers: int = 2,
               intermediate_size: int = 128, num_heads: int = 4, num_kv_heads: int = 2, **overrides):
    """A random Qwen3ForCausalLM (per-head q/k norms)."""
    from transformers import Qwen3Config

    overrides.setdefault("head_dim", hidden_size // num_heads)
    config = Qwen3Config(**_common(vocab_size, hidden_size, num_layers, intermediate_size, num_heads,
                                   num_kv_heads, **overrides))
    return _build(config, seed)


def tiny_gemma(seed: int = 0, vocab_size: int = 256, hidden_size: int = 64, num_layers: int = 2,
               intermediate_size: int = 128, num_heads: int = 4, num_kv_heads: int = 2, **overrides):
    """A random GemmaForCausalLM: (1 + w) RMSNorm and embeddings scaled by sqrt(hidden).

    Norm weights are randomised (Gemma initialises them to zero) so tests see a non-trivial scale.
    """
    from transformers import GemmaConfig

    overrides.setdefault("head_dim", hidden_size // num_heads)
    config = GemmaConfig(**_common(vocab_size, hidden_size, num_layers, intermediate_size, num_heads,
                                   num_kv_heads, **overrides))
    model = _build(config, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def perturbed_copy(model, scale: float = 0.05, seed: int = 0):
    """A deep copy with every floating parameter moved by ``scale * std(param) * N(0, 1)`` (a stand-in SFT)."""
    import copy

    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in other.parameters():
            if parameter.is_floating_point():
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
                spread = parameter.float().std() if parameter.numel() > 1 else parameter.float().abs()
                parameter.add_((scale * (spread + 1e-3) * noise).to(parameter.dtype))
    return other


def save_checkpoint(model, tokenizer, folder: str | Path, max_shard_size: str | int = "50MB") -> Path:
    """Save ``model`` and ``tokenizer`` as an HF folder (safetensors) and return its path."""
    folder = Path(folder)
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder

