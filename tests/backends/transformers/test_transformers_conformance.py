"""The shared backend conformance kit, run against the real transformers stack.

The backend declares one operation, ``load hf``: it writes no artifact, so the
kit's checks of an operation's output (manifest, interrupt, existing output)
have nothing to check and are switched off below; its bad-input check runs
through ``api.load`` instead, with the refusals a reference runner must make.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers_testkit import pickled, with_config

from edgesmith import api
from edgesmith.testing.conformance import BackendConformance


class TestTransformersConformance(BackendConformance):
    backend = "transformers"
    operation = "load"

    # No operation of this backend writes an output: nothing to hold to the output protocol.
    test_operation_writes_manifest = None
    test_interrupted_operation_leaves_nothing = None
    test_existing_output_is_kept_without_force = None

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, arch_model) -> Path:
        return arch_model("llama3.2")

    @pytest.fixture(autouse=True)
    def _models(self, arch_model, tiny_model, tmp_path_factory) -> None:
        self._arch, self._tiny, self._tmp = arch_model, tiny_model, tmp_path_factory

    def do_operation(self, source: Path, output: Path, **extra):
        # The kit's bad-input check calls this with a model it must refuse; ``output``
        # is unused (loading writes nothing), and the kit checks it stays absent.
        runner = api.load(source, backend=self.backend, **extra)
        runner.close()
        return runner

    def bad_inputs(self, tmp_path):
        llama = self._arch("llama3.2")
        no_tok = with_config(llama, tmp_path / "no-tokenizer")
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (no_tok / name).unlink()
        truncated = with_config(llama, tmp_path / "truncated")
        data = (truncated / "model.safetensors").read_bytes()
        (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
        encoder = with_config(llama, tmp_path / "encoder", model_type="bert", architectures=["BertModel"])
        other_head = with_config(llama, tmp_path / "masked-lm", architectures=["LlamaForSequenceClassification"])
        unknown = with_config(llama, tmp_path / "unknown", model_type="no-such-arch")
        pickle_only = pickled(self._tiny("llama"), tmp_path / "pickle-only")

        def load(src, **kw):
            return lambda out: api.load(src, backend="transformers", **kw)

        return [
            ("pickle-only checkpoint", load(pickle_only)),
            ("no tokenizer", load(no_tok)),
            ("truncated safetensors", load(truncated)),
            ("an encoder", load(encoder)),
            ("weights of another head", load(other_head)),
            ("unknown model_type", load(unknown)),
            ("unknown option", load(llama, options={"colour": "blue"})),
            ("bad dtype", load(llama, options={"dtype": "int3"})),
            ("bad attention", load(llama, options={"attn_implementation": "flash"})),
        ]
