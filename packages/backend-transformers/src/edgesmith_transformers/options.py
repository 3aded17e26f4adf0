"""The ``-O KEY=VALUE`` settings of ``load hf``. Declarations only: no torch import."""

from __future__ import annotations

from edgesmith.options import Option

#: Canonical dtype name (:func:`edgesmith.options.canonical_dtype`) -> torch's attribute.
TORCH_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}

#: Attention kernels offered: eager is transformers' plain matmul-softmax, whose
#: logits are what every conversion is held to; sdpa is PyTorch's fused kernel.
ATTENTION = ("eager", "sdpa")

LOAD = (
    Option("dtype", "dtype", "compute dtype of the weights; f32 is the reference, bf16/f16 halve "
           "the memory and move the logits", default="f32", choices=tuple(TORCH_DTYPES)),
    Option("attn_implementation", "choice", "attention kernel: eager (exact logits, the reference) "
           "or sdpa (PyTorch's fused attention, faster on long prompts)", default="eager",
           choices=ATTENTION),
    Option("max_length", "int", "encoders: tokens kept of a text (cut as an export of that fixed "
           "length cuts it); default: the checkpoint's max_position_embeddings", min=1),
)
