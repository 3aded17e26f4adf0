"""Checkpoints and references the transformers backend tests share."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def direct_logprobs(checkpoint: Path, ids: list[int], *, dtype: str = "float32",
                    attn: str = "eager") -> np.ndarray:
    """transformers' own forward of ``ids`` (log-softmax in float64): what the
    backend's scores are held to."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=getattr(torch, dtype),
                                                 attn_implementation=attn).eval()
    with torch.no_grad():
        logits = model(torch.tensor([list(ids)])).logits[0].double()
    return torch.log_softmax(logits, -1).numpy()


def pickled(src: Path, dest: Path, *, keep_safetensors: bool = False) -> Path:
    """A copy of ``src`` whose weights are (also) a torch.save pickle, pytorch_model.bin."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dest)
    torch.save(load_file(str(dest / "model.safetensors")), dest / "pytorch_model.bin")
    if not keep_safetensors:
        (dest / "model.safetensors").unlink()
    return dest


def with_config(src: Path, dest: Path, **changes: Any) -> Path:
    """A copy of ``src`` with top-level config.json keys replaced (None: removed)."""
    shutil.copytree(src, dest)
    cfg = json.loads((dest / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    return dest


def run_python(code: str, env: dict[str, str], timeout: float = 600) -> dict[str, Any]:
    """``code`` in a fresh interpreter of this environment with exactly ``env`` on top
    of PATH/HOME; it prints one JSON line last, returned here."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**base, "EDGESMITH_LOCAL_ONLY": "1", **env}, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
