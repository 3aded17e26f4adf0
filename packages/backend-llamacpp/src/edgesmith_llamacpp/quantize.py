"""GGUF -> GGUF quantization through `llama_model_quantize` (the function behind llama-quantize)."""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import Artifact, Context, QuantSpec
from edgesmith.util import physical_cores

from . import ggufinfo
from .convert import ENTRY
from .schemes import Scheme, for_bits, lookup


def resolve(spec: QuantSpec) -> Scheme:
    """The llama.cpp scheme for ``spec``; refuse common fields llama.cpp has no knob for."""
    for name, value, why in (
        ("group_size", spec.group_size, "each llama.cpp scheme fixes its block size"),
        ("symmetric", spec.symmetric, "each llama.cpp scheme fixes its rounding"),
        ("activation_bits", spec.activation_bits, "llama.cpp quantizes weights only"),
        ("ratio", spec.ratio, "llama.cpp's mixes are chosen by the scheme (e.g. Q4_K_M)"),
    ):
        if value is not None:
            raise UnsupportedError(f"llamacpp cannot honour --{name.replace('_', '-')}: {why}; "
                                   f"drop it or pick a --scheme")
    if spec.method not in (None, "rtn", "imatrix"):
        raise UnsupportedError(f"llamacpp has no method {spec.method!r}; use rtn or imatrix (with --calibration)")
    if spec.scheme:
        return lookup(spec.scheme)
    assert spec.bits is not None
    return for_bits(spec.bits)


def params_for(scheme: Scheme, *, threads: int, allow_requantize: bool, pure: bool) -> Any:
    """The `llama_model_quantize_params` edgesmith uses; the tests build the same ones."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = scheme.ftype
    params.allow_requantize = allow_requantize
    params.pure = pure
    return params


def quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, Any], output: Path,
             ctx: Context) -> Artifact:
    """Handler of ``quantize gguf``; ``options`` are parsed by the core
    (:data:`edgesmith_llamacpp.options.QUANTIZE_OPTIONS`)."""
    pure = options["pure"]
    scheme = resolve(spec)
    src = source.main_file
    quantized = ggufinfo.quantized_types(src)  # also rejects a truncated/corrupt file
    allow = bool(getattr(ctx, "allow_requantize", False))
    if quantized and not allow:
        raise UserError(
            f"{src} is already quantized ({', '.join(quantized)}); quantizing it again compounds the "
            f"error, so start from an F16/F32 GGUF or pass --allow-requantize to do it anyway"
        )
    use_imatrix = spec.calibration is not None and (scheme.needs_imatrix or spec.method == "imatrix"
                                                   or scheme.bpw < 4.0)
    if scheme.needs_imatrix and spec.calibration is None:
        raise UserError(
            f"{scheme.name} needs an importance matrix; give --calibration FILE (plain text "
            f"representative of your use), or pick a type that does not (Q2_K, IQ3_S, Q3_K_M, ...)"
        )
    if spec.method == "imatrix" and spec.calibration is None:
        raise UserError("--method imatrix needs --calibration FILE (plain text)")
    threads = ctx.threads or physical_cores()
    details: dict[str, Any] = {"scheme": scheme.name, "ftype": scheme.ftype, "nominal_bpw": scheme.bpw,
                               "requantized": bool(quantized), "pure": pure, "imatrix": None}

    ctx.progress(f"quantizing to {scheme.name}", 0, 2 if use_imatrix else 1)
    imatrix = None
    if use_imatrix:
        from .imatrix import compute_imatrix
        from .logs import capture_llama_log

        with capture_llama_log():  # model-load chatter; failures surface as UserError
            imatrix = compute_imatrix(src, spec.calibration, threads=threads, ctx=ctx)
        details["imatrix"] = imatrix.describe()
        ctx.progress(f"quantizing to {scheme.name}", 1, 2)

    params = params_for(scheme, threads=threads, allow_requantize=allow, pure=pure)
    if imatrix is not None:
        params.imatrix = imatrix.as_ctypes()
    dst = output / ENTRY
    errors = _run_quantize(src, dst, params)
    if errors is not None:
        dst.unlink(missing_ok=True)
        raise UserError(f"llama.cpp could not quantize {src} to {scheme.name}: {errors}")
    info = ggufinfo.summary(dst)
    size = dst.stat().st_size
    details.update({"architecture": info["architecture"], "tensor_types": info["tensor_types"],
                    "file_bytes": size})
    ctx.progress(f"quantizing to {scheme.name}", 2 if use_imatrix else 1, 2 if use_imatrix else 1)
    return Artifact(path=output, format="gguf", entry=ENTRY, details=details)


def _run_quantize(src: Path, dst: Path, params: Any) -> str | None:
    """Call llama_model_quantize; return None on success, else the last error line llama.cpp logged."""
    import llama_cpp

    from .logs import capture_llama_log

    with capture_llama_log() as lines:
        try:
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
        except Exception as e:  # noqa: BLE001 - ctypes surfaces C++ exceptions rarely, but be safe
            return f"{type(e).__name__}: {e}"
    if rc == 0:
        return None
    errs = [ln for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
    return (errs[-1] if errs else (lines[-1] if lines else f"return code {rc}")).strip()[:300]
