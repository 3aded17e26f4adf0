"""Importing the OpenVINO stack with its telemetry switched off, and small shared helpers.

OpenVINO's model converter, NNCF and optimum-intel report usage through the
``openvino_telemetry`` package, which sends events unless a consent file says
no (it is opt-out, not opt-in). Every caller of those tools guards the import
with ``try/except ImportError`` and falls back to a no-op stub, so blocking
the import while they are first imported turns all of them off without
touching the user's home directory. The records of these fixes (version
range, measured effect, upstream reference) are in :mod:`.patches`; every job
runs under them (:func:`edgesmith_openvino.patches.job`), and :func:`quiet`
imports OpenVINO under them for code outside a job (the runner).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError

_TELEMETRY_MODULES = ("openvino_telemetry", "openvino_telemetry.backend")
_TELEMETRY_SENDERS = ("send_event", "start_session", "end_session", "send_error",
                      "send_stack_trace", "force_shutdown")
_ABSENT = object()


@contextlib.contextmanager
def telemetry_blocked() -> Iterator[None]:
    """For the block, ``import openvino_telemetry`` raises ImportError (a None
    entry in ``sys.modules``) unless it was imported already; the entries are
    as before afterwards. Modules first imported in the block keep the no-op
    stub they fell back to."""
    saved = {name: sys.modules.get(name, _ABSENT) for name in _TELEMETRY_MODULES}
    if saved["openvino_telemetry"] is not _ABSENT:
        yield  # imported already (or blocked by an outer block): nothing to do here
        return
    for name in _TELEMETRY_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is _ABSENT:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module  # type: ignore[assignment]


@contextlib.contextmanager
def telemetry_muted() -> Iterator[None]:
    """For the block, an ``openvino_telemetry`` someone imported before sends nothing."""
    mod = sys.modules.get("openvino_telemetry")
    cls = getattr(mod, "Telemetry", None) if mod is not None else None
    if cls is None:
        yield
        return
    saved = {name: cls.__dict__[name] for name in _TELEMETRY_SENDERS if name in cls.__dict__}
    for name in saved:
        setattr(cls, name, lambda *a, **k: None)
    try:
        yield
    finally:
        for name, real in saved.items():
            setattr(cls, name, real)


def quiet() -> None:
    """Import OpenVINO (and with it its converter) under the telemetry patches, once.

    Inside a job this is already so; the runner, which outlives any job, calls
    it before importing openvino-genai. Only ``sys.modules`` is put back: the
    converter keeps the no-op stub it picked (see the backend guide's
    process-wide changes).
    """
    if "openvino" in sys.modules:
        return
    from edgesmith.patches import applied

    from .patches import PATCHES

    with applied(PATCHES):
        import openvino  # noqa: F401


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
