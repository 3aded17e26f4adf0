"""The Python API; the CLI is a thin layer over these functions.

Every operation: recognise the source, check safety, choose a backend (the
named one, or from capabilities), run its hook into a temporary directory,
write the manifest, move the result into place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import formats
from .architectures import model_type
from .dispatch import Choice, choose
from .errors import BackendError, UnsupportedError, UserError
from .manifest import atomic_output, build_manifest, check_output, parent_record, write_manifest
from .options import parse as parse_options
from .plugins import BackendRecord, backend_libraries, get_manager
from .runner import Runner
from .types import DEVICES, FORMATS, Artifact, Context, Operation, QuantSpec, RunRequest, RunResult
from .weights import check_safetensors

log = logging.getLogger("edgesmith")

Progress = Callable[[str, "float | None", "float | None"], None]


def backends() -> list[BackendRecord]:
    """Every discovered backend with its status (available, unavailable, failed, disabled)."""
    return sorted(get_manager().records.values(), key=lambda r: r.name)


def inspect(path: str | Path) -> dict[str, Any]:
    """Describe a model and list what installed backends can do with it: by
    format and by architecture (``refused`` says which backends decline it, and why)."""
    from .architectures import refusal

    art = formats.detect(path)
    info = formats.inspect_artifact(art)
    arch = model_type(art)
    info["model_type"] = arch
    offers: dict[str, dict[str, Any]] = {}
    refused: dict[str, list[str]] = {}
    for rec in backends():
        if not rec.info:
            continue
        can: dict[str, list[str]] = {}
        for op in rec.info.operations:
            if op.source != art.format:
                continue
            why = refusal(op, arch)
            if why:
                refused.setdefault(rec.name, []).append(why)
                continue
            key = "run" if op.kind == "load" else op.kind
            can.setdefault(key, [])
            if op.format not in can[key]:
                can[key].append(op.format)
        if can:
            offers[rec.name] = {**can, "status": rec.status}
    info["backends"] = offers
    if refused:
        info["refused"] = refused
    return info


def _context(**kw: Any) -> Context:
    progress = kw.pop("progress", None)
    return Context(**kw) if progress is None else Context(progress=progress, **kw)


def _source(path: str | Path, allow_pickle: bool) -> Artifact:
    art = formats.detect(path)
    formats.check_pickle(art, allow_pickle)
    if art.format in ("hf", "mlx") and art.path.is_dir():
        check_safetensors(art.path)
    return art


def _announce(op: str, choice: Choice) -> None:
    log.info("using backend %s for %s: %s", choice.name, op, choice.why)


def _options(choice: Choice, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operation's typed options: checked once, before any work."""
    return parse_options(choice.op.options, raw, backend=choice.name, operation=choice.op.label)


def _produce(
    source: Artifact,
    choice: Choice,
    output: str | Path,
    ctx: Context,
    parameters: Mapping[str, Any],
    raw_options: Mapping[str, Any],
    extra: tuple[Any, ...] = (),
) -> Artifact:
    """Run the chosen operation's handler into a claimed staging directory;
    ``extra`` is what comes before the options (a QuantSpec, a device)."""
    op = choice.op
    info = choice.record.info
    assert info is not None
    options = _options(choice, raw_options)
    handler = choice.handler()
    final = Path(output)
    parent = parent_record(source.path, source.format)
    with atomic_output(final, ctx.force, [source.path]) as tmp:
        t0 = time.perf_counter()
        result = handler(source, *extra, options, tmp, ctx)
        seconds = time.perf_counter() - t0
        if not isinstance(result, Artifact) or Path(result.path).resolve() != tmp.resolve():
            raise BackendError(f"backend {choice.name} broke the output protocol: it must return "
                               f"Artifact(path=output, ...) for {op.label}")
        if result.format != op.format:
            raise BackendError(f"backend {choice.name} declared {op.label} -> {op.format} but wrote "
                               f"{result.format!r}")
        if not any(tmp.iterdir()):
            raise BackendError(f"backend {choice.name} wrote nothing for {op.label}")
        manifest = build_manifest(
            output=tmp,
            fmt=result.format,
            entry=result.entry,
            backend=choice.name,
            backend_version=info.version,
            libraries=backend_libraries(choice.record),
            operation=op.kind,
            parameters=parameters,
            parent=parent,
            details=result.details,
            seconds=seconds,
        )
        write_manifest(tmp, manifest)
    return Artifact(final, result.format, result.entry, manifest, result.details)


def convert(
    source: str | Path,
    to: str,
    output: str | Path,
    *,
    backend: str | None = None,
    options: Mapping[str, str] | None = None,
    dtype: str | None = None,
    force: bool = False,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Artifact:
    """Convert ``source`` to format ``to`` (hf, gguf, onnx, openvino, mlx, qnn) in ``output``."""
    if to not in FORMATS:
        raise UserError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    art = _source(source, allow_pickle)
    check_output(Path(output), force, [art.path])
    opts = dict(options or {})
    if dtype:
        opts["dtype"] = dtype
    if art.format == to and not opts:
        raise UserError(f"{source} is already {to}; nothing to convert (use quantize to change precision)")
    choice = choose(get_manager(), "convert", art.format, fmt=to, backend=backend, architecture=model_type(art))
    _announce("convert", choice)
    ctx = _context(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, threads=threads,
                   force=force, progress=progress)
    return _produce(art, choice, output, ctx, convert_parameters(to, opts), opts)


def quantize(
    source: str | Path,
    output: str | Path,
    *,
    bits: int | None = None,
    group_size: int | None = None,
    symmetric: bool | None = None,
    method: str | None = None,
    scheme: str | None = None,
    activation_bits: int | None = None,
    ratio: float | None = None,
    calibration: str | Path | None = None,
    spec: QuantSpec | None = None,
    backend: str | None = None,
    options: Mapping[str, str] | None = None,
    force: bool = False,
    allow_requantize: bool = False,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Artifact:
    """Quantize ``source`` into ``output``. Give ``bits`` (+ details) or a native ``scheme``."""
    if spec is None:
        spec = quant_spec(bits=bits, group_size=group_size, symmetric=symmetric, method=method,
                          activation_bits=activation_bits, ratio=ratio, calibration=calibration,
                          scheme=scheme)
    _validate_spec(spec)
    art = _source(source, allow_pickle)
    check_output(Path(output), force, [art.path])
    wanted = spec.scheme

    def refuse(op: Operation) -> str | None:
        if spec.activation_bits and not op.activations:
            return f"{op.label} quantizes weights only (drop --activation-bits)"
        if wanted and wanted.lower() not in {s.lower() for s in op.schemes}:
            return f"{op.label} has no scheme {wanted} (it has {', '.join(op.schemes) or 'none'})"
        return None

    what = f"quantize {art.format}" + (f" with scheme {wanted}" if wanted else "")
    choice = choose(get_manager(), "quantize", art.format, backend=backend, refuse=refuse, what=what,
                    architecture=model_type(art))
    _announce("quantize", choice)
    ctx = _context(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, threads=threads,
                   force=force, allow_requantize=allow_requantize, progress=progress)
    opts = dict(options or {})
    return _produce(art, choice, output, ctx, quantize_parameters(spec, opts), opts, (spec,))


# What each operation records as its parameters in the manifest; `optimize`
# compares them to decide whether a finished step can be reused.
def convert_parameters(to: str, options: Mapping[str, str]) -> dict[str, Any]:
    return {"format": to, "options": dict(options)}


def quantize_parameters(spec: QuantSpec, options: Mapping[str, str]) -> dict[str, Any]:
    return {"spec": spec.to_dict(), "options": dict(options)}


def compile_parameters(device: str, options: Mapping[str, str]) -> dict[str, Any]:
    return {"device": device.lower(), "options": dict(options)}


def quant_spec(*, bits: int | None = None, group_size: int | None = None, symmetric: bool | None = None,
               method: str | None = None, activation_bits: int | None = None, ratio: float | None = None,
               calibration: str | Path | None = None, scheme: str | None = None) -> QuantSpec:
    return QuantSpec(bits=bits, group_size=group_size, symmetric=symmetric, method=method,
                     activation_bits=activation_bits, ratio=ratio, calibration=calibration, scheme=scheme)


def _validate_spec(spec: QuantSpec) -> None:
    if spec.bits is None and spec.scheme is None:
        raise UserError("say how to quantize: give --bits N or --scheme NAME")
    if spec.bits is not None and not 1 <= spec.bits <= 16:
        raise UserError(f"--bits must be between 1 and 16, got {spec.bits}")
    if spec.group_size is not None and spec.group_size < 1 and spec.group_size != -1:
        raise UserError(f"--group-size must be a positive number (or -1 for per-channel), got {spec.group_size}")
    if spec.ratio is not None and not 0 < spec.ratio <= 1:
        raise UserError(f"--ratio must be in (0, 1], got {spec.ratio}")
    if spec.calibration is not None and not spec.calibration.exists():
        raise UserError(f"calibration {spec.calibration} does not exist; give a text file or a directory of inputs")


def compile(  # noqa: A001 - mirrors the CLI command name
    source: str | Path,
    device: str,
    output: str | Path,
    *,
    backend: str | None = None,
    options: Mapping[str, str] | None = None,
    force: bool = False,
    allow_pickle: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Artifact:
    """Compile ``source`` ahead of time for ``device`` (cpu, gpu, npu, auto)."""
    device = device.lower()
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    art = _source(source, allow_pickle)
    check_output(Path(output), force, [art.path])
    manager = get_manager()
    try:
        choice = choose(manager, "compile", art.format, backend=backend,
                        refuse=lambda op: None if device in op.devices or device == "auto" else
                        f"{op.label} compiles for {', '.join(op.devices) or 'no device'}",
                        what=f"compile {art.format} for {device}", architecture=model_type(art))
    except UnsupportedError as exc:
        notes = [f"{r.name}: {r.info.notes['compile']}" for r in manager.records.values()
                 if r.info and "compile" in r.info.notes and art.format in r.info.runs]
        if notes:
            raise UnsupportedError(f"{art.format} has no compile step ({'; '.join(notes)})") from exc
        raise
    _announce("compile", choice)
    ctx = _context(allow_pickle=allow_pickle, threads=threads, force=force, progress=progress)
    opts = dict(options or {})
    return _produce(art, choice, output, ctx, compile_parameters(device, opts), opts, (device,))


def load(
    artifact: str | Path | Artifact,
    *,
    backend: str | None = None,
    options: Mapping[str, str] | None = None,
    threads: int | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> Runner:
    """Load a model for generation and scoring; close the runner (or use ``with``)."""
    art = artifact if isinstance(artifact, Artifact) else _source(artifact, allow_pickle)
    choice = choose(get_manager(), "load", art.format, backend=backend, architecture=model_type(art))
    _announce("run", choice)
    opts = _options(choice, options)
    ctx = _context(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, threads=threads)
    t0 = time.perf_counter()
    runner = choice.handler()(art, opts, ctx)
    if not isinstance(runner, Runner):
        raise BackendError(f"backend {choice.name} returned {type(runner).__name__}, not a Runner")
    runner.backend = choice.name
    runner.load_s = time.perf_counter() - t0
    return runner


def run(
    artifact: str | Path | Artifact,
    prompt: str | None = None,
    *,
    messages: Sequence[Mapping[str, str]] | None = None,
    max_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    backend: str | None = None,
    options: Mapping[str, str] | None = None,
    threads: int | None = None,
    on_text: Callable[[str], None] | None = None,
) -> RunResult:
    """Load ``artifact``, generate once, free it. For many calls use :func:`load`."""
    if prompt is None and not messages:
        raise UserError("no prompt given; pass a prompt or chat messages")
    if temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}")
    request = RunRequest(prompt=prompt, messages=tuple(messages) if messages else None,
                         max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                         seed=seed, stop=tuple(stop))
    with load(artifact, backend=backend, options=options, threads=threads) as runner:
        return runner.generate(request, on_text=on_text)
