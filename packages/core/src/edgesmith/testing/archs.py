"""Tiny checkpoints of the architectures edge users run, faithful to their published configs.

Each entry of :data:`ARCHITECTURES` follows a real family (see :data:`FOLLOWS`):
the same ``architectures``/``model_type``, the same config keys with the real
non-default values (RoPE bases and scaling, biases, norms, tied embeddings,
sliding windows, special token ids laid out as the real vocabulary lays them
out), written as transformers 5's ``save_pretrained`` writes them (RoPE
settings in ``rope_parameters``, per layer type for Gemma 3), and a tokenizer
of the family's kind trained on the spot with its special tokens and chat
template style. Only the sizes are small (hidden 64-128, 2 layers; Gemma 3
has 6 so that its five-sliding-one-full layer pattern is whole), and Gemma 3's
sliding window is scaled down with them so the test texts cross it.

The weights are random but not small: attention is sharp and position-bound,
each layer writes more into the residual stream than the embedding (else a
tied head mostly predicts the input token), every norm weight differs from one, and the output is scaled so that next-token
distributions are peaked (top-1 probability well above 0.5 at most positions).
A converter that drops a norm, mis-scales attention or gets a RoPE setting
wrong then moves top-1 and KL far outside what rounding does.

``gemma3-4b-text`` is the text model of Gemma 3 4B (and 12B, 27B): linear RoPE
scaling 8 on the full-attention layers and embedding rows past the tokenizer,
where the 1B's tokenizer has a token (``<image_soft_token>``) past its rows.

numpy, tokenizers and safetensors only (no torch): a checkpoint takes well
under a second. ``tokenizer.model`` (SentencePiece) is written for the families that
ship one (Gemma 3, Phi-3.5) by :mod:`edgesmith.testing.spm`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from . import spm
from .tiny import decoder_tensors, train_tokenizer, write_checkpoint

#: The architectures of the matrix, by the name of the real model each follows.
ARCHITECTURES = ("smollm2", "llama3.2", "qwen2.5", "qwen3", "gemma3", "gemma3-4b-text", "phi3.5", "phi4-mini")

#: The published checkpoints whose config.json each entry reproduces (keys and non-default values).
FOLLOWS = {
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "llama3.2": "meta-llama/Llama-3.2-1B-Instruct",
    "qwen2.5": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen3": "Qwen/Qwen3-0.6B",
    "gemma3": "google/gemma-3-1b-it (and gemma-3-270m-it: same keys, no RoPE scaling)",
    "gemma3-4b-text": "the text_config of google/gemma-3-4b-it (also 12B, 27B) as a Gemma3ForCausalLM: "
                      "linear RoPE scaling 8 on the full-attention layers, embedding rows past the tokenizer",
    "phi3.5": "microsoft/Phi-3.5-mini-instruct",
    "phi4-mini": "microsoft/Phi-4-mini-instruct",
}

# -- chat templates, in each family's style (tools and dates left out) ---------

_SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_LLAMA3_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}\n"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = \"\" %}{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}"
    "{{- system_message }}{{- \"<|eot_id|>\" }}\n"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}\n"
)
_QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}\n"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n"
)
_QWEN3_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}\n"
)
_GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}\n"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}\n"
)
_PHI35_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
_PHI4_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and "
    "message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + "
    "message['tools'] + '<|/tool|>' + '<|end|>' }}{% else %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)

# -- RoPE scaling tables of Phi: the published config.json lists (transcribed), taken at the tiny rotary width --

#: Phi-3.5-mini-instruct's ``short_factor`` / ``long_factor`` (48 values each, head_dim 96).
_PHI35_SHORT = [
    1.0, 1.0199999809265137, 1.0299999713897705, 1.0299999713897705, 1.0499999523162842, 1.0499999523162842,
    1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0699999332427979, 1.0999999046325684,
    1.1099998950958252, 1.1599998474121094, 1.1599998474121094, 1.1699998378753662, 1.2899998426437378,
    1.339999794960022, 1.679999828338623, 1.7899998426437378, 1.8199998140335083, 1.8499997854232788,
    1.8799997568130493, 1.9099997282028198, 1.9399996995925903, 1.9899996519088745, 2.0199997425079346,
    2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346,
    2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914,
    2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0799996852874756,
    2.0899996757507324, 2.189999580383301, 2.2199995517730713, 2.5899994373321533, 2.729999542236328,
    2.749999523162842, 2.8399994373321533,
]
_PHI35_LONG = [
    1.0800000429153442, 1.1100000143051147, 1.1399999856948853, 1.340000033378601, 1.5899999141693115,
    1.600000023841858, 1.6200000047683716, 2.620000123977661, 3.2300000190734863, 3.2300000190734863,
    4.789999961853027, 7.400000095367432, 7.700000286102295, 9.09000015258789, 12.199999809265137,
    17.670000076293945, 24.46000099182129, 28.57000160217285, 30.420001983642578, 30.840002059936523,
    32.590003967285156, 32.93000411987305, 42.320003509521484, 44.96000289916992, 50.340003967285156,
    50.45000457763672, 57.55000305175781, 57.93000411987305, 58.21000289916992, 60.1400032043457,
    62.61000442504883, 62.62000274658203, 62.71000289916992, 63.1400032043457, 63.1400032043457,
    63.77000427246094, 63.93000411987305, 63.96000289916992, 63.970001220703125, 64.02999877929688,
    64.06999969482422, 64.08000183105469, 64.12000274658203, 64.41000366210938, 64.4800033569336,
    64.51000213623047, 64.52999877929688, 64.83999633789062,
]
#: Phi-4-mini-instruct's factors (48 values, rotary width 96 of head_dim 128); short and long are equal.
_PHI4_FACTOR = [
    1.0, 1.118320672, 1.250641126, 1.398617824, 1.564103225, 1.74916897, 1.956131817, 2.187582649,
    2.446418898, 2.735880826, 3.059592084, 3.421605075, 3.826451687, 4.279200023, 4.785517845,
    5.351743533, 5.984965424, 6.693110555, 7.485043894, 8.370679318, 9.36110372, 10.4687158,
    11.70738129, 13.09260651, 14.64173252, 16.37415215, 18.31155283, 20.47818807, 22.90118105,
    25.61086418, 28.64115884, 32.03, 32.1, 32.13, 32.23, 32.6, 32.61, 32.64, 32.66, 32.7, 32.71,
    32.93, 32.97, 33.28, 33.49, 33.5, 44.16, 47.77,
]


def _every(values: list[float], n: int) -> list[float]:
    """``n`` values spread evenly over ``values`` (first and last included)."""
    idx = np.linspace(0, len(values) - 1, n).round().astype(int)
    return [values[i] for i in idx]


@attrs.frozen
class Init:
    """Scales of the random weights (see the module docstring). Matrices are
    N(0, gain/sqrt(fan_in)); norms are ``norm + N(0, norm_jitter)``."""

    embed: float = 1.0          # std of the embedding rows
    qk: float = 2.5             # gain of q and k: sharp, position-bound attention
    out: float = 4.0            # gain of o_proj and down_proj: layers outweigh the embedding in the
    #                             residual stream (else a tied head mostly predicts the input token)
    bias: float = 0.3           # std of q/k/v biases
    qk_norm: float = 1.0        # scale of per-head q/k norm weights
    final_norm: float = 1.0     # scale of the final norm: sharpens the output distribution
    sublayer_norm: float = 1.0  # scale of Gemma's norms on the attention and MLP outputs
    norm_jitter: float = 0.15
    #: Gemma stores norm weights as ``w`` in ``x * (1 + w)``.
    norm_offset: float = 0.0
    #: Rows of v at the end of a fused qkv matrix (Phi-3), which keep gain 1.
    qkv_v_rows: int = 0

    def __call__(self, role: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if role.endswith("norm"):
            scale = {"final_norm": self.final_norm, "q_norm": self.qk_norm, "k_norm": self.qk_norm,
                     "post_feedforward_norm": self.sublayer_norm}.get(role, 1.0)
            if role == "post_attention_norm" and self.norm_offset:  # Gemma's is on the attention output
                scale = self.sublayer_norm
            w = scale * (1.0 + self.norm_jitter * rng.standard_normal(shape)) - self.norm_offset
            return w.astype(np.float32)
        if role == "embed" or role == "lm_head":
            return (rng.standard_normal(shape) * self.embed).astype(np.float32)
        if role.endswith("bias"):
            return (rng.standard_normal(shape) * self.bias).astype(np.float32)
        fan_in = shape[1]
        gain = {"q": self.qk, "k": self.qk, "o": self.out, "down": self.out}.get(role, 1.0)
        w = rng.standard_normal(shape) / math.sqrt(fan_in)
        if role == "qkv":  # fused [q; k; v] rows
            w[:shape[0] - self.qkv_v_rows] *= self.qk
        return (w * gain).astype(np.float32)


@attrs.frozen
class _Plan:
    """Everything one checkpoint is made of, before it is written."""

    config: dict[str, Any]
    tokenizer: Any
    tokenizer_config: dict[str, Any]
    special_tokens_map: dict[str, Any]
    generation_config: dict[str, Any]
    init: Init
    weights: dict[str, bool] = attrs.field(factory=dict)  # decoder_tensors variants
    sentencepiece: bytes | None = None


def _added(tok: Any, tokens: list[tuple[str, bool]], rstrip: frozenset[str] = frozenset()) -> dict[str, int]:
    """Add ``tokens`` ((content, special)) after the learned vocabulary; their ids.
    Tokens in ``rstrip`` take the whitespace after them (Phi-3's chat tokens)."""
    from tokenizers import AddedToken

    for content, special in tokens:
        tok.add_tokens([AddedToken(content, special=special, normalized=False, rstrip=content in rstrip)])
    return {content: tok.token_to_id(content) for content, _ in tokens}


def _added_tokens_decoder(tok: Any) -> dict[str, Any]:
    """tokenizer_config.json's ``added_tokens_decoder``, as transformers writes it."""
    return {str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                     "single_word": t.single_word, "special": t.special}
            for i, t in sorted(tok.get_added_tokens_decoder().items())}


def _bos_template(tok: Any, bos: str) -> None:
    from tokenizers import processors

    bid = tok.token_to_id(bos)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, bid)])


def _decoder_keys(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int,
                  max_pos: int, eps: float) -> dict[str, Any]:
    return {"hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
            "max_position_embeddings": max_pos, "rms_norm_eps": eps, "initializer_range": 0.02,
            "use_cache": True, "dtype": "float32", "transformers_version": "5.7.0"}


def _pad(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _smollm2(layers: int) -> _Plan:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
                "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
                "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>",
                "<jupyter_script>", "<empty_output>"]
    tok = train_tokenizer(512, style="smollm2", special_tokens=specials)
    vocab = tok.get_vocab_size()  # 49152 in the real model: the embedding covers the tokenizer exactly
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
           "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
           "head_dim": 32, "hidden_act": "silu", "mlp_bias": False, "pretraining_tp": 1,
           "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}, "tie_word_embeddings": True,
           **_decoder_keys(96, 256, layers, 3, 1, vocab, 8192, 1e-5)}
    tok_cfg = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "bos_token": "<|im_start|>",
               "eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>",
               "clean_up_tokenization_spaces": False, "model_max_length": 8192, "vocab_size": vocab,
               "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "chat_template": _SMOLLM2_TEMPLATE}
    return _Plan(cfg, tok, tok_cfg,
                 {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                  "unk_token": "<|endoftext|>", "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]},
                 {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2},
                 Init(final_norm=0.8))


def _llama32(layers: int) -> _Plan:
    vocab = 512
    tok = train_tokenizer(448, style="llama3", special_tokens=())
    n = tok.get_vocab_size()
    named = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
             "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
             "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    # As in Llama 3, reserved special tokens fill the vocabulary up to the embedding size.
    reserved = [f"<|reserved_special_token_{k}|>" for k in range(3, 3 + vocab - n - len(named))]
    ids = _added(tok, [(t, True) for t in named + reserved])
    _bos_template(tok, "<|begin_of_text|>")
    bos, eos = ids["<|begin_of_text|>"], [ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
           "attention_dropout": 0.0, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": None,
           "head_dim": 32, "hidden_act": "silu", "mlp_bias": False, "pretraining_tp": 1,
           "rope_parameters": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                               "original_max_position_embeddings": 8192, "rope_theta": 500000.0,
                               "rope_type": "llama3"},
           "tie_word_embeddings": True, **_decoder_keys(128, 384, layers, 4, 1, vocab, 131072, 1e-5)}
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
               "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True,
               "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
               "chat_template": _LLAMA3_TEMPLATE}
    return _Plan(cfg, tok, tok_cfg, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                 {"bos_token_id": bos, "eos_token_id": eos, "do_sample": True, "temperature": 0.6,
                  "top_p": 0.9},
                 Init(final_norm=0.8))


_QWEN2_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
                ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
                ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
                ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
                ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
                ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
                ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
                ("<|file_sep|>", False)]


def _qwen(layers: int, version: str) -> _Plan:
    tok = train_tokenizer(456, style="qwen2", special_tokens=())
    added = _QWEN2_ADDED + ([("<tool_response>", False), ("</tool_response>", False), ("<think>", False),
                             ("</think>", False)] if version == "3" else [])
    ids = _added(tok, added)
    # The embedding has rows past the tokenizer, as Qwen's 151936 rows for 151665/151669 tokens.
    vocab = _pad(tok.get_vocab_size(), 128)
    eot, im_end = ids["<|endoftext|>"], ids["<|im_end|>"]
    common = {"attention_dropout": 0.0, "bos_token_id": eot, "eos_token_id": im_end, "hidden_act": "silu",
              "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "sliding_window": None,
              "use_sliding_window": False, "tie_word_embeddings": True, "pad_token_id": None}
    if version == "3":
        cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False,
               "head_dim": 32,  # 4 heads x 32 = 128, twice hidden_size (Qwen3-0.6B: 16 x 128 = 2048 vs 1024)
               "max_window_layers": 28, **common, **_decoder_keys(64, 192, layers, 4, 2, vocab, 40960, 1e-6)}
        template, gen = _QWEN3_TEMPLATE, {"temperature": 0.6, "top_k": 20, "top_p": 0.95}
        init = Init(final_norm=1.2, qk_norm=2.2, qk=1.0)
    else:
        cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "max_window_layers": 21,
               **common, **_decoder_keys(128, 352, layers, 4, 2, vocab, 32768, 1e-6)}
        template, gen = _QWEN25_TEMPLATE, {"temperature": 0.7, "top_k": 20, "top_p": 0.8,
                                            "repetition_penalty": 1.05}
        init = Init(final_norm=1.0)
    cfg["layer_types"] = ["full_attention"] * layers
    tok_cfg = {"tokenizer_class": "Qwen2Tokenizer", "add_prefix_space": False, "bos_token": None,
               "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
               "errors": "replace", "split_special_tokens": False, "clean_up_tokenization_spaces": False,
               "model_max_length": 131072, "chat_template": template,
               "additional_special_tokens": [t for t, special in _QWEN2_ADDED if special][1:]}
    return _Plan(cfg, tok, tok_cfg,
                 {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                  "additional_special_tokens": tok_cfg["additional_special_tokens"]},
                 {"bos_token_id": eot, "eos_token_id": [im_end, eot], "pad_token_id": eot, "do_sample": True,
                  **gen},
                 init, {"qkv_bias": version == "2.5", "qk_norm": version == "3"})


def _gemma3(layers: int, sliding_window: int, text_of_4b: bool = False) -> _Plan:
    vocab = 512
    leading = [("<pad>", spm.CONTROL), ("<eos>", spm.CONTROL), ("<bos>", spm.CONTROL), ("<unk>", spm.UNKNOWN),
               ("<mask>", spm.CONTROL), ("[multimodal]", spm.CONTROL), ("<start_of_turn>", spm.CONTROL),
               ("<end_of_turn>", spm.CONTROL), ("<start_of_image>", spm.CONTROL), ("<end_of_image>", spm.CONTROL)]
    pieces = spm.train(vocab - len(leading) - 256, leading=leading, dummy_prefix=False)
    while len(pieces) < vocab:  # Gemma's unused pieces fill the vocabulary
        pieces.append((f"<unused{len(pieces)}>", 0.0, spm.USER_DEFINED))
    tok = spm.hf_tokenizer(pieces, dummy_prefix=False)
    # Gemma 3's tokenizer has one token more than its text embedding has rows:
    # <image_soft_token> is id 262144 of a 262144-row embedding (1B, 270M; transformers#37011).
    # The 4B and larger have 262208 rows, past the tokenizer's 262145 tokens.
    ids = _added(tok, [("<image_soft_token>", True)])
    assert ids["<image_soft_token>"] == vocab
    full = {"rope_theta": 1000000.0, "rope_type": "default"}
    rows, max_pos = vocab, 32768
    if text_of_4b:
        full = {"factor": 8.0, "rope_theta": 1000000.0, "rope_type": "linear"}
        rows, max_pos = vocab + 64, 131072
    _bos_template(tok, "<bos>")
    pattern = 6  # five sliding-window layers, then one full-attention layer
    cfg = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "_sliding_window_pattern": pattern,
           "attention_bias": False, "attention_dropout": 0.0, "attn_logit_softcapping": None,
           "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 7],
           "final_logit_softcapping": None, "head_dim": 32, "hidden_activation": "gelu_pytorch_tanh",
           "layer_types": ["sliding_attention" if (n + 1) % pattern else "full_attention" for n in range(layers)],
           "pad_token_id": 0, "query_pre_attn_scalar": 32,
           "rope_parameters": {"full_attention": full,
                               "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
           "sliding_window": sliding_window, "tie_word_embeddings": True, "use_bidirectional_attention": False,
           **_decoder_keys(64, 256, layers, 4, 1, rows, max_pos, 1e-6)}
    tok_cfg = {"tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False,
               "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
               "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>",
               "clean_up_tokenization_spaces": False, "spaces_between_special_tokens": False,
               "model_max_length": 32768, "chat_template": _GEMMA3_TEMPLATE}
    return _Plan(cfg, tok, tok_cfg,
                 {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                  "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                  "image_token": "<image_soft_token>"},
                 {"bos_token_id": 2, "eos_token_id": [1, 7], "pad_token_id": 0, "cache_implementation": "hybrid",
                  "do_sample": True, "top_k": 64, "top_p": 0.95},
                 # Gemma scales the embedding by sqrt(hidden) and normalizes around every sub-layer.
                 Init(embed=1 / 8, final_norm=8.0, sublayer_norm=2.0, qk_norm=1.6, qk=1.0, norm_offset=1.0),
                 {"qk_norm": True, "sandwich_norms": True},
                 spm.model_proto(pieces, dummy_prefix=False, unk=3, bos=2, eos=1, pad=0))


def _phi35(layers: int) -> _Plan:
    leading = [("<unk>", spm.UNKNOWN), ("<s>", spm.CONTROL), ("</s>", spm.CONTROL)]
    pieces = spm.train(400, leading=leading, dummy_prefix=True)
    tok = spm.hf_tokenizer(pieces, dummy_prefix=True)
    added = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
             "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
    # As in Phi-3's tokenizer.json, the chat tokens swallow the whitespace after them
    # (llama.cpp mirrors this for models whose name says Phi-3).
    ids = _added(tok, [(t, True) for t in added], rstrip=frozenset(added[1:]))
    vocab = _pad(tok.get_vocab_size(), 64)  # 32011 tokens, 32064 rows
    eot = ids["<|endoftext|>"]
    heads, hd = 4, 32
    cfg = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "attention_bias": False,
           "attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": eot,
           "hidden_act": "silu", "original_max_position_embeddings": 4096, "pad_token_id": eot,
           "resid_pdrop": 0.0,
           "rope_parameters": {"long_factor": _every(_PHI35_LONG, hd // 2), "original_max_position_embeddings": 4096,
                               "partial_rotary_factor": 1.0, "rope_theta": 10000.0, "rope_type": "longrope",
                               "short_factor": _every(_PHI35_SHORT, hd // 2), "type": "longrope"},
           "sliding_window": 262144, "tie_word_embeddings": False,
           **_decoder_keys(heads * hd, 320, layers, heads, heads, vocab, 131072, 1e-5)}
    tok_cfg = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": False, "add_eos_token": False,
               "bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "unk_token": "<unk>", "legacy": False, "clean_up_tokenization_spaces": False,
               "model_max_length": 131072, "padding_side": "left", "sp_model_kwargs": {},
               "chat_template": _PHI35_TEMPLATE}
    return _Plan(cfg, tok, tok_cfg,
                 {"bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                  "unk_token": "<unk>"},
                 {"bos_token_id": 1, "eos_token_id": [ids["<|end|>"], ids["<|assistant|>"], eot],
                  "pad_token_id": eot},
                 Init(final_norm=1.0), {"fused": True},
                 spm.model_proto(pieces, dummy_prefix=True, unk=0, bos=1, eos=2))


def _phi4mini(layers: int) -> _Plan:
    tok = train_tokenizer(450, style="o200k", special_tokens=())
    names = (["<|endoftext|>"] + [f"<|dummy_{k}|>" for k in range(18)]
             + ["<|endofprompt|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>", "<|tool|>", "<|/tool|>",
                "<|tool_call|>", "<|/tool_call|>", "<|tool_response|>", "<|tag|>"])
    ids = _added(tok, [(t, True) for t in names])
    vocab = _pad(tok.get_vocab_size(), 64)  # 200029 tokens, 200064 rows
    eot = ids["<|endoftext|>"]
    # Phi-4-mini: 24 heads of 128, 8 KV heads; rotary width 96. ONNX Runtime's attention
    # kernel wants the rotary half-width a multiple of 8, as every real model has it.
    heads, kv, hd, partial = 2, 1, 64, 0.75
    rot = int(hd * partial)
    factors = _every(_PHI4_FACTOR, rot // 2)
    cfg = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "attention_bias": False,
           "attention_dropout": 0.0, "bos_token_id": eot, "embd_pdrop": 0.0, "eos_token_id": eot,
           "full_attn_mod": 1, "hidden_act": "silu", "interpolate_factor": 1, "lm_head_bias": False,
           "mlp_bias": False, "original_max_position_embeddings": 4096, "pad_token_id": eot,
           "partial_rotary_factor": partial, "resid_pdrop": 0.0,
           "rope_parameters": {"long_factor": factors, "original_max_position_embeddings": 4096,
                               "partial_rotary_factor": partial, "rope_theta": 10000.0, "rope_type": "longrope",
                               "short_factor": factors, "type": "longrope"},
           "sliding_window": 262144, "tie_word_embeddings": True,
           **_decoder_keys(heads * hd, 320, layers, heads, kv, vocab, 131072, 1e-5)}
    tok_cfg = {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": False, "add_eos_token": False,
               "add_prefix_space": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "clean_up_tokenization_spaces": False,
               "model_max_length": 131072, "chat_template": _PHI4_TEMPLATE}
    return _Plan(cfg, tok, tok_cfg,
                 {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                  "unk_token": "<|endoftext|>"},
                 {"bos_token_id": eot, "eos_token_id": [ids["<|end|>"], eot], "pad_token_id": eot},
                 Init(final_norm=0.8), {"fused": True})


_PLANS: dict[str, Callable[..., _Plan]] = {
    "smollm2": lambda layers, window: _smollm2(layers),
    "llama3.2": lambda layers, window: _llama32(layers),
    "qwen2.5": lambda layers, window: _qwen(layers, "2.5"),
    "qwen3": lambda layers, window: _qwen(layers, "3"),
    "gemma3": lambda layers, window: _gemma3(layers, window),
    "gemma3-4b-text": lambda layers, window: _gemma3(layers, window, text_of_4b=True),
    "phi3.5": lambda layers, window: _phi35(layers),
    "phi4-mini": lambda layers, window: _phi4mini(layers),
}


def arch_checkpoint(dest: str | Path, arch: str, *, layers: int | None = None, sliding_window: int = 48,
                    seed: int = 0) -> Path:
    """Write a tiny checkpoint of ``arch`` (one of :data:`ARCHITECTURES`) to ``dest``; its path.

    ``layers`` defaults to 2 (6 for Gemma 3, one whole sliding/full pattern);
    ``sliding_window`` is Gemma 3's window (512 in the real 1B and 270M).
    """
    if arch not in _PLANS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if layers is None:
        layers = 6 if arch.startswith("gemma3") else 2
    plan = _PLANS[arch](layers, sliding_window)
    cfg = plan.config
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    init = attrs.evolve(plan.init, qkv_v_rows=cfg["num_key_value_heads"] * hd)
    tensors = decoder_tensors(cfg, np.random.default_rng(seed), init, **plan.weights)
    tok_cfg = {"added_tokens_decoder": _added_tokens_decoder(plan.tokenizer), **plan.tokenizer_config}
    dest = write_checkpoint(Path(dest), cfg, tensors, plan.tokenizer, tok_cfg,
                            plan.special_tokens_map, plan.generation_config)
    if plan.sentencepiece is not None:
        (dest / "tokenizer.model").write_bytes(plan.sentencepiece)
    return dest
