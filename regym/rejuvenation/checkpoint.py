"""Hugging Face checkpoint folders, checked whole, then read and written one tensor (or row block) at a time.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each
tensor name to ``{"dtype", "shape", "data_offsets"}``, then the raw bytes. Knowing every
shape up front lets us write the header first and stream the data after it, so peak
memory is one block of one tensor, never a whole shard or model. Folders are written to a
temp folder beside the target and renamed into place at the end (``atomic_folder``).

Inputs are refused, with a ``CheckpointError`` naming the file and the fault, before
anything is written: a header that is not what the format specifies (the length bounded by
the file, JSON, every entry's dtype/shape/offsets, offsets that tile the data section
exactly, as the safetensors library itself requires), a sharded index that disagrees with
its shards, a ``config.json`` that is not a model config or does not describe the weights (the
model it builds, on the meta device, must hold exactly these tensor names and shapes, as
``transformers`` loading them would), two checkpoints of different architectures, and weights
holding NaN or Inf (checked one row block at a time).

Every file read or copied must be a regular file inside the checkpoint folder: a symbolic link
whose target lies outside it (``model.safetensors -> /elsewhere``, ``README.md -> ~/.ssh/id_rsa``),
a FIFO or a device is refused, not followed. The one exception is the Hugging Face hub cache,
whose ``snapshots/<revision>/`` files are links into the same repository's ``blobs/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from regym.checkpoints import CheckpointError
from regym.paths import atomic_directory
from regym.rejuvenation.stages import Stages, silent

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json")
MAX_HEADER_BYTES = 100_000_000
"""The safetensors library refuses longer headers too (``MAX_HEADER_SIZE``)."""
SIZE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "n_embd", "n_layer", "n_head", "n_inner", "n_positions")
"""config.json fields that decide tensor shapes: positive integers (or null) when present."""
ARCHITECTURE_FIELDS = ("model_type", "architectures", "tie_word_embeddings", "hidden_act", "activation_function",
                       *SIZE_FIELDS)
"""Fields two checkpoints must agree on to be mixed; others (dtype, token ids, rope scaling) may differ."""


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


@dataclass(frozen=True)
class Checkpoint:
    """A folder whose config.json and safetensors headers passed ``open_checkpoint``'s checks."""

    folder: Path
    config: dict
    tensors: dict[str, TensorInfo]


def contained_file(folder: str | Path, name: str) -> Path:
    """``folder / name``, refused with a ``CheckpointError`` unless it is a regular file inside ``folder``
    (after following links): a checkpoint is never a way to read or copy a file from elsewhere."""
    folder = Path(folder)
    path = folder / name
    where = _resolved_inside(folder, path)
    if where is None:
        raise CheckpointError(f"{path} is a link to {os.path.realpath(path)}, outside the checkpoint folder: refused")
    if not where.is_file():
        kind = "missing" if not where.exists() else "not a regular file"
        raise CheckpointError(f"{path} is {kind}")
    return path


def _resolved_inside(folder: Path, path: Path) -> Path | None:
    """Where ``path`` leads, or None when that is outside ``folder`` (and outside the hub's blobs of its repo)."""
    root, target = folder.resolve(), path.resolve()
    allowed = [root]
    if root.parent.name == "snapshots":  # huggingface_hub's cache: snapshots/<revision>/<file> -> ../../blobs/<hash>
        allowed.append(root.parent.parent / "blobs")
    return target if any(target.is_relative_to(place) for place in allowed) else None


def read_header(path: str | Path) -> tuple[dict, int]:
    """The JSON header of one safetensors file and the byte offset where its data starts."""
    path = Path(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        raw = handle.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{path} is not a safetensors file ({size} bytes, too short for a header)")
        (length,) = struct.unpack("<Q", raw)
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(f"{path}: header length {length} does not fit the file ({size} bytes): "
                                  "truncated or not a safetensors file")
        header = _parse_json(handle.read(length), f"{path}: header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    return header, 8 + length


def read_shard(path: str | Path) -> dict[str, TensorInfo]:
    """Every tensor of one safetensors file, after checking that the header describes the file exactly."""
    path = Path(path)
    header, data_start = read_header(path)
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise CheckpointError(f"{path}: __metadata__ is not a map of strings")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: header entry is not a JSON object")
        absent = [key for key in ("dtype", "shape", "data_offsets") if key not in entry]
        if absent:
            raise CheckpointError(f"{where} has no {absent[0]}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise CheckpointError(f"{where} has unsupported dtype {dtype!r}")
        if not _is_sizes(shape):
            raise CheckpointError(f"{where}: shape {shape!r} is not a list of non-negative integers")
        if not _is_sizes(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
            raise CheckpointError(f"{where}: data_offsets {offsets!r} is not [begin, end] with begin <= end")
        needed = _numel(shape) * DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != needed:
            raise CheckpointError(f"{where} spans {offsets[1] - offsets[0]} bytes, but {dtype} of shape {shape} "
                                  f"takes {needed}")
        tensors[name] = TensorInfo(name, path, DTYPES[dtype], tuple(shape), data_start + offsets[0],
                                   data_start + offsets[1])
    # The tensors must tile the data section: no gap, no overlap, nothing after the last one.
    position = data_start
    for info in sorted(tensors.values(), key=lambda info: (info.start, info.end)):
        if info.start != position:
            fault = "overlaps the tensor before it" if info.start < position else "leaves a gap before it"
            raise CheckpointError(f"{path}: tensor {info.name!r} {fault} (data_offsets must tile the data section)")
        position = info.end
    size = path.stat().st_size
    if position > size:
        raise CheckpointError(f"{path} is truncated: its header needs {position} bytes, the file has {size}")
    if position < size:
        raise CheckpointError(f"{path} has {size - position} bytes after its last tensor")
    return tensors


def tensor_index(folder: str | Path) -> dict[str, TensorInfo]:
    """Every tensor of an HF checkpoint folder: ``model.safetensors``, else the shards of its index json.

    ``model.safetensors`` wins when both exist, as in ``transformers``' loader.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a checkpoint folder ({'a file' if folder.exists() else 'missing'})")
    if (folder / "model.safetensors").exists() or (folder / "model.safetensors").is_symlink():
        return read_shard(contained_file(folder, "model.safetensors"))
    if not (folder / "model.safetensors.index.json").exists():
        raise CheckpointError(f"{folder} has no model.safetensors or model.safetensors.index.json")
    index_path = contained_file(folder, "model.safetensors.index.json")
    weight_map = _read_weight_map(index_path)
    tensors: dict[str, TensorInfo] = {}
    for file in sorted(set(weight_map.values())):
        if not (folder / file).exists():
            raise CheckpointError(f"{index_path} names shard {file}, which is missing")
        for name, info in read_shard(contained_file(folder, file)).items():
            if weight_map.get(name) != file:
                listed = f"places it in {weight_map[name]}" if name in weight_map else "does not list it"
                raise CheckpointError(f"{folder / file} holds tensor {name!r}, but {index_path.name} {listed}")
            tensors[name] = info
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise CheckpointError(f"{index_path} places tensor {absent[0]!r} in {weight_map[absent[0]]}, which does not "
                              f"hold it ({len(absent)} such tensors)")
    return tensors


def _read_weight_map(index_path: Path) -> dict[str, str]:
    index = _parse_json(_read_bytes(index_path), str(index_path))
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path} has no weight_map object")
    for name, file in weight_map.items():
        if not isinstance(file, str) or file in ("", ".", "..") or Path(file).name != file:
            raise CheckpointError(f"{index_path}: tensor {name!r} maps to {file!r}, not a file name in the folder")
    return weight_map


def read_config(folder: str | Path) -> dict:
    """``config.json`` as a dict, refused unless it is a JSON object with a ``model_type`` and sane sizes."""
    path = Path(folder) / "config.json"
    if not (path.exists() or path.is_symlink()):
        raise CheckpointError(f"{folder} has no config.json")
    contained_file(folder, "config.json")
    config = _parse_json(_read_bytes(path), str(path))
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise CheckpointError(f"{path} has no model_type: not a model config")
    for field in SIZE_FIELDS:
        value = config.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise CheckpointError(f"{path}: {field} is {value!r}, not a positive integer")
    return config


def open_checkpoint(folder: str | Path) -> Checkpoint:
    """Check a folder's config.json, every safetensors header (no tensor data is read), and that the
    config describes those tensors."""
    folder = Path(folder)
    tensors = tensor_index(folder)
    checkpoint = Checkpoint(folder, read_config(folder), tensors)
    check_config_describes_weights(checkpoint)
    return checkpoint


_LAYER_INDEX = re.compile(r"\.(\d+)\.")
LAYER_FIELDS = ("num_hidden_layers", "n_layer")


def check_config_describes_weights(checkpoint: Checkpoint) -> None:
    """Raise ``CheckpointError`` unless the model ``config.json`` builds holds exactly the checkpoint's tensors.

    The model is built on the meta device (no memory for its weights, so a config claiming a
    10⁹-token vocabulary costs nothing) and compared name by name and shape by shape, as
    ``transformers``' loader does when the reset path loads it (``regym.models.loading.load_model``): a tensor
    the model lacks or expects, or one of another shape, means the config does not describe the
    weights. A weight tied to one in the checkpoint (``lm_head`` tied to the embeddings) may be absent.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    folder, tensors = checkpoint.folder, checkpoint.tensors
    refuse = f"{folder / 'config.json'} does not describe these weights"
    layers_held = {int(found.group(1)) for name in tensors if (found := _LAYER_INDEX.search(name))}
    for field in LAYER_FIELDS:  # checked before building, so a config of 10⁹ layers is refused at once
        claimed = checkpoint.config.get(field)
        if isinstance(claimed, int) and layers_held and claimed != max(layers_held) + 1:
            raise CheckpointError(f"{refuse}: {field} is {claimed}, the weights hold {max(layers_held) + 1} layers")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as error:
        raise CheckpointError(f"{refuse}: transformers cannot build its model "
                              f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    ignored = [re.compile(pattern) for pattern in (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])]
    by_parameter: dict[int, set[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        by_parameter.setdefault(id(parameter), set()).add(name)
    tied_to_held = {name for names in by_parameter.values() if names & set(tensors) for name in names}
    missing = sorted(name for name in expected if name not in tensors and name not in tied_to_held)
    unexpected = sorted(name for name in tensors if name not in expected
                        and not any(pattern.search(name) for pattern in ignored))
    wrong = sorted(name for name in tensors if name in expected and tuple(tensors[name].shape) != expected[name])
    if wrong:
        name = wrong[0]
        raise CheckpointError(f"{refuse}: its model's {name!r} has shape {list(expected[name])}, the weights' "
                              f"{list(tensors[name].shape)} ({len(wrong)} such tensors)")
    for kind, names in (("the weights lack", missing), ("its model has no", unexpected)):
        if names:
            raise CheckpointError(f"{refuse}: {kind} tensor {names[0]!r} ({len(names)} such tensors)")


def check_same_architecture(first: Checkpoint, second: Checkpoint, labels: tuple[str, str] = ("base", "SFT")) -> None:
    """Raise ``CheckpointError`` unless the two checkpoints are the same model: tensors, config fields, tokenizers."""
    check_same_tensors({n: (i.shape, i.dtype) for n, i in first.tensors.items()},
                       {n: (i.shape, i.dtype) for n, i in second.tensors.items()}, labels)
    for field in ARCHITECTURE_FIELDS:
        if field in first.config and field in second.config and first.config[field] != second.config[field]:
            raise CheckpointError(f"the {labels[0]} and {labels[1]} checkpoints are different models: config.json "
                                  f"{field} is {first.config[field]!r} in {first.folder} but "
                                  f"{second.config[field]!r} in {second.folder}")
    check_tokenizers_match(first.folder, second.folder, labels)


def check_same_tensors(first: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
                       second: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
                       labels: tuple[str, str] = ("base", "SFT")) -> None:
    """Same names and shapes; same dtype, or both floating point (they are mixed in float32)."""
    only_first = sorted(set(first) - set(second))
    only_second = sorted(set(second) - set(first))
    if only_first:
        raise CheckpointError(f"tensor {only_first[0]!r} is in the {labels[0]} checkpoint but not in the {labels[1]} "
                              f"one ({len(only_first)} such tensors)")
    if only_second:
        raise CheckpointError(f"tensor {only_second[0]!r} is in the {labels[1]} checkpoint but not in the "
                              f"{labels[0]} one ({len(only_second)} such tensors)")
    for name in sorted(first):
        (shape, dtype), (other_shape, other_dtype) = first[name], second[name]
        if tuple(shape) != tuple(other_shape):
            raise CheckpointError(f"tensor {name!r} has shape {list(shape)} in {labels[0]} but {list(other_shape)} "
                                  f"in {labels[1]}")
        if dtype != other_dtype and not (dtype.is_floating_point and other_dtype.is_floating_point):
            raise CheckpointError(f"tensor {name!r} has dtype {DTYPE_NAMES.get(dtype, dtype)} in {labels[0]} but "
                                  f"{DTYPE_NAMES.get(other_dtype, other_dtype)} in {labels[1]}")


def check_checkpoints(folders: Mapping[str, str | Path], *, weights: bool = True,
                      stages: Stages = silent) -> dict[str, Checkpoint]:
    """Open every folder, check each against the first, and (``weights``) that every weight is finite.

    The keys label the folders in errors ("base", "SFT", ...). Finiteness streams one row block
    at a time, so it costs one read of each checkpoint and no more memory than fusion does;
    it is one stage of ``stages`` (a unit per tensor), since on a large model it takes minutes.
    """
    checkpoints = {label: open_checkpoint(folder) for label, folder in folders.items()}
    (first_label, first), *others = checkpoints.items()
    for label, checkpoint in others:
        check_same_architecture(first, checkpoint, (first_label, label))
    if weights:
        total = sum(len(checkpoint.tensors) for checkpoint in checkpoints.values())
        with stages(f"checking {' and '.join(checkpoints)} weights (tensors)", total) as stage:
            for checkpoint in checkpoints.values():
                check_finite(checkpoint.tensors, advance=stage.advance)
    return checkpoints


def check_finite(tensors: Mapping[str, TensorInfo], max_block_bytes: int = 16 * 1024**2,
                 advance: Callable[[int], object] | None = None) -> None:
    """Raise ``CheckpointError`` naming the first floating-point tensor that holds NaN or Inf.

    ``advance(1)`` is called after each tensor (integer ones included).
    """
    with ShardReader() as reader:
        for info in sorted(tensors.values(), key=lambda info: (str(info.file), info.start)):
            if info.dtype.is_floating_point:
                for first, last in row_blocks(info, max_block_bytes):
                    require_finite(reader.rows(info, first, last), f"{info.file}: tensor {info.name!r}", first)
            if advance is not None:
                advance(1)


def require_finite(block: torch.Tensor, what: str, first_row: int = 0) -> None:
    """Raise ``CheckpointError`` if a floating-point row block (rows from ``first_row``) holds NaN or Inf."""
    if not block.is_floating_point():
        return
    finite = torch.isfinite(block if block.element_size() > 1 else block.float())  # no isfinite for float8_e4m3
    if bool(finite.all()):
        return
    bad = (~finite).reshape(-1)
    position = int(bad.nonzero()[0])
    row = first_row + (position // max(1, block[0].numel()) if block.dim() else 0)
    raise CheckpointError(f"{what} holds NaN or Inf ({int(bad.sum())} of {bad.numel()} values in rows "
                          f"{first_row}-{first_row + max(len(block) if block.dim() else 1, 1) - 1}, first in row {row}): "
                          "corrupt weights")


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
    """Rows ``first:last`` of a tensor, read from an open shard file into a fresh buffer.

    A short read (the file shrank or was cut after its header was checked) raises.
    """
    shape = (last - first, *info.shape[1:]) if info.shape else ()
    row_bytes = info.nbytes // info.shape[0] if info.shape and info.shape[0] else info.nbytes
    handle.seek(info.start + first * row_bytes if info.shape else info.start)
    data = bytearray(row_bytes * (last - first) if info.shape else info.nbytes)
    if not data:
        return torch.empty(shape, dtype=info.dtype)
    count = handle.readinto(data)
    if count != len(data):
        raise CheckpointError(f"{info.file} ends inside tensor {info.name!r} (read {count} of {len(data)} bytes): "
                              "the file is truncated")
    return torch.frombuffer(data, dtype=info.dtype).reshape(shape)


class ShardReader:
    """Row blocks from shard files, each opened on first use and closed with the reader."""

    def __init__(self):
        self._handles: dict[Path, object] = {}

    def rows(self, info: TensorInfo, first: int, last: int) -> torch.Tensor:
        if info.file not in self._handles:
            self._handles[info.file] = open(info.file, "rb")  # noqa: SIM115 - closed in close()
        return read_rows(self._handles[info.file], info, first, last)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


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
            nbytes = _numel(shape) * dtype.itemsize
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
        self.expected = {name: _numel(shape) * dtype.itemsize for name, dtype, shape in plan}
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
            nbytes = _numel(shape) * dtype.itemsize
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
    check_output(out, overwrite)
    with atomic_directory(out) as tmp:
        yield tmp


def check_output(out: str | Path, overwrite: bool = False) -> None:
    """Raise ``FileExistsError`` if ``out`` exists (as anything) and may not be replaced."""
    out = Path(out)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True / --overwrite to replace it)")


def copy_side_files(source: Path, target: Path) -> list[str]:
    """Copy everything but the weights (config, generation config, tokenizer files, README) from ``source``.

    Only regular files inside ``source`` are copied (``contained_file``); a link leading out of it,
    a FIFO or a device raises ``CheckpointError`` before anything is copied. Sub-folders are left out."""
    source = Path(source)
    chosen = []
    for path in sorted(source.iterdir()):
        if path.name.endswith((".safetensors", ".bin")) or path.name in WEIGHT_FILES:
            continue
        if path.is_dir() and not path.is_symlink():
            continue
        chosen.append(contained_file(source, path.name))
    for path in chosen:
        # Checked again on the open file (never blocking on a FIFO): a link swapped in after the check is caught.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            opened, checked = os.fstat(handle.fileno()), os.stat(contained_file(source, path.name))
            if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
                raise CheckpointError(f"{path} changed while it was copied: refused")
            with open(target / path.name, "wb") as copy:
                shutil.copyfileobj(handle, copy)
        shutil.copystat(path, target / path.name)
    return [path.name for path in chosen]


def tokenizer_fingerprint(folder: str | Path) -> dict[str, object]:
    """What decides token ids: the vocab (token → id), merges and added tokens, from the tokenizer files."""
    folder = Path(folder)
    found: dict[str, object] = {}
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.exists() or tokenizer_json.is_symlink():
        contained_file(folder, "tokenizer.json")
        data = _parse_json(_read_bytes(tokenizer_json), str(tokenizer_json))
        if not isinstance(data, dict):
            raise CheckpointError(f"{tokenizer_json} is not a JSON object")
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        found["vocab"] = model.get("vocab")
        found["merges"] = model.get("merges")
        added = data.get("added_tokens") if isinstance(data.get("added_tokens"), list) else []
        found["added_tokens"] = {str(token.get("content")): token.get("id") for token in added if isinstance(token, dict)}
    for name in ("vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json"):
        if (folder / name).exists() or (folder / name).is_symlink():
            found[name] = _read_bytes(contained_file(folder, name))
    return found


def check_tokenizers_match(base: str | Path, sft: str | Path, labels: tuple[str, str] = ("base", "sft")) -> None:
    """Raise ``CheckpointError`` naming the first difference between two folders' tokenizers."""
    first, second = tokenizer_fingerprint(base), tokenizer_fingerprint(sft)
    if not first and not second:
        return
    for key in sorted(set(first) | set(second)):
        if key not in first or key not in second:
            where = labels[0] if key not in first else labels[1]
            raise CheckpointError(f"tokenizers differ: the {where} checkpoint has no tokenizer {key!r} ({base} vs {sft})")
        a, b = first[key], second[key]
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for token in sorted(set(a) | set(b), key=str):
                if a.get(token) != b.get(token):
                    raise CheckpointError(
                        f"tokenizers differ in {key}: token {token!r} has id {a.get(token)} in {labels[0]} and "
                        f"{b.get(token)} in {labels[1]} ({base} vs {sft})"
                    )
        raise CheckpointError(f"tokenizers differ in {key} ({base} vs {sft})")


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _is_sizes(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from None


def _parse_json(data: bytes, where: str) -> object:
    """JSON text, strictly: a duplicated key, bad UTF-8 or bad syntax is a ``CheckpointError`` naming ``where``."""

    def unique(pairs: list[tuple[str, object]]) -> dict:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise CheckpointError(f"{where} is not valid JSON: key {key!r} appears twice")
            seen.add(key)
        return dict(pairs)

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=unique)
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{where} is not valid JSON: not UTF-8 at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{where} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") \
            from None
    except RecursionError:
        raise CheckpointError(f"{where} is not valid JSON: nested too deeply") from None
