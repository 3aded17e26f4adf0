"""A loaded MLX model behind edgesmith's Runner interface (mlx-lm underneath)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.logsoftmax import log_softmax
from edgesmith.runner import Runner
from edgesmith.types import Artifact, Context, RunRequest, RunResult

from . import mlxio
from .schemes import MX_DTYPES


def load(artifact: Artifact, opts: Mapping[str, Any], ctx: Context) -> MlxRunner:
    """Handler of ``load mlx``; ``opts`` are parsed by the core
    (:data:`edgesmith_mlx.options.LOAD`)."""
    mlxio.quiet_hub()
    import mlx.core as mx

    device = opts.get("device")
    if device == "gpu" and not mx.metal.is_available():
        raise UserError("MLX has no GPU here (Metal needs Apple silicon); use device=cpu")
    if device:
        mx.set_default_device(mx.gpu if device == "gpu" else mx.cpu)
    model, tokenizer, config = mlxio.load(artifact.directory, ctx, lazy=False)
    dtype = MX_DTYPES.get(opts["dtype"])
    if opts["dtype"] == "auto":
        # MLX's CPU kernels for float16/bfloat16 (quantized matmul above all)
        # are tens of times slower than float32; widening scales and float
        # weights loses nothing and makes CPU runs usable.
        dtype = "float32" if mx.default_device() == mx.cpu else None
    if dtype:
        mlxio.cast(model, dtype)
        mx.eval(model.parameters())
    runner = MlxRunner(model, tokenizer, config, artifact.directory, opts["prefill_step"])
    runner.compute_dtype = dtype or mlxio.source_dtype(config) or "model"
    return runner


class MlxRunner(Runner):
    #: dtype the float parameters were run in (see the ``dtype`` option).
    compute_dtype: str = "model"
    #: Sequences longer than this are scored in chunks through the KV cache.
    score_chunk: int = 512

    def __init__(self, model: Any, tokenizer: Any, config: dict[str, Any], path: Path,
                 prefill_step: int) -> None:
        self._model = model
        self._tok = tokenizer
        self._config = config
        self._path = path
        self._prefill_step = prefill_step
        ctx_len = config.get("max_position_embeddings")
        if ctx_len is None and isinstance(config.get("text_config"), dict):
            ctx_len = config["text_config"].get("max_position_embeddings")
        self.context_length = int(ctx_len) if ctx_len else None

    # -- primitives -------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._tok.decode([int(t) for t in token_ids], skip_special_tokens=True)

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        import mlx.core as mx
        from mlx_lm.generate import generate_step
        from mlx_lm.sample_utils import make_sampler

        if not prompt_ids:
            raise UserError("the prompt is empty after tokenization; give a non-empty prompt")
        if request.seed is not None:
            mx.random.seed(request.seed)
        # mlx-lm reads top_p == 0 (not 1) as "off" and temp == 0 as argmax.
        sampler = make_sampler(
            temp=request.temperature,
            top_p=request.top_p if 0 < request.top_p < 1 else 0.0,
            top_k=max(0, request.top_k),
        )
        eos = set(self._tok.eos_token_ids)
        steps = generate_step(
            mx.array(prompt_ids, dtype=mx.uint32),
            self._model,
            max_tokens=request.max_tokens,
            sampler=sampler,
            prefill_step_size=self._prefill_step,
        )
        try:
            for token, _ in steps:
                tok = int(token)
                if tok in eos:
                    return
                yield tok
        finally:
            steps.close()

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        import mlx.core as mx
        from mlx_lm.models.cache import make_prompt_cache

        ids = [int(t) for t in token_ids]
        if not ids:
            raise UserError("nothing to score: give at least one token id")
        vocab = self._vocab_size()
        if vocab and (min(ids) < 0 or max(ids) >= vocab):
            bad = next(t for t in ids if t < 0 or t >= vocab)
            raise UserError(f"token ids must be in [0, {vocab}); got {bad}{_past_embedding(self._tok, bad, vocab)}")
        cache = make_prompt_cache(self._model)
        rows = []
        for start in range(0, len(ids), self.score_chunk):
            chunk = mx.array(ids[start : start + self.score_chunk], dtype=mx.uint32)[None]
            logits = self._model(chunk, cache=cache)[0].astype(mx.float32)
            mx.eval(logits)
            # The core's float64 log-softmax: MLX's CPU logsumexp is off by ~1e-4
            # (its fast exp), so its rows summed to more than 1 and every KL came out
            # negative, clipped to exactly 0.
            rows.append(log_softmax(np.array(logits)))
        return np.concatenate(rows, axis=0)

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        if not getattr(self._tok, "has_chat_template", False):
            raise UnsupportedError(
                f"{self._path} has no chat template; use -p PROMPT instead of --chat"
            )
        return self._tok.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )

    def close(self) -> None:
        import mlx.core as mx

        self._model = None
        self._tok = None
        mx.clear_cache()

    # -- MLX's own memory figure next to the base-class timings ----------------

    def generate(self, request: RunRequest,
                 on_text: Callable[[str], None] | None = None) -> RunResult:
        import mlx.core as mx

        mx.reset_peak_memory()
        result = super().generate(request, on_text=on_text)
        extra = dict(result.extra)
        extra["mlx_peak_memory_mb"] = round(mx.get_peak_memory() / (1024 * 1024), 3)
        extra["mlx_device"] = mlxio.device_name()
        extra["mlx_compute_dtype"] = self.compute_dtype
        return attrs.evolve(result, extra=extra)

    def _vocab_size(self) -> int | None:
        v = self._config.get("vocab_size")
        if v is None and isinstance(self._config.get("text_config"), dict):
            v = self._config["text_config"].get("vocab_size")
        return int(v) if v else None


def _past_embedding(tok: Any, token: int, rows: int) -> str:
    """Why a tokenizer id can lie past the embedding: the tokenizer has more tokens
    than the text model has rows (Gemma 3's <image_soft_token>, for the vision tower)."""
    try:
        name = tok.convert_ids_to_tokens(int(token))
    except Exception:  # noqa: BLE001 - only for the message
        name = None
    if not name or token < rows:
        return ""
    return (f" ({name!r}, a token of the tokenizer that the model's {rows}-row embedding has no row for; "
            f"remove it from the text)")
