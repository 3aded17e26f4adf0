"""The shared vocabulary: frozen attrs records passed between the core and backends.

Nothing here imports a vendor stack; these types are what a backend receives
from the core and hands back to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .options import Option

#: Format names used everywhere (CLI, manifests, capabilities).
FORMATS = ("hf", "gguf", "onnx", "openvino", "mlx", "qnn")
#: Kinds of operation a backend may declare (``load`` gives a Runner).
OPERATIONS = ("convert", "quantize", "compile", "load")
#: Device names accepted by `compile` and declared by backends.
DEVICES = ("cpu", "gpu", "npu", "auto")


def _tuple(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


def _no_problem() -> str | None:
    return None


@attrs.frozen
class Operation:
    """One thing a backend does, declared before any heavy work.

    - ``kind``: ``convert``, ``quantize``, ``compile`` or ``load``.
    - ``source``/``format``: the format it reads and the one it writes
      (``format`` defaults to ``source``: quantize in place, load).
    - ``handler``: ``"package.module:function"``, imported only when the
      operation runs (so describing a backend stays cheap), or a callable.
      The core calls it with already-checked, typed ``options``:
      convert ``(source, options, output, ctx)``, quantize ``(source, spec,
      options, output, ctx)``, compile ``(source, device, options, output,
      ctx)``, load ``(artifact, options, ctx)``.
    - ``options``: the ``-O KEY=VALUE`` settings it takes (:class:`~edgesmith.options.Option`).
    - ``schemes``: native scheme names a quantize takes (``--scheme``).
    - ``devices``: what a compile targets, or where a load runs.
    - ``generates``: for load, whether the runner generates text (False: a
      fixed-shape graph served by ``Runner.infer`` only).
    - ``activations``: for quantize, whether it quantizes activations too
      (static QDQ). A request with ``--activation-bits`` goes only to such
      operations; one without prefers weight-only operations.
    - ``variant``: a short name that tells apart two operations of the same
      kind and formats (``"static"``); it appears in the label.
    - ``architectures``: the model types (Hugging Face ``model_type``:
      ``llama``, ``qwen3``, ``gemma3_text``) it takes, as tested with the
      vendor versions the backend pins; empty: it does not restrict.
      ``unsupported`` gives, for architectures it refuses, the reason and
      what would help (see :mod:`edgesmith.architectures`).
    """

    kind: str
    source: str
    handler: str | Callable[..., Any] = attrs.field(eq=False)
    format: str = ""
    options: tuple[Option, ...] = attrs.field(default=(), converter=_tuple)
    schemes: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    devices: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    generates: bool = True
    activations: bool = False
    variant: str = ""
    summary: str = ""
    architectures: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    unsupported: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.kind not in OPERATIONS:
            raise ValueError(f"operation kind {self.kind!r} is not one of {', '.join(OPERATIONS)}")
        if not self.format:
            object.__setattr__(self, "format", self.source)
        if isinstance(self.handler, str) and not all(self.handler.partition(":")[::2]):
            raise ValueError(f"handler {self.handler!r} is not 'package.module:function'")
        for fmt in (self.source, self.format):
            if fmt not in FORMATS:
                raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        names = [o.name for o in self.options]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.label}: an option is declared twice")

    @property
    def label(self) -> str:
        """``convert hf->gguf``, ``quantize onnx (static)``, ``load gguf``: how errors and
        listings name it."""
        base = f"{self.kind} {self.source}"
        if self.format != self.source:
            base += f"->{self.format}"
        return f"{base} ({self.variant})" if self.variant else base

    def resolve(self) -> Callable[..., Any]:
        """The handler function (imported now)."""
        if callable(self.handler):
            return self.handler
        module, _, name = self.handler.partition(":")
        import importlib

        return getattr(importlib.import_module(module), name)

    def to_dict(self) -> dict[str, Any]:
        handler = self.handler if isinstance(self.handler, str) else \
            f"{self.handler.__module__}:{self.handler.__qualname__}"
        return {"kind": self.kind, "source": self.source, "format": self.format, "label": self.label,
                "handler": handler, "summary": self.summary, "schemes": list(self.schemes),
                "devices": list(self.devices), "generates": self.generates if self.kind == "load" else None,
                "activations": self.activations if self.kind == "quantize" else None,
                "architectures": list(self.architectures), "unsupported": dict(self.unsupported),
                "options": [o.to_dict() for o in self.options]}


@attrs.frozen
class BackendInfo:
    """What a backend is and what it can do, declared before any heavy work.

    ``operations`` lists every :class:`Operation` it offers; the core
    validates requests, plans routes and dispatches from them. ``check``
    must be cheap (no import of the vendor stack): it returns ``None`` when
    the backend is usable here, otherwise a one-line reason with the fix.
    ``notes`` explains, per operation kind, why the backend does not offer it
    (for example ``{"compile": "GGUF has no ahead-of-time compile step"}``).
    """

    name: str
    version: str
    summary: str = ""
    operations: tuple[Operation, ...] = attrs.field(default=(), converter=_tuple)
    #: Distributions whose versions are recorded in every manifest it writes.
    libraries: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    notes: Mapping[str, str] = attrs.field(factory=dict)
    check: Callable[[], str | None] = attrs.field(default=_no_problem, eq=False, repr=False)

    def ops(self, kind: str, source: str | None = None, fmt: str | None = None) -> list[Operation]:
        """The declared operations of ``kind`` (from ``source``, writing ``fmt``)."""
        return [o for o in self.operations if o.kind == kind and (source is None or o.source == source)
                and (fmt is None or o.format == fmt)]

    def _pairs(self, kind: str) -> tuple[tuple[str, str], ...]:
        return tuple(dict.fromkeys((o.source, o.format) for o in self.ops(kind)))

    @property
    def converts(self) -> tuple[tuple[str, str], ...]:
        return self._pairs("convert")

    @property
    def quantizes(self) -> tuple[tuple[str, str], ...]:
        return self._pairs("quantize")

    @property
    def compiles(self) -> tuple[tuple[str, str], ...]:
        return self._pairs("compile")

    @property
    def runs(self) -> tuple[str, ...]:
        """Formats it loads."""
        return tuple(dict.fromkeys(o.source for o in self.ops("load")))

    def generation_formats(self) -> tuple[str, ...]:
        """Formats it generates text from."""
        return tuple(dict.fromkeys(o.source for o in self.ops("load") if o.generates))

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for o in self.ops("quantize") for s in o.schemes))

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for o in self.operations for d in o.devices))

    def kinds(self) -> tuple[str, ...]:
        """The operation kinds it offers, in the order of :data:`OPERATIONS`."""
        have = {o.kind for o in self.operations}
        return tuple(k for k in OPERATIONS if k in have)

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
            "operations": [o.to_dict() for o in self.operations],
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
    ``scheme`` (the stack's own scheme name, ``--scheme``: ``Q4_K_M``,
    ``int4_asym``) wins over the common fields where given.
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
    scheme: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["calibration"] = str(self.calibration) if self.calibration else None
        return d


@attrs.frozen
class Context:
    """Per-job settings and callbacks the core hands to every operation's handler."""

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
