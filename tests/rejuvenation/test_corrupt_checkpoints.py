"""rejuvenate and plasticity-report refuse corrupt checkpoints: one line, exit 2, nothing written.

Each case breaks a copy of a good tiny checkpoint the way a real file goes bad (a cut
download, a header edited by hand, NaN from a diverged run, the wrong config.json copied
in) and runs the command on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from regym.cli import plasticity_report, rejuvenate
from regym.models.testing import perturbed_copy, save_checkpoint, tiny_llama, tiny_tokenizer
from regym.rejuvenation import CheckpointError
from regym.rejuvenation.checkpoint import TensorInfo, check_finite, read_rows, tensor_index

WEIGHTS = "model.safetensors"
CALIB = [{"prompt": "where is the key", "response": "the key is in the red box"},
         {"text": "take apple and open chest then go east"}]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A base and an SFT folder (single file), and an SFT folder sharded with an index json."""
    root = tmp_path_factory.mktemp("good")
    tokenizer = tiny_tokenizer()
    base = tiny_llama(seed=0)
    sft = perturbed_copy(base, 0.1, seed=1)
    return (save_checkpoint(base, tokenizer, root / "base"), save_checkpoint(sft, tokenizer, root / "sft"),
            save_checkpoint(sft, tokenizer, root / "sharded", max_shard_size="100KB"))


def split(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def join(header: dict, body: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + body


def edit_header(change):
    def corrupt(folder: Path) -> None:
        header, body = split(folder / WEIGHTS)
        change(header)
        (folder / WEIGHTS).write_bytes(join(header, body))
    return corrupt


def edit_tensor(name: str, value: float, dtype: torch.dtype = torch.float32):
    def corrupt(folder: Path) -> None:
        state = {key: tensor.to(dtype) for key, tensor in load_file(folder / WEIGHTS).items()}
        state[name].view(-1)[state[name].numel() - 3] = value  # near the end: in the last row block
        save_file(state, folder / WEIGHTS, metadata={"format": "pt"})
    return corrupt


def cut(fraction: float = 0.5, keep: int | None = None):
    def corrupt(folder: Path) -> None:
        data = (folder / WEIGHTS).read_bytes()
        (folder / WEIGHTS).write_bytes(data[: keep if keep is not None else int(len(data) * fraction)])
    return corrupt


def write_config(text: str | bytes):
    def corrupt(folder: Path) -> None:
        path = folder / "config.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return corrupt


def gpt2_config(folder: Path) -> None:
    from transformers import GPT2Config

    GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=256).to_json_file(folder / "config.json")


def other_size_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))


def first_two_of_equal_size(header: dict) -> tuple[str, str]:
    names = [n for n in header if n != "__metadata__" and header[n]["shape"] == [64, 64]]
    return names[0], names[1]


def overlap(header: dict) -> None:
    first, second = first_two_of_equal_size(header)
    header[second]["data_offsets"] = header[first]["data_offsets"]


def shrink_shape(header: dict) -> None:
    name = next(n for n in header if n != "__metadata__" and header[n]["shape"] == [64, 64])
    header[name]["shape"] = [64, 32]


CASES = {
    "data cut in half": cut(0.5),
    "data cut by one byte": cut(keep=-1),
    "bytes after the last tensor": lambda folder: (folder / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes()
                                                                                  + bytes(16)),
    "NaN in a weight": edit_tensor("model.norm.weight", float("nan")),
    "Inf in a bf16 weight": edit_tensor("model.layers.1.mlp.down_proj.weight", float("-inf"), torch.bfloat16),
    "header length beyond the file": lambda folder: (folder / WEIGHTS).write_bytes(
        struct.pack("<Q", 2**62) + (folder / WEIGHTS).read_bytes()[8:]),
    "header cut off": cut(keep=8 + 100),
    "header not JSON": lambda folder: (folder / WEIGHTS).write_bytes(
        (folder / WEIGHTS).read_bytes()[:8] + b"\xff" * 64 + (folder / WEIGHTS).read_bytes()[72:]),
    "entry without data_offsets": edit_header(lambda h: h["model.norm.weight"].pop("data_offsets")),
    "entry with a string shape": edit_header(lambda h: h["model.norm.weight"].update(shape="64")),
    "shape that disagrees with the offsets": edit_header(shrink_shape),
    "overlapping tensors": edit_header(overlap),
    "GPT-2 config.json": gpt2_config,
    "config.json of another size": other_size_config,
    "garbage config.json": write_config(b"\x00\x9f model_type: llama"),
    "config.json without model_type": write_config('{"hidden_size": 64, "num_hidden_layers": 2}'),
    "config.json that is a list": write_config("[1, 2, 3]"),
}


def corrupt_copy(source: Path, target: Path, corrupt) -> Path:
    shutil.copytree(source, target)
    corrupt(target)
    return target


def assert_refused(code: int, stderr: str, prog: str, mentions: str) -> None:
    """One error line, last, after nothing but the progress lines of the stages that ran (``StageProgress``)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    *progress, error = lines
    assert error.startswith(f"{prog}: error: "), stderr
    progress = [line for line in progress if not re.match(rf"{re.escape(prog)}: \w+=", line)]  # the config line
    assert all(re.fullmatch(r".+: (started \(\d+ to do\)|\d+/\d+, .+ left|done in .+|failed after .+)", line)
               for line in progress), stderr
    assert mentions in error, error


@pytest.mark.parametrize("which", ["sft", "base"])
@pytest.mark.parametrize("case", list(CASES))
def test_rejuvenate_refuses_a_corrupt_checkpoint_and_writes_nothing(good, tmp_path, capsys, case, which):
    base, sft, _ = good
    broken = corrupt_copy(base if which == "base" else sft, tmp_path / f"broken-{which}", CASES[case])
    base, sft = (broken, sft) if which == "base" else (base, broken)
    out = tmp_path / "out"
    code = rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(out), "--reset-frac", "0"])
    assert_refused(code, capsys.readouterr().err, "rejuvenate", broken.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [broken.name]  # no output, no temp folder


@pytest.mark.parametrize("case", ["NaN in a weight", "GPT-2 config.json", "data cut in half", "entry without data_offsets"])
def test_rejuvenate_with_a_reset_refuses_before_loading(good, tmp_path, capsys, case):
    """The reset path loads both models with transformers: it must check them first, not fail inside."""
    base, sft, _ = good
    broken = corrupt_copy(sft, tmp_path / "broken", CASES[case])
    out = tmp_path / "out"
    code = rejuvenate.main(["--base", str(base), "--sft", str(broken), "--out", str(out), "--criterion", "drift",
                            "--reset-frac", "0.05"])
    assert_refused(code, capsys.readouterr().err, "rejuvenate", broken.name)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def rewrite_index(change):
    def corrupt(folder: Path) -> None:
        path = folder / "model.safetensors.index.json"
        index = json.loads(path.read_text())
        change(index["weight_map"])
        path.write_text(json.dumps(index))
    return corrupt


def move_to_other_shard(weight_map: dict) -> None:
    files = sorted(set(weight_map.values()))
    weight_map["model.norm.weight"] = next(f for f in files if f != weight_map["model.norm.weight"])


def shard_outside(folder: Path) -> None:
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    shutil.copy(folder / weight_map["model.norm.weight"], folder.parent / "outside.safetensors")
    rewrite_index(lambda wm: wm.update({"model.norm.weight": "../outside.safetensors"}))(folder)


def shard_nan(folder: Path) -> None:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"]["model.layers.1.mlp.up_proj.weight"]
    state = load_file(shard)
    state["model.layers.1.mlp.up_proj.weight"][-1, -1] = float("nan")
    save_file(state, shard, metadata={"format": "pt"})


SHARDED_CASES = {
    "index places a tensor in the wrong shard": rewrite_index(move_to_other_shard),
    "index does not list a tensor a shard holds": rewrite_index(lambda wm: wm.pop("model.norm.weight")),
    "index names a shard outside the folder": shard_outside,
    "NaN in a shard": shard_nan,
}


@pytest.mark.parametrize("case", list(SHARDED_CASES))
def test_sharded_checkpoints_are_checked_against_their_index(good, tmp_path, capsys, case):
    base, _, sharded = good
    broken = corrupt_copy(sharded, tmp_path / "broken", SHARDED_CASES[case])
    code = rejuvenate.main(["--base", str(base), "--sft", str(broken), "--out", str(tmp_path / "out"),
                            "--reset-frac", "0"])
    assert_refused(code, capsys.readouterr().err, "rejuvenate", "broken")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["broken", *(["outside.safetensors"] if "outside"
                                                                              in case else [])])


@pytest.mark.parametrize("lines,where", [
    (['{"text": "go north"}', '{"text": '], ", line 2: not JSON"),
    (['{"text": 5}'], ":1: 'text' must be a string"),
    (['', '{"prompt": "where", "response": ["north"]}'], ":2: 'response' must be a string"),
    (['{"messages": "hello"}'], ":1: 'messages' must be"),
    (['{"messages": [{"role": "user"}]}'], ":1: message 0"),
    (['[1, 2]'], ":1: expected a JSON object"),
])
def test_a_bad_calibration_file_is_named_with_its_line(good, tmp_path, capsys, lines, where):
    base, sft, _ = good
    calib = tmp_path / "calib.jsonl"
    calib.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(out), "--calib", str(calib),
                            "--reset-frac", "0.05"])
    assert_refused(code, capsys.readouterr().err, "rejuvenate", f"{calib}{where}")
    assert not out.exists()


def test_calibration_text_may_hold_a_line_separator_character(good, tmp_path, capsys):
    """JSON strings may contain U+2028 raw; the file is split on newlines only."""
    base, sft, _ = good
    calib = tmp_path / "calib.jsonl"
    calib.write_text(json.dumps({"text": "go north\u2028and open the door"}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    code = rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(tmp_path / "out"), "--calib",
                            str(calib), "--reset-frac", "0.05", "--top-n", "4"])
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["file", "link"])
def test_overwrite_replaces_a_file_folder_or_link_and_leaves_nothing_else(good, tmp_path, capsys, kind):
    base, sft, _ = good
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("an old file")
    else:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "theirs.txt").write_text("not ours to delete")
        out.symlink_to(tmp_path / "elsewhere")
    argv = ["--base", str(base), "--sft", str(sft), "--out", str(out), "--reset-frac", "0", "--alpha", "1"]
    assert rejuvenate.main(argv + ["--overwrite"]) == 0, capsys.readouterr().err
    assert out.is_dir() and not out.is_symlink()
    assert load_file(out / WEIGHTS).keys() == load_file(sft / WEIGHTS).keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["elsewhere", "out"] if kind == "link" else ["out"])
    assert kind != "link" or (tmp_path / "elsewhere" / "theirs.txt").is_file()


def test_a_refused_overwrite_keeps_the_old_output(good, tmp_path, capsys):
    base, sft, _ = good
    broken = corrupt_copy(sft, tmp_path / "broken", CASES["NaN in a weight"])
    out = tmp_path / "out"
    out.write_text("keep me")
    code = rejuvenate.main(["--base", str(base), "--sft", str(broken), "--out", str(out), "--reset-frac", "0",
                            "--overwrite"])
    assert_refused(code, capsys.readouterr().err, "rejuvenate", "broken")
    assert out.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["broken", "out"]


def test_a_file_that_shrinks_after_its_header_was_read_raises(good, tmp_path):
    """read_rows never pads a short read with zeros."""
    path = tmp_path / WEIGHTS
    shutil.copy(good[1] / WEIGHTS, path)
    info = tensor_index(tmp_path)["model.norm.weight"]
    path.write_bytes(path.read_bytes()[: info.start + 10])
    with open(path, "rb") as handle, pytest.raises(CheckpointError, match="truncated"):
        read_rows(handle, info, 0, 64)


def test_finiteness_is_checked_one_row_block_at_a_time(good, tmp_path, monkeypatch):
    """A NaN in the last row of a tensor is found with blocks of one row; no block exceeds the limit."""
    import regym.rejuvenation.checkpoint as checkpoint

    broken = corrupt_copy(good[1], tmp_path / "broken", CASES["NaN in a weight"])
    tensors = tensor_index(broken)
    largest = []
    original = checkpoint.read_rows

    def recording(handle, info: TensorInfo, first: int, last: int):
        block = original(handle, info, first, last)
        largest.append(block.numel() * block.element_size())
        return block

    monkeypatch.setattr(checkpoint, "read_rows", recording)
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight.*NaN or Inf"):
        check_finite(tensors, max_block_bytes=256)
    assert largest and max(largest) <= 4 * 128  # one row of the widest tensor (128 float32) at most


def test_plasticity_report_refuses_corrupt_checkpoints_and_calibration(good, tmp_path, capsys):
    base, sft, _ = good
    calib = tmp_path / "calib.jsonl"
    calib.write_text("".join(json.dumps(row) + "\n" for row in CALIB))
    out = tmp_path / "report"
    for case in ("NaN in a weight", "data cut in half", "GPT-2 config.json", "header length beyond the file"):
        broken = corrupt_copy(sft, tmp_path / case.replace(" ", "-"), CASES[case])
        for role in ("--sft", "--rejuvenated"):
            folders = {"--base": base, "--sft": sft, role: broken}
            argv = [arg for flag, folder in folders.items() for arg in (flag, str(folder))]
            code = plasticity_report.main(argv + ["--calib", str(calib), "--out", str(out), "--hessian-iters", "0"])
            assert_refused(code, capsys.readouterr().err, "plasticity-report", broken.name)
            assert not out.exists()
    bad_calib = tmp_path / "bad.jsonl"
    bad_calib.write_text('{"text": "go north"}\n{"messages": [{"role": "user", "content": 3}]}\n')
    code = plasticity_report.main(["--base", str(base), "--sft", str(sft), "--calib", str(bad_calib), "--out",
                                   str(out)])
    assert_refused(code, capsys.readouterr().err, "plasticity-report", f"{bad_calib}:2:")
    assert not out.exists()


# --- links, special files, and configs that do not describe the weights --------------------------

def link_out(name: str):
    """``name`` becomes a link to a file outside the folder (a host secret, another model's weights)."""
    def corrupt(folder: Path) -> None:
        secret = folder.parent / f"secret-{name}"
        if (folder / name).exists():
            shutil.move(folder / name, secret)
        else:
            secret.write_text("host secret\n")
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(secret)
    return corrupt


def fifo(name: str):
    def corrupt(folder: Path) -> None:
        os.mkfifo(folder / name)
    return corrupt


def claim_config(**fields):
    def corrupt(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **fields}))
    return corrupt


ESCAPES = {
    "README linked to a host file": (link_out("README.md"), "outside the checkpoint folder"),
    "tokenizer_config linked out": (link_out("tokenizer_config.json"), "outside the checkpoint folder"),
    "weights linked out": (link_out(WEIGHTS), "outside the checkpoint folder"),
    "config linked out": (link_out("config.json"), "outside the checkpoint folder"),
    "a FIFO among the side files": (fifo("notes.txt"), "not a regular file"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(ESCAPES))
def test_files_that_leave_the_folder_or_are_not_files_are_refused(good, tmp_path, capsys, case):
    base, sft, _ = good
    corrupt, words = ESCAPES[case]
    broken = corrupt_copy(sft, tmp_path / "broken", corrupt)
    out = tmp_path / "out"
    code = rejuvenate.main(["--base", str(base), "--sft", str(broken), "--out", str(out), "--reset-frac", "0"])
    assert_refused(code, capsys.readouterr().err, "rejuvenate", words)
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_links_inside_the_folder_and_the_hub_cache_layout_are_followed(good, tmp_path, capsys):
    """huggingface_hub's cache holds ``snapshots/<rev>/<file> -> ../../blobs/<hash>``: that is one repository."""
    base, sft, _ = good
    repo = tmp_path / "models--tiny" / "snapshots" / "abc123"
    repo.mkdir(parents=True)
    (tmp_path / "models--tiny" / "blobs").mkdir()
    for path in sft.iterdir():
        blob = tmp_path / "models--tiny" / "blobs" / f"hash-{path.name}"
        shutil.copy(path, blob)
        (repo / path.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo / "README.md").write_text("a model card\n")
    (repo / "CARD.md").symlink_to("README.md")
    out = tmp_path / "out"
    assert rejuvenate.main(["--base", str(base), "--sft", str(repo), "--out", str(out), "--reset-frac", "0"]) == 0, \
        capsys.readouterr().err
    assert (out / "CARD.md").read_text() == "a model card\n" and not (out / "CARD.md").is_symlink()
    assert json.loads((out / "config.json").read_text()) == json.loads((sft / "config.json").read_text())


CONFIG_LIES = {
    "a 10^9-token vocabulary": (claim_config(vocab_size=10**9), "[1000000000, 64]"),
    "10^9 layers": (claim_config(num_hidden_layers=10**9), "num_hidden_layers is 1000000000"),
    "one layer fewer": (claim_config(num_hidden_layers=1), "num_hidden_layers is 1"),
    "a wider MLP": (claim_config(intermediate_size=256), "mlp"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(CONFIG_LIES))
def test_fusion_only_refuses_a_config_that_does_not_describe_the_weights(good, tmp_path, capsys, case):
    """Both folders carry the same lie, so they agree with each other: only the weights can refute it."""
    corrupt, words = CONFIG_LIES[case]
    base, sft = (corrupt_copy(folder, tmp_path / name, corrupt) for folder, name in zip(good[:2], ("b", "s"), strict=True))
    out = tmp_path / "out"
    started = time.monotonic()
    code = rejuvenate.main(["--base", str(base), "--sft", str(sft), "--out", str(out), "--reset-frac", "0"])
    stderr = capsys.readouterr().err
    assert_refused(code, stderr, "rejuvenate", "does not describe these weights")
    assert words in stderr and time.monotonic() - started < 60
    assert not out.exists()
