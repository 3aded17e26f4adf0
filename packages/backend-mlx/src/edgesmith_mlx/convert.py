"""Hugging Face checkpoint -> MLX directory (and MLX -> MLX to change dtype or
to dequantize a quantized MLX model)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.types import Artifact, Context

from . import mlxio
from .schemes import MX_DTYPES


def convert(source: Artifact, options: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert hf->mlx`` and ``convert mlx``; ``options`` are parsed
    by the core (:data:`edgesmith_mlx.options.CONVERT`)."""
    dtype = MX_DTYPES.get(options.get("dtype"))
    src = source.directory
    config_in = mlxio.read_config(src)
    quantized = mlxio.existing_quantization(config_in)
    ctx.progress("loading with mlx-lm", None, None)
    model, tokenizer, config = mlxio.load(src, ctx)
    details: dict[str, Any] = {}
    if quantized:
        # Converting a quantized model to plain weights is mlx-lm's dequantize.
        from mlx_lm.utils import dequantize_model

        model = dequantize_model(model)
        for key in ("quantization", "quantization_config"):
            config.pop(key, None)
        details["dequantized_from"] = mlxio.describe_quantization(quantized)
        dtype = dtype or "float16"
    dtype = dtype or mlxio.source_dtype(config) or "float16"
    mlxio.cast(model, dtype)
    # Keep config.json honest about what the weights now are.
    config["torch_dtype"] = dtype
    config.pop("dtype", None)
    ctx.progress("writing MLX weights", None, None)
    facts = mlxio.weight_facts(model)
    mlxio.save(output, src, model, tokenizer, config, ctx)
    details.update(
        dtype=dtype,
        **facts,
        model_type=config.get("model_type"),
        mlx_device=mlxio.device_name(),
        vendor=mlxio.versions(),
        native_command=f"mlx_lm.convert --hf-path {src} --mlx-path OUT --dtype {dtype}"
        + (" --dequantize" if quantized else ""),
    )
    return Artifact(path=output, format="mlx", details=details)

