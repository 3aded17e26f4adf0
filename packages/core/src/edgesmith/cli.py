"""The ``edgesmith`` command line: a thin layer over :mod:`edgesmith.api`.

User errors print one line ``edgesmith: error: ...`` and exit 2; ``--debug``
(or EDGESMITH_DEBUG=1) shows the traceback instead. Results go to stdout
(``--json`` for machines); progress and notes go to stderr.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

import click

from .cliutil import (
    backend_options,
    echo_json,
    json_option,
    output_options,
    parse_pairs,
    progress,
    threads_option,
)
from .errors import EdgesmithError
from .types import DEVICES, FORMATS

log = logging.getLogger("edgesmith")


_DEBUG_FLAG = False


def _debug() -> bool:
    return _DEBUG_FLAG or os.environ.get("EDGESMITH_DEBUG", "") not in ("", "0")


class _Group(click.Group):
    """Turns every error into one line and the right exit code.

    User errors (edgesmith's and click's usage errors) exit 2; ``--debug``
    adds the traceback but keeps the exit code.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
            _fail(exc, f"{_one_line(exc.format_message())}{hint}", 2)
        except click.ClickException as exc:
            _fail(exc, _one_line(exc.format_message()), exc.exit_code)
        except click.Abort as exc:
            _fail(exc, "interrupted; no output was left behind", 130, prefix="edgesmith: ")
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        global _DEBUG_FLAG
        _DEBUG_FLAG = False
        try:
            return super().invoke(ctx)
        except EdgesmithError as exc:
            _fail(exc, str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            _fail(exc, "interrupted; no output was left behind", 130, prefix="edgesmith: ")
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                _fail(exc, f"no space left on the device ({exc.filename or 'writing output'}); free some "
                           f"space or write elsewhere", 2)
            _internal(exc)
        except RecursionError as exc:
            _fail(exc, "the input is nested too deeply to read; check the file", 2)
        except Exception as exc:
            _internal(exc)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _fail(exc: BaseException, message: str, code: int, prefix: str = "edgesmith: error: ") -> NoReturn:
    if _debug():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    click.echo(f"{prefix}{_one_line(message)}", err=True)
    sys.exit(code)


def _internal(exc: Exception) -> NoReturn:
    _fail(exc, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1,
          prefix="edgesmith: ")


def _setup_logging() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("edgesmith: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _sigterm(signum: int, frame: Any) -> None:
    # Unwind like Ctrl-C so temporary outputs are removed.
    raise KeyboardInterrupt


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="edgesmith")
def main(debug: bool) -> None:
    """Convert, quantize, compile and run language models on edge stacks."""
    global _DEBUG_FLAG
    _DEBUG_FLAG = debug
    _setup_logging()
    if threading_main():
        signal.signal(signal.SIGTERM, _sigterm)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _report_artifact(art: Any, as_json: bool) -> None:
    m = art.manifest or {}
    if as_json:
        echo_json({"path": str(art.path), "format": art.format, "entry": art.entry, "manifest": m})
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_header=False, box=None)
    t.add_row("output", str(art.path))
    t.add_row("format", art.format + (f" ({art.entry})" if art.entry else ""))
    t.add_row("backend", f"{m.get('backend', {}).get('name')} {m.get('backend', {}).get('version')}")
    t.add_row("size", _mib(m.get("size_bytes")))
    t.add_row("took", f"{m.get('timings', {}).get('seconds', 0):.1f} s")
    for k, v in (art.details or {}).items():
        if isinstance(v, (str, int, float)):
            t.add_row(k, str(v))
    Console().print(t)


def _mib(n: Any) -> str:
    return f"{n / 2**20:.2f} MiB" if isinstance(n, (int, float)) else "?"


# -- commands -----------------------------------------------------------------

@main.command()
@click.argument("name", required=False)
@click.option("--require", metavar="NAME[,NAME]",
              help="Exit 1 unless each of these backends is installed and available (for CI).")
@json_option
def backends(name: str | None, require: str | None, as_json: bool) -> None:
    """List discovered backends, their status and what they can do; with NAME,
    every operation of that backend and its options."""
    from . import api

    recs = api.backends()
    if require:
        _require(recs, [n.strip() for n in require.split(",") if n.strip()])
    if name is not None:
        _backend_detail(name, recs, as_json)
        return
    if as_json:
        echo_json([r.to_dict() for r in recs])
        return
    from rich.console import Console
    from rich.table import Table

    if not recs:
        click.echo("no backends installed; pip install edgesmith-llamacpp (or -olive, -openvino, -mlx, -qnn)")
        return
    t = Table(title="edgesmith backends")
    for col in ("name", "status", "version", "can do", "reason"):
        t.add_column(col)
    for r in recs:
        can = ""
        if r.info:
            from .dispatch import describe_capabilities

            can = describe_capabilities([r]).split(": ", 1)[-1]
        t.add_row(r.name, r.status, r.info.version if r.info else (r.distribution_version or ""),
                  can, r.reason or "")
    Console().print(t)


def _require(recs: list[Any], names: list[str]) -> None:
    by = {r.name: r for r in recs}
    bad = [f"{n} is {by[n].status}: {by[n].reason}" if n in by else f"{n} is not installed"
           for n in names if n not in by or not by[n].usable]
    if bad:
        click.echo(f"edgesmith: error: required backends are not usable: {'; '.join(bad)}", err=True)
        sys.exit(1)


def _backend_detail(name: str, recs: list[Any], as_json: bool) -> None:
    from .errors import UserError

    rec = next((r for r in recs if r.name == name), None)
    if rec is None:
        known = ", ".join(r.name for r in recs) or "none"
        raise UserError(f"no backend named {name!r} is installed (installed: {known})")
    if as_json:
        echo_json(rec.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{rec.name}[/bold] {rec.info.version if rec.info else ''} — {rec.status}"
                  + (f": {rec.reason}" if rec.reason else ""))
    if not rec.info:
        return
    if rec.info.summary:
        console.print(rec.info.summary)
    for op in rec.info.operations:
        t = Table(title=f"{op.label}" + (f" — {op.summary}" if op.summary else ""), title_justify="left")
        for col in ("option", "type", "default", "accepts", "what it does"):
            t.add_column(col)
        for o in op.options:
            t.add_row(o.name, o.kind, "" if o.default is None else str(o.default), o.accepted(), o.help)
        extra = [f"schemes: {', '.join(op.schemes)}" if op.schemes else "",
                 f"devices: {', '.join(op.devices)}" if op.devices else ""]
        if not op.options:
            t.add_row("(none)", "", "", "", "")
        console.print(t)
        if any(extra):
            console.print("  " + " · ".join(e for e in extra if e))
    for kind, note in rec.info.notes.items():
        console.print(f"{kind}: {note}")


@main.command()
@click.argument("path", type=click.Path())
@json_option
def inspect(path: str, as_json: bool) -> None:
    """Identify a model (HF, GGUF, ONNX, OpenVINO IR, MLX, QNN) and what can be done with it."""
    from . import api

    info = api.inspect(path)
    if as_json:
        echo_json(info)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_header=False, box=None, title=f"{path}")
    for k, v in info.items():
        if k in ("manifest", "backends"):
            continue
        if isinstance(v, (dict, list)):
            v = json.dumps(v)
        t.add_row(k, _mib(v) if k == "size_bytes" else str(v))
    m = info.get("manifest")
    if m:
        t.add_row("made by", f"{m['operation']['name']} with {m['backend']['name']} "
                  f"{json.dumps(m['operation']['parameters'])}")
        if m.get("parent"):
            t.add_row("parent", f"{m['parent']['path']} ({m['parent']['content_hash'][:19]}…)")
        for k, v in (m.get("details") or {}).items():
            text = v if isinstance(v, str) else json.dumps(v, default=str)
            t.add_row(f"  {k}", text if len(text) <= 160 else text[:157] + "...")
    for name, can in info["backends"].items():
        t.add_row(f"backend {name}", ", ".join(f"{op} → {'/'.join(v)}" for op, v in can.items()
                                                if op != "status"))
    if not info["backends"]:
        t.add_row("backends", "no installed backend takes this format")
    Console().print(t)


@main.command()
@click.argument("source", type=click.Path())
@click.option("--to", "fmt", required=True, type=click.Choice(FORMATS), help="Format to write.")
@click.option("--dtype", help="Weight type of the result (backend-specific, e.g. f16, bf16, f32, q8_0).")
@output_options
@backend_options
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the checkpoint to run.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle weight files (.bin/.pt/.pth).")
@threads_option
@json_option
def convert(source: str, fmt: str, dtype: str | None, output: str, force: bool,
            backend: str | None, options: tuple[str, ...], trust_remote_code: bool,
            allow_pickle: bool, threads: int | None, as_json: bool) -> None:
    """Convert SOURCE to another format."""
    from . import api

    with progress() as report:
        art = api.convert(source, fmt, output, backend=backend, options=parse_pairs(options),
                          dtype=dtype, force=force, trust_remote_code=trust_remote_code,
                          allow_pickle=allow_pickle, threads=threads, progress=report)
    _report_artifact(art, as_json)


@main.command()
@click.argument("source", type=click.Path())
@click.option("--bits", type=int, help="Weight bits (2, 3, 4, 5, 6, 8, ...).")
@click.option("--group-size", type=int, help="Weights per quantization group (-1: per channel).")
@click.option("--sym/--asym", "symmetric", default=None, help="Symmetric or asymmetric (zero point).")
@click.option("--method", help="rtn, awq, gptq, hqq, imatrix, scale-estimation, dwq, ...")
@click.option("--scheme", help="The backend's own scheme name (Q4_K_M, int4_asym, ...); wins over the above.")
@click.option("--activation-bits", type=int, help="Static activation quantization bits (8, 16).")
@click.option("--ratio", type=float, help="Share of layers at --bits; the rest stay wider.")
@click.option("--calibration", type=click.Path(), help="Text file or directory of inputs for data-aware methods.")
@output_options
@backend_options
@click.option("--allow-requantize", is_flag=True, help="Quantize a model that is already quantized.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle weight files (.bin/.pt/.pth).")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the checkpoint to run.")
@threads_option
@json_option
def quantize(source: str, bits: int | None, group_size: int | None, symmetric: bool | None,
             method: str | None, scheme: str | None, activation_bits: int | None,
             ratio: float | None, calibration: str | None, output: str, force: bool,
             backend: str | None, options: tuple[str, ...], allow_requantize: bool,
             allow_pickle: bool, trust_remote_code: bool, threads: int | None,
             as_json: bool) -> None:
    """Quantize SOURCE: --bits N [...] or --scheme NATIVE."""
    from . import api

    with progress() as report:
        art = api.quantize(source, output, bits=bits, group_size=group_size, symmetric=symmetric,
                           method=method, scheme=scheme, activation_bits=activation_bits,
                           ratio=ratio, calibration=calibration, backend=backend,
                           options=parse_pairs(options), force=force, allow_requantize=allow_requantize,
                           allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                           threads=threads, progress=report)
    _report_artifact(art, as_json)


@main.command("compile")
@click.argument("source", type=click.Path())
@click.option("--device", required=True, type=click.Choice(DEVICES, case_sensitive=False),
              help="Device to compile for.")
@output_options
@backend_options
@threads_option
@json_option
def compile_(source: str, device: str, output: str, force: bool, backend: str | None,
             options: tuple[str, ...], threads: int | None, as_json: bool) -> None:
    """Compile SOURCE ahead of time for a device."""
    from . import api

    with progress() as report:
        art = api.compile(source, device, output, backend=backend, options=parse_pairs(options),
                          force=force, threads=threads, progress=report)
    _report_artifact(art, as_json)


@main.command()
@click.argument("artifact", type=click.Path())
@click.option("-p", "--prompt", help="Prompt text (with --chat: the user's message).")
@click.option("--chat", is_flag=True, help="Use the model's chat template; interactive without -p.")
@click.option("--system", help="System message for --chat.")
@click.option("--max-tokens", "-n", default=128, show_default=True, type=int)
@click.option("--temperature", "-t", default=0.0, show_default=True, type=float,
              help="0 means greedy decoding.")
@click.option("--top-p", default=1.0, show_default=True, type=float)
@click.option("--top-k", default=0, show_default=True, type=int)
@click.option("--seed", type=int, help="Seed for sampling.")
@click.option("--stop", multiple=True, help="Stop string (repeatable).")
@click.option("--input", "inputs", multiple=True, metavar="NAME=FILE.npy",
              help="Run a non-generative graph on this input array (repeatable).")
@click.option("--save-outputs", type=click.Path(), help="With --input: write outputs as .npy here.")
@backend_options
@threads_option
@json_option
def run(artifact: str, prompt: str | None, chat: bool, system: str | None, max_tokens: int,
        temperature: float, top_p: float, top_k: int, seed: int | None, stop: tuple[str, ...],
        inputs: tuple[str, ...], save_outputs: str | None, backend: str | None,
        options: tuple[str, ...], threads: int | None, as_json: bool) -> None:
    """Generate text with ARTIFACT (streams to stdout; timings to stderr), or run a
    non-generative graph on --input arrays."""
    from . import api
    from .errors import UserError
    from .types import RunRequest

    if inputs:
        _infer(artifact, inputs, save_outputs, backend, parse_pairs(options), threads, as_json)
        return
    if prompt is None and not chat:
        raise UserError("give a prompt with -p PROMPT, or --chat for a conversation")
    if max_tokens < 1:
        raise UserError(f"--max-tokens must be at least 1, got {max_tokens}")
    if temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {temperature}")
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    def request(p: str | None, msgs: list[dict[str, str]] | None) -> RunRequest:
        return RunRequest(prompt=p, messages=tuple(msgs) if msgs else None, max_tokens=max_tokens,
                          temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, stop=stop)

    stream = None if as_json else (lambda s: click.echo(s, nl=False))
    with api.load(artifact, backend=backend, options=parse_pairs(options), threads=threads) as runner:
        if not chat or prompt is not None:
            msgs = messages + [{"role": "user", "content": prompt}] if chat else None
            result = runner.generate(request(None if chat else prompt, msgs), on_text=stream)
            if as_json:
                echo_json(result.to_dict())
            else:
                click.echo()
                _stats(result)
            return
        # Interactive chat: one line per turn; an empty line or EOF ends it.
        while True:
            try:
                line = input("you> ") if sys.stdin.isatty() else sys.stdin.readline()
            except EOFError:
                break
            if not line or not line.strip() or line.strip() in ("/exit", "/quit"):
                break
            messages.append({"role": "user", "content": line.strip()})
            if not as_json:
                click.echo("model> ", nl=False)
            result = runner.generate(request(None, messages), on_text=stream)
            messages.append({"role": "assistant", "content": result.text})
            if as_json:
                click.echo(json.dumps(result.to_dict()))
            else:
                click.echo()
                _stats(result)


@main.command()
@click.option("--model", type=click.Path(), help="Model to size the recommendation for.")
@click.option("--params", type=float, help="Parameter count instead of --model (e.g. 1.5e9).")
@click.option("--budget-mb", type=float, help="Memory the model may use (default: half of RAM).")
@json_option
def doctor(model: str | None, params: float | None, budget_mb: float | None, as_json: bool) -> None:
    """Describe this machine and recommend a backend, quantization and context length."""
    from . import api
    from . import doctor as doc

    machine = doc.detect_machine()
    n, kv = doc.model_facts(model) if model else (int(params) if params else None, None)
    installed = {r.name: r.usable for r in api.backends()}
    rec = doc.recommend(machine, params=n, budget_mb=budget_mb, kv_bytes_per_token=kv,
                        installed=installed)
    backends_ = {r.name: r.status for r in api.backends()}
    if as_json:
        echo_json({"machine": machine.to_dict(), "backends": backends_,
                    "recommendation": rec.to_dict()})
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_header=False, box=None, title="this machine")
    m = machine
    t.add_row("system", f"{m.os} {m.arch}")
    t.add_row("cpu", m.cpu_model if m.cpu_vendor in m.cpu_model else f"{m.cpu_vendor} {m.cpu_model}".strip())
    t.add_row("instruction sets", ", ".join(m.isa) or "-")
    t.add_row("cores", f"{m.physical_cores} physical, {m.logical_cores} logical")
    t.add_row("memory", f"{m.memory_bytes / 2**30:.1f} GiB" if m.memory_bytes else "?")
    t.add_row("accelerators", ", ".join((*m.gpus, *m.npus, *m.cuda_devices)) or "none found")
    t.add_row("backends", ", ".join(f"{k} ({v})" for k, v in backends_.items()) or "none installed")
    t.add_row("recommended", f"{rec.backend}" + (f" · {rec.quantization}" if rec.quantization else "")
              + (f" · context {rec.context_length}" if rec.context_length else ""))
    t.add_row("why", rec.reason)
    Console().print(t)


def _infer(artifact: str, inputs: tuple[str, ...], save: str | None, backend: str | None,
           options: dict[str, str], threads: int | None, as_json: bool) -> None:
    import time
    from pathlib import Path

    import numpy as np

    from . import api
    from .errors import UserError
    from .util import parse_options

    arrays = {}
    for name, file in parse_options(inputs).items():
        try:
            arrays[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"--input {name}={file}: cannot read it as a .npy array ({exc})") from None
    with api.load(artifact, backend=backend, options=options, threads=threads) as runner:
        t0 = time.perf_counter()
        outputs = runner.infer(arrays)
        seconds = time.perf_counter() - t0
    if save:
        Path(save).mkdir(parents=True, exist_ok=True)
        for name, value in outputs.items():
            np.save(Path(save) / f"{name.replace('/', '_')}.npy", value)
    summary = {name: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
               for name, v in outputs.items()}
    result = {"backend": runner.backend, "load_s": runner.load_s, "infer_s": seconds, "outputs": summary}
    if as_json:
        echo_json(result)
        return
    for name, s in summary.items():
        click.echo(f"{name}: shape {s['shape']} {s['dtype']}")
    click.echo(f"[{runner.backend}: load {runner.load_s:.2f} s · infer {seconds * 1000:.1f} ms]", err=True)


def _stats(result: Any) -> None:
    t = result.timings

    def f(v: float | None, fmt: str) -> str:
        return fmt.format(v) if v is not None else "n/a"

    click.echo(
        f"[{result.backend}: {result.prompt_tokens} prompt + {result.generated_tokens} generated tokens"
        f" · load {f(t.load_s, '{:.2f}')} s · TTFT {f(t.ttft_s, '{:.3f}')} s"
        f" · prefill {f(t.prefill_tps, '{:.1f}')} tok/s · decode {f(t.decode_tps, '{:.1f}')} tok/s"
        f" · peak RSS {f(t.peak_rss_mb, '{:.0f}')} MiB · {result.finish_reason}]",
        err=True,
    )


def _add_optional_commands() -> None:
    # Their modules import only click at start-up; the servers and measuring
    # stacks load when the command runs.
    from .measure.cli import commands as measure_commands
    from .optimize.cli import optimize
    from .serve.cli import serve

    for command in (*measure_commands, optimize, serve):
        main.add_command(command)
    # `--debug` is accepted after the subcommand too (`edgesmith convert ... --debug`).
    for command in main.commands.values():
        command.params.append(click.Option(["--debug"], is_flag=True, expose_value=False,
                                           is_eager=True, callback=_set_debug,
                                           help="Show tracebacks (the exit code stays the same)."))


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _DEBUG_FLAG
    if value:
        _DEBUG_FLAG = True


_add_optional_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
