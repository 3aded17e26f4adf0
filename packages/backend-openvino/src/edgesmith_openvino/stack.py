"""Importing the OpenVINO stack with its telemetry switched off, and small shared helpers.

OpenVINO's model converter, NNCF and optimum-intel report usage through the
``openvino_telemetry`` package, which sends events unless a consent file says
no (it is opt-out, not opt-in). Every caller of those tools guards the import
with ``try/except ImportError`` and falls back to a no-op stub, so blocking
the import for this process turns all of them off without touching the
user's home directory. Call :func:`quiet` before importing anything heavy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError

_TELEMETRY_ENV = {
    # Hugging Face libraries (optimum, transformers, huggingface_hub).
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    # NNCF swaps in its stub when this is set, even if openvino_telemetry loaded.
    "NNCF_CI": "1",
}


def quiet() -> None:
    """Turn off every telemetry channel of the stack for this process (idempotent)."""
    for key, value in _TELEMETRY_ENV.items():
        os.environ.setdefault(key, value)
    mod = sys.modules.get("openvino_telemetry", False)
    if mod is False:
        # A None entry makes `import openvino_telemetry` raise ImportError.
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
        sys.modules["openvino_telemetry.backend"] = None  # type: ignore[assignment]
    elif mod is not None:
        # Already imported by someone else: make its sender a no-op.
        cls = getattr(mod, "Telemetry", None)
        if cls is not None:
            for name in ("send_event", "start_session", "end_session", "send_error",
                         "send_stack_trace", "force_shutdown"):
                if hasattr(cls, name):
                    setattr(cls, name, lambda *a, **k: None)


def ov() -> Any:
    """The ``openvino`` module, imported quietly."""
    quiet()
    import openvino

    return openvino


def core() -> Any:
    return ov().Core()


def first_line(exc: BaseException) -> str:
    """The informative line of a vendor error (OpenVINO errors span many lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if not ln.startswith(("Exception from", "Check '")) and len(ln) > 8:
            return ln[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


def read_model(xml: Path) -> Any:
    """Read an IR, turning a corrupt or truncated file into a one-line UserError."""
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise UserError(f"{xml} or its .bin weights are missing; give a complete OpenVINO IR folder")
    import xml.etree.ElementTree as ET

    try:
        # A cheap well-formedness check first: OpenVINO would otherwise try every
        # frontend on a broken .xml and print their complaints to stderr.
        for _ in ET.iterparse(xml):
            pass
    except ET.ParseError as exc:
        raise UserError(f"{xml} is not a readable OpenVINO IR ({exc}); re-export the model") from None
    try:
        return core().read_model(str(xml))
    except Exception as exc:
        raise UserError(
            f"{xml} is not a readable OpenVINO IR ({first_line(exc)}); re-export the model"
        ) from None


def ir_file(artifact: Any) -> Path:
    """The model .xml of an OpenVINO artifact."""
    if artifact.entry:
        return Path(artifact.path) / artifact.entry
    xmls = sorted(Path(artifact.path).glob("*.xml"))
    for name in ("openvino_model.xml",):
        if (Path(artifact.path) / name).exists():
            return Path(artifact.path) / name
    models = [x for x in xmls if not x.name.startswith(("openvino_tokenizer", "openvino_detokenizer"))]
    if not models:
        raise UserError(f"{artifact.path} holds no OpenVINO model .xml; give an IR folder")
    return models[0]


#: The tokenizer and detokenizer openvino-genai needs beside a language model's IR.
TOKENIZER_IR = ("openvino_tokenizer.xml", "openvino_detokenizer.xml")


def is_llm(directory: Path) -> bool:
    """An IR folder openvino-genai can run: a model plus converted tokenizer."""
    return (directory / "openvino_model.xml").exists() and (directory / TOKENIZER_IR[0]).exists()


def missing_tokenizer(directory: Path) -> UserError:
    """The error for a language-model IR folder without its converted tokenizer."""
    missing = [n for n in TOKENIZER_IR if not (directory / n).is_file()]
    return UserError(f"{directory} is a language model without its tokenizer ({', '.join(missing)} "
                     f"missing); copy them back or convert the Hugging Face checkpoint again with "
                     f"`edgesmith convert --to openvino`, which writes them")


SIDE_FILES = ("openvino_tokenizer.xml", "openvino_tokenizer.bin", "openvino_detokenizer.xml",
              "openvino_detokenizer.bin", "config.json", "generation_config.json",
              "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "chat_template.jinja", "vocab.json", "merges.txt", "tokenizer.model",
              "added_tokens.json", "preprocessor_config.json", "vocab.txt")


def copy_side_files(src: Path, dst: Path) -> list[str]:
    """Copy tokenizer/config files that travel with a model IR."""
    import shutil

    copied = []
    for name in SIDE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied


def file_size(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())
