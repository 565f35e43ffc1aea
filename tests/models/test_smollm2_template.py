"""SmolLM2's exported chat template: the GGUF's text exactly, plus the markers TRL's SFT needs."""

from __future__ import annotations

import pytest

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "The answer is \\boxed{5}."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "hello"}, {"role": "user", "content": "go north"},
     {"role": "assistant", "content": "ok\nnext line"}],
]


@pytest.fixture(scope="module")
def tokenizers():
    import copy

    from transformers import AutoTokenizer

    from regym.models.smollm2 import TRAINING_CHAT_TEMPLATE, smollm2_gguf_path

    path = smollm2_gguf_path()
    original = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    training = copy.deepcopy(original)
    training.chat_template = TRAINING_CHAT_TEMPLATE
    return original, training


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_training_template_renders_the_gguf_text(tokenizers, conversation, generation_prompt):
    original, training = tokenizers
    expected = original.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
    assert training.apply_chat_template(conversation, tokenize=False,
                                        add_generation_prompt=generation_prompt) == expected


def test_training_template_marks_exactly_the_assistant_replies(tokenizers):
    from trl.chat_template_utils import get_training_chat_template

    original, training = tokenizers
    assert get_training_chat_template(training) is None  # TRL: already training-compatible
    with pytest.raises(ValueError, match="not training-compatible"):
        get_training_chat_template(original)
    rendered = training.apply_chat_template(CONVERSATIONS[2], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
    marked = [token for token, mask in zip(rendered["input_ids"], rendered["assistant_masks"], strict=True) if mask]
    assert training.decode(marked) == "hello<|im_end|>ok\nnext line<|im_end|>"
