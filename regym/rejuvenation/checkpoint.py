"""Hugging Face checkpoint folders, read and written one tensor (or one row block) at a time.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each
tensor name to ``{"dtype", "shape", "data_offsets"}``, then the raw bytes. Knowing every
shape up front lets us write the header first and stream the data after it, so peak
memory is one block of one tensor, never a whole shard or model. Folders are written to a
temp folder beside the target and renamed into place at the end (``atomic_folder``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from regym.paths import atomic_directory

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json")


class CheckpointError(ValueError):
    """A checkpoint folder is missing, malformed, or does not match another one."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its shard file, dtype, shape and absolute byte range."""

    name: str
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: str | Path) -> tuple[dict, int]:
    """The JSON header of one safetensors file and the byte offset where its data starts."""
    path = Path(path)
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{path} is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", raw)
        header = json.loads(handle.read(length))
    return header, 8 + length


def tensor_index(folder: str | Path) -> dict[str, TensorInfo]:
    """Every tensor of an HF checkpoint folder (single file or sharded with an index json)."""
    folder = Path(folder)
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        files = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise CheckpointError(f"{folder} has no model.safetensors or model.safetensors.index.json")
    tensors: dict[str, TensorInfo] = {}
    for file in files:
        header, data_start = read_header(folder / file)
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            begin, end = meta["data_offsets"]
            if meta["dtype"] not in DTYPES:
                raise CheckpointError(f"tensor {name!r} in {folder / file} has unsupported dtype {meta['dtype']}")
            tensors[name] = TensorInfo(name, folder / file, DTYPES[meta["dtype"]], tuple(meta["shape"]),
                                       data_start + begin, data_start + end)
    return tensors


def row_blocks(info: TensorInfo, max_block_bytes: int) -> Iterator[tuple[int, int]]:
    """``(first_row, last_row)`` blocks along dim 0 whose bytes stay under ``max_block_bytes`` (≥ 1 row)."""
    if not info.shape:
        yield 0, 1
        return
    rows = info.shape[0]
    row_bytes = max(1, info.nbytes // max(rows, 1))
    step = max(1, max_block_bytes // row_bytes)
    for first in range(0, rows, step):
        yield first, min(rows, first + step)


def read_rows(handle, info: TensorInfo, first: int, last: int) -> torch.Tensor:
    """Rows ``first:last`` of a tensor, read from an open shard file into a fresh buffer."""
    if not info.shape:
        handle.seek(info.start)
        data = bytearray(handle.read(info.nbytes))
        return torch.frombuffer(data, dtype=info.dtype).reshape(())
    rows = info.shape[0]
    row_bytes = info.nbytes // rows if rows else 0
    handle.seek(info.start + first * row_bytes)
    data = bytearray((last - first) * row_bytes)
    if data:
        handle.readinto(data)
        return torch.frombuffer(data, dtype=info.dtype).reshape((last - first, *info.shape[1:]))
    return torch.empty((last - first, *info.shape[1:]), dtype=info.dtype)


class ShardWriter:
    """Writes safetensors shards whose headers are known before any data is streamed.

    ``plan`` is an ordered list of ``(name, dtype, shape)``; tensors are packed into shards of
    at most ``max_shard_bytes`` (a tensor larger than that gets a shard of its own). Call
    ``write(name, block)`` with consecutive row blocks in plan order, then ``close()``,
    which writes ``model.safetensors.index.json`` when there is more than one shard.
    """

    def __init__(self, folder: Path, plan: list[tuple[str, torch.dtype, tuple[int, ...]]],
                 max_shard_bytes: int = 2 * 1024**3):
        self.folder = Path(folder)
        shards: list[list[tuple[str, torch.dtype, tuple[int, ...]]]] = [[]]
        size = 0
        for name, dtype, shape in plan:
            nbytes = _numel(shape) * _itemsize(dtype)
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append((name, dtype, shape))
            size += nbytes
        count = len(shards)
        self.files = (["model.safetensors"] if count == 1
                      else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)])
        self.shards = shards
        self.shard_of = {name: i for i, shard in enumerate(shards) for name, _, _ in shard}
        self.weight_map = {name: self.files[i] for name, i in self.shard_of.items()}
        self.order = [name for name, _, _ in plan]
        self.expected = {name: _numel(shape) * _itemsize(dtype) for name, dtype, shape in plan}
        self.total_bytes = sum(self.expected.values())
        self._position = 0
        self._written = 0
        self._handle = None
        self._shard = -1

    def _open_next(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._shard += 1
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, dtype, shape in self.shards[self._shard]:
            nbytes = _numel(shape) * _itemsize(dtype)
            header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        self._handle = open(self.folder / self.files[self._shard], "wb")  # noqa: SIM115 - closed in close()
        self._handle.write(struct.pack("<Q", len(encoded)))
        self._handle.write(encoded)

    def write(self, name: str, block: torch.Tensor) -> None:
        """Append the next row block of tensor ``name`` (blocks must arrive in plan order)."""
        if self._position >= len(self.order) or name != self.order[self._position]:
            raise CheckpointError(f"ShardWriter got {name!r} out of order")
        if self._written == 0 and self.shard_of[name] != self._shard:
            self._open_next()
        block = block.contiguous()
        if block.numel():
            self._handle.write(memoryview(block.reshape(-1).view(torch.uint8).numpy()))
        self._written += block.numel() * block.element_size()
        if self._written > self.expected[name]:
            raise CheckpointError(f"too many bytes written for {name!r}")
        if self._written == self.expected[name]:
            self._position += 1
            self._written = 0

    def close(self) -> None:
        if self._position != len(self.order):
            missing = self.order[self._position]
            raise CheckpointError(f"ShardWriter closed before tensor {missing!r} was complete")
        if self._handle is not None:
            self._handle.close()
        if len(self.files) > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": self.weight_map}
            (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


@contextlib.contextmanager
def atomic_folder(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder; it becomes ``out`` only if the block succeeds (``regym.paths.atomic_directory``).

    On any error the temp folder is deleted and ``out`` is left as it was (absent if it was).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True / --overwrite to replace it)")
    with atomic_directory(out) as tmp:
        yield tmp


def copy_side_files(source: Path, target: Path) -> list[str]:
    """Copy everything but the weights (config, generation config, tokenizer files) from ``source``."""
    copied = []
    for path in sorted(Path(source).iterdir()):
        if path.is_file() and not path.name.endswith(".safetensors") and path.name not in WEIGHT_FILES \
                and not path.name.endswith(".bin"):
            shutil.copy2(path, target / path.name)
            copied.append(path.name)
    return copied


def tokenizer_fingerprint(folder: str | Path) -> dict[str, object]:
    """What decides token ids: the vocab (token → id), merges and added tokens, from the tokenizer files."""
    folder = Path(folder)
    found: dict[str, object] = {}
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        data = json.loads(tokenizer_json.read_text())
        model = data.get("model") or {}
        found["vocab"] = model.get("vocab")
        found["merges"] = model.get("merges")
        found["added_tokens"] = {token["content"]: token["id"] for token in data.get("added_tokens") or []}
    for name in ("vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json"):
        if (folder / name).is_file():
            found[name] = (folder / name).read_bytes()
    return found


def check_tokenizers_match(base: str | Path, sft: str | Path) -> None:
    """Raise ``CheckpointError`` naming the first difference between two folders' tokenizers."""
    first, second = tokenizer_fingerprint(base), tokenizer_fingerprint(sft)
    if not first and not second:
        return
    for key in sorted(set(first) | set(second)):
        if key not in first or key not in second:
            where = "base" if key not in first else "sft"
            raise CheckpointError(f"tokenizers differ: the {where} checkpoint has no tokenizer {key!r} ({base} vs {sft})")
        a, b = first[key], second[key]
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for token in sorted(set(a) | set(b), key=str):
                if a.get(token) != b.get(token):
                    raise CheckpointError(
                        f"tokenizers differ in {key}: token {token!r} has id {a.get(token)} in base and "
                        f"{b.get(token)} in sft ({base} vs {sft})"
                    )
        raise CheckpointError(f"tokenizers differ in {key} ({base} vs {sft})")


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
