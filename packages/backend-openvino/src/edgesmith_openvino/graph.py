"""Running an IR that is not a language model (encoder, vision) on named arrays.

The runner compiles the IR for the device with the OpenVINO runtime, or
imports the blob that ``edgesmith compile`` stored for that device, and maps
``infer({name: array})`` onto one synchronous inference request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import BackendError, UnsupportedError, UserError
from edgesmith.runner import Runner
from edgesmith.types import RunRequest

from . import stack


class GraphRunner(Runner):
    """``infer`` only: there is no tokenizer and nothing to generate."""

    def __init__(self, xml: Path, device: str, props: dict[str, Any], blob: Path | None):
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
        self._inputs = [(_port_name(p, i, "input"), p) for i, p in enumerate(self._compiled.inputs)]
        self._outputs = [(_port_name(p, i, "output"), p) for i, p in enumerate(self._compiled.outputs)]

    def _describe_inputs(self) -> str:
        return ", ".join(f"{n} {p.get_partial_shape()} {p.get_element_type().get_type_name()}"
                         for n, p in self._inputs)

    def _refuse(self) -> UserError:
        names = {n for n, _ in self._inputs}
        if {"input_ids", "beam_idx"} <= names:  # a stateful LLM as optimum-intel exports it
            return stack.missing_tokenizer(self._xml.parent)
        return UnsupportedError(
            f"{self._xml.parent} is a non-generative OpenVINO graph (inputs: {self._describe_inputs()}); "
            f"run it with --input NAME=FILE.npy for each input instead of a prompt"
        )

    # -- the text primitives do not apply -----------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        raise self._refuse()

    def detokenize(self, token_ids: Sequence[int]) -> str:
        raise self._refuse()

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        raise self._refuse()

    def generate(self, request: RunRequest, on_text: Any = None) -> Any:
        raise self._refuse()

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        raise self._refuse()

    # -- inference ------------------------------------------------------------

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._request is None:
            raise UserError("this runner is closed; load the model again")
        names = [n for n, _ in self._inputs]
        unknown = sorted(set(inputs) - set(names))
        missing = [n for n in names if n not in inputs]
        if unknown or missing:
            what = (f"unknown input {', '.join(unknown)}" if unknown else "") + \
                   ("; " if unknown and missing else "") + \
                   (f"missing input {', '.join(missing)}" if missing else "")
            raise UserError(f"{what}; the model takes {self._describe_inputs()} "
                            f"(give each as --input NAME=FILE.npy)")
        feed = {name: _fit(name, np.asarray(inputs[name]), port) for name, port in self._inputs}
        try:
            self._request.infer(feed)
        except Exception as exc:
            # Shape mismatches against static dimensions land here.
            raise UserError(f"OpenVINO rejected the inputs ({stack.first_line(exc)}); the model takes "
                            f"{self._describe_inputs()}") from None
        return {name: np.array(self._request.get_output_tensor(i).data, copy=True)
                for i, (name, _) in enumerate(self._outputs)}

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _port_name(port: Any, index: int, kind: str) -> str:
    try:
        return str(port.get_any_name())
    except RuntimeError:  # an unnamed tensor
        return f"{kind}_{index}"


def _fit(name: str, array: np.ndarray, port: Any) -> np.ndarray:
    """Cast to the input's element type within the same kind (float64 .npy into an f32 input)."""
    want = port.get_element_type().to_dtype()
    if array.dtype == want:
        return array
    same_kind = (np.issubdtype(array.dtype, np.floating) and np.issubdtype(want, np.floating)) or (
        np.issubdtype(array.dtype, np.integer) and np.issubdtype(want, np.integer)) or (
        array.dtype == np.bool_ and want == np.bool_)
    if not same_kind:
        raise UserError(f"input {name} is {array.dtype} but the model takes {want}; save the array "
                        f"as {want} (np.save(FILE, a.astype(np.{want})))")
    return array.astype(want)
