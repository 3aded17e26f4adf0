"""Quantizing and compiling a language-model pipeline (:mod:`edgesmith_qnn.llm`) for the HTP.

Both graphs are quantized with the single-graph QDQ path
(:func:`edgesmith_qnn.quantize.qdq_graph`); their calibration feeds are what
the host loop gives them when the float graphs read local text on the CPU, so
the cache, mask and angle inputs carry real ranges. Compiling writes one
EPContext model and QNN context binary per graph.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.calibration import text_lines
from edgesmith.errors import UserError
from edgesmith.types import Artifact, Context, QuantSpec

from . import ep, graph, llm
from .llm_export import TEXT_FILES
from .quantize import qdq_graph, scheme_facts
from .schemes import plan

#: Calibration text when ``--calibration`` gives none (in the edgesmith package).
DEFAULT_TEXT = "data/tiny_corpus.txt"
#: Calibration feeds per graph when ``-O samples`` does not say.
DEFAULT_SAMPLES = {"prefill": 16, "decode": 48}


def _copy_pipeline_files(src: Path, output: Path) -> None:
    for name in (*TEXT_FILES, llm.ROPE_FILE):
        if (src / name).is_file():
            shutil.copy2(src / name, output / name)


def calibration_feeds(directory: Path, spec: llm.Spec, text: Path | None, cap: int | None,
                      threads: int | None) -> tuple[dict[str, list[dict[str, np.ndarray]]], dict[str, Any]]:
    """Feeds of each graph recorded while the float graphs read ``text`` (default: a
    short text edgesmith ships): prefill over whole chunks, then decode steps on the text's
    next tokens, a fresh cache for each passage of ``context`` tokens."""
    from tokenizers import Tokenizer

    if text is None:
        from importlib import resources

        # Not the text `eval` scores (alice_in_wonderland.txt): calibrating on it would flatter the figures.
        lines = [resources.files("edgesmith").joinpath(DEFAULT_TEXT).read_text(encoding="utf-8")]
        name = DEFAULT_TEXT + " (shipped with edgesmith)"
    else:
        if not Path(text).is_file():
            raise UserError(f"calibration {text} is not a text file; a language model calibrates on text")
        lines, name = text_lines(Path(text)), str(text)
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    ids = [i for line in lines for i in tok.encode(line).ids]
    want = {g: cap or DEFAULT_SAMPLES[g.split(".")[0]] for g in spec.keys()}
    rec: dict[str, list[dict[str, np.ndarray]]] = {g: [] for g in spec.keys()}
    cpu = llm.cpu_runs(directory, spec, threads)

    def recording(g: str) -> llm.Run:
        def run(feed: dict[str, np.ndarray]) -> Any:
            if len(rec[g]) < want[g]:
                rec[g].append({k: v.copy() for k, v in feed.items()})
            return cpu[g](feed)
        return run

    pipe = llm.Pipeline(spec, llm.read_rope(directory), {g: recording(g) for g in spec.keys()})
    # Half of each passage is prefilled, the rest decoded: both steps see caches
    # from nearly empty to nearly full.
    prefill_len = max(spec.chunk, (spec.context // 2) // spec.chunk * spec.chunk)
    decode = spec.keys("decode")[0]
    start = 0
    while start + spec.context <= len(ids) and any(len(rec[g]) < want[g] for g in spec.keys()):
        passage = ids[start:start + spec.context]
        pipe.reset()
        pipe.extend(passage[:prefill_len])
        for t in passage[prefill_len:]:
            if len(rec[decode]) >= want[decode]:
                break
            pipe.step("decode", [t])
        start += spec.context
    if not all(rec.values()):
        raise UserError(f"the calibration text ({name}) has fewer than {spec.context} tokens; give a "
                        f"longer --calibration text")
    return rec, {"kind": "text", "source": name, "samples": {g: len(v) for g, v in rec.items()}}


def quantize(source: Artifact, spec_q: QuantSpec, opts: Mapping[str, Any], output: Path,
             ctx: Context) -> Artifact:
    """Handler of ``quantize qnn (llm)``: both graphs of a float pipeline to QDQ."""
    directory = Path(source.directory)
    spec = llm.read_spec(directory)
    if spec.stage != "float":
        raise UserError(f"{directory} is already {spec.stage}; quantize the float pipeline "
                        f"(edgesmith convert MODEL --to qnn)")
    p = plan(spec_q, opts.get("calibrate_method"))
    ctx.progress("calibrating: running the float graphs over the text", None, None)
    feeds, calib = calibration_feeds(directory, spec, spec_q.calibration and Path(spec_q.calibration),
                                     opts.get("samples"), ctx.threads)
    rewrites, placement = {}, {}
    for name in spec.keys():
        ctx.progress(f"quantizing the {name} graph", None, None)
        model = graph.load(directory / spec.graphs[name])
        rewrites[name] = qdq_graph(model, feeds[name], p, opts, output / spec.graphs[name], ctx)
        del model
        if opts["placement"]:
            ctx.progress(f"checking placement of the {name} graph on the HTP", None, None)
            placement[name] = ep.placement(output / spec.graphs[name], opts)
    _copy_pipeline_files(directory, output)
    details = {**scheme_facts(p, opts), "calibration": calib, "graph_rewrites": rewrites,
               "context": spec.context, "chunk": spec.chunk}
    if placement:
        details["placement"] = placement
    spec.evolve(stage="qdq", details={**spec.details, "quantize": details}).write(output)
    return Artifact(path=output, format="qnn", entry=spec.graphs[spec.keys("decode")[-1]], details=details)


def _quantized_spec(directory: Path) -> llm.Spec:
    """The spec of a QDQ pipeline, the only stage that compiles."""
    spec = llm.read_spec(directory)
    if spec.stage != "qdq":
        raise UserError(f"{directory} is a {spec.stage} pipeline; compile the quantized one "
                        f"(edgesmith quantize PIPELINE --scheme a16w8 first)")
    return spec


def compile_pipeline(source: Artifact, opts: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """``compile qnn`` of a QDQ pipeline: an EPContext model and context binary per graph."""
    import onnxruntime_qnn

    directory = Path(source.directory)
    spec = _quantized_spec(directory)
    graphs, facts = {}, {}
    for name in spec.keys():
        src = directory / spec.graphs[name]
        dest = output / f"{name}_ctx.onnx"
        ctx.progress(f"writing the QNN context binary of the {name} graph", None, None)
        prep_s = ep.generate_context(src, dest, opts, cpu_fallback=opts["cpu_fallback"], embed=opts["embed"])
        source_nodes = len(graph.load(src, weights=False).graph.node)
        facts[name] = {"prepare_s": round(prep_s, 3),
                       "placement": ep.placement_of_context(graph.load(dest, weights=False), source_nodes)}
        graphs[name] = dest.name
    _copy_pipeline_files(directory, output)
    details = {"device": "npu", "qnn_backend": "htp",
               "qnn_sdk_version": getattr(onnxruntime_qnn.build_and_package_info, "qnn_version", None),
               "context_embedded": opts["embed"], "graphs": facts,
               "context_binaries": sorted(p.name for p in output.glob("*.bin"))}
    spec.evolve(stage="context", graphs=graphs, details={**spec.details, "compile": details}).write(output)
    return Artifact(path=output, format="qnn", entry=graphs[spec.keys("decode")[-1]], details=details)


def compile_pipeline_on_hub(source: Artifact, opts: Mapping[str, Any], output: Path, ctx: Context,
                            **hub_kw: Any) -> Artifact:
    """``compile qnn -O hub_device=NAME`` of a QDQ pipeline: one AI Hub compile job per
    graph (the single-graph job of :func:`edgesmith_qnn.hub.compile_on_hub`), each
    graph's target model in its own folder."""
    from .hub import compile_on_hub

    directory = Path(source.directory)
    spec = _quantized_spec(directory)
    graphs, jobs = {}, {}
    for name in spec.keys():
        sub = output / name
        sub.mkdir()
        ctx.progress(f"the {name} graph on Qualcomm AI Hub", None, None)
        art = compile_on_hub(Artifact(directory, "qnn", spec.graphs[name]), opts, sub,
                             ctx, **hub_kw)
        graphs[name] = f"{name}/{art.entry}"
        jobs[name] = {k: art.details[k] for k in ("hub", "context_binaries", "hub_profile") if k in art.details}
    _copy_pipeline_files(directory, output)
    details = {"device": "npu", "compiled_by": "qualcomm-ai-hub", "graphs": jobs}
    if all((j.get("hub_profile") or {}).get("inference_ms") for j in jobs.values()):
        details["hub_speed"] = _device_speed(spec, {g: j["hub_profile"] for g, j in jobs.items()})
        ctx.progress(f"on {details['hub_speed']['device']}: decode {details['hub_speed']['decode_tps']:.1f} tok/s, "
                     f"prefill {details['hub_speed']['prefill_tps']:.1f} tok/s (AI Hub profile jobs)", None, None)
    spec.evolve(stage="context", graphs=graphs, details={**spec.details, "compile": details}).write(output)
    return Artifact(path=output, format="qnn", entry=graphs[spec.keys("decode")[-1]], details=details)


def _device_speed(spec: llm.Spec, profiles: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Token rates on the device from the graphs' profiled inference times (a split
    step's parts added up): one decode run makes a token, one prefill run takes a chunk.
    The host loop's own time is not in them (the cache copy between runs), so a real
    run is somewhat slower."""
    ms = {step: sum(float(profiles[k]["inference_ms"]) for k in spec.keys(step)) for step in ("prefill", "decode")}
    return {"device": next(iter(profiles.values()))["device"], "decode_ms": ms["decode"],
            "prefill_ms": ms["prefill"], "decode_tps": 1000.0 / ms["decode"],
            "prefill_tps": 1000.0 * spec.chunk / ms["prefill"],
            "peak_memory_mb": max((p.get("peak_memory_mb") or 0.0) for p in profiles.values()) or None}
