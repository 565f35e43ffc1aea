"""Calibration sets: the texts on which entropies, attributions and the handoff report are measured.

A calibration file is JSONL, one example per line, in any of three forms:

- ``{"text": "..."}``: every token is scored;
- ``{"prompt": "...", "response": "..."}``: only response tokens are scored (the prompt is context);
- ``{"messages": [{"role": ..., "content": ...}, ...]}``: rendered with the tokenizer's chat template;
  only the last assistant message is scored.

Every example becomes one ``CalibrationExample``: ``input_ids`` (1, T) and ``loss_mask`` (1, T),
where ``loss_mask[0, t]`` says token t is scored (predicted from position t − 1; t = 0 never is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from regym.trajectory import read_jsonl


@dataclass
class CalibrationExample:
    input_ids: torch.Tensor  # (1, T) long
    loss_mask: torch.Tensor  # (1, T) bool

    @property
    def num_scored(self) -> int:
        return int(self.loss_mask.sum())


def load_calibration_file(path: str | Path) -> list[dict]:
    """Read a JSONL calibration file; a ``ValueError`` naming the file and line for any line not in the three forms."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot read calibration file {path}: no such file")
    try:
        rows = read_jsonl(path, torn_tail=False, numbered=True)
    except OSError as error:
        raise ValueError(f"cannot read calibration file {path}: {error.strerror or error}") from None
    examples = []
    for number, row in rows:
        problem = calibration_problem(row)
        if problem:
            raise ValueError(f"{path}:{number}: {problem}")
        examples.append(row)
    if not examples:
        raise ValueError(f"{path} has no calibration examples")
    return examples


def calibration_problem(example: object) -> str | None:
    """What is wrong with one calibration example (a dict in one of the three forms), or None."""
    if not isinstance(example, dict):
        return "expected a JSON object with 'text', 'prompt'+'response' or 'messages'"
    if "messages" in example:
        messages = example["messages"]
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty list of {'role': ..., 'content': ...} objects"
        for index, message in enumerate(messages):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)):
                return f"message {index} is not a {{'role': str, 'content': str}} object"
        return None
    if "prompt" in example and "response" in example:
        fields = ("prompt", "response")
    elif "text" in example:
        fields = ("text",)
    else:
        return "expected a JSON object with 'text', 'prompt'+'response' or 'messages'"
    for name in fields:
        if not isinstance(example[name], str):
            return f"{name!r} must be a string, not {type(example[name]).__name__}"
    return None


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_example(tokenizer, example: str | dict, max_length: int = 256) -> CalibrationExample:
    """Tokenise one example (a plain string counts as ``{"text": ...}``) into ids and a scoring mask."""
    if isinstance(example, str):
        example = {"text": example}
    problem = calibration_problem(example)
    if problem:
        raise ValueError(f"calibration example {str(example)[:80]!r}: {problem}")
    if "messages" in example:
        messages = example["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            prompt_ids, ids = [], _chat_ids(tokenizer, messages, False)
        else:
            prompt_ids = _chat_ids(tokenizer, messages[:last], True)
            ids = _chat_ids(tokenizer, messages[: last + 1], False)
            if ids[: len(prompt_ids)] != prompt_ids:
                prompt_ids = []  # template re-renders earlier turns differently: score everything
    elif "prompt" in example and "response" in example:
        prompt_ids = _ids(tokenizer, example["prompt"])
        ids = prompt_ids + _ids(tokenizer, example["response"])
    else:
        prompt_ids, ids = [], _ids(tokenizer, example["text"])
    ids = ids[:max_length]
    mask = [False] * len(ids)
    for position in range(max(1, len(prompt_ids)), len(ids)):
        mask[position] = True
    if len(ids) < 2 or not any(mask):
        raise ValueError(f"calibration example has no scored tokens after tokenisation: {str(example)[:80]!r}")
    return CalibrationExample(torch.tensor([ids]), torch.tensor([mask]))


def _chat_ids(tokenizer, messages, add_generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return _ids(tokenizer, text)


def encode_calibration(tokenizer, examples: Sequence[str | dict], max_length: int = 256) -> list[CalibrationExample]:
    return [encode_example(tokenizer, example, max_length) for example in examples]

