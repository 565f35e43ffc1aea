"""A tiny chat model for policy and RL tests: a byte-level BPE trained here + a 2-layer Llama.

The tokenizer uses the ChatML template (as SmolLM2), so the tests exercise a real
chat template with end-of-turn tokens; byte-level BPE round-trips any text.
"""

from __future__ import annotations

import functools

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "You are an agent in a text-based environment. Read each observation and reply with one action.",
    "Reply with the action only, on one line.",
    "Count to 3. Available actions: 1, 0, 2, 3, 4. Wrong number. Nothing happens.",
    "go north, go south, open door, take key, look, inventory, Answer: 42",
    "system user assistant Thought: Action: the quick brown fox jumps over the lazy dog 0123456789",
]


@functools.cache
def tiny_chat_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token=None, unk_token=None)
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_chat_model(seed: int = 0, layers: int = 2, hidden: int = 64):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def save_tiny_chat(folder, seed: int = 0):
    """``tiny_chat_model(seed)`` and its tokenizer saved as a Hugging Face folder; returns the folder."""
    model, tokenizer = tiny_chat_model(seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
