"""Static QDQ quantization of ONNX models that are not LLMs (encoders, vision).

Olive's ``OnnxStaticQuantization`` pass (ONNX Runtime's static quantizer)
inserts QuantizeLinear/DequantizeLinear pairs around weights and
activations; the activation ranges come from running the float model on
calibration inputs. Those inputs are a directory with one ``NAME.npy`` per
graph input: either one sample of the input's shape, or N samples stacked on
a new leading axis. The directory is checked against the graph before Olive
starts, and read during the job by a small loader script written into the
output (``olive_calibration.py``) so ``olive run --config`` repeats it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.calibration import array_stacks
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.graphinputs import InputSpec
from edgesmith.onnxtypes import graph_input_specs
from edgesmith.types import Artifact, Context, QuantSpec

from . import bundle, workflow
from .convert import external_data
from .options import CALIBRATE_METHODS
from .quantize import NOT_A_BUNDLE, STATIC_IS_NOT_FOR_BUNDLES, _already_quantized

SCRIPT_NAME = "olive_calibration.py"
LOADER = "edgesmith_npy_calibration"
#: Models bigger than this keep their weights in model.onnx.data.
EXTERNAL_ABOVE = 1_500_000_000

_SCRIPT = '''"""Calibration inputs for Olive's OnnxStaticQuantization, written by edgesmith-olive.

One NAME.npy per graph input in ``data_dir``: a single sample of the input's
shape, or N samples stacked on a new leading axis (``ranks`` tells which).
"""

from olive.data.registry import Registry


@Registry.register_dataset()
def {loader}(data_dir, ranks, max_samples=None, **kwargs):
    import os

    import numpy as np

    stacks = {{}}
    for name, rank in ranks.items():
        arr = np.load(os.path.join(data_dir, name + ".npy"), allow_pickle=False)
        stacks[name] = arr[None] if arr.ndim == rank else arr
    count = min(len(a) for a in stacks.values())
    if max_samples:
        count = min(count, int(max_samples))
    return [({{k: np.ascontiguousarray(v[i]) for k, v in stacks.items()}}, 0) for i in range(count)]
'''

def unique_loader(base: str) -> str:
    """A loader name of its own per job.

    Olive's data registry lives for the process and, when a name is
    registered again, reads the source of the earlier function, whose script
    was in a previous job's (since renamed) output; a fresh name avoids that.
    """
    import uuid

    return f"{base}_{uuid.uuid4().hex[:8]}"


def _weight_bytes(model: Path) -> int:
    """Size of the graph file plus its external data files."""
    total = model.stat().st_size
    for name in bundle.external_data_files(model):
        f = model.parent / name
        total += f.stat().st_size if f.is_file() else 0
    return total


is_genai = bundle.is_genai


def graph_inputs(model: Path) -> dict[str, InputSpec]:
    """{name: (dims with None for symbolic ones, numpy dtype)} of the real graph inputs."""
    import onnx

    return graph_input_specs(onnx.load(str(model), load_external_data=False))


def check_calibration(directory: Path, specs: Mapping[str, InputSpec]) -> int:
    """Check the directory against the graph inputs (without reading the arrays);
    return the number of samples."""
    return array_stacks(directory, specs, mmap=True)[1]


def plan(spec: QuantSpec, opts: Mapping[str, Any]) -> tuple[dict, dict]:
    """The OnnxStaticQuantization settings (without data config) and the manifest facts,
    from ``spec`` and the parsed options (:data:`edgesmith_olive.options.STATIC`)."""
    act = spec.activation_bits
    if act is None:
        raise UserError(NOT_A_BUNDLE)
    if act not in (8, 16):
        raise UnsupportedError(f"static QDQ activations are 8 or 16 bits, not {act}; use --activation-bits 8")
    bits = spec.bits if spec.bits is not None else 8
    if bits not in (8, 16):
        raise UnsupportedError(f"static QDQ weights are 8 or 16 bits, not {bits}; use --bits 8")
    if spec.method and spec.method.lower() not in ("static", "minmax", "qdq"):
        raise UnsupportedError(f"static QDQ calibrates with min/max ranges, not {spec.method}; drop --method")
    if spec.scheme:
        raise UnsupportedError("static QDQ has no native scheme names; use --bits/--activation-bits")
    if spec.group_size is not None:
        raise UnsupportedError("static QDQ is per tensor or per channel, not per group; drop --group-size "
                               "(per channel: --option per_channel=true)")
    if spec.ratio is not None and spec.ratio != 1:
        raise UnsupportedError("static QDQ quantizes every supported op; mixed --ratio is not supported")
    if spec.calibration is None:
        raise UserError("static quantization needs --calibration DIR: one NAME.npy per graph input")
    per_channel, act_kind = opts["per_channel"], opts["activation_type"]
    method = CALIBRATE_METHODS[opts["calibrate_method"]]
    weight_symmetric = True if spec.symmetric is None else spec.symmetric
    conf = {
        "type": "OnnxStaticQuantization",
        "quant_format": "QDQ",
        "precision": f"int{bits}",
        "activation_type": f"{act_kind}{act}",
        "per_channel": per_channel,
        "calibrate_method": method,
        "weight_symmetric": weight_symmetric,
    }
    details = {"bits": bits, "activation_bits": act, "method": "static_qdq", "per_channel": per_channel,
               "calibrate_method": method, "activation_type": f"{act_kind}{act}",
               "weight_type": f"int{bits}", "weight_symmetric": weight_symmetric}
    return conf, details


def quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, Any], output: Path,
             ctx: Context) -> Artifact:
    """Handler of the static (activation) ``quantize onnx``; ``options`` are
    parsed by the core (:data:`edgesmith_olive.options.STATIC`)."""
    if is_genai(Path(source.directory)):
        # The core sends --activation-bits here; an LLM bundle takes weight-only.
        raise UnsupportedError(STATIC_IS_NOT_FOR_BUNDLES)
    conf, details = plan(spec, options)
    samples, provider = options.get("samples"), options["provider"]
    model_file = Path(source.main_file)
    if model_file.is_dir() or model_file.suffix != ".onnx":
        raise UserError(f"{source.path} holds no .onnx model; give a .onnx file or its folder")
    specs = graph_inputs(model_file)
    calib = Path(spec.calibration).resolve()
    count = check_calibration(calib, specs)
    found = _already_quantized(model_file)
    if found and not ctx.allow_requantize:
        raise UserError(f"{model_file} is already quantized ({', '.join(sorted(found))}); "
                        "quantize the float model instead, or pass --allow-requantize")

    loader = unique_loader(LOADER)
    (output / SCRIPT_NAME).write_text(_SCRIPT.format(loader=loader))
    if _weight_bytes(model_file) > EXTERNAL_ABOVE:
        # Past protobuf's 2 GB limit the weights must go to a side file. (onnx checks
        # that file name against the working directory, so a model.onnx.data there
        # makes ONNX Runtime's quantizer refuse to save; small models stay inline.)
        conf.update(external_data())
    ranks = {name: len(dims) for name, (dims, _) in specs.items()}

    def passes_for(script: str) -> dict[str, dict]:
        params: dict = {"data_dir": str(calib), "ranks": ranks}
        if samples:
            params["max_samples"] = samples
        data_config = {"name": "edgesmith_calibration", "type": "DataContainer", "user_script": script,
                       "load_dataset_config": {"type": loader, "params": params},
                       "dataloader_config": {"type": "no_auto_batch_dataloader"}}
        return {"quantize": {**conf, "data_config": data_config}}

    passes = passes_for(str((output / SCRIPT_NAME).resolve()))
    input_model = {"type": "ONNXModel", "model_path": str(model_file.parent.resolve()),
                   "onnx_file_name": model_file.name}
    what = f"static QDQ a{details['activation_bits']}w{details['bits']}"
    olive_out = workflow.run_workflow(input_model, passes, provider, output, ctx, what=what,
                                      portable_passes=passes_for(SCRIPT_NAME))
    bundle.move_model(olive_out, output, "model.onnx")
    workflow.finish(output)
    details.update(
        calibration={"directory": str(calib), "samples": min(count, samples) if samples else count},
        provider=provider,
        olive_passes=[p["type"] for p in passes.values()],
        olive_config=workflow.CONFIG_NAME,
        log=workflow.LOG_NAME,
        reproduce=workflow.reproduce(SCRIPT_NAME),
    )
    return Artifact(path=output, format="onnx", entry="model.onnx", details=details)
