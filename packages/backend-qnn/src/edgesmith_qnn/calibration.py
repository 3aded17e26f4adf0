"""Calibration samples for static quantization.

Three sources: a directory of ``.npy`` files named after the graph inputs and
a text file read line by line through the model's tokenizer (both read as
:mod:`edgesmith.calibration` says), or, with neither, synthetic samples
(recorded in the manifest as such).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import UserError
from edgesmith.lmfeed import LM_INPUTS, lm_feed
from edgesmith.onnxtypes import graph_input_specs


def input_specs(model: Any) -> dict[str, tuple[tuple[int, ...], Any]]:
    """{name: (static shape, numpy dtype)} of the real graph inputs (shapes are
    static once :func:`edgesmith_qnn.graph.prepare` has checked them)."""
    return graph_input_specs(model)


def find_tokenizer(model_dir: Path, option: str | None) -> Path | None:
    if option:
        p = Path(option)
        p = p / "tokenizer.json" if p.is_dir() else p
        if not p.is_file():
            raise UserError(f"tokenizer {option} not found; give a tokenizer.json or its directory")
        return p
    p = model_dir / "tokenizer.json"
    return p if p.is_file() else None


def encode_texts(tokenizer_path: Path, texts: list[str],
                 specs: Mapping[str, tuple[tuple[int, ...], Any]],
                 calibrate: bool = False) -> list[dict[str, np.ndarray]]:
    """Token ids padded/truncated to the static sequence length of ``input_ids``."""
    from tokenizers import Tokenizer

    if "input_ids" not in specs:
        raise UserError(f"text calibration needs an input named input_ids, the model takes "
                        f"{', '.join(specs)}; calibrate with a directory of NAME.npy files")
    shape, dtype = specs["input_ids"]
    batch, seq = (shape[0], shape[-1]) if len(shape) >= 2 else (1, shape[0])
    tok = Tokenizer.from_file(str(tokenizer_path))
    pad_id = tok.token_to_id("[PAD]") or tok.token_to_id("<pad>") or 0
    rows = []
    for t in texts:
        full = tok.encode(t).ids[:seq]
        rows.append(full)
        if calibrate and len(full) > 2:
            # Also a shorter cut: the padding mask's range must be calibrated
            # too, or padded positions are not masked after quantization.
            rows.append(full[: max(1, len(full) // 3)])
    other = sorted(set(specs) - set(LM_INPUTS))
    if other:
        raise UserError(f"text calibration cannot fill input {other[0]!r}; calibrate with "
                        f"a directory of NAME.npy files instead")
    dtypes = {name: dtype for name, (_, dtype) in specs.items()}
    samples = []
    for start in range(0, len(rows) - batch + 1, batch):
        feeds = [lm_feed(ids, specs, width=seq, pad_id=pad_id, dtypes=dtypes)
                 for ids in rows[start:start + batch]]
        samples.append({name: np.concatenate([f[name] for f in feeds]).reshape(specs[name][0])
                        for name in feeds[0]})
    return samples


def synthetic(model: Any, specs: Mapping[str, tuple[tuple[int, ...], Any]], n: int,
              seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random samples: normal floats; token ids below the embedding table size."""
    rng = np.random.default_rng(seed)
    vocab = _gather_table_rows(model)
    out = []
    for _ in range(n):
        sample = {}
        for name, (shape, dtype) in specs.items():
            if np.issubdtype(dtype, np.floating):
                sample[name] = rng.standard_normal(shape).astype(dtype)
            elif name == "attention_mask":
                # Varied valid lengths, so the padding mask's range is calibrated.
                valid = int(rng.integers(1, shape[-1] + 1))
                mask = np.zeros(shape, dtype)
                mask[..., :valid] = 1
                sample[name] = mask
            elif name in ("token_type_ids",):
                sample[name] = np.zeros(shape, dtype)
            elif name == "position_ids":
                sample[name] = np.broadcast_to(np.arange(shape[-1]), shape).astype(dtype)
            elif dtype == np.bool_:
                sample[name] = np.ones(shape, dtype)
            else:
                sample[name] = rng.integers(0, vocab.get(name, 100), shape).astype(dtype)
        out.append(sample)
    return out


def _gather_table_rows(model: Any) -> dict[str, int]:
    """Rows of the embedding table each integer input indexes (its vocabulary)."""
    inits = {i.name: i for i in model.graph.initializer}
    rows = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in inits:
            rows[node.input[1]] = int(inits[node.input[0]].dims[0])
    return rows


class Reader:
    """onnxruntime.quantization CalibrationDataReader over prepared samples."""

    def __init__(self, samples: list[dict[str, np.ndarray]], progress: Any = None):
        self.samples = samples
        self.progress = progress
        self._it: Iterator[dict[str, np.ndarray]] = iter(samples)
        self._done = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._it, None)
        if item is not None and self.progress:
            self._done += 1
            self.progress("calibrating", self._done, len(self.samples))
        return item

    def rewind(self) -> None:
        self._it = iter(self.samples)
        self._done = 0

    def __len__(self) -> int:
        return len(self.samples)
