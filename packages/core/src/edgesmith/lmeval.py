"""lm-evaluation-harness over edgesmith: any artifact a backend runs, as ``--model edgesmith``.

:class:`EdgesmithLM` is an lm-eval model (``TemplateLM``) over a
:class:`~edgesmith.runner.Runner`: the artifact is loaded with
:func:`edgesmith.api.load`, so it runs in its backend's own environment and
lm-eval only needs to be installed where the harness runs. Importing this
module registers the model under the name ``edgesmith``; lm-eval 0.4.13 has
no entry-point mechanism for models, so:

- from Python: ``import edgesmith.lmeval`` (or pass an :class:`EdgesmithLM`
  to ``lm_eval.simple_evaluate``);
- ``lm_eval --model edgesmith --tasks PATH.yaml`` works when a task YAML of
  edgesmith's (``data/tasks/``) is given by path: lm-eval imports its
  functions, and this module with them, before it builds the model;
- ``python -m edgesmith.lmeval ARGS`` is lm-eval's own CLI with the model
  registered, for any task, and offline unless ``--allow-download`` is given.

Model arguments: ``artifact=PATH`` (required), ``backend=NAME``,
``threads=N``, ``options=KEY=VALUE;KEY=VALUE`` (backend settings, as ``-O``),
``prefix_token_id=ID``, ``max_length=N``, ``max_gen_toks=N``. Scoring: one
``Runner.logprobs`` call per request, longest first, and one call serves every
request of the same context whose input is a prefix of another's (one-token
continuations of a multiple-choice question share it, as in lm-eval's ``hf``
model). ``loglikelihood_rolling`` scores a text in lm-eval's disjoint windows
(``lm_eval.utils.get_rolling_token_windows``, one token of context). Generation
is greedy unless a task asks for sampling, and stops at the task's ``until``
strings, end of sequence or ``max_gen_toks``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    from lm_eval.api.model import TemplateLM
except ImportError as exc:  # pragma: no cover - the message is what matters
    raise ImportError("edgesmith's lm-eval model needs lm-evaluation-harness; "
                      "pip install 'edgesmith[lmeval]'") from exc

from .errors import UserError
from .runner import Runner

log = logging.getLogger("edgesmith")

#: lm-eval's default context for models that do not say theirs (its hf model uses 2048 too).
DEFAULT_MAX_LENGTH = 2048
#: Model arguments lm-eval itself passes to every model; accepted and not used.
_LM_EVAL_ARGS = ("batch_size", "max_batch_size")
ALLOW_DOWNLOAD_FLAG = "--allow-download"


def _options(value: Any) -> dict[str, str]:
    """``options`` as a mapping or ``KEY=VALUE;KEY=VALUE`` (model_args split on commas)."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for part in str(value).split(";"):
        key, sep, val = part.partition("=")
        if not sep or not key.strip():
            raise UserError(f"options {value!r}: give KEY=VALUE pairs separated by ';' "
                            f"(e.g. options=device=CPU;threads=2)")
        out[key.strip()] = val.strip()
    return out


def _int_arg(name: str, value: Any, low: int = 1) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UserError(f"model argument {name}={value!r} is not a whole number") from None
    if n < low:
        raise UserError(f"model argument {name} must be at least {low}, got {n}")
    return n


class EdgesmithLM(TemplateLM):
    """An edgesmith artifact (or an already loaded ``runner``) as an lm-eval model."""

    def __init__(self, artifact: str | Path | None = None, backend: str | None = None,
                 threads: int | None = None, options: Any = None, prefix_token_id: int | None = None,
                 max_length: int | None = None, max_gen_toks: int = 256, device: str | None = None,
                 runner: Runner | None = None, **kwargs: Any):
        super().__init__()
        unknown = sorted(k for k in kwargs if k not in _LM_EVAL_ARGS)
        if "trust_remote_code" in unknown:
            raise UserError("edgesmith never runs code from a checkpoint; drop trust_remote_code")
        if unknown:
            raise UserError(f"unknown model argument(s) {', '.join(unknown)} for --model edgesmith; it takes "
                            f"artifact, backend, threads, options, prefix_token_id, max_length, max_gen_toks")
        if device not in (None, "cpu"):
            log.warning("edgesmith: device=%s is not used; the backend places the model (give it as "
                        "options=device=..., if the backend has that setting)", device)
        # Every argument is checked before the model is loaded.
        self._max_length = _int_arg("max_length", max_length, 2)
        self._max_gen_toks = _int_arg("max_gen_toks", max_gen_toks)
        self._prefix = _int_arg("prefix_token_id", prefix_token_id, 0)
        n_threads = _int_arg("threads", threads)
        opts = _options(options)
        if runner is None and not artifact:
            raise UserError("give the model as artifact=PATH in --model_args (a GGUF file, an "
                            "OpenVINO/ONNX/MLX/Hugging Face folder)")
        from .measure.text import special_prefix
        from .specialtokens import Specials, read

        self._specials = read(artifact) if artifact else Specials()
        self.artifact = str(artifact) if artifact else None
        self._owned = runner is None
        if runner is None:
            from . import api

            runner = api.load(artifact, backend=backend or None, options=opts, threads=n_threads)
        self.runner = runner
        try:
            self._added_prefix = special_prefix(runner.tokenize)
        except BaseException:
            self.close()
            raise

    # -- what lm-eval asks of a model ---------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        eos = self._specials.eos_id
        return eos if eos is not None else self.prefix_token_id

    @property
    def prefix_token_id(self) -> int:
        """The token an empty context stands for: the given one, else BOS (the one the
        tokenizer adds, else the one it declares), else EOS, as lm-eval's hf model does."""
        if self._prefix is not None:
            return self._prefix
        if self._added_prefix:
            return self._added_prefix[-1]
        for tok in (self._specials.bos_id, self._specials.eos_id):
            if tok is not None:
                return tok
        raise UserError("this model's files declare no BOS or EOS token, which lm-eval needs as the "
                        "context of a text scored from its start; give prefix_token_id=ID in --model_args")

    @property
    def max_length(self) -> int:
        return self._max_length or self.runner.context_length or DEFAULT_MAX_LENGTH

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks or 256

    @property
    def tokenizer_name(self) -> str:
        return f"edgesmith-{self.runner.backend}-{Path(self.artifact or 'runner').name}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return "" if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not add_generation_prompt:
            raise UserError("edgesmith renders chat prompts with the assistant's turn opened; "
                            "leave the last message to the model")
        return self.runner.chat_prompt(chat_history)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs: Any) -> list[int]:
        add = True if add_special_tokens is None else bool(add_special_tokens)
        if add_special_tokens is None and self._specials.bos_text and string.startswith(self._specials.bos_text):
            add = False  # a chat prompt that carries its own BOS gets no second one
        ids = self.runner.tokenize(string, add_special=add)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.runner.detokenize(tokens)

    # -- scoring ---------------------------------------------------------------------------

    def _loglikelihood_tokens(self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False,
                              **kwargs: Any) -> list[tuple[float, bool]]:
        import numpy as np
        from tqdm import tqdm

        limit = self.max_length
        # The model input of each request: context + continuation without its last token,
        # left-truncated to the context length; the last len(cont) rows score the continuation.
        inputs = []
        for _key, ctx, cont in requests:
            if not cont:
                raise UserError("lm-eval sent an empty continuation to score; the task's choices or "
                                "targets must not be empty")
            inputs.append((ctx + cont)[-(limit + 1):][:-1])
        groups: dict[tuple[int, ...], list[int]] = {}
        for n, (_key, ctx, _cont) in enumerate(requests):
            groups.setdefault(tuple(ctx), []).append(n)
        order = sorted(groups.values(), key=lambda g: -max(len(inputs[n]) for n in g))
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="edgesmith: scoring")
        for group in order:
            group.sort(key=lambda n: -len(inputs[n]))
            scored: list[tuple[list[int], Any]] = []  # this context's inputs and their log-probabilities
            for n in group:
                inp, cont = inputs[n], requests[n][2]
                lp = next((m for s, m in scored if len(s) >= len(inp) and s[: len(inp)] == inp), None)
                if lp is None:
                    lp = np.asarray(self.runner.logprobs(inp), dtype=np.float32)
                    scored.append((inp, lp))
                rows = lp[len(inp) - len(cont): len(inp)]
                target = np.asarray(cont, dtype=np.int64)
                ll = float(rows[np.arange(len(cont)), target].astype(np.float64).sum())
                greedy = bool((rows.argmax(axis=1) == target).all())
                out[n] = (ll, greedy)
                if requests[n][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[n][0], out[n])
                bar.update(1)
        bar.close()
        return out  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for req in requests:
            (text,) = req.args
            windows = [(None, *make_disjoint_window(w)) for w in get_rolling_token_windows(
                token_list=self.tok_encode(text, add_special_tokens=False), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)]
            total = sum(ll for ll, _ in self._loglikelihood_tokens(windows, disable_tqdm=True))
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return out

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
        from tqdm import tqdm

        from .promptids import generate_from_ids
        from .types import RunRequest

        prompts = [self.tok_encode(req.args[0]) or [self.prefix_token_id] for req in requests]
        out: list[str | None] = [None] * len(requests)
        for n in tqdm(sorted(range(len(requests)), key=lambda n: -len(prompts[n])), disable=disable_tqdm,
                      desc="edgesmith: generating"):
            context, gen_kwargs = requests[n].args
            kw = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            stops = handle_stop_sequences(kw.pop("until", None), eos=None)
            max_new = int(kw.pop("max_gen_toks"))
            room = self.max_length - max_new
            if room < 1:
                raise UserError(f"the task asks for {max_new} new tokens, which leaves no room in the "
                                f"model's context of {self.max_length} tokens")
            sample = bool(kw.get("do_sample")) and float(kw.get("temperature") or 0) > 0
            request = RunRequest(max_tokens=max_new, temperature=float(kw["temperature"]) if sample else 0.0,
                                 top_p=float(kw.get("top_p") or 1.0), top_k=int(kw.get("top_k") or 0),
                                 seed=kw.get("seed"), stop=tuple(s for s in stops if s))
            text = generate_from_ids(self.runner, prompts[n][-room:], request).text
            out[n] = text
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return out  # type: ignore[return-value]

    def get_model_info(self) -> dict[str, Any]:
        return {"model_backend": f"edgesmith/{self.runner.backend}", "artifact": self.artifact}

    def close(self) -> None:
        """Free the model (when this object loaded it)."""
        if self._owned:
            self.runner.close()

    def __enter__(self) -> EdgesmithLM:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def task_manager(include_path: Sequence[str | Path] = (), *, include_defaults: bool = True) -> Any:
    """lm-eval's TaskManager with edgesmith's shipped tasks (and ``include_path``) added."""
    from lm_eval.tasks import TaskManager

    from .taskdocs import TASKS_DIR

    return TaskManager(include_path=[str(TASKS_DIR), *map(str, include_path)], include_defaults=include_defaults)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m edgesmith.lmeval ARGS``: lm-eval's CLI (same arguments) with the
    ``edgesmith`` model registered and edgesmith's tasks on the include path; offline
    (no dataset or hub downloads) unless ``--allow-download`` is among the arguments."""
    from . import offline
    from .taskdocs import TASKS_DIR

    args = list(sys.argv[1:] if argv is None else argv)
    if ALLOW_DOWNLOAD_FLAG in args:
        args.remove(ALLOW_DOWNLOAD_FLAG)
    else:
        # datasets and huggingface_hub read these once, at import: set before lm-eval loads them.
        os.environ.update(offline.OFFLINE_ENV)
    if "--include_path" not in args and not any(a.startswith("--include_path=") for a in args):
        args += ["--include_path", str(TASKS_DIR)]
    sys.argv = ["lm_eval", *args]
    from lm_eval.__main__ import cli_evaluate

    try:
        cli_evaluate()
    except UserError as exc:  # edgesmith's own errors (model arguments, the artifact): one line, exit 2
        print(f"edgesmith: error: {exc}", file=sys.stderr)
        sys.exit(2)


def _register() -> None:
    # lm-eval fills its registry with its own models only while the registry is empty:
    # let it do so first. A second import of this module (as __main__) must not re-register.
    import lm_eval.models  # noqa: F401
    from lm_eval.api.registry import model_registry, register_model

    if "edgesmith" not in model_registry:
        register_model("edgesmith")(EdgesmithLM)


if __name__ == "__main__":
    # Run as the imported module: task YAMLs import edgesmith.lmeval, which must be this one.
    from edgesmith.lmeval import main as _main

    _main()
else:
    _register()
