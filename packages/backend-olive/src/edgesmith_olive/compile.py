"""Ahead-of-time ONNX Runtime graph optimization of a GenAI bundle for a provider.

ONNX Runtime applies its graph optimizations (constant folding, fusions,
layout changes) on every load. Here they run once and the optimized graph is
saved as the bundle's model, and genai_config.json tells onnxruntime-genai to
skip them at load time (``graph_optimization_level: ORT_DISABLE_ALL``): the
saved session options are what makes the compiled bundle load faster.

``level=all`` adds CPU-specific layout transforms (NCHWc): the result is tied
to the instruction set of the machine that compiled it, so ``extended`` is the
default.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError
from edgesmith.types import Artifact, Context

from . import bundle
from .options import LEVELS


def compile_bundle(source: Artifact, device: str, options: Mapping[str, Any], output: Path,
                   ctx: Context) -> Artifact:
    """Handler of ``compile onnx``; ``options`` are parsed by the core
    (:data:`edgesmith_olive.options.COMPILE`)."""
    level, provider, measure = options["level"], options["provider"], options["measure"]
    src_dir = bundle.genai_dir(Path(source.directory))
    cfg = bundle.read_json(src_dir / bundle.GENAI_CONFIG)
    session_options = cfg["model"]["decoder"].get("session_options") or {}
    if session_options.get("graph_optimization_level") == "ORT_DISABLE_ALL":
        raise UserError(f"{src_dir} is already compiled (its session skips graph optimization); compile the uncompiled bundle")
    name = bundle.decoder_file(src_dir)
    ctx.progress(f"onnxruntime: optimizing graph ({level}) for {provider}", None, None)

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    so.optimized_model_filepath = str(output / name)
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{name}.data")
    so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    so.log_severity_level = 3  # the NCHWc warning for level=all is documented above
    if ctx.threads:
        so.intra_op_num_threads = int(ctx.threads)
    t0 = time.perf_counter()
    try:
        session = ort.InferenceSession(str(src_dir / name), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types
        raise UserError(f"ONNX Runtime cannot load {src_dir / name}: {str(exc).splitlines()[0]}; rebuild the bundle") from None
    del session
    optimize_s = time.perf_counter() - t0
    bundle.copy_support_files(src_dir, output)
    bundle.repair(output, src_dir)
    # Saved session options: the graph is already optimized, so skip that work on load.
    bundle.set_session_options(output, {"graph_optimization_level": "ORT_DISABLE_ALL"})
    ctx.progress(f"onnxruntime: optimizing graph ({level}) for {provider}", 1, 1)
    details = {
        "bundle": "onnxruntime-genai",
        "provider": provider,
        "execution_provider": "CPUExecutionProvider",
        "optimization_level": LEVELS[level],
        "hardware_specific": level == "all",
        "session_options": {"graph_optimization_level": "ORT_DISABLE_ALL"},
        "optimize_s": round(optimize_s, 3),
    }
    if measure:
        source_ms, compiled_ms = load_ms(src_dir, output)
        details["load_ms"] = {"source": source_ms, "compiled": compiled_ms}
    return Artifact(path=output, format="onnx", entry=name, details=details)


def load_ms(*directories: Path, repeat: int = 5) -> list[float]:
    """Median wall time of ``og.Model(directory)`` in ms for each directory.

    Loads alternate between the directories (after one warm-up load each) so
    that drift in machine load affects them alike.
    """
    import onnxruntime_genai as og

    times: list[list[float]] = [[] for _ in directories]
    for i in range(repeat + 1):
        for k, directory in enumerate(directories):
            t0 = time.perf_counter()
            model = og.Model(str(directory))
            dt = time.perf_counter() - t0
            del model
            if i:
                times[k].append(dt * 1000)
    return [round(statistics.median(t), 2) for t in times]
