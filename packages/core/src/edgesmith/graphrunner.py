"""The base of runners for array-only graphs (encoders, vision): named arrays
in, named arrays out, no tokenizer and nothing to generate.

A subclass sets :attr:`~edgesmith.runner.Runner.input_specs` and implements
:meth:`GraphRunner.run_graph`; :meth:`GraphRunner.infer` checks the arrays
first (:func:`edgesmith.graphinputs.check_inputs`), and every text method
refuses with the inputs to give (``run --input NAME=FILE.npy``).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .graphinputs import InputSpec, check_inputs
from .runner import Runner
from .types import RunRequest

if TYPE_CHECKING:
    import numpy as np


class GraphRunner(Runner, abc.ABC):
    """``infer`` only; ``input_specs`` in the order the graph declares them."""

    input_specs: Mapping[str, InputSpec]

    @abc.abstractmethod
    def run_graph(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for ``feed``: every input, checked and in its dtype."""

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_graph(check_inputs(inputs, self.input_specs))

    # A prompt, a chat or scoring is refused before anything is tokenized.

    def prompt_ids(self, request: RunRequest) -> list[int]:
        raise self.takes_arrays()

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        raise self.takes_arrays()

    def logprobs(self, token_ids: Sequence[int]) -> Any:
        raise self.takes_arrays()
