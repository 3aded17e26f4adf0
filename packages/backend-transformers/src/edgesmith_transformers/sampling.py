"""Choosing the next token from logits, as a RunRequest asks: greedy at
temperature 0, otherwise transformers' own temperature, top-k and top-p warpers
and a torch generator seeded per request (so a seed repeats exactly)."""

from __future__ import annotations

import random
from typing import Any

from edgesmith.types import RunRequest


class Sampler:
    def __init__(self, request: RunRequest) -> None:
        import torch

        self.greedy = request.temperature <= 0
        self.warpers: list[Any] = []
        self.generator = None
        if self.greedy:
            return
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.warpers.append(TemperatureLogitsWarper(float(request.temperature)))
        if request.top_k > 0:  # 0: no limit
            self.warpers.append(TopKLogitsWarper(int(request.top_k)))
        if 0 < request.top_p < 1:
            self.warpers.append(TopPLogitsWarper(float(request.top_p)))
        seed = request.seed if request.seed is not None else random.randrange(2**63)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, logits: Any) -> int:
        """The next token id from ``logits`` (1-D, float32, the vocabulary)."""
        import torch

        if self.greedy:
            return int(torch.argmax(logits))
        scores = logits[None, :]
        for warp in self.warpers:
            scores = warp(None, scores)
        probs = torch.softmax(scores[0], dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))
