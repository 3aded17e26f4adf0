"""Recognising model formats on disk and describing them (``edgesmith inspect``).

Only light, optional readers are used: JSON and safetensors headers by hand,
a direct parser for GGUF (:mod:`edgesmith.gguffile`), ``xml.etree`` for OpenVINO IR, and the
``onnx`` package when it is installed. No vendor runtime is imported.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import UserError
from .manifest import MANIFEST_NAME, read_manifest
from .types import FORMATS, Artifact
from .util import dir_size
from .weights import (
    PICKLE_SUFFIXES,
    TOKENIZER_FILES,
    HeaderError,
    looks_like_pickle,
    read_header,
    safe_weights,
)

# -- detection ----------------------------------------------------------------


def detect(path: Path | str) -> Artifact:
    """Recognise the model at ``path`` (a file or a directory)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give the path of a model file or directory")
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest and manifest.get("format") in FORMATS:
        return Artifact(path, manifest["format"], manifest.get("entry"), manifest)
    if path.is_file():
        return _detect_file(path)
    return _detect_dir(path)


def _detect_file(path: Path) -> Artifact:
    suffix = path.suffix.lower()
    if suffix == ".gguf" or _magic(path, 4) == b"GGUF":
        return Artifact(path, "gguf")
    if suffix == ".onnx":
        return Artifact(path, "qnn" if _is_epcontext(path) else "onnx")
    if suffix == ".xml" and path.with_suffix(".bin").exists():
        return Artifact(path.parent, "openvino", path.name)
    if suffix in PICKLE_SUFFIXES or suffix == ".safetensors":
        raise UserError(f"{path} is a bare weights file; give the checkpoint directory that holds it and config.json")
    raise UserError(
        f"cannot tell what {path} is; expected a .gguf or .onnx file, an OpenVINO .xml, "
        f"or a model directory"
    )


def _detect_dir(path: Path) -> Artifact:
    names = {p.name for p in path.iterdir()}
    ggufs = sorted(n for n in names if n.endswith(".gguf"))
    onnxs = sorted(n for n in names if n.endswith(".onnx"))
    xmls = sorted(n for n in names if n.endswith(".xml") and n[:-4] + ".bin" in names)
    if "openvino_model.xml" in xmls:
        return Artifact(path, "openvino", "openvino_model.xml")
    if xmls:
        return Artifact(path, "openvino", xmls[0])
    if len(ggufs) == 1:
        return Artifact(path, "gguf", ggufs[0])
    if onnxs:
        entry = "model.onnx" if "model.onnx" in onnxs else onnxs[0]
        fmt = "qnn" if _is_epcontext(path / entry) else "onnx"
        return Artifact(path, fmt, entry)
    if "config.json" in names:
        config = _json(path / "config.json")
        if isinstance(config.get("quantization"), dict) or _safetensors_format(path) == "mlx":
            return Artifact(path, "mlx")
        return Artifact(path, "hf")
    if len(ggufs) > 1:
        raise UserError(f"{path} holds several .gguf files ({', '.join(ggufs)}); name one of them")
    raise UserError(
        f"cannot tell what model {path} holds: no config.json, .gguf, .onnx or OpenVINO .xml; "
        f"give a Hugging Face checkpoint directory or a model file"
    )


def _safetensors_format(directory: Path) -> str | None:
    """The ``format`` tag of the first safetensors header (mlx-lm writes "mlx")."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    try:
        meta = read_header(files[0])[0].get("__metadata__") or {}
    except (OSError, HeaderError):
        return None
    return meta.get("format") if isinstance(meta, dict) else None


def _magic(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _is_epcontext(path: Path) -> bool:
    """EPContext models are small graphs that name the EPContext op; a cheap scan
    of the first megabytes avoids needing the onnx package for detection."""
    try:
        with open(path, "rb") as f:
            return b"EPContext" in f.read(8 << 20)
    except OSError:
        return False


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); repair or replace the file") from None
    return data if isinstance(data, dict) else {}


# -- safety -------------------------------------------------------------------


def pickle_files(path: Path) -> list[Path]:
    """Weight files that load through pickle (and can run code when loaded)."""
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix.lower() in PICKLE_SUFFIXES else []
    return sorted(
        p for p in path.iterdir()
        if p.suffix.lower() in PICKLE_SUFFIXES and p.name not in ("openvino_model.bin",)
        and not p.name.endswith(".onnx.data") and not (p.with_suffix(".xml")).exists()
        and looks_like_pickle(p)
    )


def check_pickle(art: Artifact, allow_pickle: bool) -> None:
    """Refuse a Hugging Face checkpoint whose loader would read pickle weights.

    What counts is what transformers loads: ``model.safetensors`` (or a complete
    safetensors index) wins over pickle files; any other ``*.safetensors`` file
    (an adapter, a consolidated copy) does not make the checkpoint safe.
    """
    if art.format != "hf" or allow_pickle:
        return
    pickles = pickle_files(art.path)
    if pickles and not safe_weights(art.path):
        raise UserError(
            f"{art.path} stores its weights as pickle ({pickles[0].name}), which can run code when "
            f"loaded; convert it to safetensors or pass --allow-pickle if you trust its source"
        )


# -- inspection ---------------------------------------------------------------


def inspect_artifact(art: Artifact) -> dict[str, Any]:
    """Facts about ``art`` that need no vendor runtime."""
    info: dict[str, Any] = {
        "path": str(art.path),
        "format": art.format,
        "entry": art.entry,
        "size_bytes": dir_size(art.path),
    }
    reader = {
        "hf": _inspect_hf,
        "mlx": _inspect_mlx,
        "gguf": _inspect_gguf,
        "onnx": _inspect_onnx,
        "qnn": _inspect_onnx,
        "openvino": _inspect_openvino,
    }[art.format]
    info.update(reader(art))
    manifest = read_manifest(art.path) if art.path.is_dir() else None
    if manifest:
        info["manifest"] = manifest
    return info


def safetensors_summary(directory: Path) -> dict[str, Any]:
    """Parameter count and dtypes from safetensors headers (no weights read); a
    file shorter than its header says is listed under ``warnings``."""
    params = 0
    dtypes: Counter[str] = Counter()
    warnings: list[str] = []
    files = sorted(Path(directory).glob("*.safetensors"))
    for f in files:
        try:
            header, wanted, present = read_header(f)
        except HeaderError as exc:
            raise UserError(f"{f} is not a readable safetensors file ({exc}); re-download or "
                            f"re-export it") from None
        if present < wanted:
            warnings.append(f"{f.name} is truncated: its header describes {wanted} bytes of weights, "
                            f"the file holds {present}")
        for name, t in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for d in t["shape"]:
                count *= int(d)
            params += count
            dtypes[t["dtype"]] += count
    out: dict[str, Any] = {"weight_files": [f.name for f in files], "tensor_elements": params,
                           "dtypes": dict(dtypes)}
    if warnings:
        out["warnings"] = warnings
    return out


def _tokenizer_facts(directory: Path) -> dict[str, Any]:
    tok_cfg = directory / "tokenizer_config.json"
    cfg = _json(tok_cfg) if tok_cfg.exists() else {}
    template = bool(cfg.get("chat_template")) or (directory / "chat_template.jinja").exists() \
        or (directory / "chat_template.json").exists()
    return {
        "tokenizer": any((directory / n).exists() for n in TOKENIZER_FILES),
        "chat_template": template,
    }


def _inspect_hf(art: Artifact) -> dict[str, Any]:
    d = art.path
    config = _json(d / "config.json") if (d / "config.json").exists() else {}
    st = safetensors_summary(d)
    out: dict[str, Any] = {
        "architecture": (config.get("architectures") or [None])[0],
        "model_type": config.get("model_type"),
        "parameters": st["tensor_elements"],
        "dtype": config.get("torch_dtype") or config.get("dtype"),
        "weight_dtypes": st["dtypes"],
        "hidden_size": config.get("hidden_size"),
        "layers": config.get("num_hidden_layers"),
        "vocab_size": config.get("vocab_size"),
        "weight_files": st["weight_files"],
        "pickle_files": [p.name for p in pickle_files(d)],
    }
    if st.get("warnings"):
        out["warnings"] = st["warnings"]
    out.update(_tokenizer_facts(d))
    return out


def _inspect_mlx(art: Artifact) -> dict[str, Any]:
    out = _inspect_hf(art)
    config = _json(art.path / "config.json")
    out["quantization"] = config.get("quantization")
    # Packed quantized tensors undercount parameters; report elements as stored.
    out["stored_elements"] = out.pop("parameters")
    return out


def _inspect_gguf(art: Artifact) -> dict[str, Any]:
    from gguf import GGMLQuantizationType, LlamaFileType

    from . import gguffile

    layout = gguffile.read(art.main_file)
    values = layout.values
    arch = values.get("general.architecture")
    ftype = values.get("general.file_type")
    try:
        ftype_name = LlamaFileType(ftype).name.removeprefix("MOSTLY_") if ftype is not None else None
    except ValueError:
        ftype_name = str(ftype)
    params = 0
    types: Counter[str] = Counter()
    for _, dims, ggml_type, _ in layout.tensors:
        n = 1
        for d in dims:
            n *= d
        params += n
        types[GGMLQuantizationType(ggml_type).name] += 1
    return {
        "architecture": arch,
        "name": values.get("general.name"),
        "file_type": ftype_name,
        "tensor_count": len(layout.tensors),
        "parameters": params,
        "tensor_types": dict(types),
        "context_length": values.get(f"{arch}.context_length") if arch else None,
        "tokenizer": values.get("tokenizer.ggml.model"),
        "chat_template": values.get("tokenizer.chat_template") is not None,
        "gguf_version": layout.version,
    }


def _inspect_onnx(art: Artifact) -> dict[str, Any]:
    path = art.main_file
    try:
        import onnx
    except ImportError:
        return {"note": "install the onnx package for graph details",
                "epcontext": _is_epcontext(path)}
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path} is not a readable ONNX model ({exc}); re-export it") from None
    g = model.graph
    ops = Counter(n.op_type for n in g.node)

    def shape(vi: Any) -> list[Any]:
        dims = vi.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]

    ep_nodes = [n for n in g.node if n.op_type == "EPContext"]
    out: dict[str, Any] = {
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": {i.name: shape(i) for i in g.input},
        "outputs": {o.name: shape(o) for o in g.output},
        "nodes": len(g.node),
        "op_counts": dict(ops.most_common(12)),
        "qdq_nodes": ops.get("QuantizeLinear", 0) + ops.get("DequantizeLinear", 0),
        "epcontext_nodes": len(ep_nodes),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }
    if ep_nodes:
        attrs = {a.name: a for a in ep_nodes[0].attribute}
        if "embed_mode" in attrs:
            out["epcontext_embed_mode"] = attrs["embed_mode"].i
        if "ep_cache_context" in attrs and attrs.get("embed_mode") and attrs["embed_mode"].i == 0:
            out["context_binary"] = attrs["ep_cache_context"].s.decode(errors="replace")
    genai = art.directory / "genai_config.json"
    if genai.exists():
        out["genai_config"] = True
    return out


def _inspect_openvino(art: Artifact) -> dict[str, Any]:
    xml_path = art.main_file if art.entry else next(art.path.glob("*.xml"))
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise UserError(f"{xml_path} is not a valid OpenVINO IR ({exc}); re-export the model") from None
    layers = root.find("layers")
    types: Counter[str] = Counter()
    weight_types: Counter[str] = Counter()
    inputs: dict[str, Any] = {}
    for layer in layers if layers is not None else []:
        types[layer.get("type", "?")] += 1
        data = layer.find("data")
        if layer.get("type") == "Const" and data is not None:
            weight_types[data.get("element_type", "?")] += 1
        if layer.get("type") == "Parameter" and data is not None:
            inputs[layer.get("name", "?")] = data.get("shape")
    tok = art.directory
    return {
        "ir_version": root.get("version"),
        "name": root.get("name"),
        "layers": sum(types.values()),
        "inputs": inputs,
        "constant_types": dict(weight_types),
        "tokenizer": (tok / "openvino_tokenizer.xml").exists(),
        "detokenizer": (tok / "openvino_detokenizer.xml").exists(),
        "compiled_blob": any(tok.glob("*.blob")),
    }


__all__ = ["MANIFEST_NAME", "check_pickle", "detect", "inspect_artifact", "pickle_files"]
