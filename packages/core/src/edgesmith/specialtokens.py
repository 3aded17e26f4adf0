"""The beginning- and end-of-sequence tokens an artifact's own files declare.

The Runner contract has no ids for them, but scoring with lm-eval needs one:
a text with no context is scored after BOS (or EOS when there is no BOS), as
lm-eval's ``hf`` model does. They are read from the files beside the model,
without loading any stack: a GGUF's ``tokenizer.ggml.*`` metadata, or a
folder's ``tokenizer_config.json`` (names, mapped to ids through
``tokenizer.json`` or ``added_tokens_decoder``), then ``config.json``,
``generation_config.json`` or ONNX Runtime GenAI's ``genai_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class Specials:
    bos_id: int | None = None
    eos_id: int | None = None
    #: The text of the BOS token, when known: a prompt starting with it gets no second BOS.
    bos_text: str | None = None


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _one(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _name(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _from_gguf(path: Path) -> Specials:
    from .gguffile import read

    values = read(path).values
    bos, eos = _one(values.get("tokenizer.ggml.bos_token_id")), _one(values.get("tokenizer.ggml.eos_token_id"))
    tokens = values.get("tokenizer.ggml.tokens") or []
    text = tokens[bos] if bos is not None and 0 <= bos < len(tokens) else None
    return Specials(bos, eos, text)


def _from_folder(directory: Path) -> Specials:
    tok_cfg = _json(directory / "tokenizer_config.json")
    ids: dict[str, int] = {}
    for tok in _json(directory / "tokenizer.json").get("added_tokens") or []:
        if isinstance(tok, dict) and isinstance(tok.get("content"), str) and isinstance(tok.get("id"), int):
            ids[tok["content"]] = tok["id"]
    for key, tok in (tok_cfg.get("added_tokens_decoder") or {}).items():
        if isinstance(tok, dict) and isinstance(tok.get("content"), str) and str(key).isdigit():
            ids.setdefault(tok["content"], int(key))
    bos_text, eos_text = _name(tok_cfg.get("bos_token")), _name(tok_cfg.get("eos_token"))
    bos = ids.get(bos_text) if bos_text else None
    eos = ids.get(eos_text) if eos_text else None
    genai = _json(directory / "genai_config.json").get("model") or {}
    for cfg in (_json(directory / "config.json"), _json(directory / "generation_config.json"), genai):
        bos = bos if bos is not None else _one(cfg.get("bos_token_id"))
        eos = eos if eos is not None else _one(cfg.get("eos_token_id"))
    return Specials(bos, eos, bos_text if bos is not None else None)


def read(path: str | Path) -> Specials:
    """What the artifact at ``path`` declares (fields it does not declare are None)."""
    from .errors import EdgesmithError
    from .formats import detect

    try:
        art = detect(path)
        if art.format == "gguf":
            return _from_gguf(art.main_file)
        return _from_folder(art.directory)
    except (EdgesmithError, OSError, ValueError):
        return Specials()
