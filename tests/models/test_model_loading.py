"""One model loader: every caller that turns a checkpoint folder into a model refuses the same bad folder.

``transformers`` fills a weight the config.json expects and the files lack with random values and only
logs it; regym's callers (the evaluator's HF policy, rl-train, SFT, rejuvenation) all go through
``regym.models.loading``, so each one stops with a ``CheckpointError`` instead of training or scoring a
half random model.
"""

from __future__ import annotations

import json

import pytest
import torch

from regym.checkpoints import CheckpointError
from regym.models.loading import load_causal_lm, load_model
from regym.models.testing import save_checkpoint, tiny_llama, tiny_tokenizer


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A good tiny checkpoint and a copy whose config.json claims one more layer than its weights hold."""
    root = tmp_path_factory.mktemp("loading")
    good = save_checkpoint(tiny_llama(seed=0), tiny_tokenizer(), root / "good")
    bad = save_checkpoint(tiny_llama(seed=0), tiny_tokenizer(), root / "bad")
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "num_hidden_layers": config["num_hidden_layers"] + 1}))
    return good, bad


def test_a_good_folder_loads_its_weights_in_eval_mode(folders):
    good, _ = folders
    model, tokenizer = load_causal_lm(good)
    again = tiny_llama(seed=0)
    assert not model.training and tokenizer is not None
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_every_caller_refuses_weights_the_config_does_not_describe(folders):
    from regym.agents.hf_policy import HFPolicy
    from regym.rl.train import load_training_model

    _, bad = folders
    callers = {"load_model": lambda: load_model(bad), "HFPolicy.from_pretrained": lambda: HFPolicy.from_pretrained(bad),
               "rl-train": lambda: load_training_model(bad, use_cpu=True)}
    for name, load in callers.items():
        with pytest.raises(CheckpointError, match="does not describe these weights"):
            load()
            pytest.fail(f"{name} loaded a checkpoint whose config.json claims a layer it does not hold")

