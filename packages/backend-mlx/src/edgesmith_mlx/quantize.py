"""Quantization with mlx-lm: round-to-nearest (affine/mxfp4/nvfp4/mxfp8, mixed
recipes) and, from a calibration text, GPTQ or AWQ."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import Artifact, Context, QuantSpec

from . import mlxio
from .schemes import MODES, QuantPlan, plan


def quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, Any], output: Path,
             ctx: Context) -> Artifact:
    """Handler of ``quantize hf->mlx`` and ``quantize mlx``; ``options`` are
    parsed by the core (:data:`edgesmith_mlx.options.QUANTIZE`)."""
    # Every refusal happens before MLX is touched.
    p = plan(spec, options)
    src = source.directory
    already = mlxio.existing_quantization(mlxio.read_config(src))
    requantize = bool(getattr(ctx, "allow_requantize", False))
    if already and not requantize:
        raise UserError(
            f"{src} is already quantized ({mlxio.describe_quantization(already)}); quantizing again "
            f"compounds the error: dequantize first (edgesmith convert {src} --to mlx --dtype float16 "
            f"-o DIR) and quantize DIR, or start from the original checkpoint"
        )
    ctx.progress("loading with mlx-lm", None, None)
    model, tokenizer, config = mlxio.load(src, ctx)
    details: dict[str, Any] = {}
    if already:
        from mlx_lm.utils import dequantize_model

        model = dequantize_model(model)
        for key in ("quantization", "quantization_config"):
            config.pop(key, None)
        details["requantized_from"] = mlxio.describe_quantization(already)
    dtype = p.dtype or mlxio.source_dtype(config) or "float16"
    # The scales/biases take the dtype of the weights; mlx-lm does the same cast first.
    mlxio.cast(model, dtype)
    config["torch_dtype"] = dtype
    config.pop("dtype", None)
    skipped = check_group_size(model, p)

    ctx.progress(f"quantizing ({p.describe()})", None, None)
    if p.method in ("gptq", "awq"):
        from . import calibrate

        run = calibrate.gptq if p.method == "gptq" else calibrate.awq
        # Search in float32 (MLX's half-precision CPU kernels are very slow),
        # then store scales and float weights in the requested dtype.
        mlxio.cast(model, "float32")
        model, config = run(model, tokenizer, config, p, spec.calibration, ctx)
        mlxio.cast(model, dtype)
    else:
        model, config = _rtn(model, config, p)
    facts = mlxio.weight_facts(model)
    ctx.progress("writing MLX weights", None, None)
    mlxio.save(output, src, model, tokenizer, config, ctx)
    details.update(
        mode=p.mode,
        bits=p.bits,
        group_size=p.group_size,
        recipe=p.recipe,
        method=p.method,
        dtype=dtype,
        **facts,
        unquantized_layers=skipped,
        mlx_device=mlxio.device_name(),
        vendor=mlxio.versions(),
        native_command=native_command(src, p, dtype),
    )
    return Artifact(path=output, format="mlx", details=details)


def native_command(src: Path, p: QuantPlan, dtype: str) -> str:
    if p.method in ("gptq", "awq"):
        return (f"python -m mlx_lm.quant.{p.method} --model {src} --mlx-path OUT --bits {p.bits} "
                f"--group-size {p.group_size}")
    cmd = f"mlx_lm.convert --hf-path {src} --mlx-path OUT -q --q-bits {p.bits} --q-group-size {p.group_size}"
    cmd += f" --q-mode {p.mode} --dtype {dtype}"
    if p.recipe:
        cmd += f" --quant-predicate {p.recipe}"
    return cmd


def _quantizable(model: Any) -> list[tuple[str, Any]]:
    """Layers mlx-lm would quantize, ignoring the group-size test."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    own = getattr(model, "quant_predicate", None)
    out = []
    for path, m in tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        if not hasattr(m, "to_quantized") or "weight" not in m:
            continue
        if own is not None and not own(path, m):
            continue
        out.append((path, m))
    return out


def check_group_size(model: Any, p: QuantPlan) -> list[str]:
    """Refuse (or, with indivisible=skip, list) layers the group size does not fit.

    mlx-lm silently leaves such layers unquantized and mx.quantize aborts on
    them; either surprise is worse than saying so up front.
    """
    layers = _quantizable(model)
    if not layers:
        raise UserError("this model has no layers MLX can quantize; nothing to do")
    bad = [(path, int(m.weight.shape[-1])) for path, m in layers if m.weight.shape[-1] % p.group_size]
    if bad and not p.skip_indivisible:
        dims = sorted({d for _, d in bad})
        every = {int(m.weight.shape[-1]) for _, m in layers}
        fits = [g for g in MODES[p.mode][1] if all(d % g == 0 for d in every)]
        hint = f"use --group-size {' or '.join(map(str, fits))}" if fits else "no MLX group size fits every layer"
        raise UserError(
            f"group size {p.group_size} does not divide the input size of {len(bad)} layer(s) "
            f"(e.g. {bad[0][0]}: {bad[0][1]}; sizes {', '.join(map(str, dims))}); {hint}, or pass "
            f"--option indivisible=skip to leave those layers unquantized"
        )
    return [path for path, _ in bad]


def _rtn(model: Any, config: dict[str, Any], p: QuantPlan) -> tuple[Any, dict[str, Any]]:
    from mlx_lm.utils import quantize_model

    predicate = None
    if p.recipe:
        from mlx_lm.convert import mixed_quant_predicate_builder

        try:
            predicate = mixed_quant_predicate_builder(p.recipe, model, p.group_size)
        except ValueError as exc:
            raise UnsupportedError(f"recipe {p.recipe} does not fit this model ({exc}); "
                                   f"use a plain --bits N instead") from None
        own = getattr(model, "quant_predicate", None)
        if own is not None:
            base = predicate

            def predicate(path: str, module: Any) -> Any:  # noqa: F811 - wraps the recipe
                return base(path, module) if own(path, module) else False
    # mlx-lm prints its own bits-per-weight line; keep stdout clean for --json.
    with contextlib.redirect_stdout(sys.stderr):
        return quantize_model(model, config, p.group_size, p.bits, mode=p.mode,
                              quant_predicate=predicate)
