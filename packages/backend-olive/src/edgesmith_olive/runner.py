"""Run ONNX Runtime GenAI bundles with onnxruntime-genai, other ONNX graphs with ONNX Runtime.

Generation streams through ``og.Generator``; scoring feeds the whole sequence
once and takes the model's logits for every position
(``generator.get_output("logits")``), falling back to an ONNX Runtime session
on the decoder when the runtime only keeps the last position.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith import encoders
from edgesmith.errors import UserError
from edgesmith.graphinputs import dims_of
from edgesmith.graphrunner import GraphRunner as ArrayGraphRunner
from edgesmith.lmfeed import lm_feed
from edgesmith.logsoftmax import log_softmax
from edgesmith.onnxtypes import ort_dtype
from edgesmith.runner import Runner
from edgesmith.types import Artifact, Context, RunRequest

from . import bundle


def load(artifact: Artifact, options: Mapping[str, Any], ctx: Context) -> Runner:
    """Handler of ``load onnx``: a GenAI bundle generates, a plain graph runs
    through ``infer``. ``options`` (:data:`edgesmith_olive.options.LOAD`, the
    CPU provider only) are parsed by the core."""
    directory = Path(artifact.directory)
    if not (directory / bundle.GENAI_CONFIG).is_file():
        # Not a GenAI bundle: an encoder or vision graph, run through ONNX Runtime.
        return GraphRunner(Path(artifact.main_file), ctx, truncate=options.get("truncate", True))
    directory = bundle.genai_dir(directory)
    return GenAIRunner(directory, ctx)


class GraphRunner(ArrayGraphRunner):
    """A plain ONNX graph on ONNX Runtime's CPU provider: ``infer``; an encoder
    export (config.json names an encoder beside it) also embeds ``-p TEXT``."""

    def __init__(self, model: Path, ctx: Context, truncate: bool = True):
        import onnxruntime as ort

        if model.is_dir() or model.suffix != ".onnx":
            raise UserError(f"{model} is not a .onnx file; give the model file or its folder")
        opts = ort.SessionOptions()
        if ctx.threads:
            opts.intra_op_num_threads = int(ctx.threads)
        try:
            self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise UserError(f"ONNX Runtime cannot load {model}: {str(exc).splitlines()[0]}; "
                            "check the file or re-export it") from None
        self.model_path = model
        self.input_specs = {i.name: (dims_of(i.shape), ort_dtype(i.type)) for i in self.session.get_inputs()}
        self.encoder = None
        if encoders.is_encoder_dir(model.parent):
            self.encoder = encoders.TextEncoder(model.parent, self.input_specs, truncate=truncate)
            self.context_length = self.encoder.max_len

    def generate(self, request: RunRequest, on_text: Any = None) -> Any:
        if self.encoder is None:
            return super().generate(request, on_text)
        return encoders.generate(self, self.encoder, request, on_text)

    def run_graph(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(None, feed)
        return {o.name: np.asarray(v) for o, v in zip(self.session.get_outputs(), outs, strict=True)}

    def close(self) -> None:
        self.session = None


class GenAIRunner(Runner):
    def __init__(self, directory: Path, ctx: Context):
        import onnxruntime_genai as og

        self._og = og
        self.directory = directory
        cfg_json = bundle.read_json(directory / bundle.GENAI_CONFIG)
        model_cfg = cfg_json.get("model") or {}
        tok_file = directory / "tokenizer.json"
        if tok_file.is_file() and bundle.byte_level_decoder_fix(bundle.read_json(tok_file)) is not None:
            # Made before edgesmith-olive repaired this: the GenAI tokenizer would
            # mis-split every text (ids of -1), so scores and prompts are garbage.
            raise UserError(f"{directory}/tokenizer.json has a decoder that onnxruntime-genai misreads as "
                            "SentencePiece, so it tokenizes text wrongly; rebuild the bundle with this "
                            "edgesmith-olive (edgesmith convert / quantize)")
        config = og.Config(str(directory))
        config.clear_providers()  # CPU: whatever provider the bundle was built for
        if ctx.threads:
            config.overlay(json.dumps(
                {"model": {"decoder": {"session_options": {"intra_op_num_threads": int(ctx.threads)}}}}
            ))
        try:
            self.model = og.Model(config)
            self.tokenizer = og.Tokenizer(self.model)
        except RuntimeError as exc:
            raise UserError(f"onnxruntime-genai cannot load {directory}: {exc}; rebuild the bundle with edgesmith convert") from None
        self.context_length = model_cfg.get("context_length")
        eos = model_cfg.get("eos_token_id")
        self._eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self._eos |= {int(t) for t in np.atleast_1d(self.tokenizer.eos_token_ids)}
        self._bos = model_cfg.get("bos_token_id")
        self._vocab = model_cfg.get("vocab_size")
        self._session: Any = None
        self._text_rules = _TextRules.of(bundle.read_json(tok_file) if tok_file.is_file() else {})

    # -- text <-> ids --------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        rules = self._text_rules
        text = rules.prepare(text)
        ids = [int(t) for t in self.tokenizer.encode(text)]
        if ids and self._bos is not None and ids[0] == self._bos:
            # The GenAI tokenizer adds BOS on its own for some models; keep it only
            # when the text itself spells it out, and add the one tokenizer.json adds.
            bos_text = self._special_text(self._bos)
            if not (bos_text and text.startswith(bos_text)):
                ids = ids[1:]
        if add_special and rules.prefix is not None:
            ids = [rules.prefix, *ids]
        return ids

    def _special_text(self, token: int) -> str | None:
        tok_file = self.directory / "tokenizer.json"
        if not tok_file.is_file():
            return None
        for added in bundle.read_json(tok_file).get("added_tokens", []):
            if added.get("id") == token:
                return added.get("content")
        return None

    def detokenize(self, token_ids: Sequence[int]) -> str:
        if not len(token_ids):
            return ""
        return self.tokenizer.decode(np.asarray(token_ids, dtype=np.int32))

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        payload = json.dumps([{"role": m["role"], "content": m["content"]} for m in messages])
        try:
            return self.tokenizer.apply_chat_template(payload, add_generation_prompt=True)
        except RuntimeError as exc:
            raise UserError(f"{self.directory} has no usable chat template ({exc}); use -p PROMPT instead") from None

    # -- generation ----------------------------------------------------------

    def _search_options(self, prompt_len: int, request: RunRequest) -> dict[str, Any]:
        limit = prompt_len + request.max_tokens
        if self.context_length:
            limit = min(limit, int(self.context_length))
        opts: dict[str, Any] = {"max_length": limit, "batch_size": 1}
        if request.temperature and request.temperature > 0:
            opts.update(do_sample=True, temperature=float(request.temperature), top_p=float(request.top_p))
            # top_k 0 means "no limit" in edgesmith; GenAI wants a number, so use the vocabulary.
            opts["top_k"] = int(request.top_k) if request.top_k else int(self._vocab or 50)
            if request.seed is not None:
                opts["random_seed"] = int(request.seed)
        else:
            opts.update(do_sample=False, temperature=1.0, top_k=1, top_p=1.0)
        return opts

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        if not prompt_ids:
            raise UserError("the prompt is empty after tokenization; give a non-empty prompt")
        self._check_ids(np.asarray(prompt_ids))
        og = self._og
        params = og.GeneratorParams(self.model)
        params.set_search_options(**self._search_options(len(prompt_ids), request))
        generator = og.Generator(self.model, params)
        try:
            generator.append_tokens(np.asarray(prompt_ids, dtype=np.int32))
            produced = 0
            while produced < request.max_tokens and not generator.is_done():
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                if token in self._eos:
                    return
                produced += 1
                yield token
        finally:
            del generator

    def _check_ids(self, ids: np.ndarray) -> None:
        """Refuse ids the embedding has no row for (ONNX Runtime fails inside Gather)."""
        rows = self._vocab
        if not rows or not ids.size or (ids.min() >= 0 and ids.max() < int(rows)):
            return
        bad = int(next(t for t in ids if t < 0 or t >= int(rows)))
        name = self._special_text(bad)
        raise UserError(f"token id {bad}{f' ({name!r})' if name else ''} is outside the model's "
                        f"{rows}-row embedding: the tokenizer has tokens the text model cannot take "
                        f"(Gemma 3's <image_soft_token> is one); remove it from the text")

    # -- scoring -------------------------------------------------------------

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(list(token_ids), dtype=np.int32)
        if ids.size == 0:
            raise UserError("nothing to score: the token list is empty")
        self._check_ids(ids)
        if self.context_length and ids.size > int(self.context_length):
            raise UserError(f"{ids.size} tokens exceed the model's context of {self.context_length}; score shorter text")
        # GenAI needs room for one more token than it is fed; at the context limit use ORT.
        fits = not self.context_length or ids.size < int(self.context_length)
        logits = self._logits_genai(ids) if fits else None
        if logits is None:
            logits = self._logits_ort(ids)
        return log_softmax(logits)

    def _logits_genai(self, ids: np.ndarray) -> np.ndarray | None:
        og = self._og
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=int(ids.size) + 1, batch_size=1)
        generator = og.Generator(self.model, params)
        try:
            generator.append_tokens(ids)
            out = np.asarray(generator.get_output("logits"))
        finally:
            del generator
        out = out.reshape(-1, out.shape[-1])
        return out if out.shape[0] == ids.size else None

    def _logits_ort(self, ids: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        cfg = bundle.read_json(self.directory / bundle.GENAI_CONFIG)["model"]["decoder"]
        if self._session is None:
            self._session = ort.InferenceSession(
                str(self.directory / cfg["filename"]), providers=["CPUExecutionProvider"]
            )
        inputs = self._session.get_inputs()
        feeds = lm_feed(ids, (inp.name for inp in inputs))
        for inp in inputs:
            if inp.name.startswith("past_key_values"):  # an empty cache
                feeds[inp.name] = np.zeros((1, cfg["num_key_value_heads"], 0, cfg["head_size"]),
                                           ort_dtype(inp.type, np.float32))
        logits_name = (cfg.get("outputs") or {}).get("logits", "logits")
        return np.asarray(self._session.run([logits_name], feeds)[0])[0]

    def close(self) -> None:
        self._session = None
        self.tokenizer = None
        self.model = None


class _TextRules:
    """What tokenizer.json does that the onnxruntime-genai 0.11 tokenizer leaves out,
    done on the text (and ids) around it; measured against transformers:

    - the BOS its post-processor puts in front (Llama 3, Gemma 3: the GenAI tokenizer
      adds none, whatever tokenizer_config.json says);
    - a Unicode normalizer (Qwen2's NFC: "cafe\u0301" became ``e`` + a combining byte);
    - added tokens that swallow the whitespace next to them (Phi-3's ``rstrip`` chat
      tokens: an extra space token after every ``<|user|>``, ``<|end|>``, ...).
    """

    _FORMS = {"NFC", "NFD", "NFKC", "NFKD"}

    def __init__(self, prefix: int | None, form: str | None, rstrip: list[str], lstrip: list[str]):
        import re

        self.prefix, self.form = prefix, form
        self._right = re.compile("(" + "|".join(map(re.escape, rstrip)) + r")\s+") if rstrip else None
        self._left = re.compile(r"\s+(" + "|".join(map(re.escape, lstrip)) + ")") if lstrip else None

    @classmethod
    def of(cls, tok: Mapping[str, Any]) -> _TextRules:
        added = [t for t in tok.get("added_tokens") or [] if isinstance(t, dict)]
        ids = {t.get("content"): t.get("id") for t in added}
        prefix = None
        for step in _steps(tok.get("post_processor")):
            single = step.get("single") if step.get("type") == "TemplateProcessing" else None
            first = (single or [{}])[0]
            if isinstance(first, dict) and "SpecialToken" in first:
                prefix = ids.get(first["SpecialToken"].get("id"))
        form = None
        for step in _steps(tok.get("normalizer")):
            if step.get("type") in cls._FORMS:
                form = step["type"]
        longest = sorted(added, key=lambda t: -len(t.get("content") or ""))
        return cls(prefix if isinstance(prefix, int) else None, form,
                   [t["content"] for t in longest if t.get("rstrip") and t.get("content")],
                   [t["content"] for t in longest if t.get("lstrip") and t.get("content")])

    def prepare(self, text: str) -> str:
        if self.form:
            import unicodedata

            text = unicodedata.normalize(self.form, text)
        if self._right is not None:
            text = self._right.sub(r"\1", text)
        if self._left is not None:
            text = self._left.sub(r"\1", text)
        return text


def _steps(part: Any) -> list[dict[str, Any]]:
    if not isinstance(part, dict):
        return []
    inner = part.get("processors") or part.get("normalizers")
    if part.get("type") == "Sequence" and isinstance(inner, list):
        return [p for p in inner if isinstance(p, dict)]
    return [part]


__all__ = ["GenAIRunner", "GraphRunner", "load"]
