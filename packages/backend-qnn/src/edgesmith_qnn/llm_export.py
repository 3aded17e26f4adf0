"""Hugging Face causal LM -> the two static graphs of :mod:`edgesmith_qnn.llm` (float).

Built here rather than with Olive 0.13's StaticLLM pass: that pass only fixes
the shapes of a composite onnxruntime-genai ModelBuilder export whose attention
is the GroupQueryAttention contrib op (it asserts both), and ModelBuilder reads
RoPE settings where transformers 4 kept them, not transformers 5's
``rope_parameters`` (the RoPE bugs the Olive backend works around). Here the
graphs call the checkpoint's own modules (projections, norms, MLP) and take the
rotary angles as inputs from a table transformers computes, so only the
attention arithmetic is written out, in plain 4-D ops the HTP has.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import BackendError, UserError
from edgesmith.types import Artifact, Context
from edgesmith.weights import check_safetensors, check_tokenizer

from . import llm
from .options import LLM_TYPES

OPSET = 17
#: Side files the runner tokenizes and chats with.
TEXT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json",
              "generation_config.json", "chat_template.jinja")
#: Largest gap from transformers' logits a float export may have (float32 rounding is ~1e-5).
MAX_GAP = 1e-3


def _config(src: Path) -> dict[str, Any]:
    import json

    try:
        cfg = json.loads((src / "config.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{src} has no readable config.json; give a Hugging Face checkpoint directory") from None
    kind = cfg.get("model_type")
    if kind not in LLM_TYPES:
        raise UserError(f"the QNN language-model export takes {', '.join(LLM_TYPES)}, not {kind!r}; "
                        f"run other models on the Snapdragon CPU with the llamacpp backend")
    if cfg.get("use_sliding_window") or "sliding_attention" in (cfg.get("layer_types") or ()):
        raise UserError(f"{src} uses sliding-window attention, which the static HTP graphs do not "
                        f"implement yet; use the llamacpp backend")
    return cfg


def export(source: Artifact, options: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert hf->qnn (llm)``; ``options``: :data:`edgesmith_qnn.options.LLM_CONVERT_OPTIONS`."""
    src = Path(source.path)
    cfg = _config(src)
    check_safetensors(src)
    check_tokenizer(src)
    if not (src / "tokenizer.json").is_file():
        raise UserError(f"{src} has no tokenizer.json (the fast tokenizer the HTP runner uses); "
                        f"save one with transformers' AutoTokenizer.save_pretrained")
    context, chunk = int(options["context"]), int(options["chunk"])
    if chunk > context:
        raise UserError(f"-O chunk={chunk} is longer than -O context={context}; give a smaller chunk")
    limit = cfg.get("max_position_embeddings")
    if isinstance(limit, int) and context > limit:
        raise UserError(f"-O context={context} is longer than the model's {limit} positions")
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise UserError("the QNN language-model export needs torch and transformers in the qnn "
                        "environment: edgesmith install qnn --upgrade --with torch --with transformers") from None
    if ctx.threads:
        torch.set_num_threads(int(ctx.threads))
    ctx.progress("loading the checkpoint", None, None)
    model = AutoModelForCausalLM.from_pretrained(
        src, dtype=torch.float32, attn_implementation="eager", local_files_only=True,
        use_safetensors=None if ctx.allow_pickle else True, trust_remote_code=False).eval()
    text = model.config.get_text_config()
    heads, kv = int(text.num_attention_heads), int(text.num_key_value_heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    layers = int(text.num_hidden_layers)
    parts = _parts(options.get("parts"), sum(p.numel() for p in model.parameters()), layers)
    spec = llm.Spec(model_type=cfg["model_type"], vocab_size=int(text.vocab_size), layers=layers,
                    kv_heads=kv, head_dim=head_dim, context=context, chunk=chunk,
                    mask_value=float(options["mask_value"]), graphs={},
                    eos_token_ids=_eos_ids(model), stage="float", parts=parts, hidden_size=int(text.hidden_size))
    spec = spec.evolve(graphs={k: f"{k}.onnx" for k in spec.keys()})
    with torch.inference_mode():
        pos = torch.arange(context)[None]
        cos, sin = model.model.rotary_emb(torch.zeros(1, dtype=torch.float32), pos)
    np.savez(output / llm.ROPE_FILE, cos=cos[0].numpy(), sin=sin[0].numpy())
    for name, width in spec.steps().items():
        for part, key in enumerate(spec.keys(name)):
            ctx.progress(f"exporting the {key} graph ({width} token{'s' if width > 1 else ''}, "
                         f"context {context}" + (f", layers {_span(spec.layer_range(part))})" if parts > 1 else ")"),
                         None, None)
            step = _step_module(torch, model, heads, kv, head_dim, spec.layer_range(part),
                                first=part == 0, last=part == parts - 1)
            _export_graph(torch, step, spec, key, width, output / spec.graphs[key])
    for name in TEXT_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, output / name)
    spec.write(output)
    ctx.progress("checking the graphs against transformers", None, None)
    gap = _max_gap(model, output, spec)
    if gap > MAX_GAP:
        raise BackendError(f"the exported graphs' logits differ from transformers' by {gap:.3g} "
                           f"(more than {MAX_GAP}); this architecture's export is wrong, report it")
    import onnx

    details = {"exporter": f"torch.onnx (TorchScript) {torch.__version__}, opset {OPSET}",
               "model_type": cfg["model_type"], "context": context, "chunk": chunk,
               "graphs": dict(spec.graphs), "parts": parts,
               "kv_cache": f"{layers} layers x {kv} heads x {head_dim}, host-held",
               "max_abs_logit_diff_vs_transformers": gap, "onnx": onnx.__version__}
    spec.evolve(details=details).write(output)
    return Artifact(path=output, format="qnn", entry=spec.graphs[spec.keys("decode")[-1]], details=details)


def _eos_ids(model: Any) -> tuple[int, ...]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    values = eos if isinstance(eos, (list, tuple)) else [eos]
    return tuple(int(e) for e in values if e is not None)


#: Weights per part when ``-O parts`` is not given: about 1 GB at 8 bits each, so every
#: context binary stays well inside the HTP's 32-bit address space beside its activations.
PART_WEIGHTS = 1_000_000_000


def _parts(asked: Any, weights: int, layers: int) -> int:
    if asked is None:
        return max(1, min(layers, -(-weights // PART_WEIGHTS)))
    if not 1 <= int(asked) <= layers:
        raise UserError(f"-O parts={asked}: the model has {layers} layers; give 1 to {layers} parts")
    return int(asked)


def _span(r: range) -> str:
    return f"{r.start}-{r.stop - 1}" if len(r) > 1 else str(r.start)


def _step_module(torch: Any, model: Any, heads: int, kv: int, head_dim: int, layers: range, *,
                 first: bool, last: bool) -> Any:
    """One step over C new tokens of ``layers`` against their cache, from the checkpoint's own
    modules: from the token ids when ``first`` (else the hidden state), to logits when ``last``."""
    group = heads // kv

    def rotate(x: Any, cos: Any, sin: Any) -> Any:
        half = x.shape[-1] // 2
        turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + turned * sin

    class Step(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = model

        def forward(self, x: Any, cos: Any, sin: Any, attention_mask: Any, *past: Any) -> Any:
            inner = self.lm.model
            c = x.shape[1]
            h = inner.embed_tokens(x) if first else x
            cos, sin = cos[:, None], sin[:, None]  # [1, 1, C, head_dim]: the same for every head
            new = []
            for j, i in enumerate(layers):
                layer = inner.layers[i]
                attn = layer.self_attn
                y = layer.input_layernorm(h)
                q = attn.q_proj(y).view(1, c, heads, head_dim)
                k = attn.k_proj(y).view(1, c, kv, head_dim)
                v = attn.v_proj(y).view(1, c, kv, head_dim).transpose(1, 2)
                if getattr(attn, "q_norm", None) is not None:  # Qwen3: RMSNorm per head
                    q, k = attn.q_norm(q), attn.k_norm(k)
                q = rotate(q.transpose(1, 2), cos, sin)
                k = rotate(k.transpose(1, 2), cos, sin)
                keys = torch.cat([past[2 * j], k], dim=2)
                values = torch.cat([past[2 * j + 1], v], dim=2)
                # Grouped-query attention one KV head at a time: 4-D broadcasts only.
                outs = []
                for g in range(kv):
                    qg = q[:, g * group:(g + 1) * group]
                    s = torch.matmul(qg, keys[:, g:g + 1].transpose(2, 3)) * attn.scaling + attention_mask
                    outs.append(torch.matmul(torch.softmax(s, dim=-1), values[:, g:g + 1]))
                o = torch.cat(outs, dim=1) if kv > 1 else outs[0]
                h = h + attn.o_proj(o.transpose(1, 2).reshape(1, c, heads * head_dim))
                h = h + layer.mlp(layer.post_attention_layernorm(h))
                new += [k, v]
            return (self.lm.lm_head(inner.norm(h)) if last else h, *new)

    return Step().eval()


def _probe_feed(spec: llm.Spec, width: int) -> dict[str, np.ndarray]:
    """A feed of the graphs' shapes for tracing (values do not matter to the export)."""
    pipe = llm.Pipeline(spec, (np.ones((spec.context, spec.head_dim), np.float32),
                               np.zeros((spec.context, spec.head_dim), np.float32)), {})
    feed = pipe.feed("prefill" if width > 1 else "decode", [1] * width)
    feed["hidden"] = np.zeros((1, width, spec.hidden_size), np.float32)
    return feed


def _export_graph(torch: Any, step: Any, spec: llm.Spec, key: str, width: int, dest: Path) -> None:
    feed = _probe_feed(spec, width)
    names = spec.inputs(key)
    args = tuple(torch.from_numpy(feed[n]) for n in names)
    try:
        with torch.no_grad():  # tracing refuses inference-mode tensors
            torch.onnx.export(step, args, str(dest), input_names=names, output_names=spec.outputs(key),
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except Exception as exc:  # the exporter raises many types, with long multi-line messages
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"torch.onnx could not export the {key} graph: {first}") from None


def _max_gap(model: Any, directory: Path, spec: llm.Spec) -> float:
    """Largest logit difference of the graphs (prefill chunks, then decode steps) from
    transformers' forward over the same tokens."""
    import torch

    n = min(spec.context, 2 * spec.chunk + 3)
    ids = [(7 * i + 3) % spec.vocab_size for i in range(n)]
    pipe = llm.Pipeline(spec, llm.read_rope(directory), llm.cpu_runs(directory, spec))
    got = np.concatenate([pipe.extend(ids[: 2 * spec.chunk]), pipe.extend(ids[2 * spec.chunk:])]) \
        if n > 2 * spec.chunk else pipe.extend(ids)
    with torch.inference_mode():
        want = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].numpy()
    return float(np.abs(got - want).max())
