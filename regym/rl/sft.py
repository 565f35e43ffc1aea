"""Supervised fine-tuning of a causal LM on agent trajectories, through TRL's ``SFTTrainer``.

The data is conversations in THE prompt format (``regym.demos``: one ``messages``
column). The loss is on assistant tokens only (``SFTConfig(assistant_only_loss=True)``:
the tokenizer's chat template marks assistant spans with ``{% generation %}``), so
the model learns the policy's actions, never to predict the env's text.

Long episodes are cut into windows that look like what a policy sees at inference
under ``regym.agents.prompts.truncate_history``: the system prompt, the first exchange
(it states the task), then a run of consecutive later exchanges that fits
``max_length``.

Checkpoint ladders (e.g. 0.5, 1, 2, 4, ... epochs for a handoff study) come from one
run: ``save_epochs=(0.5, 1, 2, 4)`` writes ``out_dir/epochs/epoch-0.5`` etc. as the run
passes each mark. With the default constant learning rate every rung is exactly the
prefix of a longer run, which is what "over-trained vs moderate SFT" compares.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regym.checkpoints import save_model, write_model_files
from regym.models.loading import load_model
from regym.paths import atomic_directory

SUMMARY_FILE = "sft_summary.json"

Conversation = list[dict[str, str]]


def message_token_counts(conversations: Sequence[Conversation], tokenizer) -> list[list[int]]:
    """Tokens each message takes once rendered by the chat template (one message at a time)."""
    rendered = [tokenizer.apply_chat_template([message], tokenize=False)
                for conversation in conversations for message in conversation]
    lengths = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]] if rendered else []
    counts, start = [], 0
    for conversation in conversations:
        counts.append(lengths[start:start + len(conversation)])
        start += len(conversation)
    return counts


def conversation_windows(conversation: Conversation, counts: Sequence[int], max_length: int) -> list[Conversation]:
    """Cut one conversation into windows of at most ``max_length`` tokens.

    Each window is the system prompt, the first user/assistant exchange (the head) and
    a run of consecutive later exchanges, as ``truncate_history`` would show them.
    Every later exchange is in exactly one window; the head's action is trained in
    every window (it is short: one action per long episode). Exchanges that do not
    fit beside the head are dropped.
    """
    if sum(counts) <= max_length:
        return [conversation]
    head_size = 3 if conversation[0]["role"] == "system" else 2
    head, head_tokens = conversation[:head_size], sum(counts[:head_size])
    if head_tokens > max_length:
        return []
    windows: list[Conversation] = []
    current, used = list(head), head_tokens
    for start in range(head_size, len(conversation), 2):
        messages, tokens = conversation[start:start + 2], sum(counts[start:start + 2])
        if head_tokens + tokens > max_length:
            continue
        if used + tokens > max_length:
            windows.append(current)
            current, used = list(head), head_tokens
        current += messages
        used += tokens
    windows.append(current)
    return windows


def window_rows(conversation: Conversation, history_turns: int) -> list[dict[str, Conversation]]:
    """One prompt/completion row per assistant turn: the prompt is exactly the window a policy trained
    with ``context: window`` sees (``regym.agents.prompts.window_messages``), the completion its action."""
    from regym.agents.prompts import window_messages

    return [{"prompt": window_messages(conversation[:index], history_turns), "completion": [message]}
            for index, message in enumerate(conversation) if message["role"] == "assistant"]


def sft_dataset(dataset, tokenizer, max_length: int, history_turns: int | None = None):
    """A dataset with one ``messages`` column, long episodes cut into windows (see module doc).

    With ``history_turns``, one ``prompt``/``completion`` row per expert turn instead (``window_rows``):
    SFT then trains on the very prompts RL's window context will show, and TRL's loss is on the
    completion only. Rows over ``max_length`` tokens are left out.
    """
    from datasets import Dataset

    conversations = [list(messages) for messages in dataset["messages"]]
    if history_turns is not None:
        rows = [row for conversation in conversations for row in window_rows(conversation, history_turns)]
        rendered = [tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False) for row in rows]
        lengths = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]] if rows else []
        rows = [row for row, length in zip(rows, lengths, strict=True) if length <= max_length]
        if not rows:
            raise ValueError(f"no window row fits max_length={max_length} tokens")
        return Dataset.from_dict({"prompt": [row["prompt"] for row in rows],
                                  "completion": [row["completion"] for row in rows]})
    counts = message_token_counts(conversations, tokenizer)
    windows = [window for conversation, count in zip(conversations, counts, strict=True)
               for window in conversation_windows(conversation, count, max_length)]
    if not windows:
        raise ValueError(f"no conversation fits max_length={max_length} tokens")
    return Dataset.from_dict({"messages": windows})


def _save_at_epochs(marks: Sequence[float], folder: Path, tokenizer, settings: dict[str, Any]):
    """A ``TrainerCallback`` that saves the model each time training passes one of ``marks`` (in epochs)."""
    from transformers import TrainerCallback

    class SaveAtEpochs(TrainerCallback):
        def __init__(self):
            self.pending = sorted(marks)

        def on_step_end(self, args, state, control, **kwargs):
            while self.pending and state.epoch is not None and state.epoch >= self.pending[0] - 1e-6:
                mark = self.pending.pop(0)
                save_model(kwargs["model"], folder / f"epoch-{mark:g}", tokenizer=tokenizer,
                           metadata={**settings, "epoch": state.epoch, "mark": mark, "step": state.global_step,
                                     "log_history": state.log_history},
                           metadata_name=SUMMARY_FILE)
            return control

    return SaveAtEpochs()


def sft(
    model,
    tokenizer,
    dataset,
    *,
    out_dir: str | Path,
    epochs: float = 2.0,
    lr: float = 5e-4,
    batch_size: int = 8,
    gradient_accumulation_steps: int = 1,
    max_length: int = 1024,
    save_epochs: Sequence[float] = (),
    save_every_epoch: bool = False,
    seed: int = 0,
    lr_scheduler_type: str = "constant",
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    logging_steps: int = 10,
    progress: bool = False,
    history_turns: int | None = None,
) -> Path:
    """Fine-tune ``model`` (an HF folder path or a loaded model) on ``dataset`` and save it to ``out_dir``.

    ``dataset``: rows with a ``messages`` conversation (e.g. ``regym.demos.collect_demos``).
    ``epochs`` may be fractional (0.5 = half a pass). ``save_epochs`` (and
    ``save_every_epoch``: 1, 2, ... up to ``epochs``) also writes the model at those
    marks to ``out_dir/epochs/epoch-<mark>``. Returns ``out_dir``, an HF folder with
    ``sft_summary.json`` (settings, loss history). Everything is written into a hidden
    temporary folder and renamed into place at the end (``atomic_directory``). ``history_turns``:
    train on window rows (``sft_dataset``), for a policy that RL trains with ``context: window``.
    """
    import torch
    from trl import SFTConfig, SFTTrainer

    if epochs <= 0:
        raise ValueError("epochs must be > 0")
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    if isinstance(model, str | Path):
        model = load_model(model)
    marks = sorted({float(mark) for mark in save_epochs if 0 < float(mark) <= epochs})
    if save_every_epoch:
        marks = sorted(set(marks) | {float(epoch) for epoch in range(1, math.floor(epochs) + 1)})
    train_data = sft_dataset(dataset, tokenizer, max_length, history_turns)

    settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size,
                "gradient_accumulation_steps": gradient_accumulation_steps, "max_length": max_length,
                "seed": seed, "lr_scheduler_type": lr_scheduler_type, "warmup_steps": warmup_steps,
                "weight_decay": weight_decay, "episodes": len(dataset), "windows": len(train_data),
                "save_epochs": marks, "loss": "assistant tokens only (TRL assistant_only_loss)",
                "view": "conversation windows" if history_turns is None else f"window rows, {history_turns} turns"}

    with atomic_directory(out_dir) as scratch:
        config = SFTConfig(
            output_dir=str(scratch / "trainer"),
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=gradient_accumulation_steps,
            learning_rate=lr,
            lr_scheduler_type=lr_scheduler_type,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            max_length=max_length,
            assistant_only_loss=True,
            packing=False,
            seed=seed,
            data_seed=seed,
            bf16=False,
            fp16=False,
            activation_checkpointing=False,
            logging_steps=logging_steps,
            save_strategy="no",
            report_to=[],
            disable_tqdm=not progress,
            dataloader_num_workers=0,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=train_data, processing_class=tokenizer,
                             callbacks=[_save_at_epochs(marks, scratch / "epochs", tokenizer, settings)])
        result = trainer.train()
        shutil.rmtree(scratch / "trainer", ignore_errors=True)
        summary = {**settings, "epoch": trainer.state.epoch, "steps": trainer.state.global_step,
                   "train_loss": result.training_loss, "log_history": trainer.state.log_history}
        # The model sits at the top of this atomic folder, beside its epochs/ ladder.
        write_model_files(trainer.model, scratch, tokenizer=tokenizer, metadata=summary, metadata_name=SUMMARY_FILE,
                          generation_ids_from_tokenizer=True)
    return out_dir
