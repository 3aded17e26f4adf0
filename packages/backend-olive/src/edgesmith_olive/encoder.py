"""Hugging Face encoder (BERT, MiniLM, RoBERTa, MPNet, DistilBERT) -> a fixed-shape ONNX graph.

ModelBuilder takes causal LMs only, and optimum-onnx pins transformers
below 4.58 (this backend runs 5.7), so the export is torch.onnx's own
(the torch.export-based exporter, ``dynamo=True``) with what transformers 5
needs:

- a wrapper that calls the model with keyword arguments: transformers 5's
  ``forward`` takes more positional parameters (``use_cache``, ...) than the
  exporter's positional inputs line up with;
- eager attention, and an example mask that has padding: the SDPA path
  drops an all-ones mask, and an export traced through it ignores the mask
  for every input afterwards;
- for BERT, RoBERTa, XLM-RoBERTa and DistilBERT, the mask handed over
  already additive and 4-D (``(1 - mask) * -10000``, which transformers
  passes through): its own mask builder indexes with GatherND, which the
  QNN HTP does not take (MPNet refuses a 4-D mask, so its graph keeps one);
- token_type_ids fixed to zeros inside the graph (one segment, as
  sentence embeddings use), so the graph takes input_ids and attention_mask
  only and text calibration (qnn) can fill it.

The graph has batch 1 and ``seq_len`` tokens, static, so the QNN route
(QDQ, context binary) takes it as it is. The tokenizer and the
sentence-transformers pooling configuration are kept beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.encoders import ENCODER_TYPES, copy_encoder_files
from edgesmith.errors import BackendError, UserError
from edgesmith.types import Artifact, Context
from edgesmith.weights import check_tokenizer

MODEL_NAME = "model.onnx"
OPSET = 17
#: model_types whose attention takes a ready 4-D additive mask as it is.
ADDITIVE_MASK = ("bert", "roberta", "xlm-roberta", "distilbert")
#: What a padded position adds to the attention scores (finite, unlike
#: transformers' float32 minimum, so quantizers give it a scale).
MASK_VALUE = -10000.0


def _config(source: Path, ctx: Context) -> dict[str, Any]:
    try:
        cfg = json.loads((source / "config.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{source} has no readable config.json; give a Hugging Face checkpoint "
                        f"directory") from None
    kind = cfg.get("model_type")
    if kind not in ENCODER_TYPES:
        # The core routes by model_type; this guards a direct call.
        raise UserError(f"{source} is a {kind} model, not an encoder ({', '.join(ENCODER_TYPES)}); "
                        f"convert causal LMs with the ModelBuilder route (no -O seq_len)")
    if cfg.get("auto_map") and not ctx.trust_remote_code:
        raise UserError(f"{source} needs its own Python code (auto_map in config.json); review it "
                        f"and pass --trust-remote-code to allow it")
    if not (source / "tokenizer.json").is_file():
        raise UserError(f"{source} has no tokenizer.json (the fast tokenizer edgesmith runs encoders "
                        f"with); save one with transformers' AutoTokenizer.save_pretrained")
    return cfg


def export(source: Artifact, options: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert hf->onnx (encoder)``; ``options`` are parsed by the core
    (:data:`edgesmith_olive.options.ENCODER`)."""
    src = Path(source.path)
    cfg = _config(src, ctx)
    check_tokenizer(src)
    seq_len = int(options["seq_len"])
    limit = cfg.get("max_position_embeddings")
    if isinstance(limit, int) and seq_len > limit:
        raise UserError(f"-O seq_len={seq_len} is longer than the model's {limit} positions; "
                        f"give -O seq_len={limit} or less")
    ctx.progress("loading the checkpoint", None, None)
    import torch
    from transformers import AutoConfig, AutoModel

    if ctx.threads:
        torch.set_num_threads(int(ctx.threads))
    trust = bool(ctx.trust_remote_code)
    hf_cfg = AutoConfig.from_pretrained(src, trust_remote_code=trust)
    hf_cfg._attn_implementation = "eager"
    model = AutoModel.from_pretrained(src, config=hf_cfg, dtype=torch.float32, trust_remote_code=trust,
                                      use_safetensors=True).eval()
    outputs = ["last_hidden_state"]
    probe_ids = torch.full((1, seq_len), 1, dtype=torch.long)
    probe_mask = torch.ones_like(probe_ids)
    probe_mask[0, seq_len // 2:] = 0  # padded, so the mask's path is what gets exported
    with torch.inference_mode():
        probe = model(input_ids=probe_ids, attention_mask=probe_mask)
    if getattr(probe, "pooler_output", None) is not None:
        outputs.append("pooler_output")
    takes_segments = "token_type_ids" in model.forward.__code__.co_varnames
    additive = cfg.get("model_type") in ADDITIVE_MASK

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            kw = {"token_type_ids": torch.zeros_like(input_ids)} if takes_segments else {}
            if additive:
                attention_mask = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * MASK_VALUE
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kw)
            return tuple(getattr(out, name) for name in outputs)

    ctx.progress(f"exporting with torch.onnx (batch 1, {seq_len} tokens)", None, None)
    dest = output / MODEL_NAME
    try:
        torch.onnx.export(Wrapper(model).eval(), (probe_ids, probe_mask), str(dest),
                          input_names=["input_ids", "attention_mask"], output_names=outputs,
                          dynamo=True, opset_version=OPSET, external_data=False, verbose=False)
    except Exception as exc:  # the exporter raises many types, with long multi-line messages
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"torch.onnx could not export {cfg.get('model_type')}: {first}") from None
    for stray in output.glob("*.onnx.data"):  # external_data=False keeps weights inline
        stray.unlink()
    ctx.progress("checking the export against transformers", None, None)
    gap = _max_gap(model, dest, probe_ids, probe_mask, outputs[0])
    (output / "config.json").write_text((src / "config.json").read_text())
    side = copy_encoder_files(src, output)
    import onnx

    return Artifact(path=output, format="onnx", entry=MODEL_NAME, details={
        "exporter": f"torch.onnx (dynamo) {torch.__version__}, opset {OPSET}",
        "task": "feature-extraction", "model_type": cfg.get("model_type"), "seq_len": seq_len,
        "batch": 1, "mask": "additive 4-D" if additive else "transformers' own", "inputs": ["input_ids", "attention_mask"], "outputs": outputs,
        "max_abs_diff_vs_transformers": gap, "onnx": onnx.__version__, "side_files": side})


def _max_gap(model: Any, path: Path, ids: Any, mask: Any, name: str) -> float:
    """Largest absolute difference of the exported graph's token vectors from
    transformers' on the (padded) probe, over unpadded positions; refuses a wrong export."""
    import numpy as np
    import onnxruntime as ort
    import torch

    gen = torch.Generator().manual_seed(0)
    vocab = int(getattr(model.config, "vocab_size", 100) or 100)
    ids = torch.randint(3, max(4, vocab), ids.shape, generator=gen)
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run([name], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    keep = mask.numpy().astype(bool)[0]
    gap = float(np.abs(got[0, keep] - ref[0, keep]).max())
    scale = float(np.abs(ref[0, keep]).max()) or 1.0
    if gap > 1e-3 * max(1.0, scale):
        raise BackendError(f"the ONNX export differs from transformers by {gap:.3g} on unpadded tokens; "
                           f"this model_type needs exporter work")
    return gap
