"""ONNX Runtime GenAI bundles: recognise them, move models into place, repair metadata.

A bundle is a folder with ``model.onnx`` (plus external data),
``genai_config.json`` and the tokenizer files. Two repairs are needed with
transformers 5 + onnxruntime-genai 0.11.4, both done here after every job:

- the builder writes ``null`` for unset search options (``do_sample``,
  ``temperature``, ...) and onnxruntime-genai refuses to parse ``null``;
- transformers 5 saves ``"tokenizer_class": "TokenizersBackend"``, a name the
  onnxruntime-genai tokenizer does not know; ``PreTrainedTokenizerFast`` reads
  the same ``tokenizer.json``.
"""

from __future__ import annotations

import json
import os
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


def repair(directory: Path) -> dict[str, Any]:
    """Make the bundle loadable by onnxruntime-genai; return what was changed."""
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
            changed["tokenizer_class"] = [tok.get("tokenizer_class"), "PreTrainedTokenizerFast"]
            tok["tokenizer_class"] = "PreTrainedTokenizerFast"
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
