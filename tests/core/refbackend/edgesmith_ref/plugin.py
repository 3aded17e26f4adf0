from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from edgesmith import Artifact, BackendInfo, Operation, hookimpl
from edgesmith.errors import UnsupportedError, UserError


def _check() -> str | None:
    if importlib.util.find_spec("tokenizers") is None:
        return "the tokenizers package is missing; pip install tokenizers"
    return None


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name="ref",
        version="0.1",
        summary="numpy reference backend (tests only)",
        operations=[
            Operation("quantize", "hf", "edgesmith_ref.plugin:quantize", schemes=["rtn4", "rtn8"],
                      devices=["cpu"], summary="round-to-nearest 4 or 8 bit, float32 storage"),
            Operation("load", "hf", "edgesmith_ref.plugin:load", devices=["cpu"],
                      summary="a numpy forward pass"),
        ],
        libraries=["numpy", "tokenizers"],
        notes={"compile": "the reference backend has nothing to compile"},
        check=_check,
    )


def quantize(source, spec, options, output, ctx):
    import numpy as np
    from safetensors.numpy import load_file, save_file

    bits = spec.bits or {"rtn4": 4, "rtn8": 8}.get((spec.scheme or "").lower())
    if bits is None:
        raise UserError(f"unknown scheme {spec.scheme!r} for backend ref; use rtn4 or rtn8")
    if bits not in (4, 8):
        raise UnsupportedError(f"backend ref quantizes to 4 or 8 bits, not {bits}")
    group = spec.group_size or 64
    config = json.loads((source.path / "config.json").read_text())
    if config["hidden_size"] % group:
        raise UserError(f"group size {group} does not divide hidden size {config['hidden_size']}; "
                        f"choose a divisor such as 64")
    # Lets tests interrupt a quantize step while it is under way.
    time.sleep(float(os.environ.get("EDGESMITH_REF_QUANTIZE_DELAY", "0")))
    if os.environ.get("EDGESMITH_REF_NOISE"):  # behaves like stacks that print to stdout
        print("noise from Python", flush=True)
        os.write(1, b"noise from C\n")
    files = sorted(source.path.glob("*.safetensors"))
    for n, f in enumerate(files):
        ctx.progress(f"quantizing {f.name}", n, len(files))
        tensors = load_file(str(f))
        out = {}
        for name, w in tensors.items():
            if w.ndim == 2 and w.shape[1] % group == 0:
                g = w.reshape(w.shape[0], -1, group)
                scale = np.abs(g).max(axis=2, keepdims=True) / (2 ** (bits - 1) - 1)
                scale[scale == 0] = 1
                w = (np.round(g / scale) * scale).reshape(w.shape).astype(np.float32)
            out[name] = w
        save_file(out, str(output / f.name))
    for f in source.path.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "edgesmith.json":
            shutil.copy2(f, output / f.name)
    return Artifact(output, "hf", details={"bits": bits, "group_size": group})


def load(artifact, options, ctx):
    from .runner import NumpyRunner

    return NumpyRunner(Path(artifact.path))
