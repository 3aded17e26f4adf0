"""GGUF -> Hugging Face checkpoint.

Weights: transformers' GGUF loader dequantizes every tensor type the `gguf`
package can read and maps llama.cpp tensor names back to its own; we save
them as safetensors. Tokenizer: rebuilt from the GGUF metadata by
`hftokenizer` (transformers' own rebuild gets byte-level BPE vocabularies
wrong, see there), with the special tokens and chat template.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgesmith import gguffile, offline
from edgesmith.errors import UserError
from edgesmith.types import Artifact, Context

from . import hftokenizer


def _supported_architectures() -> tuple[str, ...]:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return tuple(sorted(GGUF_CONFIG_MAPPING))


#: Vocabulary arrays left out of the copy transformers reads (we read them ourselves, once).
_VOCAB_KEYS = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
               "tokenizer.ggml.merges"}


def gguf_to_hf(source: Artifact, options: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert gguf->hf``; ``options`` are parsed by the core
    (:data:`edgesmith_llamacpp.options.EXPORT_OPTIONS`)."""
    dtype = options["dtype"]
    path = source.main_file
    layout = gguffile.read(path)
    meta = layout.values
    arch = meta.get("general.architecture")
    template = meta.get("tokenizer.chat_template")
    if not meta.get("tokenizer.ggml.tokens"):
        raise UserError(f"{path} carries no tokenizer (no tokenizer.ggml.tokens); a Hugging Face "
                        f"checkpoint needs one, use a GGUF written with its vocabulary")
    ctx.progress("reading GGUF", 0, 3)
    with offline.applied():  # transformers reads only local files; put back afterwards
        return _gguf_to_hf(path, layout, meta, arch, template, dtype, output, ctx)


def _gguf_to_hf(path: Path, layout: Any, meta: Mapping[str, Any], arch: Any, template: str | None,
                dtype: str, output: Path, ctx: Context) -> Artifact:
    supported = _supported_architectures()
    if arch not in supported:
        raise UserError(f"architecture {arch} cannot be turned back into a Hugging Face checkpoint: "
                        f"transformers reads GGUF only for {', '.join(supported)}")
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[dtype]
    # The tokenizer first: it is quick, and a vocabulary we cannot rebuild stops the job early.
    tok_facts = hftokenizer.write(meta, arch, output)
    # transformers parses the whole GGUF metadata (twice) with gguf's reader, which is slow on a
    # large vocabulary; it gets a byte-for-byte copy without the vocabulary arrays instead.
    slim = output / ".edgesmith-source.gguf"
    vocab_key = f"{arch}.vocab_size"
    add = {} if vocab_key in meta else {vocab_key: len(meta["tokenizer.ggml.tokens"])}
    try:
        gguffile.write_without_keys(path, layout, _VOCAB_KEYS, slim, add_uint32=add)
        ctx.progress("reading GGUF into transformers", 1, 3)
        config, repaired = _config(slim, meta, path, layout)
        model = _load_dense(AutoModelForCausalLM, slim, torch_dtype, config)
    except (ValueError, KeyError, NotImplementedError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"transformers could not read {path} ({reason}); the quantization type or "
                        f"architecture may be unsupported by its GGUF loader") from None
    finally:
        slim.unlink(missing_ok=True)
    ctx.progress("writing safetensors", 2, 3)
    _set_special_ids(model, meta)
    model.save_pretrained(str(output), safe_serialization=True)
    _portable_config(output / "config.json")
    _ensure_template(output, template)
    ctx.progress("writing safetensors", 3, 3)
    return Artifact(path=output, format="hf", entry=None, details={
        "dtype": dtype,
        "gguf_architecture": arch,
        "hf_architecture": (model.config.architectures or [type(model).__name__])[0],
        "chat_template": bool(template),
        "loader": "transformers GGUF integration (weights); tokenizer rebuilt from GGUF metadata",
        **({"config_repaired": repaired} if repaired else {}),
        **tok_facts,
    })


def _set_special_ids(model: Any, meta: Mapping[str, Any]) -> None:
    """Token ids in config.json and generation_config.json as the GGUF declares them; the
    end-of-turn token (chat models) also stops generation."""
    ids = {name: meta.get(f"tokenizer.ggml.{key}") for name, key in
           (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
            ("pad_token_id", "padding_token_id"))}
    stop = [ids["eos_token_id"]] if isinstance(ids["eos_token_id"], int) else []
    for key in ("eot_token_id", "eom_token_id"):
        extra = meta.get(f"tokenizer.ggml.{key}")
        if isinstance(extra, int) and extra not in stop:
            stop.append(extra)
    for name, value in ids.items():
        if isinstance(value, int):
            setattr(model.config, name, value)
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return
    if isinstance(ids["bos_token_id"], int):
        gen.bos_token_id = ids["bos_token_id"]
    if stop:
        gen.eos_token_id = stop[0] if len(stop) == 1 else stop
    if isinstance(ids["pad_token_id"], int):
        gen.pad_token_id = ids["pad_token_id"]


def _config(slim: Path, meta: Mapping[str, Any], path: Path, layout: Any) -> tuple[Any, list[str]]:
    """transformers' config of the GGUF, with what its loader misses read back
    (:func:`edgesmith_llamacpp.ggufconfig.repair`); the names of the settings repaired."""
    from transformers import AutoConfig

    from . import ggufconfig

    config = AutoConfig.from_pretrained(str(slim.parent), gguf_file=slim.name)
    return config, ggufconfig.repair(config, meta, path, layout)


def _load_dense(auto: Any, path: Path, torch_dtype: Any, config: Any = None) -> Any:
    """A plain (unquantized) transformers model holding the GGUF's dequantized weights.

    transformers 5 keeps GGUF weights in their blocks behind a quantizer that refuses
    save_pretrained; we ask it to dequantize, then move the weights into a fresh model
    built from the same config so nothing of the GGUF loader remains attached.
    """
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers without the GGUF quantizer dequantizes anyway
        GgufConfig = None
    kwargs: dict[str, Any] = {"gguf_file": path.name, "dtype": torch_dtype}
    if config is not None:
        kwargs["config"] = config
    if GgufConfig is not None:
        kwargs["quantization_config"] = GgufConfig(gguf_file=path.name, dequantize=True)
    from edgesmith.patches import applied

    from .patches import GGUF_NAME_MAP_CACHE

    with applied([GGUF_NAME_MAP_CACHE]):
        loaded = auto.from_pretrained(str(path.parent), **kwargs)
    if getattr(loaded, "hf_quantizer", None) is None:
        return loaded
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = auto.from_config(config, dtype=torch_dtype)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k not in getattr(fresh, "_tied_weights_keys", {}) or {}]
    if unexpected or missing:
        raise UserError(f"transformers' GGUF loader gave weights that do not fit {type(fresh).__name__} "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if hasattr(fresh, "tie_weights"):
        fresh.tie_weights()
    return fresh


def _portable_config(path: Path) -> None:
    """config.json as every reader of HF checkpoints understands it.

    transformers 5 writes the RoPE settings only under ``rope_parameters``; mlx-lm (and
    transformers 4) read the top-level ``rope_theta``/``rope_scaling`` and would silently
    fall back to theta 10000. Both spellings are written. Values GGUF stores as float32
    (1e-05 arrives as 9.999999747378752e-06) are written in their shortest float32 form.
    """
    import numpy as np

    def tidy(v: Any) -> Any:
        if isinstance(v, float) and np.isfinite(v) and float(np.float32(v)) == v:
            return float(str(np.float32(v)))
        if isinstance(v, dict):
            return {k: tidy(x) for k, x in v.items()}
        return v

    cfg = tidy(json.loads(path.read_text(encoding="utf-8")))
    rope = cfg.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        cfg.setdefault("rope_theta", rope["rope_theta"])
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        if scaling.get("rope_type", "default") != "default":
            cfg.setdefault("rope_scaling", scaling)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _ensure_template(output: Path, template: str | None) -> None:
    """transformers 5 may store the template in chat_template.jinja; either place is fine."""
    if not template:
        return
    if (output / "chat_template.jinja").exists():
        return
    cfg_path = output / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    if not cfg.get("chat_template"):
        (output / "chat_template.jinja").write_text(template)


@contextmanager
def cached_tensor_name_maps() -> Iterator[None]:
    """transformers rebuilds gguf's full tensor-name table once per module while mapping
    weights (hundreds of times, ~10 s); the table depends only on (architecture, layers).
    Record: :data:`edgesmith_llamacpp.patches.GGUF_NAME_MAP_CACHE`."""
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original
