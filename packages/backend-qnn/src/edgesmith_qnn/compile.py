"""Ahead-of-time compile for the NPU: EPContext model + QNN context binary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError
from edgesmith.scratch import scratch_dir
from edgesmith.types import Artifact, Context

from . import ep, graph
from .options import HUB_COMPILE_OPTIONS, TARGET


def compile_npu(source: Artifact, device: str, opts: Mapping[str, Any], output: Path,
                ctx: Context) -> Artifact:
    """Handler of ``compile qnn`` and ``compile onnx->qnn`` (``device`` is npu);
    ``opts`` are parsed by the core (:data:`edgesmith_qnn.options.COMPILE_OPTIONS`)."""
    from . import llm

    if "hub_device" in opts:
        if llm.is_pipeline(source.directory):
            from .llm_build import compile_pipeline_on_hub

            return compile_pipeline_on_hub(source, opts, output, ctx)
        from .hub import compile_on_hub

        return compile_on_hub(source, opts, output, ctx)
    stray = [o.name for o in HUB_COMPILE_OPTIONS if opts.get(o.name)]
    if stray:
        raise UserError(f"option(s) {', '.join(stray)} apply to Qualcomm AI Hub jobs only; "
                        f"add --option hub_device=NAME or drop them")
    if llm.is_pipeline(source.directory):
        from .llm_build import compile_pipeline

        return compile_pipeline(source, opts, output, ctx)
    cpu_fallback, embed = opts["cpu_fallback"], opts["embed"]
    ctx.progress("reading model", None, None)
    path, model, facts = graph.prepare(source, opts)
    quantized = graph.is_qdq(model)
    ep.require_float_target(path, model, opts)
    source_nodes = len(model.graph.node)
    dest = output / graph.MODEL_NAME
    limit = abs(opts["mask_value"])
    rewrites: dict[str, int] = {}
    with scratch_dir("qnn") as tmp:
        if quantized:
            fixed = Path(tmp) / "fixed.onnx"
            graph.save(model, fixed)
        else:
            # A float graph goes to the HTP as is (fp16): give it the same
            # clean-up the quantizer's input gets.
            fixed, rewrites = graph.simplify_for_htp(model, Path(tmp), limit)
        del model
        ctx.progress("preparing the graph for the HTP (QDQ session)", None, None)
        sess, qdq_s = ep.timed_session(fixed, opts, cpu_fallback=cpu_fallback)
        del sess
        ctx.progress("writing the QNN context binary", None, None)
        ep.generate_context(fixed, dest, opts, cpu_fallback=cpu_fallback, embed=embed)
    ctx.progress("loading the EPContext model", None, None)
    sess, ctx_s = ep.timed_session(dest, opts, cpu_fallback=cpu_fallback)
    del sess
    ctx_model = graph.load(dest, weights=False)
    binaries = sorted(p.name for p in output.glob("*.bin"))
    side = graph.copy_side_files(path.parent, output)
    import onnxruntime_qnn

    details: dict[str, Any] = {
        "device": "npu",
        "qnn_backend": "htp",
        "qnn_sdk_version": getattr(onnxruntime_qnn.build_and_package_info, "qnn_version", None),
        **{o.name: str(opts.get(o.name, "default")) for o in TARGET},
        "precision": "qdq" if quantized else "fp16 (float graph run in fp16 on the HTP)",
        "cpu_fallback": cpu_fallback,
        "context_embedded": embed,
        "context_binaries": binaries,
        "session_create_s": {
            "source": round(qdq_s, 4),
            "epcontext": round(ctx_s, 4),
            "speedup": round(qdq_s / ctx_s, 2) if ctx_s > 0 else None,
        },
        "placement": ep.placement_of_context(ctx_model, source_nodes),
        "graph_rewrites": rewrites,
        **facts,
        "side_files": side,
    }
    return Artifact(path=output, format="qnn", entry=graph.MODEL_NAME, details=details)

