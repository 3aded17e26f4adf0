"""A Hugging Face causal LM behind edgesmith's Runner interface (transformers + torch, CPU)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.logsoftmax import log_softmax
from edgesmith.runner import Runner
from edgesmith.types import Artifact, Context, RunRequest
from edgesmith.util import physical_cores

from .checkpoint import open_checkpoint
from .sampling import Sampler


def load(artifact: Artifact, options: Mapping[str, Any], ctx: Context) -> Runner:
    """Handler of ``load hf``; ``options`` are parsed by the core
    (:data:`edgesmith_transformers.options.LOAD`). An encoder checkpoint is
    embedded instead (:mod:`edgesmith_transformers.encoder`)."""
    from edgesmith.encoders import is_encoder_dir

    if is_encoder_dir(Path(artifact.directory)):
        from .encoder import load as load_encoder

        return load_encoder(artifact, options, ctx)
    tokenizer, model = open_checkpoint(artifact, options, ctx)
    import torch

    torch.set_num_threads(ctx.threads or physical_cores())
    return TransformersRunner(tokenizer, model, Path(artifact.directory), options)


class TransformersRunner(Runner):
    def __init__(self, tokenizer: Any, model: Any, path: Path, options: Mapping[str, Any]) -> None:
        self._tok = tokenizer
        self._model = model
        self._path = path
        #: What the model runs in (the ``dtype`` and ``attn_implementation`` options).
        self.compute = dict(options)
        text = model.config.get_text_config()
        self._rows = int(text.vocab_size)
        ctx_len = getattr(text, "max_position_embeddings", None)
        self.context_length = int(ctx_len) if ctx_len else None
        self._eos = _eos_ids(model, tokenizer)

    # -- text -------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return [int(i) for i in self._tok(text, add_special_tokens=add_special)["input_ids"]]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._tok.decode([int(t) for t in token_ids], skip_special_tokens=True)

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        if not getattr(self._tok, "chat_template", None):
            raise UnsupportedError(f"{self._path} has no chat template; use -p PROMPT instead of --chat")
        return self._tok.apply_chat_template([dict(m) for m in messages], tokenize=False,
                                             add_generation_prompt=True)

    # -- the model ----------------------------------------------------------------

    def _input(self, token_ids: Sequence[int]) -> Any:
        import torch

        ids = [int(t) for t in token_ids]
        if not ids:
            raise UserError("nothing to run: give at least one token id")
        bad = next((t for t in ids if not 0 <= t < self._rows), None)
        if bad is not None:
            raise UserError(f"token ids must be in [0, {self._rows}), the rows of the model's embedding; "
                            f"got {bad}{self._past_embedding(bad)}")
        if self.context_length and len(ids) > self.context_length:
            raise UserError(f"{len(ids)} tokens exceed the model's context of {self.context_length}; "
                            f"score shorter windows")
        return torch.tensor([ids], dtype=torch.long)

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        """One forward pass over every position; the log-softmax is the core's
        (the same arithmetic as every backend), over the full vocabulary."""
        import torch

        ids = self._input(token_ids)
        with torch.inference_mode():
            logits = self._model(input_ids=ids, use_cache=False).logits[0]
        return log_softmax(logits.float().numpy())

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        """Prefill the prompt, then one token per step through the KV cache; no
        repetition penalty or other generation_config defaults (a RunRequest means
        the same on every stack)."""
        import torch

        ids = self._input(prompt_ids)
        pick = Sampler(request)
        past = None
        for _ in range(request.max_tokens):
            # Per step, not around the yield: inference mode is the thread's state, and
            # the caller's code runs while this generator waits.
            with torch.inference_mode():
                out = self._model(input_ids=ids, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = pick(out.logits[0, -1].float())
            if token in self._eos:
                return
            yield token
            ids = torch.tensor([[token]], dtype=torch.long)

    def close(self) -> None:
        self._model = None
        self._tok = None

    def _past_embedding(self, token: int) -> str:
        """Why a tokenizer id can lie past the embedding (Gemma 3's <image_soft_token>,
        a token for the vision tower the text model has no row for)."""
        try:
            name = self._tok.convert_ids_to_tokens(int(token))
        except Exception:  # noqa: BLE001 - only for the message
            name = None
        if not name or token < self._rows:
            return ""
        return f" ({name!r}, a token of the tokenizer the model's embedding has no row for; remove it from the text)"


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids that end generation: the generation config's (a list for chat
    models that end turns with their own token), else the model's, else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    values = eos if isinstance(eos, (list, tuple)) else [eos]
    return {int(e) for e in values if e is not None}
