"""The commands that write a model: ``convert``, ``quantize``, ``compile``."""

from __future__ import annotations

import click

from .cliutil import (
    backend_options,
    json_option,
    output_options,
    parse_pairs,
    progress,
    report_artifact,
    threads_option,
)
from .types import DEVICES, FORMATS


@click.command()
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
    report_artifact(art, as_json)


@click.command()
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
    report_artifact(art, as_json)


@click.command("compile")
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
    report_artifact(art, as_json)



COMMANDS = (convert, quantize, compile_)
