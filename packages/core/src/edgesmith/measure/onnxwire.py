"""A reader of the ONNX protobuf wire format: initializers, Constant nodes, graph
inputs and nodes, without the onnx package (the core imports no vendor
library) and without loading tensor data (external data is only located).

Field numbers are ONNX's (onnx.proto): ModelProto.graph = 7; GraphProto
node = 1, initializer = 5, input = 11; TensorProto dims = 1, data_type = 2,
name = 8, raw_data = 9, external_data = 13, data_location = 14.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: TensorProto.DataType -> bits per element.
ONNX_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64,
             15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2}
@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    domain: str = ""


def varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint runs over 10 bytes")


def fields(buf: memoryview, pos: int, end: int) -> Any:
    """(field number, wire type, value): an int for varints, a (start, end) span for
    length-delimited fields; fixed-width fields are skipped."""
    while pos < end:
        tag, pos = varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            n, pos = varint(buf, pos)
            if pos + n > end:
                raise ValueError("a field runs past its message")
            yield number, wire, (pos, pos + n)
            pos += n
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire} is not protobuf 3")


def text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", errors="replace")


def read_graph(buf: memoryview) -> tuple[list[tuple[str, tuple[int, ...], int, str, Any]], list[Node],
                                          dict[str, int], list[str]]:
    graph = next((v for f, w, v in fields(buf, 0, len(buf)) if f == 7 and w == 2), None)
    if graph is None:
        raise ValueError("no graph in the model")
    consts, nodes, inputs, notes = [], [], {}, []
    for f, w, v in fields(buf, *graph):
        if f == 5 and w == 2:  # initializer
            consts.append(read_tensor(buf, v))
        elif f == 1 and w == 2:  # node
            node, tensor = read_node(buf, v)
            if tensor is not None:
                consts.append(tensor)
            else:
                nodes.append(node)
        elif f == 11 and w == 2:  # input: name and element type
            name, elem = read_value_info(buf, v)
            inputs[name] = elem
        elif f == 15 and w == 2:
            notes.append("sparse initializers are not counted")
    return consts, nodes, inputs, notes


def read_tensor(buf: memoryview, span: tuple[int, int]) -> tuple[str, tuple[int, ...], int, str, Any]:
    """(name, dims, stored bytes, external file or "", a key that is equal for shared data)."""
    name, dims = "", []
    dtype, raw, ext = 0, None, {}
    for f, w, v in fields(buf, *span):
        if f == 1:
            dims.extend([v] if w == 0 else read_packed(buf, v))
        elif f == 2 and w == 0:
            dtype = v
        elif f == 8 and w == 2:
            name = text(buf, v)
        elif f == 9 and w == 2:
            raw = v[1] - v[0]
        elif f == 13 and w == 2:
            entry = {k: text(buf, s) for k, _, s in fields(buf, *v) if k in (1, 2)}
            ext[entry.get(1, "")] = entry.get(2, "")
    count = math.prod(dims)
    nbytes = raw if raw is not None else math.ceil(count * ONNX_BITS.get(dtype, 0) / 8)
    location = ext.get("location", "")
    if location:
        nbytes = int(ext["length"]) if ext.get("length") else nbytes
        return name, tuple(dims), nbytes, location, (location, int(ext.get("offset") or 0), nbytes)
    return name, tuple(dims), nbytes, "", None


def read_packed(buf: memoryview, span: tuple[int, int]) -> list[int]:
    out, pos = [], span[0]
    while pos < span[1]:
        value, pos = varint(buf, pos)
        out.append(value)
    return out


def read_node(buf: memoryview, span: tuple[int, int]) -> tuple[Node, Any]:
    """The node, or for a Constant node the tensor it holds (named by its output)."""
    node, attrs = Node("", [], []), []
    for f, w, v in fields(buf, *span):
        if w != 2:
            continue
        if f == 1:
            node.inputs.append(text(buf, v))
        elif f == 2:
            node.outputs.append(text(buf, v))
        elif f == 4:
            node.op = text(buf, v)
        elif f == 7:
            node.domain = text(buf, v)
        elif f == 5:
            attrs.append(v)
    if node.op != "Constant" or node.domain not in ("", "ai.onnx") or not node.outputs:
        return node, None
    for a in attrs:
        tensor = next((s for k, w, s in fields(buf, *a) if k == 5 and w == 2), None)
        if tensor is not None:
            return node, (node.outputs[0], *read_tensor(buf, tensor)[1:])
    return node, (node.outputs[0], (), 0, "", None)  # value_float / value_ints: a few bytes


def read_value_info(buf: memoryview, span: tuple[int, int]) -> tuple[str, int]:
    name, elem = "", 0
    for f, w, v in fields(buf, *span):
        if f == 1 and w == 2:
            name = text(buf, v)
        elif f == 2 and w == 2:  # TypeProto.tensor_type (1) -> elem_type (1)
            for f2, w2, v2 in fields(buf, *v):
                if f2 == 1 and w2 == 2:
                    elem = next((x for k, wt, x in fields(buf, *v2) if k == 1 and wt == 0), 0)
    return name, elem
