"""Checkpoint weight files: which ones a loader will read, and whether they are whole.

Both questions are answered from names and headers alone (no weights read),
before a vendor stack is handed the checkpoint: a pickle file that would be
loaded needs ``--allow-pickle``, and a truncated or garbled safetensors file
is named here in one line instead of failing deep inside a converter.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from .errors import UserError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: The names transformers (and the converters that follow it) load safetensors weights from.
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
#: A header larger than this is garbage, not a real tensor table.
MAX_HEADER = 100 << 20
#: Files transformers builds a tokenizer from (one is enough; vocab.json goes with merges.txt).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class HeaderError(ValueError):
    """The safetensors header cannot be read."""


def read_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """``(header, data bytes the header describes, data bytes present)``."""
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise HeaderError(f"{size} bytes, shorter than a safetensors header")
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n < 2 or n > min(MAX_HEADER, size - 8):
            raise HeaderError(f"its header claims {n} bytes in a {size}-byte file")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HeaderError("its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise HeaderError("its header is not a table of tensors")
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        offsets = t.get("data_offsets") if isinstance(t, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and o >= 0 for o in offsets) or offsets[0] > offsets[1]
                or not isinstance(t.get("shape"), list) or not isinstance(t.get("dtype"), str)):
            raise HeaderError(f"tensor {name!r} has a malformed entry")
        end = max(end, offsets[1])
    return header, end, size - 8 - n


def check_safetensors(directory: Path) -> None:
    """Refuse a checkpoint whose safetensors files are garbled, truncated, or hold
    bytes past the weights their header describes (transformers refuses those)."""
    for f in sorted(Path(directory).glob("*.safetensors")):
        try:
            _, wanted, present = read_header(f)
        except HeaderError as exc:
            raise UserError(f"{f} is not a readable safetensors file ({exc}); re-download or "
                            f"re-export it") from None
        except OSError as exc:
            raise UserError(f"cannot read {f} ({exc.strerror}); check the file") from None
        if present != wanted:
            what = "truncated" if present < wanted else "corrupt"
            raise UserError(f"{f} is {what}: its header describes {wanted} bytes of weights, the "
                            f"file holds {present}; re-download or re-export it")


def check_tokenizer(directory: Path) -> None:
    """Refuse a checkpoint with no tokenizer files, naming them (the stacks' own
    errors run to several lines and suggest installing sentencepiece)."""
    d = Path(directory)
    if not any((d / name).is_file() for name in TOKENIZER_FILES) and not any(d.glob("*.tiktoken")):
        raise UserError(f"{d} has no tokenizer: none of {', '.join(TOKENIZER_FILES)} is there; copy "
                        f"the tokenizer files of the original checkpoint into {d}")


def safe_weights(directory: Path) -> bool:
    """Whether transformers would load safetensors weights from ``directory``: a
    ``model.safetensors``, or an index whose shards are all present."""
    d = Path(directory)
    if (d / SAFE_WEIGHTS).is_file():
        return True
    index = d / SAFE_INDEX
    if not index.is_file():
        return False
    try:
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(shards) and all((d / s).is_file() for s in shards)


def looks_like_pickle(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    # torch.save writes a zip (PK..) or a raw pickle (0x80 protocol byte).
    return head[:2] == b"PK" or head[:1] == b"\x80"
