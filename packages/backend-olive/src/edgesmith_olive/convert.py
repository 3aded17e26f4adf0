"""Hugging Face causal LM -> ONNX Runtime GenAI bundle through an Olive ModelBuilder workflow."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import Artifact, Context
from edgesmith.weights import check_tokenizer

from . import bundle, workflow
from .options import CONVERT_ACCURACY_LEVEL, CONVERT_BLOCK_SIZE, PRECISIONS
from .schemes import check_block_size

#: Files transformers builds a tokenizer from (one is enough; vocab.json goes with merges.txt).


def supported_architectures() -> set[str]:
    """Architectures the installed onnxruntime-genai model builder knows (read from its source)."""
    spec = importlib.util.find_spec("onnxruntime_genai.models.builder")
    if spec is None or not spec.origin:
        return set()
    text = Path(spec.origin).read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r'architectures\[0\] == "(\w+)"', text))


def _check_source(source: Artifact, ctx: Context) -> str:
    cfg = bundle.read_json(source.path / "config.json") if (source.path / "config.json").is_file() else None
    if cfg is None:
        raise UserError(f"{source.path} has no config.json; give a Hugging Face checkpoint directory")
    # transformers would blame a missing sentencepiece; the core has already
    # checked the safetensors headers of every source (api._source).
    check_tokenizer(Path(source.path))
    archs = cfg.get("architectures") or []
    if not archs:
        raise UserError(f"{source.path}/config.json names no architectures; add e.g. \"architectures\": [\"LlamaForCausalLM\"]")
    known = supported_architectures()
    if known and archs[0] not in known:
        raise UnsupportedError(
            f"the ONNX Runtime GenAI model builder cannot convert {archs[0]}; supported: {', '.join(sorted(known))}"
        )
    clash = _lm_head_clash(cfg)
    if clash:
        raise UnsupportedError(
            f"{source.path}: {clash} equals vocab_size ({cfg.get('vocab_size')}), and the ONNX Runtime GenAI "
            "builder would take that layer for the LM head and build a wrong model; use a checkpoint "
            "whose layer widths differ from the vocabulary size"
        )
    if cfg.get("auto_map") and not ctx.trust_remote_code:
        raise UserError(
            f"{source.path} needs its own Python code (auto_map in config.json); "
            "review it and pass --trust-remote-code to allow it"
        )
    return archs[0]


def _lm_head_clash(cfg: dict) -> str | None:
    """Name a Linear layer width equal to the vocabulary size, if any.

    onnxruntime-genai 0.11's builder treats every ``nn.Linear`` whose output
    width equals ``vocab_size`` as the LM head, so such a model converts
    without error but computes garbage (seen with tiny test models).
    """
    vocab = cfg.get("vocab_size")
    hidden = cfg.get("hidden_size")
    if not isinstance(vocab, int) or not isinstance(hidden, int):
        return None
    heads = cfg.get("num_attention_heads") or 1
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    inter = cfg.get("intermediate_size")
    widths = {
        "hidden_size": hidden,
        "intermediate_size": inter,
        "attention heads x head_dim": heads * head_dim,
        "key/value heads x head_dim": kv * head_dim,
    }
    if str(cfg.get("model_type", "")).startswith("phi3"):
        # Phi-3 checkpoints keep q/k/v and gate/up fused in single Linear layers.
        widths["fused qkv width"] = (heads + 2 * kv) * head_dim
        widths["2 x intermediate_size (fused gate/up)"] = 2 * inter if isinstance(inter, int) else None
    for name, width in widths.items():
        if width == vocab:
            return name
    return None


def convert(source: Artifact, options: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert hf->onnx``; ``options`` are parsed by the core
    (:data:`edgesmith_olive.options.CONVERT`)."""
    dtype, provider = PRECISIONS[options["dtype"]], options["provider"]
    block = options.get("block_size", CONVERT_BLOCK_SIZE)
    check_block_size(block, f"olive convert hf->onnx: option block_size={block}")
    if dtype != "int4" and ("block_size" in options or "accuracy_level" in options):
        raise UserError("olive convert hf->onnx: options block_size/accuracy_level apply to dtype int4 "
                        "only; drop them or add --dtype int4")
    opts = {"block_size": block, "accuracy_level": options.get("accuracy_level", CONVERT_ACCURACY_LEVEL)}
    arch = _check_source(source, ctx)

    # hf_remote=False: the builder otherwise loads configs with trust_remote_code=True.
    builder: dict = {
        "type": "ModelBuilder",
        "precision": dtype,
        "extra_options": {"hf_remote": bool(ctx.trust_remote_code)},
    }
    passes: dict[str, dict] = {}
    if dtype == "int4":
        builder["int4_block_size"] = opts["block_size"]
        builder["int4_accuracy_level"] = opts["accuracy_level"]
    if dtype == "fp16" and workflow.PROVIDERS[provider][0] == "cpu":
        # The builder emits fp16 only for GPU providers; for CPU the fp32 graph is
        # converted afterwards, keeping float32 inputs/outputs (and KV cache).
        builder["precision"] = "fp32"
        passes["builder"] = builder
        passes["fp16"] = {"type": "OnnxFloatToFloat16", "keep_io_types": True, **external_data()}
    else:
        passes["builder"] = builder

    input_model = {
        "type": "HfModel",
        "model_path": str(Path(source.path).resolve()),
        "load_kwargs": {"trust_remote_code": bool(ctx.trust_remote_code)},
    }
    olive_out = workflow.run_workflow(
        input_model, passes, provider, output, ctx, what=f"ModelBuilder {dtype} for {provider}"
    )
    bundle.move_model(olive_out, output)
    bundle.copy_support_files(olive_out, output)
    bundle.copy_support_files(Path(source.path), output)
    repairs = bundle.repair(output, Path(source.path))
    workflow.finish(output)
    bundle.genai_dir(output)
    return Artifact(
        path=output,
        format="onnx",
        entry="model.onnx",
        details={"dtype": dtype,
                 **workflow.bundle_details(arch, provider, passes, repairs, workflow.reproduce())},
    )


def external_data() -> dict:
    """Pass settings that save weights to model.onnx.data, as the builder does."""
    return {
        "save_as_external_data": True,
        "all_tensors_to_one_file": True,
        "external_data_name": "model.onnx.data",
    }
