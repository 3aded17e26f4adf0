from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgesmith import Runner
from edgesmith.errors import UserError


def _rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope(x, pos, theta):
    # HF "rotate_half" layout: the two halves of each head form the pairs.
    hd = x.shape[-1]
    inv = theta ** (-np.arange(0, hd, 2) / hd)
    ang = np.outer(pos, inv)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., : hd // 2], x[..., hd // 2 :]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)


class NumpyRunner(Runner):
    def __init__(self, path: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.cfg = json.loads((path / "config.json").read_text())
        if self.cfg.get("model_type") not in ("llama", "qwen2"):
            raise UserError(f"backend ref runs llama and qwen2, not {self.cfg.get('model_type')}")
        self.w = {}
        for f in sorted(path.glob("*.safetensors")):
            self.w.update({k: v.astype(np.float32) for k, v in load_file(str(f)).items()})
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tc = json.loads((path / "tokenizer_config.json").read_text())
        self.template = tc.get("chat_template")
        self.eos = self.cfg.get("eos_token_id")
        self.context_length = self.cfg.get("max_position_embeddings")

    def tokenize(self, text, *, add_special=True):
        return self.tok.encode(text, add_special_tokens=add_special).ids

    def detokenize(self, token_ids):
        return self.tok.decode(list(token_ids), skip_special_tokens=True)

    def chat_prompt(self, messages):
        import jinja2

        return jinja2.Template(self.template).render(messages=list(messages), add_generation_prompt=True)

    def _logits(self, ids):
        c, w = self.cfg, self.w
        h, heads, kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        hd, eps, T = h // heads, c["rms_norm_eps"], len(ids)
        x = w["model.embed_tokens.weight"][ids]
        pos = np.arange(T)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for n in range(c["num_hidden_layers"]):
            p = f"model.layers.{n}."
            a = _rms(x, w[p + "input_layernorm.weight"], eps)
            q, k, v = (a @ w[p + f"self_attn.{m}_proj.weight"].T + w.get(p + f"self_attn.{m}_proj.bias", 0)
                       for m in "qkv")
            q = _rope(q.reshape(T, heads, hd), pos, c["rope_theta"])
            k = _rope(k.reshape(T, kv, hd), pos, c["rope_theta"])
            v = v.reshape(T, kv, hd)
            k, v = np.repeat(k, heads // kv, 1), np.repeat(v, heads // kv, 1)
            s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hqk,khd->qhd", s, v).reshape(T, heads * hd)
            x = x + o @ w[p + "self_attn.o_proj.weight"].T
            m = _rms(x, w[p + "post_attention_layernorm.weight"], eps)
            g = m @ w[p + "mlp.gate_proj.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * (m @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = _rms(x, w["model.norm.weight"], eps)
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        return x @ head.T

    def logprobs(self, token_ids):
        z = self._logits(list(token_ids)).astype(np.float64)
        z -= z.max(-1, keepdims=True)
        return (z - np.log(np.exp(z).sum(-1, keepdims=True))).astype(np.float32)

    def stream_tokens(self, prompt_ids, request):
        ids = list(prompt_ids)
        rng = np.random.default_rng(request.seed)
        for _ in range(request.max_tokens):
            z = self._logits(ids)[-1].astype(np.float64)
            if request.temperature > 0:
                p = np.exp((z - z.max()) / request.temperature)
                nxt = int(rng.choice(len(p), p=p / p.sum()))
            else:
                nxt = int(z.argmax())
            if nxt == self.eos:
                return
            ids.append(nxt)
            yield nxt
