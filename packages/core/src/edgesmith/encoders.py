"""Text encoders (BERT and its family): tokenizing to a fixed shape, pooling, embeddings.

Shared by every backend that runs an exported encoder (ONNX Runtime,
OpenVINO, the QNN HTP), so a sentence gives the same ids, mask and pooled
vector whatever runs the graph. Pooling follows the checkpoint's
sentence-transformers configuration (``modules.json``, ``1_Pooling/config.json``)
kept beside the export; without one it is mean pooling. Only numpy and
tokenizers are used, both imported when needed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import UserError

if TYPE_CHECKING:
    import numpy as np

#: model_type names of the encoders edgesmith exports and runs.
ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert")
#: Sequence length of an export when none is asked for.
DEFAULT_SEQ_LEN = 128
#: Files sentence-transformers describes a model's pooling with (beside the weights).
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
#: Tokenizer files an export keeps beside the graph.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt", "sentencepiece.bpe.model")
_NORMALIZE = "sentence_transformers.models.Normalize"
_POOLING = "sentence_transformers.models.Pooling"


def model_type_of(directory: Path) -> str | None:
    path = Path(directory) / "config.json"
    try:
        value = json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def is_encoder_dir(directory: Path) -> bool:
    """Whether ``directory`` holds an encoder (its config.json names an encoder model_type)."""
    return model_type_of(directory) in ENCODER_TYPES


def is_encoder(path: str | Path) -> bool:
    """Whether the artifact at ``path`` is an encoder: a checkpoint or an export of one."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    return is_encoder_dir(directory)


@attrs.frozen
class Pooling:
    """How token vectors become one sentence vector."""

    mode: str = "mean"  # mean, cls or max
    normalize: bool = False

    def describe(self) -> str:
        return f"{self.mode} pooling" + (", L2-normalized" if self.normalize else "")


def read_pooling(directory: Path) -> Pooling:
    """The pooling sentence-transformers' configuration in ``directory`` asks for (mean without one)."""
    directory = Path(directory)
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return Pooling()
    try:
        modules = json.loads(modules_file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{modules_file} is not valid JSON ({exc}); repair it or remove it for "
                        f"mean pooling") from None
    modules = modules if isinstance(modules, list) else []
    normalize = any(isinstance(m, dict) and m.get("type") == _NORMALIZE for m in modules)
    mode = "mean"
    for m in modules:
        if not (isinstance(m, dict) and m.get("type") == _POOLING):
            continue
        cfg_file = directory / str(m.get("path", "")) / "config.json"
        try:
            cfg = json.loads(cfg_file.read_text())
        except (OSError, ValueError):
            cfg = {}
        if cfg.get("pooling_mode_cls_token"):
            mode = "cls"
        elif cfg.get("pooling_mode_max_tokens"):
            mode = "max"
        elif cfg.get("pooling_mode") in ("cls", "max", "mean"):
            mode = cfg["pooling_mode"]
        others = [k for k in ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                              "pooling_mode_lasttoken") if cfg.get(k)]
        if others:
            raise UserError(f"{cfg_file} asks for {others[0]}, which edgesmith does not pool with; "
                            f"use mean, cls or max pooling")
    return Pooling(mode, normalize)


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: Pooling) -> np.ndarray:
    """One float32 vector from token vectors ``hidden`` ([1, S, H] or [S, H]) and the
    attention ``mask`` ([1, S] or [S]); padded positions never count."""
    import numpy as np

    h = np.asarray(hidden, dtype=np.float64).reshape(-1, np.shape(hidden)[-1])
    m = np.asarray(mask).reshape(-1)[: h.shape[0]].astype(bool)
    if not m.any():
        raise UserError("the text gives no tokens to pool; give some text")
    if pooling.mode == "cls":
        vec = h[0]
    elif pooling.mode == "max":
        vec = h[m].max(axis=0)
    else:
        vec = h[m].mean(axis=0)
    if pooling.normalize:
        norm = np.linalg.norm(vec)
        vec = vec / norm if norm > 0 else vec
    return vec.astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den > 0 else 0.0


def copy_encoder_files(src: Path, dest: Path) -> list[str]:
    """Copy the tokenizer and the sentence-transformers pooling files (with their
    numbered module folders, such as ``1_Pooling``) from ``src`` to ``dest``."""
    src, dest = Path(src), Path(dest)
    copied = []
    for name in (*TOKENIZER_FILES, *SENTENCE_FILES):
        if (src / name).is_file() and not (dest / name).exists():
            shutil.copy2(src / name, dest / name)
            copied.append(name)
    modules_file = src / "modules.json"
    if modules_file.is_file():
        try:
            modules = json.loads(modules_file.read_text())
        except ValueError:
            modules = []
        for m in modules if isinstance(modules, list) else []:
            sub = str(m.get("path", "")) if isinstance(m, dict) else ""
            if sub and (src / sub).is_dir() and not (dest / sub).exists():
                shutil.copytree(src / sub, dest / sub)
                copied.append(sub + "/")
    return copied


@attrs.frozen
class Encoded:
    """One text as graph inputs: the arrays, its token count and what was cut off."""

    feed: Mapping[str, Any]
    tokens: int
    dropped: int = 0

    @property
    def mask(self) -> Any:
        return self.feed["attention_mask"]


class TextEncoder:
    """The tokenizer and pooling of an exported encoder, for graphs of ``input_specs``.

    ``seq_len`` is the graph's fixed sequence length (inputs are padded to it);
    ``None`` for a graph of dynamic length (no padding, capped at ``max_len``).
    With ``truncate=False`` a longer text is refused instead of cut.
    """

    def __init__(self, directory: Path, input_specs: Mapping[str, Any], *, truncate: bool = True):
        from tokenizers import Tokenizer

        directory = Path(directory)
        tok_file = directory / "tokenizer.json"
        if not tok_file.is_file():
            raise UserError(f"no tokenizer.json beside the encoder in {directory}; export it with "
                            f"`edgesmith convert CHECKPOINT --to onnx`, which keeps the tokenizer")
        self.tokenizer = Tokenizer.from_file(str(tok_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pooling = read_pooling(directory)
        self.truncate = truncate
        names = list(input_specs)
        if "input_ids" not in names or "attention_mask" not in names:
            raise UserError(f"this graph takes {', '.join(names)}, not input_ids and attention_mask; "
                            f"run it with --input NAME=FILE.npy")
        self.specs = dict(input_specs)
        dims = self.specs["input_ids"][0] or (1, None)
        last = dims[-1] if dims else None
        self.seq_len = int(last) if isinstance(last, int) else None
        try:
            cfg = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        self.max_len = self.seq_len or int(cfg.get("max_position_embeddings") or 512)
        self.pad_id = next((i for i in (self.tokenizer.token_to_id(t) for t in ("[PAD]", "<pad>"))
                            if i is not None), int(cfg.get("pad_token_id") or 0))

    def encode(self, text: str) -> Encoded:
        import numpy as np

        if not text:
            raise UserError("the prompt is empty; give some text with -p TEXT")
        enc = self.tokenizer.encode(text)
        ids = list(enc.ids)
        dropped = 0
        if len(ids) > self.max_len:
            if not self.truncate:
                raise UserError(f"the text is {len(ids)} tokens and the encoder takes {self.max_len}; "
                                f"shorten it, or drop -O truncate=false to cut it")
            dropped = len(ids) - self.max_len
            # keep the closing special token ([SEP], </s>) the model expects at the end
            special = enc.special_tokens_mask
            ids = ids[: self.max_len - 1] + [ids[-1]] if special and special[-1] else ids[: self.max_len]
        n = len(ids)
        width = self.seq_len or n
        feed: dict[str, Any] = {}
        for name, (_, dtype) in self.specs.items():
            dt = dtype or np.int64
            if name == "input_ids":
                arr = np.full((1, width), self.pad_id, dtype=dt)
                arr[0, :n] = ids
            elif name == "attention_mask":
                arr = np.zeros((1, width), dtype=dt)
                arr[0, :n] = 1
            elif name == "token_type_ids":
                arr = np.zeros((1, width), dtype=dt)
            elif name == "position_ids":
                arr = np.arange(width, dtype=dt)[None]
            else:
                raise UserError(f"the encoder graph takes an input {name!r} edgesmith cannot fill from "
                                f"text; run it with --input NAME=FILE.npy")
            feed[name] = arr
        return Encoded(feed, n, dropped)

    def embed(self, run: Callable[[dict[str, Any]], Mapping[str, Any]], text: str) -> dict[str, Any]:
        """Tokenize ``text``, run the graph (``run(feed) -> outputs``), pool; the vector
        with the facts: tokens, truncation, seconds of the graph run alone."""
        enc = self.encode(text)
        t0 = time.perf_counter()
        outputs = run(dict(enc.feed))
        infer_s = time.perf_counter() - t0
        hidden = hidden_states(outputs)
        vec = pool(hidden, enc.mask, self.pooling)
        return {"embedding": vec, "tokens": enc.tokens, "truncated_tokens": enc.dropped, "infer_s": infer_s,
                "seq_len": self.seq_len, "pooling": self.pooling.mode, "normalized": self.pooling.normalize}


def hidden_states(outputs: Mapping[str, Any]) -> Any:
    """The token vectors among a graph's outputs (``last_hidden_state``, else the first 3-D one)."""
    import numpy as np

    if "last_hidden_state" in outputs:
        return outputs["last_hidden_state"]
    for value in outputs.values():
        if np.ndim(value) == 3:
            return value
    raise UserError(f"the graph's outputs ({', '.join(outputs)}) hold no token vectors "
                    f"(last_hidden_state); run it with --input NAME=FILE.npy")


def run_result(facts: dict[str, Any], *, backend: str, load_s: float | None,
               on_text: Callable[[str], None] | None = None) -> Any:
    """The :class:`~edgesmith.types.RunResult` of ``edgesmith run`` on an encoder: the
    vector as text (and in ``extra["embedding"]`` for ``--json``)."""
    from .runner import peak_rss_mb
    from .types import RunResult, Timings

    vec = facts["embedding"]
    shown = ", ".join(f"{x:.4f}" for x in vec[:8]) + (", ..." if len(vec) > 8 else "")
    note = (f"; the text was cut to {facts['tokens']} tokens ({facts['truncated_tokens']} dropped, "
            f"-O truncate=false refuses instead)" if facts["truncated_tokens"] else "")
    text = (f"embedding: {len(vec)} dimensions, {facts['pooling']} pooling"
            f"{', L2-normalized' if facts['normalized'] else ''} of {facts['tokens']} tokens{note}\n"
            f"[{shown}]\n")
    if on_text:
        on_text(text)
    extra = {k: v for k, v in facts.items() if k != "embedding"}
    extra["embedding"] = [float(x) for x in vec]
    extra["dimensions"] = len(vec)
    return RunResult(text=text, prompt_tokens=facts["tokens"], finish_reason="stop", backend=backend,
                     timings=Timings(load_s=load_s, total_s=facts["infer_s"], peak_rss_mb=peak_rss_mb()),
                     extra=extra)


def generate(runner: Any, encoder: TextEncoder, request: Any,
             on_text: Callable[[str], None] | None = None) -> Any:
    """``Runner.generate`` of an encoder: embed ``request.prompt`` with ``runner.infer``."""
    if request.messages:
        raise UserError("an encoder embeds one text; give it with -p TEXT, not --chat")
    if request.prompt is None:
        raise UserError("no text given; pass -p TEXT to embed")
    facts = encoder.embed(runner.infer, request.prompt)
    return run_result(facts, backend=runner.backend, load_s=runner.load_s, on_text=on_text)


def sentences(text: str, min_words: int = 3) -> list[str]:
    """The sentences of ``text`` (split at . ! ? followed by space; whitespace joined)."""
    import re

    flat = " ".join(text.split())
    parts = re.split(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+", flat)
    return [p.strip() for p in parts if len(p.split()) >= min_words]
