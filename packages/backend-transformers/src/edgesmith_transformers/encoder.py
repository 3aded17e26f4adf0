"""A Hugging Face encoder (BERT, MiniLM, sentence embedders) behind the Runner:
the float32 reference of ``edgesmith eval`` on encoders.

Tokenizer, cut and pooling are the core's (:mod:`edgesmith.encoders`), the
same as every exported encoder's; only the graph differs: transformers'
``AutoModel`` run on the unpadded tokens.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith import encoders
from edgesmith.errors import UserError
from edgesmith.runner import Runner, peak_rss_mb
from edgesmith.types import Artifact, Context, RunRequest
from edgesmith.util import physical_cores

from .checkpoint import prepare, vendor_call


def load(artifact: Artifact, options: Mapping[str, Any], ctx: Context) -> EncoderRunner:
    directory, _ = prepare(artifact, ctx)
    if options.get("dtype", "f32") != "f32":
        raise UserError("an encoder reference runs in float32 only; drop -O dtype")
    import torch
    from transformers import AutoModel

    torch.set_num_threads(ctx.threads or physical_cores())
    ctx.progress("loading the model", None, None)
    model, info = vendor_call(lambda: AutoModel.from_pretrained(
        str(directory), dtype=torch.float32, use_safetensors=None if ctx.allow_pickle else True,
        trust_remote_code=ctx.trust_remote_code, local_files_only=True, output_loading_info=True),
        directory, "model")
    # transformers fills weights the file lacks with random values: refuse, except
    # the pooler (sentence embedders are saved without it and never use it).
    missing = [k for k in info.get("missing_keys") or () if not k.startswith("pooler.")]
    if missing:
        raise UserError(f"{directory}: its weights do not fit its config ({len(missing)} missing, e.g. "
                        f"{missing[0]}); give the checkpoint as it was saved")
    return EncoderRunner(model.eval(), directory, options.get("max_length"))


class EncoderRunner(Runner):
    def __init__(self, model: Any, directory: Path, max_length: int | None) -> None:
        self._model = model
        # A fixed width makes the core's encoder cut texts as a fixed-shape export
        # of that length does; :meth:`infer` drops the padding again.
        width = int(max_length) if max_length else None
        self.input_specs = {"input_ids": ((1, width), np.int64), "attention_mask": ((1, width), np.int64)}
        self.encoder = encoders.TextEncoder(directory, self.input_specs)
        self.context_length = self.encoder.max_len

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``last_hidden_state`` of the unpadded tokens, zero rows where the input was padding."""
        import torch

        mask = np.asarray(inputs["attention_mask"])
        keep = int(mask[0].sum())
        feed = {k: torch.from_numpy(np.asarray(v)[:, :keep]) for k, v in inputs.items()}
        t0 = time.perf_counter()
        with torch.inference_mode():
            hidden = self._model(**feed).last_hidden_state.float().numpy()
        self.last_timings = {"infer_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}
        out = np.zeros((1, mask.shape[1], hidden.shape[-1]), dtype=np.float32)
        out[:, :keep] = hidden
        return {"last_hidden_state": out}

    def generate(self, request: RunRequest, on_text: Any = None) -> Any:
        return encoders.generate(self, self.encoder, request, on_text)

    def close(self) -> None:
        self._model = None
