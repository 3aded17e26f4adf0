"""ONNX Runtime GenAI bundles: recognise them, move models into place, repair metadata.

A bundle is a folder with ``model.onnx`` (plus external data),
``genai_config.json`` and the tokenizer files. Three repairs are needed with
transformers 5 + onnxruntime-genai 0.11.4, all done here after every job:

- the builder writes ``null`` for unset search options (``do_sample``,
  ``temperature``, ...) and onnxruntime-genai refuses to parse ``null``;
- transformers 5 saves ``"tokenizer_class": "TokenizersBackend"``, a name the
  onnxruntime-genai tokenizer does not know; the source checkpoint's class is
  put back (the GenAI tokenizer handles SentencePiece vocabularies by class:
  as ``PreTrainedTokenizerFast`` a Llama 2 / Phi-3.5 vocabulary splits the
  dummy-prefix "▁" off every first word), else ``PreTrainedTokenizerFast``,
  which reads the same ``tokenizer.json``;
- a byte-level BPE ``tokenizer.json`` whose decoder also carries
  SentencePiece steps (``ByteFallback``, ``Fuse``, ``Replace`` of U+2581), as
  transformers writes for checkpoints imported from GGUF, makes the GenAI
  tokenizer treat it as SentencePiece: it splits text into the wrong tokens
  and ids of -1 (SmolLM2: 3x as many tokens, perplexity 1300). Those steps do
  nothing for a byte-level vocabulary, so the decoder is cut to its
  ``ByteLevel`` step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError

GENAI_CONFIG = "genai_config.json"
#: Files a bundle carries besides its ONNX graph and weights.
SUPPORT_FILES = (
    GENAI_CONFIG,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "config.json",
    "generation_config.json",
)
#: Tokenizer classes onnxruntime-genai 0.11 cannot map; all are tokenizer.json based.
_UNKNOWN_TOKENIZER_CLASSES = {"TokenizersBackend", "PreTrainedTokenizer", None, ""}


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); restore it or rebuild the model") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object; restore it or rebuild the model")
    return data


def is_genai(directory: Path) -> bool:
    """Whether ``directory`` holds an ONNX Runtime GenAI bundle (its genai_config.json)."""
    return (Path(directory) / GENAI_CONFIG).is_file()


def genai_dir(directory: Path) -> Path:
    """Check that ``directory`` is a GenAI bundle; return it."""
    cfg = directory / GENAI_CONFIG
    if not cfg.is_file():
        raise UserError(
            f"{directory} has no {GENAI_CONFIG}, so it is not an ONNX Runtime GenAI bundle; "
            "convert the Hugging Face model with: edgesmith convert MODEL --to onnx --backend olive"
        )
    data = read_json(cfg)
    decoder = (data.get("model") or {}).get("decoder") or {}
    name = decoder.get("filename")
    if not name or not (directory / name).is_file():
        raise UserError(f"{cfg} names decoder model {name!r}, which is missing; rebuild the bundle")
    return directory


def decoder_file(directory: Path) -> str:
    return read_json(directory / GENAI_CONFIG)["model"]["decoder"]["filename"]


def external_data_files(model: Path) -> list[str]:
    """Names of the external-data files an ONNX model refers to."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    names: set[str] = set()
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.t is not None and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                tensors.append(attr.t)
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for entry in t.external_data:
                if entry.key == "location":
                    names.add(entry.value)
    return sorted(names)


def move_model(src_dir: Path, dst_dir: Path, name: str = "model.onnx") -> list[str]:
    """Move ``name`` and its external data from ``src_dir`` to ``dst_dir``."""
    files = [name, *external_data_files(src_dir / name)]
    umask = os.umask(0)
    os.umask(umask)
    for f in files:
        shutil.move(str(src_dir / f), str(dst_dir / f))
        # Olive writes some weight files through a private temp file (mode 600).
        os.chmod(dst_dir / f, 0o666 & ~umask)
    return files


def copy_support_files(src_dir: Path, dst_dir: Path) -> list[str]:
    """Copy tokenizer/config files that exist in ``src_dir`` and not yet in ``dst_dir``."""
    copied = []
    for name in SUPPORT_FILES:
        if (src_dir / name).is_file() and not (dst_dir / name).exists():
            shutil.copyfile(src_dir / name, dst_dir / name)
            copied.append(name)
    return copied


#: Decoder steps that only matter for SentencePiece vocabularies.
_SPM_DECODERS = {"ByteFallback", "Fuse", "Replace", "Strip"}
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _steps(part: Any) -> list[dict[str, Any]]:
    if not isinstance(part, dict):
        return []
    if part.get("type") == "Sequence":
        inner = part.get("decoders") or part.get("pretokenizers") or []
        return [p for p in inner if isinstance(p, dict)]
    return [part]


def byte_level_decoder_fix(tok: dict[str, Any]) -> dict[str, Any] | None:
    """The plain ByteLevel decoder that should replace ``tok``'s decoder, or None if it is fine.

    Only for a byte-level BPE (ByteLevel pre-tokenizer) whose decoder is a
    sequence of the ByteLevel step plus SentencePiece steps, and whose
    vocabulary has no ``<0xNN>`` byte tokens (those would need ByteFallback).
    """
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        return None
    if not any(p.get("type") == "ByteLevel" for p in _steps(tok.get("pre_tokenizer"))):
        return None
    steps = _steps(tok.get("decoder"))
    byte_level = [p for p in steps if p.get("type") == "ByteLevel"]
    others = [p for p in steps if p.get("type") != "ByteLevel"]
    if len(byte_level) != 1 or not others or any(p.get("type") not in _SPM_DECODERS for p in others):
        return None
    for p in others:
        if p.get("type") == "Replace" and (p.get("pattern") or {}).get("String") != "\u2581":
            return None
    vocab = model.get("vocab") or {}
    if any(_BYTE_TOKEN.fullmatch(t) for t in vocab):
        return None
    return byte_level[0]


def _source_class(source: Path | None) -> str | None:
    """The tokenizer class ``source``'s tokenizer_config.json names, if GenAI knows it."""
    path = source / "tokenizer_config.json" if source is not None else None
    if path is None or not path.is_file():
        return None
    try:
        name = json.loads(path.read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name not in _UNKNOWN_TOKENIZER_CLASSES else None


def repair(directory: Path, source: Path | None = None) -> dict[str, Any]:
    """Make the bundle loadable by onnxruntime-genai; return what was changed. ``source``
    is the checkpoint (or bundle) it was made from: its tokenizer class is put back."""
    changed: dict[str, Any] = {}
    cfg_path = directory / GENAI_CONFIG
    cfg = read_json(cfg_path)
    search = cfg.get("search") or {}
    nulls = sorted(k for k, v in search.items() if v is None)
    if nulls:
        cfg["search"] = {k: v for k, v in search.items() if v is not None}
        changed["search_nulls_dropped"] = nulls
        cfg_path.write_text(json.dumps(cfg, indent=4) + "\n")

    tok_path = directory / "tokenizer_config.json"
    if tok_path.is_file() and (directory / "tokenizer.json").is_file():
        tok = read_json(tok_path)
        dirty = False
        if tok.get("tokenizer_class") in _UNKNOWN_TOKENIZER_CLASSES:
            # The source's class where it has one GenAI knows: the GenAI tokenizer picks its
            # SentencePiece handling by class, and as PreTrainedTokenizerFast a Llama 2 /
            # Phi-3 vocabulary splits the dummy-prefix "▁" off every first word.
            name = _source_class(source) or "PreTrainedTokenizerFast"
            changed["tokenizer_class"] = [tok.get("tokenizer_class"), name]
            tok["tokenizer_class"] = name
            dirty = True
        jinja = directory / "chat_template.jinja"
        if "chat_template" not in tok and jinja.is_file():
            # transformers 5 keeps the template in its own file; the GenAI tokenizer
            # looks for it in tokenizer_config.json.
            tok["chat_template"] = jinja.read_text()
            changed["chat_template"] = "copied from chat_template.jinja"
            dirty = True
        if dirty:
            tok_path.write_text(json.dumps(tok, indent=2) + "\n")

    tokenizer_json = directory / "tokenizer.json"
    if tokenizer_json.is_file():
        data = read_json(tokenizer_json)
        fixed = byte_level_decoder_fix(data)
        if fixed is not None:
            dropped = [p.get("type") for p in _steps(data.get("decoder")) if p is not fixed]
            data["decoder"] = fixed
            tokenizer_json.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            changed["tokenizer_decoder"] = f"dropped SentencePiece steps {', '.join(dropped)} (byte-level vocabulary)"
    return changed


def set_session_options(directory: Path, options: dict[str, Any]) -> None:
    """Merge ``options`` into the decoder's session options in genai_config.json."""
    cfg_path = directory / GENAI_CONFIG
    cfg = read_json(cfg_path)
    decoder = cfg["model"]["decoder"]
    decoder["session_options"] = {**(decoder.get("session_options") or {}), **options}
    cfg_path.write_text(json.dumps(cfg, indent=4) + "\n")


def size_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
