"""A language-model pipeline (:mod:`edgesmith_qnn.llm`) behind the Runner.

Quantized and compiled pipelines run both graphs on the QNN EP's HTP (the
simulator on x86-64 Linux); a float pipeline, as exported, runs on ONNX
Runtime's CPU EP (the HTP takes float graphs only in fp16 for a named SoC) so
the export can be checked before quantizing. Generation prefills the prompt a
chunk at a time and decodes through the one-token graph; scores come from the
same loop, so what ``eval`` measures is what ``run`` generates with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.logsoftmax import log_softmax
from edgesmith.runner import Runner
from edgesmith.types import Context, RunRequest

from . import ep, llm, sampling


def load(directory: Path, opts: Mapping[str, Any], ctx: Context) -> LlmRunner:
    spec = llm.read_spec(directory)
    if spec.stage == "float":
        runs, where = llm.cpu_runs(directory, spec, ctx.threads), "cpu (float graphs, as exported)"
    else:
        runs = {name: llm.session_run(ep.session(directory / spec.graphs[name], opts,
                                                 cpu_fallback=opts["cpu_fallback"], threads=ctx.threads))
                for name in spec.keys()}
        where = "htp"
    return LlmRunner(directory, spec, runs, where)


class LlmRunner(Runner):
    def __init__(self, directory: Path, spec: llm.Spec, runs: Mapping[str, llm.Run], where: str) -> None:
        from tokenizers import Tokenizer

        self.directory = directory
        self.spec = spec
        #: Where the graphs run: ``htp`` or the CPU EP for a float pipeline.
        self.device = where
        self.context_length = spec.context
        self._pipe = llm.Pipeline(spec, llm.read_rope(directory), runs)
        self._tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tok_cfg = _json(directory / "tokenizer_config.json")

    # -- text -----------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special).ids)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._tok.decode([int(t) for t in token_ids], skip_special_tokens=True)

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        template = self._tok_cfg.get("chat_template")
        path = self.directory / "chat_template.jinja"
        if not template and path.is_file():
            template = path.read_text()
        if not isinstance(template, str) or not template:
            raise UnsupportedError(f"{self.directory} has no chat template; use -p PROMPT instead of --chat")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        # As transformers renders chat templates (break/continue are used by some).
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])

        def fail(message: str) -> None:
            raise UserError(f"the chat template refused the messages: {message}")

        env.globals["raise_exception"] = fail
        special = {k: _token_text(self._tok_cfg.get(k)) for k in ("bos_token", "eos_token")}
        return env.from_string(template).render(messages=[dict(m) for m in messages],
                                                add_generation_prompt=True, **special)

    # -- the model ----------------------------------------------------------------

    def _check(self, ids: Sequence[int]) -> list[int]:
        ids = [int(t) for t in ids]
        if not ids:
            raise UserError("nothing to run: give at least one token id")
        bad = next((t for t in ids if not 0 <= t < self.spec.vocab_size), None)
        if bad is not None:
            raise UserError(f"token ids must be in [0, {self.spec.vocab_size}); got {bad}")
        if len(ids) > self.spec.context:
            raise UserError(f"{len(ids)} tokens exceed the compiled context of {self.spec.context}; "
                            f"score shorter windows or convert with a longer -O context=N")
        return ids

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        ids = self._check(token_ids)
        self._pipe.reset()
        return log_softmax(self._pipe.extend(ids))

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        ids = self._check(prompt_ids)
        rng = np.random.default_rng(request.seed)
        stop = set(self.spec.eos_token_ids)
        yield from self._pipe.generate(ids, lambda row: sampling.pick(row.astype(np.float64), request, rng),
                                       request.max_tokens, stop)

    def close(self) -> None:
        self._pipe.runs = {}


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return value if isinstance(value, str) else ""
