"""The embedded tiny pipeline: a base model, an SFT checkpoint and its demos, all built on a CPU.

With no model given, regym builds its own small stack so that SFT → rejuvenation
→ RL runs on a laptop:

1. **Corpus** (``regym.recipes.corpus``): random-agent episodes of every env that
   runs, in THE prompt format, plus the experts' actions out of context.
2. **Tokenizer**: byte-level BPE (no unknown tokens: any byte falls back to itself)
   trained on the corpus, wrapped as a ``PreTrainedTokenizerFast`` with role tokens
   and a chat template whose assistant spans carry ``{% generation %}`` markers (TRL's
   ``assistant_only_loss``).
3. **Base model**: a small Llama (a few million parameters) pretrained by next-token
   prediction on the corpus. It knows the envs' text and action vocabulary, not
   the expert policy.
4. **Demos** (``regym.demos``): expert episodes of the chosen env, ID split.
5. **SFT** (``regym.rl.sft``): TRL ``SFTTrainer`` on the demos, assistant tokens only,
   for a moderate number of epochs so that RL has room to improve.

``ensure_tiny_pipeline`` caches everything under ``regym.paths.cache_dir("tiny")``:
the base model is shared by every env (``tiny/base/seed<S>-<hash>``, keyed by the
base settings), the demos and SFT checkpoint are per env
(``tiny/<env>/seed<S>-<hash>``, keyed by all settings). Each is written into a
temporary folder and renamed into place, so a second call returns at once and an
interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from regym import seeds
from regym.checkpoints import save_model
from regym.paths import atomic_directory, cache_dir
from regym.progress import StageProgress
from regym.rl.config import RLConfig

log = logging.getLogger(__name__)

PIPELINE_VERSION = 5
"""Bumped when the build changes in a way that makes old caches wrong."""

SPECIAL_TOKENS = ("<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>")
CHAT_TEMPLATE = (
    "{%- for message in messages %}<|{{ message['role'] }}|>"
    "{%- if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{%- else %}{{ message['content'] }}<|end|>{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>{%- endif %}"
)
"""``<|role|>content<|end|>`` per message; the reply's ``<|end|>`` is inside the
assistant span, so SFT teaches the model to stop (``<|end|>`` is the EOS token)."""

BASE_FIELDS = (
    "vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length",
    "corpus_envs", "corpus_random_episodes", "corpus_expert_episodes", "corpus_max_turns", "corpus_task_pool",
    "pretrain_steps", "pretrain_batch_size", "pretrain_block_size", "pretrain_lr",
)
"""The settings that key the shared base model (the others only key the per-env demos and SFT)."""


@dataclass(frozen=True)
class TinyPipelineConfig:
    """Sizes and budgets of the tiny pipeline (defaults: about 9 minutes of one CPU core, most of it pretraining).

    Every budget is a count (episodes, steps, epochs), never a time: what is built depends
    only on these settings and the seed, not on the machine's speed or what its cache holds.
    """

    vocab_size: int = 4096
    """BPE vocabulary size (special tokens and the 256 byte symbols included)."""
    hidden_size: int = 192
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 512
    max_length: int = 1024
    """Context of the model (``max_position_embeddings``) and longest SFT window."""
    corpus_envs: tuple[str, ...] | None = None
    """Envs whose text the base model reads; None = every registered regym env (those that fail are skipped)."""
    corpus_random_episodes: int = 120
    """Random-agent episodes per env in the pretraining corpus."""
    corpus_expert_episodes: int = 30
    """Expert episodes per env whose actions (shuffled, out of context) enter the corpus."""
    corpus_max_turns: int = 15
    corpus_task_pool: int | None = 16
    """Envs with a ``num_tasks`` option play this many tasks in the corpus: many random episodes on a few
    games (cheap to compile) teach the base model to pick an action from the listed ones."""
    task_pool: int | None = 16
    """Envs with a ``num_tasks`` option draw the demos from this many tasks (e.g. TextWorld games to compile);
    ``rl-train`` trains and evaluates in-distribution on the same pool. Measured on TextWorld: with 64 games,
    each game came up about once in a 30-step RL run and eval success did not move (0.094 -> 0.109); with 16,
    RL sees every game several times."""
    pretrain_steps: int = 1200
    """Measured on TextWorld: after 240 steps the base copied object names badly (SFT token accuracy 36 %
    after one epoch; sampled play garbled names such as ``take reangular latchkey``); after 1200 steps
    SFT reaches 95 % token accuracy in one epoch."""
    pretrain_batch_size: int = 8
    pretrain_block_size: int = 256
    pretrain_lr: float = 2e-3
    demo_episodes: int = 200
    """Expert episodes of the chosen env (ID split, reset seeds 0..N-1) for SFT."""
    sft_epochs: float = 1.0
    """Measured on TextWorld, 16 games, seed 0 (docs/tiny_pipeline.md), greedy / sampled success: 0.25 epoch
    0 % / 5 %, 0.5 epoch 34 % / 34 %, 1 epoch 72 % / 48 %, 2 epochs 77 % / 67 %, 3 epochs 100 % / 94 %.
    One epoch wins often enough that GRPO groups carry signal, and leaves RL the gap between its sampled
    and greedy play and more. From half an epoch, RL gains were small and seed-dependent."""
    task_types: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("regym/ALFWorld-v0", ("pick_and_place_simple", "look_at_obj_in_light")),)
    """(env id, task types) for envs with a ``task_types`` option: the demos and RL's task pool hold those
    types only. ALFWorld's two shortest (the planner's 3-5 steps; clean/heat/cool add 3-4, pick-two doubles):
    over all six types the window-SFT policy won 8/64 sampled episodes, all of them pick-and-place."""
    demo_expert: str | None = None
    """Which expert plays the demos, for envs with an ``expert`` option (ALFWorld: "planner", from the true
    state, or "search", ALFWorld's handcoded searching expert); None: the env's default (ALFWorld's planner)."""
    sft_view: str = "auto"
    """What one SFT example is: "conversation" (an episode, cut into windows that fit ``max_length``), "window"
    (one row per expert turn, its prompt the window RL's ``context: window`` shows), or "auto": the env family's
    RL context (``rl_defaults``). Measured on ALFWorld (16 tasks x 4 sampled episodes, window k = 2): trained on
    conversations, the policy won 8/64 (0/64 with every past observation listing its actions)."""
    sft_lr: float = 3e-3
    sft_batch_size: int = 8
    rl_settings: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = (
        ("regym/ALFWorld-v0", (("max_turns", 15), ("advantage_estimator", "gigpo"), ("max_steps", 24),
                               ("eval_every", 8))),)
    """(env id, ((RLConfig field, value), ...)): ``rl-train``'s settings for the embedded default of that env,
    where the user set none (a flag, file or preset wins). They shape RL, not the build, so they are not part
    of the cache key. ALFWorld: the tiny policy wins within 4-16 turns (23 wins of 64 sampled episodes), so
    15 turns keep its wins and halve the cost of a lost episode; with 30 turns, GRPO and 10 steps
    (15.5 minutes) moved ID success 0.359 -> 0.375."""
    threads: int | None = 1
    """torch CPU threads while building (None: leave torch's setting). One thread is the fastest on a
    loaded machine (two threads on two busy cores ran 15x slower here); raise it on an idle multi-core laptop."""

    def corpus_env_ids(self) -> list[str]:
        """The envs the corpus plays: ``corpus_envs``, or every registered regym env (plugins included)."""
        from regym.envs import ENTRY_POINTS

        return list(self.corpus_envs) if self.corpus_envs is not None else list(ENTRY_POINTS)

    def digest(self, names: Sequence[str] | None = None) -> str:
        """A short hash of the named settings (all by default), part of cache folder names.

        The corpus envs enter as the envs actually played, so registering another env family
        keys a new base model instead of reusing one that never read its text."""
        values = {**asdict(self), "corpus_envs": self.corpus_env_ids()}
        chosen = {name: values[name] for name in (names or [f.name for f in fields(self)]) if name not in ("threads", "rl_settings")}
        chosen["version"] = PIPELINE_VERSION
        return hashlib.sha1(json.dumps(chosen, sort_keys=True, default=list).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class TinyPipeline:
    """Where one built pipeline lives; both model folders load with ``from_pretrained``."""

    env_id: str
    seed: int
    config: TinyPipelineConfig
    base_dir: Path
    sft_dir: Path
    demos_dir: Path
    root: Path

    @property
    def summary(self) -> dict[str, Any]:
        """What the build measured (``pipeline.json``): times, sizes, losses, demo success."""
        return json.loads((self.root / "pipeline.json").read_text())


# --- tokenizer -------------------------------------------------------------------------
def train_tokenizer(texts: Sequence[str], vocab_size: int = 4096):
    """A byte-level BPE tokenizer trained on ``texts``, with role tokens and THE chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|end|>", pad_token="<|pad|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 1 << 20
    return tokenizer


# --- base model -------------------------------------------------------------------------
def tiny_llama_config(tokenizer, config: TinyPipelineConfig):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_length,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def pretraining_texts(corpus, tokenizer, actions_per_text: int = 64) -> list[str]:
    """Conversations rendered by the chat template, and the action bag in lines of ``actions_per_text``."""
    texts = [tokenizer.apply_chat_template(conversation, tokenize=False) for conversation in corpus.conversations]
    for start in range(0, len(corpus.actions), actions_per_text):
        texts.append("\n".join(corpus.actions[start:start + actions_per_text]) + tokenizer.eos_token)
    return texts


def pretrain(model, tokenizer, texts: Sequence[str], *, steps: int, batch_size: int, block_size: int,
             lr: float, seed: int = 0, on_step: Callable[[float], None] | None = None) -> list[float]:
    """Next-token prediction on random blocks of the concatenated ``texts``; returns the loss per step.

    AdamW with a linear warm-up over the first 5 % of steps and a cosine decay to 10 %.
    ``on_step(mean loss of the last 20 steps)`` is called after every step (progress).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    stream = [token for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"] for token in ids]
    data = torch.tensor(stream, dtype=torch.long)
    if len(data) <= block_size + 1:
        raise ValueError(f"pretraining corpus too small: {len(data)} tokens for blocks of {block_size}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - block_size - 1, (batch_size,), generator=generator)
        batch = torch.stack([data[start:start + block_size] for start in starts.tolist()])  # (B, T)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(sum(losses[-20:]) / len(losses[-20:]))
    model.eval()
    return losses


def save_model_folder(model, tokenizer, folder: Path, metadata: dict[str, Any], metadata_name: str) -> Path:
    """An HF folder (safetensors + config + tokenizer + ``metadata_name``), written atomically.

    Generation stops at the tokenizer's EOS (``<|end|>``, the end of every chat turn).
    """
    return save_model(model, folder, tokenizer=tokenizer, metadata=metadata, metadata_name=metadata_name,
                      generation_ids_from_tokenizer=True)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (e.g. TextWorld's game compiler)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def parameter_count(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


class _threads:
    """Limit torch's CPU threads for a block (the build shares small machines)."""

    def __init__(self, count: int | None):
        self.count = count

    def __enter__(self):
        import torch

        self.previous = torch.get_num_threads()
        if self.count:
            torch.set_num_threads(self.count)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.previous)


def build_base(folder: Path, config: TinyPipelineConfig, seed: int = 0) -> Path:
    """Gather the corpus, train the tokenizer, pretrain the base model and save it to ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM

    from regym.recipes.corpus import gather_corpus

    started, cpu_started = time.perf_counter(), cpu_seconds()
    env_ids = config.corpus_env_ids()
    with StageProgress(f"tiny pipeline 1/4: corpus ({config.corpus_random_episodes} random episodes per env)",
                       len(env_ids)) as progress:
        corpus = gather_corpus(env_ids, random_episodes=config.corpus_random_episodes,
                               expert_episodes=config.corpus_expert_episodes, max_turns=config.corpus_max_turns,
                               task_pool=config.corpus_task_pool, seed=seed,
                               on_env_done=lambda env_id: progress.advance(status=env_id))
    gathered = time.perf_counter()
    tokenizer = train_tokenizer(corpus.texts(), config.vocab_size)
    texts = pretraining_texts(corpus, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_llama_config(tokenizer, config), dtype=torch.float32)
    with StageProgress("tiny pipeline 2/4: pretraining the base model (steps)", config.pretrain_steps) as progress:
        losses = pretrain(model, tokenizer, texts, steps=config.pretrain_steps,
                          batch_size=config.pretrain_batch_size, block_size=config.pretrain_block_size,
                          lr=config.pretrain_lr, seed=seed,
                          on_step=lambda loss: progress.advance(status=f"loss {loss:.3f}"))
    metadata = {
        "what": "regym tiny base model (pretrained on random-agent play and out-of-context expert actions)",
        "seed": seed, "config": asdict(config), "envs": corpus.envs,
        "episodes_per_env": corpus.episodes, "corpus_sha256": corpus.sha256(),
        "conversations": len(corpus.conversations), "expert_actions": len(corpus.actions),
        "corpus_tokens": sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]),
        "parameters": parameter_count(model), "vocab_size": len(tokenizer),
        "loss_first": losses[0], "loss_last": sum(losses[-20:]) / len(losses[-20:]),
        "seconds_corpus": gathered - started, "seconds_total": time.perf_counter() - started,
        "cpu_seconds_total": cpu_seconds() - cpu_started,
    }
    return save_model_folder(model, tokenizer, folder, metadata, "tiny_base.json")


def demos_sha256(demos) -> str:
    """A hash of the demo conversations, in order (the SFT data; ``pipeline.json`` records it)."""
    payload = json.dumps(list(demos["messages"]), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def last_logged(log_history: Sequence[dict[str, Any]], key: str) -> float | None:
    """The last value of ``key`` in a Trainer's ``log_history`` (None if never logged)."""
    values = [entry[key] for entry in log_history if key in entry]
    return values[-1] if values else None


def _slug(env_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", env_id).strip("_")


def ensure_tiny_pipeline(
    env_id: str,
    *,
    seed: int = 0,
    workdir: str | Path | None = None,
    sft_epochs: float | None = None,
    config: TinyPipelineConfig | None = None,
) -> TinyPipeline:
    """The tiny base model, expert demos and SFT checkpoint for ``env_id``, built once and cached.

    ``workdir`` replaces ``regym.paths.cache_dir("tiny")`` as the cache root;
    ``sft_epochs`` overrides ``config.sft_epochs``. A second call with the same env,
    seed and settings returns the cached folders without work.
    """
    from regym.envs import resolve_env_id

    env_id = resolve_env_id(env_id)
    config = config or TinyPipelineConfig()
    if sft_epochs is not None:
        config = replace(config, sft_epochs=float(sft_epochs))
    root = Path(workdir) if workdir is not None else cache_dir("tiny")
    base_dir = root / "base" / f"seed{seed}-{config.digest(BASE_FIELDS)}"
    env_root = root / _slug(env_id) / f"seed{seed}-{config.digest()}"
    pipeline = TinyPipeline(env_id, seed, config, base_dir, env_root / "sft", env_root / "demos", env_root)
    if (env_root / "pipeline.json").exists() and (base_dir / "tiny_base.json").exists():
        return pipeline

    with _threads(config.threads):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        ensure_tiny_base(seed=seed, workdir=root, config=config)
        base_seconds = time.perf_counter() - started
        envs = json.loads((base_dir / "tiny_base.json").read_text())["envs"]
        if env_id not in envs:
            log.warning("%s is not in the tiny base model's corpus (envs: %s)", env_id, envs)
        _build_env_stage(pipeline, base_seconds, started, cpu_started)
    return pipeline


def ensure_tiny_base(*, seed: int = 0, workdir: str | Path | None = None,
                     config: TinyPipelineConfig | None = None) -> Path:
    """The tiny base model alone (corpus, tokenizer, pretraining), built once per seed and cached.

    The folder ``ensure_tiny_pipeline`` uses too; for callers that bring their own demos and SFT (the lab).
    """
    config = config or TinyPipelineConfig()
    root = Path(workdir) if workdir is not None else cache_dir("tiny")
    base_dir = root / "base" / f"seed{seed}-{config.digest(BASE_FIELDS)}"
    if not (base_dir / "tiny_base.json").exists():
        print(f"building the tiny base model into {base_dir} (about 10 minutes of one CPU core on the "
              "defaults; cached for every later run)", flush=True)
        with _threads(config.threads):
            build_base(base_dir, config, seed)
    return base_dir


def demo_env_kwargs(config: TinyPipelineConfig, env_id: str) -> dict[str, Any]:
    """The demo env's options: the pool's (``pool_env_kwargs``), and its ``expert`` when ``demo_expert`` names one."""
    from regym.envs import accepts_option

    options = pool_env_kwargs(config, env_id)
    if config.demo_expert is None:
        return options
    if not accepts_option(env_id, "expert"):
        raise ValueError(f"demo_expert={config.demo_expert!r}, but {env_id} has no expert option")
    return {**options, "expert": config.demo_expert}


def pool_env_kwargs(config: TinyPipelineConfig, env_id: str) -> dict[str, Any]:
    """The env options that shape the pipeline's task pool (``task_types``), shared by demos and RL."""
    types = dict(config.task_types).get(env_id)
    return {} if types is None else {"task_types": list(types)}


def sft_history_turns(config: TinyPipelineConfig, env_id: str) -> int | None:
    """The window SFT trains on (``sft_view``): None for whole conversations, else its history turns."""
    from regym.rl.config import env_rl_defaults

    if config.sft_view not in ("auto", "conversation", "window"):
        raise ValueError(f"sft_view must be 'auto', 'conversation' or 'window', not {config.sft_view!r}")
    defaults = {**{"context": RLConfig.context, "history_turns": RLConfig.history_turns}, **env_rl_defaults(env_id)}
    view = defaults["context"] if config.sft_view == "auto" else config.sft_view
    return int(defaults["history_turns"]) if view == "window" else None


def _build_env_stage(pipeline: TinyPipeline, base_seconds: float, started: float, cpu_started: float) -> None:
    """Demos and SFT for one env, written into a temporary folder then renamed to ``pipeline.root``."""
    from transformers import AutoTokenizer

    from regym.demos import collect_demos
    from regym.eval.metrics import success_rate
    from regym.rl.sft import sft

    config = pipeline.config
    with atomic_directory(pipeline.root) as scratch:
        demos_started = time.perf_counter()
        with StageProgress(f"tiny pipeline 3/4: expert demos of {pipeline.env_id} (episodes)", 1) as progress:
            demos = collect_demos(pipeline.env_id, agent="expert", episodes=config.demo_episodes,
                                  split="in_distribution", seed=seeds.demo_seeds(pipeline.seed, 1)[0],
                                  out_dir=scratch / "demos",
                                  task_pool=config.task_pool, only_successes=True,
                                  env_kwargs=demo_env_kwargs(config, pipeline.env_id))
            progress.advance(status=f"{len(demos)} won episodes")
        sft_started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(str(pipeline.base_dir))
        with StageProgress(f"tiny pipeline 4/4: SFT ({config.sft_epochs:g} epochs)", 1) as progress:
            sft(str(pipeline.base_dir), tokenizer, demos, out_dir=scratch / "sft", epochs=config.sft_epochs,
                lr=config.sft_lr, batch_size=config.sft_batch_size, max_length=config.max_length,
                seed=pipeline.seed, history_turns=sft_history_turns(config, pipeline.env_id))
            sft_summary = json.loads((scratch / "sft" / "sft_summary.json").read_text())
            accuracy = last_logged(sft_summary["log_history"], "mean_token_accuracy")
            progress.advance(status=f"loss {sft_summary['train_loss']:.3f}, token accuracy "
                                    + ("n/a" if accuracy is None else f"{accuracy:.3f}"))
        base = json.loads((pipeline.base_dir / "tiny_base.json").read_text())
        summary = {
            "env_id": pipeline.env_id, "seed": pipeline.seed, "config": asdict(config),
            "base_dir": str(pipeline.base_dir), "base_parameters": base["parameters"], "base_envs": base["envs"],
            "corpus_sha256": base["corpus_sha256"], "corpus_episodes": base["episodes_per_env"],
            "demo_episodes": len(demos), "demo_success_rate": success_rate(demos["success"]),
            "demos_sha256": demos_sha256(demos),
            "sft_train_loss": sft_summary["train_loss"], "sft_steps": sft_summary["steps"],
            "sft_token_accuracy": last_logged(sft_summary["log_history"], "mean_token_accuracy"),
            "seconds_base": base_seconds, "seconds_demos": sft_started - demos_started,
            "seconds_sft": time.perf_counter() - sft_started, "seconds_total": time.perf_counter() - started,
            "cpu_seconds_total": cpu_seconds() - cpu_started,
        }
        (scratch / "pipeline.json").write_text(json.dumps(summary, indent=2))


def with_tiny_pipeline(config: RLConfig, sources: dict[str, str] | None = None) -> RLConfig:
    """``config`` with its model taken from the tiny pipeline when it names none: ``rl-train``'s default.

    The pipeline (base, demos, SFT) of ``config.env`` is built and cached on first use.
    Its base model becomes ``base`` unless one is given, and envs with a ``num_tasks``
    option train and evaluate on the pipeline's task pool (the games its demos came
    from) unless ``env_kwargs`` says otherwise. With ``sources`` (``resolve_config``'s: where each field's
    value came from), the pipeline's ``rl_settings`` for this env replace the fields that no flag, file or
    preset set. A config that names a model is returned unchanged.
    """
    from regym.envs import accepts_option, resolve_env_id

    if config.model is not None:
        return config
    env_id = resolve_env_id(config.env)
    pipeline = ensure_tiny_pipeline(env_id, seed=config.pipeline_seed)
    env_kwargs = dict(config.env_kwargs)
    pool = pipeline.config.task_pool
    if pool and accepts_option(env_id, "num_tasks"):
        env_kwargs.setdefault("num_tasks", pool)
    for key, value in pool_env_kwargs(pipeline.config, env_id).items():
        env_kwargs.setdefault(key, value)
    return replace(config, model=str(pipeline.sft_dir), base=config.base or str(pipeline.base_dir),
                   env_kwargs=env_kwargs, **embedded_rl_settings(pipeline.config, env_id, sources))


def embedded_rl_settings(config: TinyPipelineConfig, env_id: str, sources: dict[str, str] | None) -> dict[str, Any]:
    """The pipeline's ``rl_settings`` for ``env_id`` that no flag, file or preset set (none without ``sources``)."""
    settings = dict(dict(config.rl_settings).get(env_id, ()))
    return {name: value for name, value in settings.items()
            if sources is not None and sources.get(name, "default") in ("default", "env")}
