"""Loading a checkpoint into mlx-lm and writing an MLX model directory.

mlx-lm's own ``save`` also writes a model card through huggingface_hub, which
treats a local directory as a hub id and goes to the network; we write the
same files (weights, config, tokenizer, generation config) ourselves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgesmith import offline
from edgesmith.errors import BackendError, UserError
from edgesmith.types import Context
from edgesmith.weights import check_tokenizer

from .schemes import DTYPES

#: On top of :data:`edgesmith.offline.OFFLINE_ENV`: no hub progress bars and no
#: transformers advisory warnings on the terminal of a job or a chat.
MLX_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def quiet_hub() -> None:
    """No telemetry and no hub look-ups from anything mlx-lm imports. Set for the
    rest of the process (a loaded runner outlives any job); a value the user set wins."""
    offline.set_defaults(MLX_ENV)


def rope_theta_fix(config: dict[str, Any]) -> dict[str, Any]:
    """The top-level RoPE keys mlx-lm reads, from transformers 5's ``rope_parameters``.

    transformers 5 saves the RoPE settings only inside ``rope_parameters``;
    mlx-lm 0.32 reads the top-level ``rope_theta`` and ``rope_scaling`` (and
    Gemma 3's ``rope_local_base_freq``) and silently falls back to its defaults
    without them: theta 10000, and no Llama 3 or LongRoPE (Phi-3.5, Phi-4)
    scaling, which garbles every model trained with them. Per-layer-type
    parameters (Gemma 3) give the full-attention layers' theta and scaling and
    the sliding layers' base. Keys already at the top level win.
    """
    params = config.get("rope_parameters")
    if not isinstance(params, dict):
        return {}
    out: dict[str, Any] = {}
    full = params
    if isinstance(params.get("full_attention"), dict):
        full = params["full_attention"]
        local = params.get("sliding_attention")
        if isinstance(local, dict) and isinstance(local.get("rope_theta"), (int, float)):
            out["rope_local_base_freq"] = float(local["rope_theta"])
    if isinstance(full.get("rope_theta"), (int, float)):
        out["rope_theta"] = float(full["rope_theta"])
    kind = full.get("rope_type") or full.get("type") or "default"
    if kind != "default":
        scaling = {k: v for k, v in full.items() if k != "rope_theta"}
        scaling.setdefault("rope_type", kind)
        scaling.setdefault("type", kind)  # mlx-lm's phi3 reads "type"
        out["rope_scaling"] = scaling
    return {k: v for k, v in out.items() if config.get(k) is None}


def read_config(path: Path) -> dict[str, Any]:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise UserError(f"{path} has no config.json; give a Hugging Face or MLX model directory")
    try:
        data = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{cfg} is not valid JSON ({exc}); repair or replace it") from None
    if not isinstance(data, dict):
        raise UserError(f"{cfg} does not hold a JSON object; repair or replace it")
    return data


def existing_quantization(config: dict[str, Any]) -> dict[str, Any] | None:
    """The quantization a checkpoint already carries (MLX or HF style), if any."""
    q = config.get("quantization") or config.get("quantization_config")
    if not q and isinstance(config.get("text_config"), dict):
        q = config["text_config"].get("quantization_config")
    return q if isinstance(q, dict) and q else None


def describe_quantization(q: dict[str, Any]) -> str:
    if "bits" in q:
        return f"{q.get('mode', 'affine')} {q['bits']}-bit group {q.get('group_size', '?')}"
    return str(q.get("quant_method", "quantized"))


def load(path: Path, ctx: Context, lazy: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer wrapper, config) through mlx-lm, with clear errors."""
    quiet_hub()
    path = Path(path)
    config = read_config(path)  # a clear error before mlx-lm's KeyError/FileNotFoundError
    if not any(path.glob("model*.safetensors")):
        raise UserError(
            f"{path} has no model*.safetensors weights; MLX reads safetensors only "
            f"(convert pickle checkpoints to safetensors first)"
        )
    # mlx-lm's own error for a missing tokenizer is several lines; the core has
    # already checked the safetensors headers of every source (api._source).
    check_tokenizer(path)
    from mlx_lm.utils import load as mlx_load

    try:
        model, tokenizer, config = mlx_load(
            str(path),
            tokenizer_config={"trust_remote_code": ctx.trust_remote_code},
            lazy=lazy,
            return_config=True,
            trust_remote_code=ctx.trust_remote_code,
            model_config=rope_theta_fix(config),
        )
        from .longrope import use_short_factor

        use_short_factor(model, config)
        return model, tokenizer, config
    except ValueError as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if "backend tokenizer" in msg:
            raise UserError(f"transformers cannot build the tokenizer of {path}: {msg}") from None
        if "not supported" in msg:
            raise UserError(f"mlx-lm cannot load {path}: {msg.rstrip('.')}; MLX runs only the "
                            f"architectures mlx-lm implements (see mlx_lm/models)") from None
        if "trust_remote_code" in msg or "custom module" in msg:
            raise UserError(f"{path} needs its own model code to load; pass --trust-remote-code "
                            f"if you trust its source") from None
        raise BackendError(f"mlx-lm failed to load {path}: {msg}") from exc
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        if not msg.startswith("[load_safetensors]"):
            raise
        raise UserError(f"MLX cannot read the weights of {path}: {msg.removeprefix('[load_safetensors] ')}; "
                        f"re-download or re-export the checkpoint") from None
    except (FileNotFoundError, OSError) as exc:
        raise UserError(f"mlx-lm cannot read {path}: {exc}; check the model directory is complete") from None


def cast(model: Any, dtype: str) -> None:
    """Cast floating-point parameters (not packed quantized ones) to ``dtype`` (one of
    :data:`~.schemes.DTYPES`)."""
    import mlx.core as mx
    from mlx.utils import tree_map_with_path

    target = getattr(mx, dtype)
    # Some architectures keep certain tensors (e.g. router scales) in fp32.
    keep = getattr(model, "cast_predicate", lambda _k: True)

    def one(k: str, v: Any) -> Any:
        if keep(k) and mx.issubdtype(v.dtype, mx.floating):
            return v.astype(target)
        return v

    model.update(tree_map_with_path(one, model.parameters()))


def source_dtype(config: dict[str, Any]) -> str | None:
    d = config.get("torch_dtype") or config.get("dtype")
    if d is None and isinstance(config.get("text_config"), dict):
        d = config["text_config"].get("torch_dtype") or config["text_config"].get("dtype")
    return d if d in DTYPES else None


def save(output: Path, source: Path, model: Any, tokenizer: Any, config: dict[str, Any],
         ctx: Context) -> None:
    """Write an MLX model directory that ``mlx_lm.load`` reads as it is."""
    from mlx_lm.utils import save_config, save_model

    output = Path(output)
    save_model(output, model, donate_model=True)
    save_config(dict(config), config_path=output / "config.json")
    tokenizer.save_pretrained(str(output))
    keep = ["generation_config.json"]
    if ctx.trust_remote_code:
        # Custom tokenizer/model code only travels when the user trusts it.
        keep += [p.name for p in Path(source).glob("*.py")]
    for name in keep:
        src = Path(source) / name
        if src.is_file() and not (output / name).exists():
            shutil.copy(src, output / name)


def weight_facts(model: Any) -> dict[str, Any]:
    """Bits per weight and parameter count exactly as mlx-lm computes them."""
    from mlx_lm.utils import compute_bits_per_weight, get_total_parameters

    return {
        "bits_per_weight": round(float(compute_bits_per_weight(model)), 4),
        "parameters": int(get_total_parameters(model)),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("mlx", "mlx-lm", "mlx-cpu", "mlx-metal", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_name() -> str:
    import mlx.core as mx

    return str(mx.default_device().type).split(".")[-1]
