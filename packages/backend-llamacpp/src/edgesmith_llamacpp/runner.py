"""Run a GGUF with llama-cpp-python's `Llama`, behind edgesmith's Runner interface."""

from __future__ import annotations

import contextlib
import random
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from edgesmith.errors import BackendError, UserError
from edgesmith.logsoftmax import log_softmax
from edgesmith.options import Option, parse
from edgesmith.runner import Runner
from edgesmith.types import Artifact, Context, RunRequest
from edgesmith.util import physical_cores

from . import ggufinfo
from .options import DEFAULT_MAX_CTX, LOAD_OPTIONS
from .plugin import LOAD, NAME
from .pretokenizer import NORMALIZE_FIRST


def model_bounds(trained: int | None, n_ctx: int) -> tuple[Option, ...]:
    """LOAD_OPTIONS held to one model: n_ctx up to its trained context, n_batch up to ``n_ctx``."""
    ctx_opt, batch_opt = LOAD_OPTIONS[:2]
    if trained:
        ctx_opt = attrs.evolve(ctx_opt, max=min(int(trained), ctx_opt.max))
    return ctx_opt, attrs.evolve(batch_opt, max=n_ctx)


def load(artifact: Artifact, options: Mapping[str, Any], ctx: Context) -> LlamaCppRunner:
    """Handler of ``load gguf``; ``options`` are parsed by the core
    (:data:`edgesmith_llamacpp.options.LOAD_OPTIONS`) and held here to the model's bounds."""
    path = artifact.main_file
    reader = ggufinfo.read(path)  # a truncated file becomes a one-line UserError here
    arch = ggufinfo.field(reader, "general.architecture")
    trained = ggufinfo.field(reader, f"{arch}.context_length") if arch else None
    del reader
    n_ctx = options.get("n_ctx", min(int(trained or DEFAULT_MAX_CTX), DEFAULT_MAX_CTX))
    n_batch = options.get("n_batch", min(512, n_ctx))
    parse(model_bounds(trained, n_ctx), {k: options[k] for k in ("n_ctx", "n_batch") if k in options},
          backend=NAME, operation=LOAD.label)
    threads = ctx.threads or physical_cores()
    import llama_cpp
    from llama_cpp import Llama

    # llama.cpp keeps keys and values in f16 by default, which alone moves an f32
    # model's next-token distributions by a KL of ~1e-4 and flips near-ties.
    kv = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} \
        if options.get("kv_cache") == "f32" else {}
    try:
        with extra_buffers(repack_wanted(options.get("repack", "auto"))):
            llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_batch, n_threads=threads,
                        n_threads_batch=threads, n_gpu_layers=0, verbose=False, **kv)
    except ValueError as e:
        raise UserError(f"llama.cpp could not load {path} ({e}); the file may be truncated, "
                        f"corrupt, or of an architecture this llama.cpp does not know") from None
    return LlamaCppRunner(llm, path, threads)


def repack_wanted(choice: str) -> bool:
    """Whether llama.cpp may put weights in its extra buffer types. On an AMX CPU
    (seen: a Sapphire Rapids VM) ggml's AMX buffers segfault in the first
    multi-token decode, so auto leaves them off there."""
    if choice != "auto":
        return choice == "on"
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return True
    return "amx_int8" not in flags


@contextlib.contextmanager
def extra_buffers(on: bool) -> Iterator[None]:
    """Llama() takes no argument for llama_model_params.use_extra_bufts: hand it
    default parameters with the field set, for this construction only."""
    import llama_cpp.llama as llama_module

    if on:
        yield
        return
    bindings = llama_module.llama_cpp  # the ctypes module llama.py calls through
    default = bindings.llama_model_default_params

    def params() -> Any:
        p = default()
        p.use_extra_bufts = False
        return p

    bindings.llama_model_default_params = params
    try:
        yield
    finally:
        bindings.llama_model_default_params = default


class LlamaCppRunner(Runner):
    def __init__(self, llm: Any, path: Path, threads: int):
        self._llm = llm
        self.path = path
        self.threads = threads
        self.context_length = llm.n_ctx()
        self._eog = self._eog_checker()
        self._normal_form = NORMALIZE_FIRST.get(str(llm.metadata.get("tokenizer.ggml.pre", "")))

    # -- tokens ---------------------------------------------------------------

    def _eog_checker(self) -> Any:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        return lambda tok: bool(llama_cpp.llama_vocab_is_eog(vocab, tok))

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        if self._normal_form:
            # As the source tokenizer does: "cafe\u0301" and "café" are the same tokens.
            text = unicodedata.normalize(self._normal_form, text)
        # special=True: chat prompts carry control tokens such as <|im_start|> as text.
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._llm.detokenize(list(token_ids), special=False).decode("utf-8", errors="replace")

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        if not prompt_ids:
            # llama.cpp samples from the last evaluated token; with none it fails an assertion.
            raise UserError("the prompt is empty (no tokens to start from); give some text with -p")
        llm = self._llm
        seed = request.seed if request.seed is not None else random.SystemRandom().randrange(2**31)
        llm.set_seed(seed)
        # Re-evaluate the whole prompt each time: prefix reuse would make prefill timings
        # depend on the previous request.
        llm.reset()
        count = 0
        for tok in llm.generate(prompt_ids, temp=max(0.0, request.temperature), top_k=request.top_k,
                                top_p=request.top_p, min_p=0.0, typical_p=1.0, repeat_penalty=1.0,
                                reset=True):
            if self._eog(tok):
                return
            yield int(tok)
            count += 1
            if count >= request.max_tokens:
                return

    # -- scoring --------------------------------------------------------------

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        import llama_cpp

        ids = [int(t) for t in token_ids]
        if not ids:
            return np.zeros((0, self._llm.n_vocab()), dtype=np.float32)
        if len(ids) > self.context_length:
            raise UserError(f"{len(ids)} tokens do not fit the context of {self.context_length}; "
                            f"score shorter windows or load with --option n_ctx=N")
        llm = self._llm
        n_vocab = llm.n_vocab()
        n_batch = llm.n_batch
        llm.reset()
        mem = llama_cpp.llama_get_memory(llm.ctx)
        llama_cpp.llama_memory_clear(mem, True)
        out = np.empty((len(ids), n_vocab), dtype=np.float32)
        batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        try:
            for start in range(0, len(ids), n_batch):
                chunk = ids[start:start + n_batch]
                batch.n_tokens = len(chunk)
                for i, tok in enumerate(chunk):
                    batch.token[i] = tok
                    batch.pos[i] = start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = True  # a distribution at every position
                rc = llama_cpp.llama_decode(llm.ctx, batch)
                if rc != 0:
                    raise BackendError(f"llama_decode failed with code {rc} while scoring")
                ptr = llama_cpp.llama_get_logits(llm.ctx)
                out[start:start + len(chunk)] = np.ctypeslib.as_array(
                    ptr, shape=(len(chunk) * n_vocab,)).reshape(len(chunk), n_vocab)
        finally:
            llama_cpp.llama_batch_free(batch)
            llama_cpp.llama_memory_clear(mem, True)
            llm.reset()
        return log_softmax(out)

    # -- chat -----------------------------------------------------------------

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            return super().chat_prompt(messages)
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        try:
            return env.from_string(template).render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=True,
                bos_token=self._special_text("tokenizer.ggml.bos_token_id"),
                eos_token=self._special_text("tokenizer.ggml.eos_token_id"),
            )
        except TemplateError as e:
            raise UserError(f"the model's chat template failed: {e}; check the messages' roles") from None

    def _special_text(self, key: str) -> str:
        tok = self._llm.metadata.get(key)
        if tok is None:
            return ""
        return self._llm.detokenize([int(tok)], special=True).decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


