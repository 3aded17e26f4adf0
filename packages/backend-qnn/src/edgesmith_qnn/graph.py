"""Reading ONNX graphs, fixing dynamic dimensions, and copying side files."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError
from edgesmith.types import Artifact

#: Files that travel with a model so the runner and calibration can tokenize.
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.txt", "config.json")
MODEL_NAME = "model.onnx"


def model_file(source: Artifact) -> Path:
    """The .onnx file of ``source`` (a file, or a directory holding one)."""
    path = source.main_file
    if path.is_dir():
        onnxs = sorted(path.glob("*.onnx"))
        if not onnxs:
            raise UserError(f"{path} holds no .onnx file; give an ONNX model or its directory")
        path = path / MODEL_NAME if (path / MODEL_NAME).exists() else onnxs[0]
    if path.suffix.lower() != ".onnx" or not path.is_file():
        raise UserError(f"{path} is not an ONNX model file; give a .onnx file or its directory")
    return path


def load(path: Path, *, weights: bool = True) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # protobuf errors carry multi-line text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a readable ONNX model ({first}); re-export it") from None


def real_inputs(model: Any) -> list[Any]:
    """Graph inputs that are not initializers (old exporters list weights as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def dims(value_info: Any) -> list[int | str]:
    out: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return out


def input_shapes(model: Any) -> dict[str, list[int | str]]:
    return {i.name: dims(i) for i in real_inputs(model)}


def has_epcontext(model: Any) -> bool:
    return any(n.op_type == "EPContext" for n in model.graph.node)


def is_qdq(model: Any) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def fix_shapes(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Set graph input dimensions from ``shapes`` in place.

    A named dimension (``batch``, ``sequence``) fixed on one input is fixed
    everywhere it appears, so ``shape=input_ids:1x128`` also fixes an
    ``attention_mask`` declared with the same dimension names. Returns the
    dimension names it fixed.
    """
    inputs = {i.name: i for i in real_inputs(model)}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise UserError(f"shape given for {', '.join(unknown)}, which the model does not take "
                        f"as input; its inputs are {', '.join(inputs) or 'none'}")
    named: dict[str, int] = {}
    for name, shape in shapes.items():
        current = dims(inputs[name])
        if len(current) != len(shape):
            raise UserError(f"input {name!r} has {len(current)} dimensions {current} but the shape "
                            f"setting gives {len(shape)}; give one size per dimension")
        for have, want in zip(current, shape, strict=True):
            if isinstance(have, int) and have > 0 and have != want:
                raise UserError(f"input {name!r} has fixed shape {current}; the shape setting "
                                f"{'x'.join(map(str, shape))} does not match it")
            if isinstance(have, str) and have != "?":
                if named.get(have, want) != want:
                    raise UserError(f"dimension {have!r} is given as both {named[have]} and {want}; "
                                    f"use one size for it")
                named[have] = want
    for vi in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        tdims = vi.type.tensor_type.shape.dim
        explicit = shapes.get(vi.name)
        for k, d in enumerate(tdims):
            if explicit is not None and vi.name in inputs:
                d.dim_value = explicit[k]
            elif d.HasField("dim_param") and d.dim_param in named:
                d.dim_value = named[d.dim_param]
    return named


def require_static(model: Any) -> None:
    """One-line error naming the first input whose shape is still dynamic."""
    for vi in real_inputs(model):
        shape = dims(vi)
        if any(not isinstance(d, int) or d <= 0 for d in shape):
            example = "x".join(str(d) if isinstance(d, int) and d > 0 else
                               ("1" if k == 0 else "128") for k, d in enumerate(shape))
            raise UserError(
                f"input {vi.name!r} has dynamic dimensions {shape} and the NPU needs static shapes; "
                f"pass --option shape={vi.name}:{example} (sizes of your choice)")


def prepare(source: Artifact, options: Mapping[str, Any]) -> tuple[Path, Any, dict[str, Any]]:
    """Load ``source``, fix its shapes from the ``shape`` option and check they are static."""
    from .options import parse_shapes

    shapes = parse_shapes(options.get("shape"))
    path = model_file(source)
    model = load(path)
    if has_epcontext(model):
        raise UserError(f"{path} is already a compiled EPContext model; give the QDQ or float "
                        f"ONNX model it was compiled from")
    named = fix_shapes(model, shapes)
    require_static(model)
    facts = {"input_shapes": input_shapes(model)}
    if named:
        facts["fixed_dimensions"] = named
    return path, model, facts


def save(model: Any, path: Path) -> None:
    import onnx

    # Models over ~2 GB cannot be one protobuf; keep weights beside them then.
    large = model.ByteSize() > (1_800 << 20)
    onnx.save(model, str(path), save_as_external_data=large,
              location=path.name + ".data" if large else None)


def copy_side_files(src_dir: Path, output: Path) -> list[str]:
    from edgesmith.encoders import copy_encoder_files

    copied = []
    for name in SIDE_FILES:
        f = src_dir / name
        if f.is_file():
            shutil.copy2(f, output / name)
            copied.append(name)
    # an encoder's pooling (sentence-transformers' modules.json, 1_Pooling/) travels too
    return copied + copy_encoder_files(src_dir, output)


def clamp_huge_constants(model: Any, limit: float) -> int:
    """Replace float constants that are infinite or beyond ±1e9 by ±``limit``, in place.

    Exporters mask attention with -inf or float32's minimum (transformers 5's
    SDPA path writes ``Where(mask, 0, -inf)``). A quantizer cannot give such
    a tensor a finite scale, and QNN then fails to compose the graph; a mask
    value of -100 already zeroes the softmax weight. Returns how many tensors
    changed.
    """
    import numpy as np
    from onnx import numpy_helper

    def fix(tensor: Any) -> Any | None:
        if tensor.data_type not in (1, 10, 11):  # float, float16, double
            return None
        arr = numpy_helper.to_array(tensor)
        huge = ~np.isfinite(arr) | (np.abs(arr) >= 1e9)
        huge &= ~np.isnan(arr)
        if not huge.any():
            return None
        out = arr.copy()
        out[huge] = np.sign(arr[huge]) * limit
        return numpy_helper.from_array(out.astype(arr.dtype), tensor.name)

    changed = 0
    for i, init in enumerate(model.graph.initializer):
        new = fix(init)
        if new is not None:
            model.graph.initializer[i].CopyFrom(new)
            changed += 1
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for attr in node.attribute:
            if attr.name == "value" and attr.HasField("t"):
                new = fix(attr.t)
                if new is not None:
                    attr.t.CopyFrom(new)
                    changed += 1
    return changed


def fold(src: Path, dest: Path) -> None:
    """Constant-fold ``src`` (static shapes) with ONNX Runtime's basic optimizations.

    Exported graphs compute positions and masks from ``Shape`` chains; once
    the shapes are static those fold to constants, which the quantizer and
    the HTP would otherwise have to carry (an exported BERT drops from ~335
    to ~90 nodes).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def drop_nan_guards(model: Any) -> int:
    """Remove ``Where(IsNaN(x), c, x)`` guards, in place; returns how many.

    torch's SDPA export guards softmax rows that are fully masked with -inf;
    once masks are finite (see :func:`clamp_huge_constants`) softmax cannot
    give NaN, and the HTP has no IsNaN.
    """
    g = model.graph
    by_output = {o: n for n in g.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    graph_outputs = {o.name for o in g.output}
    rename: dict[str, str] = {}
    drop = []
    for n in g.node:
        if n.op_type != "Where" or len(n.input) != 3:
            continue
        isnan = by_output.get(n.input[0])
        if isnan is None or isnan.op_type != "IsNaN" or isnan.input[0] != n.input[2]:
            continue
        if n.output[0] in graph_outputs:
            continue
        rename[n.output[0]] = n.input[2]
        drop.append(n)
        if consumers.get(isnan.output[0], 0) == 1:
            drop.append(isnan)
    if not drop:
        return 0
    for n in drop:
        g.node.remove(n)
    for n in g.node:
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = rename[name]
    return len(rename)


def select_to_arithmetic(model: Any) -> int:
    """Rewrite ``Where(cond, a, b)`` with scalar constants ``a``/``b`` as
    ``Cast(cond) * (a - b) + b``, in place; returns how many.

    Exported attention masks are ``Where(mask, 0, -inf)``; the QNN HTP
    backend fails to finalize a Select whose two value inputs are static
    scalars (QNN_COMMON_ERROR_MEM_ALLOC on the simulator), while Mul/Add are
    ordinary HTP ops.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    rewritten = 0
    new_nodes = []
    for n in g.node:
        if n.op_type == "Where" and len(n.input) == 3 and n.input[1] in inits and n.input[2] in inits:
            a = numpy_helper.to_array(inits[n.input[1]])
            b = numpy_helper.to_array(inits[n.input[2]])
            if a.size == 1 and b.size == 1 and a.dtype.kind == "f" and b.dtype.kind == "f":
                stem = f"{n.name or n.output[0]}/select"
                diff = numpy_helper.from_array(np.array(float(a.ravel()[0] - b.ravel()[0]), a.dtype),
                                               f"{stem}/diff")
                base = numpy_helper.from_array(np.array(float(b.ravel()[0]), a.dtype), f"{stem}/base")
                g.initializer.extend([diff, base])
                to = TensorProto.FLOAT if a.dtype == np.float32 else helper.np_dtype_to_tensor_dtype(a.dtype)
                new_nodes += [
                    helper.make_node("Cast", [n.input[0]], [f"{stem}/cond"], name=f"{stem}/cast", to=to),
                    helper.make_node("Mul", [f"{stem}/cond", diff.name], [f"{stem}/scaled"],
                                     name=f"{stem}/mul"),
                    helper.make_node("Add", [f"{stem}/scaled", base.name], [n.output[0]],
                                     name=f"{stem}/add"),
                ]
                rewritten += 1
                continue
        new_nodes.append(n)
    if rewritten:
        del g.node[:]
        g.node.extend(new_nodes)
    return rewritten


def simplify_for_htp(model: Any, work: Path, mask_value: float) -> tuple[Path, dict[str, int]]:
    """Write a float, static-shape ``model`` into ``work`` in the form the HTP takes:
    huge mask constants clamped, shape chains folded, NaN guards dropped and
    constant selects turned into arithmetic. Returns the file and what changed."""
    clamped = clamp_huge_constants(model, mask_value)
    fixed = work / "fixed.onnx"
    save(model, fixed)
    folded = work / "folded.onnx"
    fold(fixed, folded)
    slim = load(folded)
    rewrites = {
        "clamped_constants": clamped,
        "nan_guards_removed": drop_nan_guards(slim),
        "constant_selects": select_to_arithmetic(slim),
    }
    save(slim, folded)
    return folded, rewrites
