"""The conformance kit run against the numpy reference backend: the kit itself
must pass on a correct backend (its checks are proven able to fail in
test_conformance_fails.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing.conformance import BackendConformance


class TestRefConformance(BackendConformance):
    backend = "ref"
    operation = "quantize"
    op_kwargs = {"bits": 8, "group_size": 64}

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, tiny_model):
        return tiny_model("llama")

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, tiny_model):
        return tiny_model("qwen2")

    def bad_inputs(self, tmp_path: Path):
        def bad_group(out):
            return api.quantize(self._src, out, bits=4, group_size=48, backend="ref")

        def unknown_scheme(out):
            return api.quantize(self._src, out, scheme="rtn3", backend="ref")

        def unknown_option(out):
            return api.quantize(self._src, out, bits=4, backend="ref", options={"colour": "red"})

        return [("group size not dividing", bad_group), ("unknown scheme", unknown_scheme),
                ("unknown option", unknown_option)]

    @pytest.fixture(autouse=True)
    def _keep_src(self, source):
        self._src = source
