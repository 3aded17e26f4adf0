"""Running an IR that is not a language model (encoder, vision) on named arrays.

The runner compiles the IR for the device with the OpenVINO runtime, or
imports the blob that ``edgesmith compile`` stored for that device, and maps
``infer({name: array})`` onto one synchronous inference request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgesmith import encoders
from edgesmith.errors import BackendError, UserError
from edgesmith.graphinputs import InputSpec, describe_inputs
from edgesmith.graphrunner import GraphRunner as ArrayGraphRunner

from . import stack


class GraphRunner(ArrayGraphRunner):
    """``infer``; an encoder (config.json beside it names one) also embeds ``-p TEXT``."""

    def __init__(self, xml: Path, device: str, props: dict[str, Any], blob: Path | None,
                 truncate: bool = True):
        core = stack.core()
        self._xml = xml
        self.from_blob = blob is not None
        if blob is not None:
            try:
                with open(blob, "rb") as f:
                    self._compiled = core.import_model(f.read(), device, props)
            except Exception as exc:
                raise UserError(f"{blob} cannot be imported for {device} ({stack.first_line(exc)}); "
                                f"compile the model again with edgesmith compile") from None
        else:
            model = stack.read_model(xml)  # a corrupt IR fails here with one line
            try:
                self._compiled = core.compile_model(model, device, props)
            except Exception as exc:
                raise BackendError(f"OpenVINO could not compile {xml.name} for {device}: "
                                   f"{stack.first_line(exc)}") from None
        self._request: Any = self._compiled.create_infer_request()
        self.input_specs = input_specs(self._compiled.inputs)
        self._outputs = [_port_name(p, i, "output") for i, p in enumerate(self._compiled.outputs)]
        self.encoder = None
        if encoders.is_encoder_dir(xml.parent):
            self.encoder = encoders.TextEncoder(xml.parent, self.input_specs, truncate=truncate)
            self.context_length = self.encoder.max_len

    def generate(self, request: Any, on_text: Any = None) -> Any:
        if self.encoder is None:
            return super().generate(request, on_text)
        return encoders.generate(self, self.encoder, request, on_text)

    def takes_arrays(self) -> UserError:
        if {"input_ids", "beam_idx"} <= set(self.input_specs):  # a stateful LLM as optimum-intel exports it
            return stack.missing_tokenizer(self._xml.parent)
        return super().takes_arrays()

    def infer(self, inputs: Any) -> dict[str, np.ndarray]:
        if self._request is None:
            raise UserError("this runner is closed; load the model again")
        return super().infer(inputs)

    def run_graph(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            self._request.infer(feed)
        except Exception as exc:
            # Mismatches against dimensions the ports do not declare land here.
            raise UserError(f"OpenVINO rejected the inputs ({stack.first_line(exc)}); the model takes "
                            f"{describe_inputs(self.input_specs)}") from None
        return {name: np.array(self._request.get_output_tensor(i).data, copy=True)
                for i, name in enumerate(self._outputs)}

    def close(self) -> None:
        self._request = None
        self._compiled = None


def input_specs(ports: Any) -> dict[str, InputSpec]:
    """``{name: (dims, dtype)}`` of OpenVINO input ports (of a model or a compiled model)."""
    specs: dict[str, InputSpec] = {}
    for i, port in enumerate(ports):
        shape = port.get_partial_shape()
        dims = None if shape.rank.is_dynamic else tuple(
            d.get_length() if d.is_static else None for d in shape)
        try:
            dtype = np.dtype(port.get_element_type().to_dtype())
        except Exception:  # a dynamic element type: any array is passed on
            dtype = None
        specs[_port_name(port, i, "input")] = (dims, dtype)
    return specs


def _port_name(port: Any, index: int, kind: str) -> str:
    try:
        return str(port.get_any_name())
    except RuntimeError:  # an unnamed tensor
        return f"{kind}_{index}"
