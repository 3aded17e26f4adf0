"""Ahead-of-time compilation: a device blob (export_model), optionally openvino-genai's cache.

The output is a complete IR folder (so it still converts, inspects and runs
anywhere) with, beside it, ``openvino_model.blob`` (the compiled model, which
the runner imports for scoring), ``openvino_compiled.json`` (device,
properties, timings) and, except on CPU, ``model_cache/`` for openvino-genai's
pipeline. On CPU the cache measured slower than no cache (a 150 MB IR: 4.3 s
through the cache against 2.5 s compiling), while importing the blob was 2.4x
faster than compiling the IR, so the cache is opt-in there.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import BackendError, UserError
from edgesmith.types import Artifact, Context

from . import stack
from .compiled import COMPILED_INFO, check_device
from .options import NPU_MAX_PROMPT_LEN, NPU_MIN_RESPONSE_LEN
from .patches import job

BLOB = "openvino_model.blob"
GENAI_CACHE = "model_cache"


def properties(opts: Mapping[str, Any], dev: str) -> dict[str, Any]:
    """Device properties from the parsed options (genai_cache is ours, not OpenVINO's)."""
    props: dict[str, Any] = {"PERFORMANCE_HINT": opts["performance_hint"]}
    if "inference_precision" in opts:
        props["INFERENCE_PRECISION_HINT"] = opts["inference_precision"]
    if "kv_cache_precision" in opts:
        props["KV_CACHE_PRECISION"] = opts["kv_cache_precision"]
    if "num_streams" in opts:
        props["NUM_STREAMS"] = str(opts["num_streams"])
    if dev != "NPU" and ("max_prompt_len" in opts or "min_response_len" in opts):
        raise UserError("max_prompt_len/min_response_len apply to NPU only; drop them for " + dev)
    return props


@job
def compile_ir(source: Artifact, device: str, opts: Mapping[str, Any], output: Path,
               ctx: Context) -> Artifact:
    """Handler of ``compile openvino``; ``opts`` are parsed by the core
    (:data:`edgesmith_openvino.options.COMPILE_OPTIONS`)."""
    xml = stack.ir_file(source)
    core = stack.core()
    dev = check_device(core, device)
    props = properties(opts, dev)
    model = stack.read_model(xml)  # a corrupt IR fails here, before any work
    del model
    src_dir = Path(source.path)
    ctx.progress("copying the IR", None, None)
    out_xml = output / "openvino_model.xml"
    shutil.copy2(xml, out_xml)
    shutil.copy2(xml.with_suffix(".bin"), out_xml.with_suffix(".bin"))
    stack.copy_side_files(src_dir, output)
    llm = stack.is_llm(output)
    info: dict[str, Any] = {"device": dev.lower(), "properties": props}
    if dev == "NPU" and llm:
        info.update(_npu_llm(output, opts, props, ctx))
    else:
        info.update(_blob(core, out_xml, output, dev, props, ctx))
        if llm and opts.get("genai_cache", dev != "CPU"):
            info.update(_genai_cache(output, dev, props, ctx))
    info["openvino"] = stack.ov().get_version()
    (output / COMPILED_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return Artifact(path=output, format="openvino", entry="openvino_model.xml",
                    details={k: v for k, v in info.items() if k != "openvino"})


def _timed(fn: Any, repeat: int = 2) -> tuple[Any, float]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def _blob(core: Any, xml: Path, output: Path, dev: str, props: dict[str, Any],
          ctx: Context) -> dict[str, Any]:
    ctx.progress(f"compiling for {dev}", None, None)
    try:
        compiled, compile_s = _timed(lambda: core.compile_model(str(xml), dev, props))
    except Exception as exc:
        raise BackendError(f"OpenVINO could not compile for {dev}: {stack.first_line(exc)}") from exc
    ctx.progress("exporting the compiled blob", None, None)
    blob = output / BLOB
    blob.write_bytes(compiled.export_model().getvalue())
    del compiled

    def load_blob() -> Any:
        with open(blob, "rb") as f:
            return core.import_model(f.read(), dev, props)

    ctx.progress("timing a load from the blob", None, None)
    _, import_s = _timed(load_blob)
    return {"blob": BLOB, "blob_bytes": blob.stat().st_size,
            "compile_from_ir_s": round(compile_s, 4), "load_from_blob_s": round(import_s, 4),
            "load_speedup": round(compile_s / import_s, 2) if import_s else None}


def _genai_cache(output: Path, dev: str, props: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Build openvino-genai's pipeline once with a cache dir inside the output, so
    later loads of this folder read compiled blobs instead of compiling."""
    stack.quiet()
    import openvino_genai

    ctx.progress("filling openvino-genai's model cache", None, None)
    cache = output / GENAI_CACHE
    cache.mkdir()
    try:
        t0 = time.perf_counter()
        pipe = openvino_genai.LLMPipeline(str(output), dev, CACHE_DIR=str(cache), **props)
        cold = time.perf_counter() - t0
        del pipe
        t0 = time.perf_counter()
        pipe = openvino_genai.LLMPipeline(str(output), dev, CACHE_DIR=str(cache), **props)
        warm = time.perf_counter() - t0
        del pipe
    except Exception as exc:
        raise BackendError(f"openvino-genai could not compile the LLM for {dev}: {stack.first_line(exc)}") from exc
    return {"genai_cache": GENAI_CACHE, "genai_load_cold_s": round(cold, 4),
            "genai_load_cached_s": round(warm, 4)}


def _npu_llm(output: Path, opts: Mapping[str, Any], props: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """NPU runs LLMs with static shapes; openvino-genai compiles and exports that blob."""
    stack.quiet()
    import openvino_genai

    npu = {"MAX_PROMPT_LEN": opts.get("max_prompt_len", NPU_MAX_PROMPT_LEN),
           "MIN_RESPONSE_LEN": opts.get("min_response_len", NPU_MIN_RESPONSE_LEN)}
    props.update(npu)
    ctx.progress("compiling the LLM for NPU (static shapes)", None, None)
    try:
        openvino_genai.LLMPipeline(str(output), "NPU", EXPORT_BLOB=True,
                                   BLOB_PATH=str(output / BLOB), **props)
    except Exception as exc:
        raise BackendError(f"openvino-genai could not compile for NPU: {stack.first_line(exc)}") from exc
    return {"npu_blob": BLOB, "blob_bytes": (output / BLOB).stat().st_size}
