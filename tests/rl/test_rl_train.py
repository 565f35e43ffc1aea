"""RL on TRL end to end, on a tiny model and a game it can learn in seconds.

``VowelGame``: two turns; each reply earns the share of its characters that are the
letter "e" (success: more than a quarter). A random tiny model says ~1% "e": GRPO must
raise that within a few steps, through TRL's ``GRPOTrainer`` and regym's rollout.
"""

import json

import gymnasium as gym
import pytest
import torch
from safetensors.torch import load_file

from games import VowelGame
from regym.rl.checkpoints import list_checkpoints, read_state
from regym.rl.config import RLConfig, load_config
from regym.rl.train import read_jsonl, train
from tiny_chat import tiny_chat_model

torch.set_num_threads(1)
ENV_ID = "regym-test/Vowels-v0"


class ExpertVowelGame(VowelGame):
    """VowelGame whose expert says a word full of e (a calibration set for rejuvenation)."""

    def _begin(self, task_id):
        outcome = super()._begin(task_id)
        outcome.info["expert_action"] = "eerie epee"
        return outcome

    def _act(self, action):
        outcome = super()._act(action)
        outcome.info["expert_action"] = "eerie epee"
        return outcome


EXPERT_ENV_ID = "regym-test/ExpertVowels-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=VowelGame)
if EXPERT_ENV_ID not in gym.registry:
    gym.register(id=EXPERT_ENV_ID, entry_point=ExpertVowelGame)


def config_for(folder, out, **overrides):
    values = dict(env=ENV_ID, model=str(folder), output_dir=str(out), num_generations=4, tasks_per_step=2, num_envs=4,
                  num_tasks=8, max_turns=2, max_new_tokens=6, max_episode_tokens=256, learning_rate=2e-2,
                  beta=0.02, max_steps=14, eval_every=0, save_steps=7, report_to=[], progress=False,
                  use_cpu=True)
    values.update(overrides)
    return RLConfig(**values)


def mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize("estimator,loss_type", [("grpo", "grpo"), ("gigpo", "dapo")])
def test_grpo_on_trl_raises_the_reward(tiny_sft, tmp_path, estimator, loss_type):
    config = config_for(tiny_sft, tmp_path, advantage_estimator=estimator, loss_type=loss_type,
                        epsilon_high=0.28 if loss_type == "dapo" else None)
    summary = train(config)
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in metrics] == list(range(1, 15))
    early, late = mean([r["reward"] for r in metrics[:3]]), mean([r["reward"] for r in metrics[-3:]])
    assert late > early + 0.1, (early, late)
    assert all("kl" in row and "entropy" in row for row in metrics)
    assert (tmp_path / "final" / "model.safetensors").is_file() and summary["steps"] == 14
    rollouts = read_jsonl(tmp_path / "rollouts.jsonl")
    assert len(rollouts) == 14 * 8 and {row["step"] for row in rollouts} == set(range(1, 15))


def test_resume_after_a_crash_continues_with_the_same_steps_and_logs(tiny_sft, tmp_path):
    reference = train(config_for(tiny_sft, tmp_path / "straight", max_steps=6, save_steps=2, eval_every=3,
                                 eval_episodes=4))
    crashed = config_for(tiny_sft, tmp_path / "crashed", max_steps=6, save_steps=2, eval_every=3, eval_episodes=4)

    class Crash(Exception):
        pass

    from regym.rl import trl_bridge

    original = trl_bridge.RegymGRPOTrainer._rollout

    def crash_at_step_5(self, prompts, trainer):
        if self.state.global_step == 4 and not getattr(self, "crashed", False):
            original(self, prompts, trainer)  # its rollout is logged, then the process "dies"
            raise Crash
        return original(self, prompts, trainer)

    trl_bridge.RegymGRPOTrainer._rollout = crash_at_step_5
    try:
        with pytest.raises(Crash):
            train(crashed)
    finally:
        trl_bridge.RegymGRPOTrainer._rollout = original
    assert [p.name for p in list_checkpoints(tmp_path / "crashed")] == ["checkpoint-2", "checkpoint-4"]
    assert read_state(tmp_path / "crashed" / "checkpoint-4")["log_offsets"]["metrics"] > 0

    resumed = train(load_config(None, {**crashed.to_dict(), "resume": True}))
    assert resumed["steps"] == reference["steps"] == 6
    for name in ("metrics", "eval", "rollouts"):
        straight = read_jsonl(tmp_path / "straight" / f"{name}.jsonl")
        again = read_jsonl(tmp_path / "crashed" / f"{name}.jsonl")
        assert [row["step"] for row in again] == [row["step"] for row in straight], name
    straight = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    again = read_jsonl(tmp_path / "crashed" / "metrics.jsonl")
    for a, b in zip(straight, again, strict=True):  # the same data: rollouts are seeded by step
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)


def test_config_yaml_and_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("group_size: 4\nloss_type: dapo\nepsilon_high: 0.28\n")
    config = load_config(path, {"num_generations": 6, "seed": None})
    assert (config.num_generations, config.loss_type, config.epsilon_high) == (6, "dapo", 0.28)
    with pytest.raises(ValueError, match="unknown config fields"):
        load_config(None, {"gruop_size": 4})
    with pytest.raises(ValueError, match="loss_type"):
        load_config(None, {"loss_type": "ppo"})
    assert load_config(None, {"preset": "smollm2"}).model == "smollm2"
    json.dumps(config.to_dict())


def test_cli_rejuvenate_starts_from_the_fused_model_with_the_sft_model_as_kl_reference(tiny_sft, tmp_path, capsys):
    from regym.cli.rl_train import main

    base = tmp_path / "base"
    model, tokenizer = tiny_chat_model(seed=7)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    out = tmp_path / "run"
    common = ["--env", ENV_ID, "--model", str(tiny_sft), "--max-steps", "2", "--num-generations", "4",
              "--tasks-per-step", "1", "--num-envs", "2", "--max-turns", "2", "--max-new-tokens", "4",
              "--eval-every", "0", "--save-steps", "0", "--report-to", "none", "--no-progress", "--use-cpu"]
    flags = ["--base", str(base), "--rejuvenate", "--alpha", "0.5", "--reset-fraction", "0"]
    assert main([*common, *flags, "--output-dir", str(out)]) == 0
    printed = capsys.readouterr()
    (line,) = [line for line in printed.err.splitlines() if line.startswith("rl-train: ")]  # once, compactly
    assert "num_generations=4" in line and "rejuvenate=True" in line and "learning_rate" not in line
    assert "learning_rate" in (out / "config.yaml").read_text()  # the whole config is in the run folder
    assert "| in_distribution |" not in printed.out and "no evaluation in this run" in printed.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init"] == str(out / "rejuvenated") and summary["sft"] == str(tiny_sft)
    from safetensors.torch import load_file

    fused = load_file(out / "rejuvenated" / "model.safetensors")
    sft = load_file(tiny_sft / "model.safetensors")
    based = load_file(base / "model.safetensors")
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.allclose(fused[name], 0.5 * sft[name] + 0.5 * based[name], atol=1e-6)
    first = read_jsonl(out / "metrics.jsonl")[0]
    assert first["kl"] > 1e-3  # the policy starts away from its reference, the SFT model

    plain = tmp_path / "plain"
    assert main([*common, "--output-dir", str(plain)]) == 0
    assert read_jsonl(plain / "metrics.jsonl")[0]["kl"] == pytest.approx(0.0, abs=1e-6)


def test_rejuvenate_resets_by_the_asked_criterion_or_stops_naming_the_fix(tiny_sft, tmp_path):
    """No expert, no calibration set: an error naming --reset-criterion drift, never a silent switch to drift."""
    from regym.rl.rejuvenated_start import rejuvenated_checkpoint

    base = tmp_path / "base"
    model, tokenizer = tiny_chat_model(seed=7)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)

    def rejuvenated(env_id, name, **overrides):
        config = config_for(tiny_sft, tmp_path / "run", env=env_id, rejuvenate=True, base=str(base),
                            reset_fraction=0.02, calibration_episodes=2, **overrides)
        envs = config.env_spec().make(2)
        folder = rejuvenated_checkpoint(config, base, tiny_sft, tmp_path / name, envs)
        return json.loads((folder / "regym_rejuvenation.json").read_text())["summary"]

    with pytest.raises(ValueError, match=r"--reset-criterion attribution.*no expert.*--reset-criterion drift"):
        rejuvenated(ENV_ID, "no-expert")
    assert not (tmp_path / "no-expert").exists()
    summary = rejuvenated(ENV_ID, "drift", reset_criterion="drift")  # drift needs no expert
    assert summary["criterion"] == "drift" and summary["units_reset"] > 0 and summary["fallback_from"] is None
    summary = rejuvenated(EXPERT_ENV_ID, "attribution")
    assert summary["criterion"] == "attribution" and summary["units_reset"] > 0 and summary["fallback_from"] is None
    # No fallback; the one line a near-uniform tiny model may earn is the reset that changed nothing measurable.
    assert all(warning.startswith("the reset changed nothing measurable") for warning in summary["warnings"])


def test_reset_fallback_criterion_is_opt_in_and_recorded(tiny_sft, tmp_path):
    """No expert: with --reset-fallback-criterion drift, RL starts from the drift-reset model and the run's
    files say so; without it, the run stops naming that flag."""
    from safetensors.torch import load_file

    from regym.rejuvenation import rejuvenate_checkpoint

    base = tmp_path / "base"
    model, tokenizer = tiny_chat_model(seed=7)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    settings = dict(env=ENV_ID, rejuvenate=True, base=str(base), reset_fraction=0.02, calibration_episodes=2,
                    max_steps=1, save_steps=0)
    with pytest.raises(ValueError, match=r"no expert.*--reset-fallback-criterion drift"):
        train(config_for(tiny_sft, tmp_path / "strict", **settings))
    assert not (tmp_path / "strict" / "rejuvenated").exists()

    out = tmp_path / "fallback"
    summary = train(config_for(tiny_sft, out, reset_fallback_criterion="drift", **settings))
    assert summary["init"] == str(out / "rejuvenated")
    recorded = json.loads((out / "rejuvenated" / "rejuvenation.json").read_text())
    assert recorded["criterion"] == "drift" and recorded["fallback_from"] == "attribution"
    assert recorded["units_reset"] > 0 and any("fallback_criterion 'drift'" in w for w in recorded["warnings"])
    stamp = json.loads((out / "rejuvenated" / "regym_rejuvenation.json").read_text())
    assert stamp["settings"]["fallback_criterion"] == "drift" and "expert" in stamp["calibration_error"]
    drift = rejuvenate_checkpoint(base, tiny_sft, tmp_path / "drift", alpha=0.5, reset_fraction=0.02,
                                  criterion="drift")
    assert drift.units_reset == recorded["units_reset"]
    asked, used = load_file(tmp_path / "drift" / "model.safetensors"), load_file(out / "rejuvenated" / "model.safetensors")
    assert all(torch.equal(asked[name], used[name]) for name in asked)  # the very model asking for drift gives


def test_expert_calibration_with_no_episodes_is_an_error(tiny_sft):
    from regym.rl.rejuvenated_start import expert_calibration
    from regym.rl.train import load_tokenizer

    config = config_for(tiny_sft, "unused", env=EXPERT_ENV_ID, calibration_episodes=0)
    envs = config.env_spec().make(1)
    with pytest.raises(ValueError, match=r"--calibration-episodes is 0: raise it, or pass --reset-criterion drift"):
        expert_calibration(config, envs, load_tokenizer(tiny_sft))
    examples = expert_calibration(config_for(tiny_sft, "unused", env=EXPERT_ENV_ID, calibration_episodes=2), envs,
                                  load_tokenizer(tiny_sft))
    assert len(examples) == 4 and all(e["messages"][-1] == {"role": "assistant", "content": "eerie epee"}
                                      for e in examples)


def test_group_advantages_match_their_formulas():
    from regym.rl.advantages import group_advantages

    rewards = [1.0, 0.0, 0.0, 1.0, 3.0, 1.0]
    rloo = group_advantages(rewards, 3, "rloo")
    for i, reward in enumerate(rewards):
        group = rewards[(i // 3) * 3:(i // 3) * 3 + 3]
        others = [r for j, r in enumerate(group) if j != i % 3]
        assert rloo[i] == pytest.approx(reward - sum(others) / len(others))
    grpo = group_advantages(rewards, 3, "grpo")
    assert grpo[:3] == pytest.approx([(1 - 1 / 3) / (0.57735 + 1e-4), (-1 / 3) / (0.57735 + 1e-4)] + [
        (-1 / 3) / (0.57735 + 1e-4)], rel=1e-4)
    assert group_advantages([2.0, 2.0], 2, "grpo").tolist() == [0.0, 0.0]  # no signal from a uniform group
    assert group_advantages(rewards, 3, "grpo", scale="none")[3] == pytest.approx(1 - 5 / 3)


def test_gigpo_step_advantages_group_turns_by_anchor_state():
    from regym.rl.advantages import step_advantages, token_advantages
    from regym.trajectory import Trajectory, Turn

    def episode(group, steps, won):
        turns = [Turn(obs, act, reward=0.0) for obs, act in steps]
        turns[-1].reward = 1.0 if won else 0.0
        t = Trajectory("e", "t", "id", group=group, turns=turns, prompt_length=1)
        t.token_ids = [0] + [1, 2, 0] * len(turns)
        t.loss_mask = [0] + [1, 1, 0] * len(turns)
        return t

    a = episode(0, [("start", "left"), ("hall", "open")], won=True)
    b = episode(0, [("start", "right"), ("cave", "wait")], won=False)
    c = episode(1, [("start", "left")], won=False)  # another task: never grouped with a, b
    steps = step_advantages([a, b, c], gamma=0.5, scale="none")
    assert steps[0][0] == pytest.approx((0.5 - 0.0) / 2) and steps[1][0] == pytest.approx(-0.25)
    assert steps[0][1] == steps[1][1] == steps[2][0] == 0.0  # anchor states seen once: no step signal
    tokens = token_advantages([a, b], [1.0, 0.0], 2, estimator="gigpo", scale="none", step_weight=1.0, gamma=0.5)
    assert tokens[0] == [0.5 + 0.25, 0.5 + 0.25, 0.0, 0.5, 0.5, 0.0]


def test_training_envs_get_the_dense_reward_only_where_the_env_has_one():
    def options(env, env_kwargs=None, training=True, **config):
        spec = RLConfig(env=env, env_kwargs=env_kwargs or {}, max_turns=5, **config).env_spec(training=training)
        assert spec.kwargs["max_turns"] == 5
        return {key: value for key, value in spec.kwargs.items() if key != "max_turns"}

    assert options("regym/TextWorld-v0", {"num_tasks": 16}) == {"num_tasks": 16, "dense_reward": True}
    assert options(ENV_ID) == {}  # VowelGame has no such option
    assert options("regym/TextWorld-v0", dense_reward=False) == {}
    assert options("regym/TextWorld-v0", {"dense_reward": False}) == {"dense_reward": False}
    assert options("regym/TextWorld-v0", training=False) == {}  # evaluations score the env's own reward


def test_num_iterations_reaches_trl_and_is_validated(tmp_path):
    from regym.rl.trl_bridge import grpo_config

    assert grpo_config(RLConfig(num_iterations=3), tmp_path, use_cpu=True).num_iterations == 3
    with pytest.raises(ValueError, match="num_iterations"):
        RLConfig(num_iterations=0)


@pytest.mark.parametrize("estimator,loss_type", [("grpo", "grpo"), ("gigpo", "dapo")])
def test_gradient_accumulation_takes_the_same_step_in_micro_batches(tiny_sft, tmp_path, estimator, loss_type):
    """One rollout of 8 episodes, trained in 1 pass or in 4 micro-batches of 2: the same update. Adam's first step
    moves each weight by lr·g/(|g| + 1e-8), ±lr wherever |g| >> 1e-8, so a gradient from the wrong rows moves weights
    by ~lr the other way, and the gradient norm (before clipping) is compared too: a micro-batch loss left unscaled
    would double or quadruple it. Summation order moves only weights whose gradient is within rounding of 1e-8:
    measured, 3 of 99,648 by more than 1e-6 (gigpo + dapo), the largest by 3.1e-5."""
    from regym.rl.trl_bridge import grpo_config

    runs = {}
    for steps in (1, 4):
        config = config_for(tiny_sft, tmp_path / f"accumulate-{steps}", max_steps=1, save_steps=0, learning_rate=1e-3,
                            advantage_estimator=estimator, loss_type=loss_type, gradient_accumulation_steps=steps)
        args = grpo_config(config, tmp_path, use_cpu=True)
        assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.steps_per_generation) == \
               (8 // steps, steps, steps)
        train(config)
        out = tmp_path / f"accumulate-{steps}"
        runs[steps] = (read_jsonl(out / "metrics.jsonl")[0], read_jsonl(out / "rollouts.jsonl"),
                       load_file(out / "final" / "model.safetensors"))
    (whole, episodes, weights), (accumulated, accumulated_episodes, accumulated_weights) = runs[1], runs[4]
    assert [e["turns"] for e in accumulated_episodes] == [e["turns"] for e in episodes]  # one rollout of 8 each
    assert accumulated["tokens/generated"] == whole["tokens/generated"]
    assert accumulated["grad_norm"] == pytest.approx(whole["grad_norm"], rel=1e-4)
    before = load_file(tiny_sft / "model.safetensors")
    moved = max((weights[key] - before[key].float()).abs().max().item() for key in weights)
    differences = torch.cat([(accumulated_weights[key] - weights[key]).abs().flatten() for key in weights])
    assert moved > 1e-4  # the step did train
    assert differences.max() <= 1e-4 and (differences > 1e-6).sum() <= 1e-4 * differences.numel()


def test_gradient_accumulation_must_divide_the_step_and_needs_the_full_context():
    from regym.rl.trl_bridge import micro_batch_episodes

    assert micro_batch_episodes(RLConfig(tasks_per_step=8, num_generations=4, gradient_accumulation_steps=4), 1) == 8
    assert micro_batch_episodes(RLConfig(tasks_per_step=8, num_generations=4, gradient_accumulation_steps=4), 2) == 4
    with pytest.raises(ValueError, match="must divide each process's 8 episodes"):
        micro_batch_episodes(RLConfig(tasks_per_step=4, num_generations=4, gradient_accumulation_steps=16), 2)
    with pytest.raises(ValueError, match="must divide the step's 16 episodes"):
        RLConfig(tasks_per_step=4, num_generations=4, gradient_accumulation_steps=3)
    with pytest.raises(ValueError, match="needs context 'full'"):
        RLConfig(context="window", gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="gradient_accumulation_steps must be >= 1"):
        RLConfig(gradient_accumulation_steps=0)


def test_the_plasticity_report_measures_the_text_rejuvenation_scores(tiny_sft):
    """One calibration builder: plasticity-report --env encodes exactly rl-train's expert turns."""
    from regym.eval.plasticity import calibration_from_env
    from regym.rejuvenation import encode_calibration
    from regym.rl.rejuvenated_start import expert_calibration
    from regym.rl.train import load_tokenizer

    tokenizer = load_tokenizer(tiny_sft)
    config = config_for(tiny_sft, "unused", env=EXPERT_ENV_ID, calibration_episodes=2)
    envs = config.env_spec().make(1)
    scored = encode_calibration(tokenizer, expert_calibration(config, envs, tokenizer))
    measured = calibration_from_env(EXPERT_ENV_ID, tokenizer, episodes=2)
    assert [example.input_ids.tolist() for example in measured] == [example.input_ids.tolist() for example in scored]
    assert [example.loss_mask.tolist() for example in measured] == [example.loss_mask.tolist() for example in scored]


def test_the_reset_criterion_is_checked_when_the_config_is_made():
    """A typo in --reset-criterion stops rl-train before the SFT model or any env loads, naming the choices."""
    with pytest.raises(ValueError, match="unknown criterion 'atribution'; choose from attribution"):
        RLConfig(reset_criterion="atribution")
    with pytest.raises(ValueError, match="needs calibration texts too"):
        RLConfig(reset_fallback_criterion="redo")
    assert RLConfig(reset_criterion="drift", reset_fallback_criterion=None).reset_criterion == "drift"
