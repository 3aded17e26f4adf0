"""The shared vocabulary: frozen attrs records passed between the core and backends.

Nothing here imports a vendor stack; these types are what a backend receives
from the core and hands back to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

#: Format names used everywhere (CLI, manifests, capabilities).
FORMATS = ("hf", "gguf", "onnx", "openvino", "mlx", "qnn")
#: Operations a backend may declare.
OPERATIONS = ("convert", "quantize", "compile", "run")
#: Device names accepted by `compile` and declared by backends.
DEVICES = ("cpu", "gpu", "npu", "auto")


def _tuple(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(a), str(b)) for a, b in (value or ()))


def _no_problem() -> str | None:
    return None


@attrs.frozen
class BackendInfo:
    """What a backend is and what it can do, declared before any heavy work.

    ``converts``/``quantizes``/``compiles`` are ``(from_format, to_format)``
    pairs; ``runs`` lists formats it can load. ``check`` must be cheap (no
    import of the vendor stack): it returns ``None`` when the backend is usable
    here, otherwise a one-line reason with the fix. ``notes`` explains, per
    operation, why the backend does not offer it (for example
    ``{"compile": "GGUF has no ahead-of-time compile step"}``).
    """

    name: str
    version: str
    summary: str = ""
    converts: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    quantizes: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    compiles: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    runs: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    #: Formats it generates text from; ``None`` means every format in ``runs``.
    #: A backend that runs only fixed-shape graphs (``Runner.infer``) lists none.
    generates: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(_tuple))
    schemes: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    devices: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    #: Distributions whose versions are recorded in every manifest it writes.
    libraries: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    notes: Mapping[str, str] = attrs.field(factory=dict)
    check: Callable[[], str | None] = attrs.field(default=_no_problem, eq=False, repr=False)

    def operations(self) -> tuple[str, ...]:
        ops = []
        for op, decl in (
            ("convert", self.converts),
            ("quantize", self.quantizes),
            ("compile", self.compiles),
            ("run", self.runs),
        ):
            if decl:
                ops.append(op)
        return tuple(ops)

    def generation_formats(self) -> tuple[str, ...]:
        return self.runs if self.generates is None else self.generates

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "summary": self.summary,
            "converts": [list(p) for p in self.converts],
            "quantizes": [list(p) for p in self.quantizes],
            "compiles": [list(p) for p in self.compiles],
            "runs": list(self.runs),
            "generates": list(self.generation_formats()),
            "schemes": list(self.schemes),
            "devices": list(self.devices),
            "libraries": list(self.libraries),
            "notes": dict(self.notes),
        }


@attrs.frozen
class Artifact:
    """A model on disk: a file or a directory, its format and its manifest.

    ``entry`` names the main file inside a directory (``model.gguf``,
    ``model.onnx``); it is ``None`` when the path itself is the model or the
    directory as a whole is (a Hugging Face checkpoint, an OpenVINO IR folder).
    ``details`` holds backend-specific facts that the core records in the
    manifest (bits per weight, a placement report, the native command line).
    """

    path: Path = attrs.field(converter=Path)
    format: str
    entry: str | None = None
    manifest: Mapping[str, Any] | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def main_file(self) -> Path:
        """The file a vendor tool opens: ``path/entry`` or ``path`` itself."""
        return self.path / self.entry if self.entry else self.path

    @property
    def directory(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent


@attrs.frozen
class QuantSpec:
    """One quantization vocabulary for every stack.

    Each backend maps these fields to its native flags and raises
    :class:`edgesmith.errors.UnsupportedError` naming what it cannot honour.
    ``native`` (the stack's own scheme name, e.g. ``Q4_K_M``, ``int4_asym``)
    wins over the common fields where given.
    """

    bits: int | None = None
    group_size: int | None = None
    #: ``None`` lets the backend choose its default.
    symmetric: bool | None = None
    #: rtn, awq, gptq, hqq, imatrix, scale-estimation, dwq, ...
    method: str | None = None
    #: Set for static (activation) quantization, e.g. 8 or 16.
    activation_bits: int | None = None
    #: Share of layers at ``bits``; the rest stay at a wider backup precision.
    ratio: float | None = None
    #: Plain-text file, or directory of inputs, for data-aware methods.
    calibration: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path)
    )
    native: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["calibration"] = str(self.calibration) if self.calibration else None
        return d


@attrs.frozen
class Context:
    """Per-job settings and callbacks the core hands to every hook call."""

    trust_remote_code: bool = False
    allow_pickle: bool = False
    #: Threads for compute; ``None`` lets the backend use the physical cores.
    threads: int | None = None
    #: ``progress(description, completed, total)``; either number may be None.
    progress: Callable[[str, float | None, float | None], None] = attrs.field(
        default=lambda description, completed=None, total=None: None, eq=False, repr=False
    )
    #: Replace an existing output (the core handles it; backends rarely need it).
    force: bool = False
    #: Quantize a model that is already quantized (``--allow-requantize``).
    allow_requantize: bool = False


@attrs.frozen
class RunRequest:
    """A generation request. ``temperature == 0`` means greedy decoding."""

    prompt: str | None = None
    #: Chat messages as ``{"role": ..., "content": ...}`` mappings.
    messages: tuple[Mapping[str, str], ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen
class Timings:
    """Timings with one definition for every backend (see docs/measuring.md).

    - ``ttft_s``: from the start of generate (prompt already tokenized) to the
      first generated token being available.
    - ``prefill_tps``: prompt tokens / ``ttft_s``.
    - ``decode_tps``: (generated tokens - 1) / (time of last token - time of
      first token); ``None`` with fewer than two generated tokens.
    - ``peak_rss_mb``: the process's peak resident set size so far (MiB).
    """

    load_s: float | None = None
    ttft_s: float | None = None
    prefill_tps: float | None = None
    decode_tps: float | None = None
    total_s: float | None = None
    peak_rss_mb: float | None = None


@attrs.frozen
class RunResult:
    text: str
    token_ids: tuple[int, ...] = attrs.field(default=(), converter=_tuple)
    prompt_tokens: int = 0
    #: "stop" (end of sequence or stop string) or "length" (max_tokens hit).
    finish_reason: str = "length"
    timings: Timings = attrs.field(factory=Timings)
    backend: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def generated_tokens(self) -> int:
        return len(self.token_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "finish_reason": self.finish_reason,
            "timings": attrs.asdict(self.timings),
            "backend": self.backend,
            "extra": dict(self.extra),
        }
