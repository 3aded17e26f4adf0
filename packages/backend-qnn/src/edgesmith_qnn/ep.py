"""Sessions on the QNN execution provider (HTP backend) and where nodes land.

onnxruntime-qnn 2.x is a plugin EP: its library is registered once per
process with ``register_execution_provider_library`` and then selected per
session with ``add_provider_for_devices``. On x86-64 Linux the HTP backend is
Qualcomm's simulator, so everything here runs for real, only slowly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import BackendError, UserError
from edgesmith.scratch import scratch_dir

EP_NAME = "QNNExecutionProvider"
_FALLBACK_MSG = "fallback to CPU EP has been explicitly disabled"


def ort() -> Any:
    """onnxruntime with the QNN plugin registered (once per process)."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    if hasattr(onnxruntime, "disable_telemetry_events"):
        onnxruntime.disable_telemetry_events()
    if not any(d.ep_name == EP_NAME for d in onnxruntime.get_ep_devices()):
        try:
            import onnxruntime_qnn
        except ImportError:
            raise UserError("onnxruntime-qnn is not installed; pip install edgesmith-qnn") from None
        try:
            onnxruntime.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
        except Exception as exc:
            raise BackendError(f"cannot load the QNN execution provider ({_first_line(exc)})") from None
    return onnxruntime


def qnn_devices(rt: Any) -> list[Any]:
    devs = [d for d in rt.get_ep_devices() if d.ep_name == EP_NAME]
    if not devs:
        raise BackendError("the QNN execution provider registered but offers no device")
    return devs


def provider_options(opts: Mapping[str, Any]) -> dict[str, str]:
    """QNN EP options for the HTP backend from the parsed target options."""
    from .options import TARGET

    po = {
        "backend_type": "htp",
        # Let the HTP graph own the quantize/dequantize at its inputs and
        # outputs; otherwise they are left to the CPU EP (and count as fallback).
        "offload_graph_io_quantization": "0",
    }
    for spec in TARGET:
        if opts.get(spec.name) is not None:
            po[spec.name] = str(opts[spec.name])
    return po


def session(path: Path, opts: Mapping[str, Any], *, cpu_fallback: bool,
            config: Mapping[str, str] | None = None, threads: int | None = None) -> Any:
    """An InferenceSession for ``path`` on the QNN EP (HTP)."""
    rt = ort()
    so = rt.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if not cpu_fallback:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, v)
    so.add_provider_for_devices(qnn_devices(rt), provider_options(opts))
    try:
        # enable_fallback=0: otherwise the Python wrapper silently retries a
        # failed QNN session on the CPU EP alone.
        return rt.InferenceSession(str(path), sess_options=so, enable_fallback=0)
    except Exception as exc:
        msg = _first_line(exc)
        if _FALLBACK_MSG in str(exc):
            raise UserError(_fallback_error(path, opts)) from None
        if "soc_model" in msg or "htp_arch" in msg:
            raise UserError(f"the QNN EP rejected the target settings ({msg}); check soc_model/htp_arch") from None
        raise BackendError(f"the QNN EP could not load {path.name}: {msg}") from None


def timed_session(path: Path, opts: Mapping[str, Any], **kw: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    s = session(path, opts, **kw)
    return s, time.perf_counter() - t0


def generate_context(src: Path, dest: Path, opts: Mapping[str, Any], *, cpu_fallback: bool,
                     embed: bool = False) -> float:
    """Write an EPContext model at ``dest`` (+ ``<stem>_qnn.bin`` unless embedded).

    Returns the seconds the session (graph preparation for the HTP) took.
    """
    config = {
        "ep.context_enable": "1",
        "ep.context_file_path": str(dest),
        "ep.context_embed_mode": "1" if embed else "0",
    }
    t0 = time.perf_counter()
    sess = session(src, opts, cpu_fallback=cpu_fallback, config=config)
    seconds = time.perf_counter() - t0
    del sess
    if not dest.exists():
        raise BackendError(f"the QNN EP did not write an EPContext model for {src.name}")
    return seconds


def placement_of_context(ctx_model: Any, source_nodes: int) -> dict[str, Any]:
    """Where nodes run, read from an EPContext model: EPContext nodes are QNN
    partitions; every other node is left for the CPU EP."""
    ep_nodes = [n for n in ctx_model.graph.node if n.op_type == "EPContext"]
    cpu = [n for n in ctx_model.graph.node if n.op_type != "EPContext"]
    return {
        "qnn_partitions": len(ep_nodes),
        "source_nodes": source_nodes,
        "qnn_nodes": max(source_nodes - len(cpu), 0) if ep_nodes else 0,
        "cpu_nodes": len(cpu),
        "cpu_ops": dict(Counter(n.op_type for n in cpu).most_common()),
        "cpu_node_names": [n.name or n.op_type for n in cpu[:20]],
        "all_on_qnn": bool(ep_nodes) and not cpu,
    }


def placement(path: Path, opts: Mapping[str, Any]) -> dict[str, Any]:
    """Placement report for ``path``: compile it with CPU fallback allowed into a
    scratch directory and see which nodes stayed outside the QNN partitions."""
    from . import graph

    source_nodes = len(graph.load(path, weights=False).graph.node)
    with scratch_dir("qnn") as tmp:
        dest = Path(tmp) / "ctx.onnx"
        generate_context(path, dest, opts, cpu_fallback=True)
        return placement_of_context(graph.load(dest, weights=False), source_nodes)


def require_float_target(path: Path, model: Any, opts: Mapping[str, Any]) -> None:
    """Float graphs run in fp16 on the HTP, which the QNN EP only sets up for a
    named SoC; without one the simulator fails to finalize the graph."""
    from . import graph

    if not opts.get("soc_model") and not graph.is_qdq(model) and not graph.has_epcontext(model):
        raise UserError(f"{path.name} is a float graph, which the HTP runs in fp16 only for a named "
                        f"SoC; pass --option soc_model=N (e.g. 60) or quantize it first")


def _fallback_error(path: Path, opts: Mapping[str, Any]) -> str:
    try:
        rep = placement(path, opts)
        ops = ", ".join(f"{op} x{n}" for op, n in rep["cpu_ops"].items()) or "unknown ops"
        what = f"{rep['cpu_nodes']} node(s) cannot run on the QNN HTP backend ({ops})"
    except Exception:  # the report is a courtesy; the main error still stands
        what = "some nodes cannot run on the QNN HTP backend"
    return (f"{what} and CPU fallback is disabled; quantize the model to QDQ first or "
            f"replace those ops, or pass --option cpu_fallback=1 to run them on the CPU")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
