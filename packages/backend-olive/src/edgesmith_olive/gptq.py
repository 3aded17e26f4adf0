"""Data-aware int4: Hugging Face checkpoint -> GPTQ -> ONNX Runtime GenAI bundle.

Olive 0.13's own ``Gptq`` pass is plain PyTorch (no auto-gptq, no optimum,
runs on the CPU). It needs the float checkpoint, so this path starts from
the Hugging Face folder, not from a bundle: ``Gptq`` quantizes the Linear
layers layer by layer with the calibration text, and ``ModelBuilder`` packs
the result into MatMulNBits (it reads Olive's quantized checkpoint).

Olive's default calibration data is a hub dataset (wikitext). Instead the
workflow gets a data config whose loader is a small script written into the
output (``olive_calibration.py``): it reads the user's calibration text
(a file, or a directory's .txt/.md files, written to ``calibration.txt``),
tokenizes it with the model's own tokenizer and cuts it into fixed-length
windows. No ``datasets`` package, no network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.calibration import read_text
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import Artifact, Context, QuantSpec

from . import bundle, workflow
from .convert import _check_source
from .schemes import check_block_size
from .static import unique_loader

SCRIPT_NAME = "olive_calibration.py"
TEXT_NAME = "calibration.txt"
LOADER = "edgesmith_text_calibration"

#: Written into the output; Olive imports it and calls the registered loader.
_SCRIPT = '''"""Calibration data for Olive's Gptq pass, written by edgesmith-olive.

Reads a plain-text file, tokenizes it with the model's tokenizer and yields
windows of ``seq_len`` tokens as (inputs, label) pairs. Local files only.
"""

from olive.data.registry import Registry


@Registry.register_dataset()
def {loader}(data_file, model_path, seq_len=512, max_samples=128, **kwargs):
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code={trust})
    tokenizer.model_max_length = 1 << 40  # the whole file at once; windows are cut below
    with open(data_file, encoding="utf-8") as f:
        text = f.read()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    # Each window starts with BOS when the model uses one, as real prompts do.
    step = seq_len - 1 if bos is not None else seq_len
    samples = []
    for start in range(0, len(ids), step):
        window = ids[start:start + step]
        if bos is not None:
            window = [bos, *window]
        if len(window) < 2:
            break
        t = torch.tensor(window, dtype=torch.long)
        samples.append(({{"input_ids": t, "attention_mask": torch.ones_like(t)}}, 0))
        if len(samples) >= max_samples:
            break
    if not samples:
        raise ValueError(f"calibration text {{data_file}} gives no tokens")
    return samples
'''


def _read_text(path: Path) -> str:
    """The calibration text (a file, or the .txt/.md files of a directory, see
    :mod:`edgesmith.calibration`), if there is enough of it."""
    text = read_text(path)
    if len(text.split()) < 8:
        raise UserError(f"{path} holds almost no text; give a few paragraphs of representative text")
    return text


def plan(spec: QuantSpec, opts: Mapping[str, Any]) -> dict:
    """Settings of the GPTQ job from ``spec`` and the parsed options
    (:data:`edgesmith_olive.options.GPTQ`), checked before any work."""
    method = (spec.method or "gptq").lower()
    if spec.scheme and spec.scheme.lower() != "int4_gptq":
        raise UnsupportedError(
            f"from a Hugging Face checkpoint olive quantizes with --scheme int4_gptq only, not {spec.scheme}; "
            "convert first (edgesmith convert MODEL --to onnx --backend olive) for the other schemes"
        )
    if method == "awq":
        raise UnsupportedError(
            "AWQ in Olive 0.13 needs the autoawq package (CUDA kernels); use --method gptq on the CPU"
        )
    if method != "gptq":
        raise UnsupportedError(
            f"from a Hugging Face checkpoint olive quantizes with --method gptq, not {method}; for {method} "
            "convert first (edgesmith convert MODEL --to onnx --backend olive) and quantize the bundle"
        )
    if spec.bits not in (None, 4):
        raise UnsupportedError(f"olive GPTQ here builds int4 bundles, not {spec.bits}-bit; use --bits 4")
    if spec.activation_bits is not None:
        raise UnsupportedError("GPTQ is weight-only; drop --activation-bits")
    if spec.ratio is not None and spec.ratio != 1:
        raise UnsupportedError("olive GPTQ quantizes every Linear layer; mixed --ratio is not supported")
    if spec.calibration is None:
        raise UserError("quantizing a Hugging Face checkpoint here is GPTQ, which needs --calibration FILE "
                        "(plain text); for int4 without data use: edgesmith convert MODEL --to onnx --dtype int4")
    _read_text(Path(spec.calibration))
    block = spec.group_size if spec.group_size is not None else 32
    check_block_size(block, f"--group-size {block}")
    symmetric = True if spec.symmetric is None else spec.symmetric
    return {"block_size": block, "symmetric": symmetric, **opts}


def quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, Any], output: Path,
             ctx: Context) -> Artifact:
    """Handler of ``quantize hf`` (GPTQ int4 into a GenAI bundle); ``options``
    are parsed by the core (:data:`edgesmith_olive.options.GPTQ`)."""
    settings = plan(spec, options)
    provider = settings["provider"]
    src = Path(source.path)
    arch = _check_source(source, ctx)
    cfg = bundle.read_json(src / "config.json")
    if cfg.get("quantization_config"):
        raise UserError(f"{src} is already quantized (quantization_config in config.json); "
                        "give the float checkpoint")

    calib = Path(spec.calibration)
    # The loader reads one file: the text as edgesmith reads it (a directory's files joined).
    (output / TEXT_NAME).write_text(_read_text(calib), encoding="utf-8")
    loader = unique_loader(LOADER)
    (output / SCRIPT_NAME).write_text(_SCRIPT.format(loader=loader, trust=bool(ctx.trust_remote_code)))

    def passes_for(script: str, text: str) -> dict[str, dict]:
        data_config = {
            "name": "edgesmith_calibration",
            "type": "DataContainer",
            "user_script": script,
            "load_dataset_config": {
                "type": loader,
                "params": {"data_file": text, "model_path": str(src.resolve()),
                           "seq_len": settings["seq_len"], "max_samples": settings["samples"]},
            },
        }
        return {
            "gptq": {"type": "Gptq", "bits": 4, "group_size": settings["block_size"],
                     "sym": settings["symmetric"], "data_config": data_config},
            "builder": {"type": "ModelBuilder", "precision": "int4",
                        "int4_block_size": settings["block_size"],
                        "int4_accuracy_level": settings["accuracy_level"],
                        "extra_options": {"hf_remote": bool(ctx.trust_remote_code)}},
        }

    passes = passes_for(str((output / SCRIPT_NAME).resolve()), str((output / TEXT_NAME).resolve()))
    portable = passes_for(SCRIPT_NAME, TEXT_NAME)
    input_model = {"type": "HfModel", "model_path": str(src.resolve()),
                   "load_kwargs": {"trust_remote_code": bool(ctx.trust_remote_code)}}
    olive_out = workflow.run_workflow(input_model, passes, provider, output, ctx,
                                      what="GPTQ int4 + ModelBuilder", portable_passes=portable)
    bundle.move_model(olive_out, output)
    bundle.copy_support_files(olive_out, output)
    bundle.copy_support_files(src, output)
    repairs = bundle.repair(output, src)
    workflow.finish(output)
    bundle.genai_dir(output)
    digest = hashlib.sha256((output / TEXT_NAME).read_bytes()).hexdigest()
    return Artifact(
        path=output,
        format="onnx",
        entry="model.onnx",
        details={
            "bits": 4,
            "method": "gptq",
            "scheme": spec.scheme or None,
            "symmetric": settings["symmetric"],
            "block_size": settings["block_size"],
            "accuracy_level": settings["accuracy_level"],
            "calibration": {"file": str(calib), "copy": TEXT_NAME, "sha256": digest,
                            "seq_len": settings["seq_len"], "max_samples": settings["samples"]},
            **workflow.bundle_details(arch, provider, passes, repairs,
                                      workflow.reproduce(SCRIPT_NAME, TEXT_NAME)),
        },
    )
