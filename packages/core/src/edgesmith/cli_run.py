"""The command that runs a model: ``run`` (text generation, or arrays with --input)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .cliutil import (
    backend_options,
    echo_json,
    json_option,
    parse_pairs,
    threads_option,
)


@click.command()
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



COMMANDS = (run,)
