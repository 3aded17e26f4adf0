"""What QNN contributes beyond its operations: the snapdragon-npu target,
doctor's rule and the deploy README's commands. Cheap to import."""

from __future__ import annotations

from typing import Any

from edgesmith.hookspecs import hookimpl


def _snapdragon_npu(m: Any) -> bool:
    return bool(m.snapdragon and m.npus)


#: Above this many weights, NPU candidates are not planned where the HTP is the simulator
#: onnxruntime-qnn ships (x86-64): it decodes about 20 million weight-tokens a second here
#: (the test kit's 0.44M-parameter Llama at ~45 tok/s), so a 5M-parameter model already
#: takes minutes per candidate to bench and eval, and SmolLM2-135M would take hours.
SIMULATOR_MAX_PARAMS = 5_000_000


def _declines(m: Any, model: Any) -> str | None:
    if _snapdragon_npu(m):
        return None
    from edgesmith.doctor import model_facts
    from edgesmith.errors import EdgesmithError

    try:
        n = model_facts(model)[0]  # from the weights' headers: nothing is loaded
    except EdgesmithError:
        n = None
    if n is not None and n <= SIMULATOR_MAX_PARAMS:
        return None
    size = f"{n / 1e6:.0f}M weights" if n else "weights of unknown count"
    return (f"this machine has no Hexagon NPU, and on its HTP simulator the model's {size} would take hours "
            f"to measure (NPU candidates are planned here up to {SIMULATOR_MAX_PARAMS // 1_000_000}M; on a "
            f"Snapdragon with its NPU always)")


@hookimpl
def edgesmith_optimize_targets() -> list[Any]:
    from edgesmith.optimize.targets import Candidate, Target

    # A language model goes to static prefill/decode graphs (hf -> qnn), then to QDQ
    # w8a16 / w4a16 and context binaries; llama.cpp on the Snapdragon CPU (its
    # snapdragon-cpu target) is measured beside them, as on real devices the CPU
    # sometimes decodes faster than the NPU.
    return [Target("snapdragon-npu", "Snapdragon Hexagon NPU (QNN context binaries)", "npu", ("qnn",), "qnn", {},
                   (Candidate("a16w8", scheme="a16w8"), Candidate("a16w4", scheme="a16w4")), compile="npu",
                   present=_snapdragon_npu, competitors=("snapdragon-cpu",), declines=_declines, rank=50)]


def _applies(m: Any) -> str | None:
    if not _snapdragon_npu(m):
        return None
    return f"{m.snapdragon} with a Hexagon NPU: QNN context binaries run on the NPU"


@hookimpl
def edgesmith_doctor_rules() -> list[Any]:
    from edgesmith.doctor import DoctorRule

    return [DoctorRule("qnn", _applies, priority=40, quantizations={8: "a16w8", 4: "a16w4"})]


@hookimpl
def edgesmith_deploy_commands(format: str, path: str, entry: str) -> list[str] | None:  # noqa: A002
    if format != "qnn":
        return None
    from pathlib import Path

    from .options import GRAPHS

    # A compiled language-model pipeline's entry is one of its graphs (of a step split by
    # layers, ``decode.N``): they all load on the HTP like this, and the host's token loop
    # over them is the README's "A language model on a Snapdragon NPU". Only names are
    # known here (the paths are the README's), so the command finds the graphs itself.
    stem = Path(entry).stem
    suffix = "_ctx" if stem.endswith("_ctx") else ""
    if stem.removesuffix(suffix).split(".")[0] not in GRAPHS:
        return [f"python -c \"import onnxruntime as ort; "
                f"ort.InferenceSession('{entry}', providers=['QNNExecutionProvider'])\""]
    return [f"python -c \"import glob, onnxruntime as ort, onnxruntime_qnn as q; "
            f"ort.register_execution_provider_library('QNNExecutionProvider', q.get_library_path()); "
            f"so = ort.SessionOptions(); so.add_provider_for_devices([e for e in ort.get_ep_devices() "
            f"if e.ep_name == 'QNNExecutionProvider'], {{'backend_type': 'htp'}}); "
            f"print([ort.InferenceSession(g, sess_options=so) and g for g in "
            f"sorted(glob.glob('{path}/*{suffix}.onnx'))])\"",
            "# the token loop over these graphs (the KV cache is the host's): edgesmith's README, "
            "\"A language model on a Snapdragon NPU\""]
