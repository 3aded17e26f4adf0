"""Calibration samples for full INT8 quantization of text encoders, from plain text.

Each non-empty line of the file becomes one sample: the line goes through the
model's ``tokenizer.json`` (Hugging Face ``tokenizers``, special tokens added
as the tokenizer's post-processor does), is cut to ``max_length`` tokens and,
when the model's sequence dimension is static, padded to it. The sample holds
every text input the encoder declares: ``input_ids``, ``attention_mask``,
``token_type_ids`` and ``position_ids``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.calibration import text_lines
from edgesmith.errors import UserError
from edgesmith.lmfeed import lm_feed

from . import stack

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
DEFAULT_MAX_LENGTH = 128
_PAD_NAMES = ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>")


def find_tokenizer(src_dir: Path, opts: Mapping[str, Any]) -> Path:
    if "tokenizer" in opts:
        path = Path(opts["tokenizer"]).expanduser()
        path = path / "tokenizer.json" if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"tokenizer={opts['tokenizer']} is not a tokenizer.json file; give the "
                            f"model's tokenizer.json or the folder holding it")
        return path
    path = src_dir / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{src_dir} has no tokenizer.json to read text calibration; pass "
                        f"--option tokenizer=PATH/tokenizer.json or calibrate from a directory of NAME.npy arrays")
    return path


def _pad_id(tok: Any) -> int:
    padding = tok.padding
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    for name in _PAD_NAMES:
        found = tok.token_to_id(name)
        if found is not None:
            return int(found)
    return 0


def _static_dim(port: Any, axis: int) -> int | None:
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic or len(shape) <= axis or shape[axis].is_dynamic:
        return None
    return int(shape[axis].get_length())


def encoder_text_samples(model: Any, calibration: Path, src_dir: Path,
                         opts: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(samples, facts) for ``nncf.quantize`` from a text file, one sample per line."""
    lines = text_lines(calibration)
    ports = {p.get_any_name(): p for p in model.inputs}
    if "input_ids" not in ports:
        raise UserError(f"the model has no input_ids input (inputs: {', '.join(ports)}); calibrate it "
                        f"from a directory of NAME.npy arrays instead of text")
    other = sorted(set(ports) - set(TEXT_INPUTS))
    if other:
        raise UserError(f"text calibration fills {', '.join(TEXT_INPUTS)} but the model also takes "
                        f"{', '.join(other)}; calibrate from a directory of NAME.npy arrays instead")
    ids_port = ports["input_ids"]
    batch = _static_dim(ids_port, 0)
    if batch not in (None, 1):
        raise UserError(f"input_ids has a static batch of {batch}; text calibration makes batch-1 "
                        f"samples, so calibrate from a directory of NAME.npy arrays instead")
    static_len = _static_dim(ids_port, 1)
    max_length = opts.get("max_length", static_len or DEFAULT_MAX_LENGTH)
    if static_len is not None and max_length != static_len:
        raise UserError(f"the model's sequence length is fixed at {static_len}; drop max_length or "
                        f"set max_length={static_len}")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("text calibration needs the tokenizers package; pip install tokenizers") from None
    tok_path = find_tokenizer(src_dir, opts)
    try:
        tok = Tokenizer.from_file(str(tok_path))
    except Exception as exc:
        raise UserError(f"{tok_path} cannot be loaded as a tokenizer ({stack.first_line(exc)}); "
                        f"give the model's tokenizer.json") from None
    tok.no_padding()
    tok.no_truncation()
    pad = _pad_id(tok)
    dtypes = {name: port.get_element_type().to_dtype() for name, port in ports.items()}
    items: list[dict[str, Any]] = []
    truncated = 0
    for line in lines:
        enc = tok.encode(line)
        ids, types = list(enc.ids), list(enc.type_ids)
        if len(ids) > max_length:
            truncated += 1
            ids, types = ids[:max_length], types[:max_length]
        items.append(lm_feed(ids, ports, width=static_len, pad_id=pad, type_ids=types, dtypes=dtypes))
    facts = {"calibration": "text", "tokenizer": tok_path.name, "max_length": max_length,
             "padded_to": static_len, "truncated_samples": truncated}
    return items, facts
