"""One atomic model saver (``regym.checkpoints.save_model``) writes every model folder regym makes."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import regym.checkpoints
from regym.checkpoints import save_model
from regym.models.testing import perturbed_copy, save_checkpoint, tiny_llama, tiny_tokenizer

PACKAGE = Path(__file__).resolve().parents[2] / "regym"
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors"}
IDS = torch.tensor([[4, 9, 17, 30]])


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer().save_pretrained(folder)
    return {path.name for path in folder.iterdir()}


def test_save_model_writes_a_whole_folder_that_reloads(tmp_path, tokenizer_files):
    model, tokenizer = tiny_llama(seed=3), tiny_tokenizer()
    model.generation_config.eos_token_id = None
    folder = save_model(model, tmp_path / "model", tokenizer=tokenizer, metadata={"steps": 12, "path": tmp_path},
                        metadata_name="how.json", generation_ids_from_tokenizer=True)
    assert {path.name for path in folder.iterdir()} == MODEL_FILES | tokenizer_files | {"how.json"}
    assert json.loads((folder / "how.json").read_text()) == {"steps": 12, "path": str(tmp_path)}
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        assert torch.equal(loaded(IDS).logits, model(IDS).logits)
    assert (loaded.generation_config.eos_token_id, loaded.generation_config.pad_token_id) == (
        tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert AutoTokenizer.from_pretrained(folder).get_vocab() == tokenizer.get_vocab()
    assert [path.name for path in tmp_path.iterdir()] == ["model"]  # no scratch folder left beside it


def test_a_failed_save_keeps_the_old_folder_and_leaves_nothing_else(tmp_path):
    old = save_model(tiny_llama(seed=0), tmp_path / "model", tokenizer=tiny_tokenizer())
    before = {path.name: path.read_bytes() for path in old.iterdir()}

    def disk_full(folder):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(tiny_llama(seed=1), old, tokenizer=tiny_tokenizer(), extra_files=disk_full)
    assert {path.name: path.read_bytes() for path in old.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["model"]
    with pytest.raises(ValueError, match="metadata and metadata_name"):
        save_model(tiny_llama(seed=1), tmp_path / "other", metadata={"a": 1})
    assert not (tmp_path / "other").exists()


def test_only_the_saver_calls_save_pretrained():
    """One path per job: a second writer would be a second set of file names and crash semantics."""
    allowed = {
        "regym/checkpoints.py",
        "regym/models/testing.py",  # test fixtures: shards of a chosen size, written into a test's tmp_path
    }
    callers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "save_pretrained":
                callers.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert {caller.rpartition(":")[0] for caller in callers} <= allowed, callers


def _tiny_base(folder, model, tokenizer):
    from regym.recipes.tiny import save_model_folder

    return save_model_folder(model, tokenizer, folder, {"seed": 0}, "tiny_base.json")


def _sft_epoch(folder, model, tokenizer):
    from regym.rl.sft import _save_at_epochs

    callback = _save_at_epochs([1.0], folder.parent / "epochs", tokenizer, {"lr": 1e-3})
    callback.on_step_end(None, SimpleNamespace(epoch=1.0, global_step=4, log_history=[]), None, model=model)
    return folder.parent / "epochs" / "epoch-1"


def _smollm2(folder, model, tokenizer, monkeypatch):
    import regym.models.smollm2 as smollm2

    monkeypatch.setattr(smollm2, "load_smollm2", lambda dtype=None: (model, tokenizer))
    return smollm2.smollm2_checkpoint(folder)


def _rejuvenated(folder, model, tokenizer):
    from regym.rejuvenation import rejuvenate_checkpoint

    root = folder.parent
    base = save_checkpoint(model, tokenizer, root / "base")
    sft = save_checkpoint(perturbed_copy(model, 0.1, seed=1), tokenizer, root / "sft")
    # shrink_perturb is the rejuvenation that holds a model and saves it; unit resets stream with fusion's shards.
    rejuvenate_checkpoint(base, sft, folder, criterion="shrink_perturb")
    return folder


@pytest.mark.parametrize("writer,metadata_name", [(_tiny_base, "tiny_base.json"), (_sft_epoch, "sft_summary.json"),
                                                  (_smollm2, None), (_rejuvenated, "rejuvenation.json")])
def test_every_model_writer_uses_the_saver_and_keeps_its_file_names(tmp_path, monkeypatch, tokenizer_files, writer,
                                                                      metadata_name):
    written, original = [], regym.checkpoints.write_model_files

    def recorded(model, folder, **options):
        written.append(folder)
        return original(model, folder, **options)

    monkeypatch.setattr(regym.checkpoints, "write_model_files", recorded)
    model, tokenizer = tiny_llama(seed=0), tiny_tokenizer()
    extra = {"monkeypatch": monkeypatch} if writer is _smollm2 else {}
    folder = Path(writer(tmp_path / "model", model, tokenizer, **extra))
    assert len(written) == 1  # through the one saver, once
    assert {path.name for path in folder.iterdir()} == MODEL_FILES | tokenizer_files | (
        {metadata_name} if metadata_name else set())
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert loaded.config.vocab_size == model.config.vocab_size
    assert not [path.name for path in folder.parent.iterdir() if path.name.startswith(".tmp")]
