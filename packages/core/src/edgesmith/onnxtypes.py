"""ONNX element types as numpy dtypes: the type strings ONNX Runtime reports
(``NodeArg.type``, e.g. ``tensor(float)``) and the ``TensorProto`` numbers of
a model file. Pure data; numpy is imported only to build a dtype."""

from __future__ import annotations

from typing import Any

from .graphinputs import InputSpec

#: ONNX Runtime's type strings, by numpy dtype name.
ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
    "tensor(uint64)": "uint64", "tensor(uint32)": "uint32", "tensor(uint16)": "uint16",
    "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}

#: ``onnx.TensorProto`` element types, by numpy dtype name.
ONNX_ELEM_TYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
}


def ort_dtype(type_string: str, default: Any = None) -> Any:
    """The numpy dtype of an ONNX Runtime type string (``default`` when it has none)."""
    import numpy as np

    name = ORT_TYPES.get(type_string)
    return np.dtype(name) if name else default


def onnx_dtype(elem_type: int, default: Any = None) -> Any:
    """The numpy dtype of an ``onnx.TensorProto`` element type (``default`` when it has none)."""
    import numpy as np

    name = ONNX_ELEM_TYPES.get(elem_type)
    return np.dtype(name) if name else default


def graph_input_specs(model: Any, default: Any = "float32") -> dict[str, InputSpec]:
    """``{name: (dims, dtype)}`` of the real inputs of a loaded ONNX ``ModelProto``
    (initializers listed as inputs by old exporters are left out); symbolic
    dimensions are None."""
    import numpy as np

    inits = {i.name for i in model.graph.initializer}
    specs: dict[str, InputSpec] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        specs[vi.name] = (dims, onnx_dtype(tt.elem_type, np.dtype(default)))
    return specs
