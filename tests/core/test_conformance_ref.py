"""The conformance kit run against the numpy reference backend: the kit itself
must pass on a correct backend (its checks are proven able to fail in
tests/core/test_conformance_kit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing.conformance import BackendConformance


def _sharded(src: Path, dest: Path) -> Path:
    """``src`` with its weights in two safetensors shards (and the index that names them)."""
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name != "edgesmith.json":
            shutil.copy2(f, dest / f.name)
    tensors = load_file(str(src / "model.safetensors"))
    names = sorted(tensors)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for n, part in enumerate(shards, 1):
        fname = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: tensors[k] for k in part}, str(dest / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, fname))
    (dest / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dest


class TestRefConformance(BackendConformance):
    backend = "ref"
    operation = "quantize"
    op_kwargs = {"bits": 8, "group_size": 64}
    # ref reports progress once per shard, before reading it: a two-shard source
    # and the default interrupt_at = 2 interrupt it with the first shard written.

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, tiny_model, tmp_path_factory):
        return _sharded(tiny_model("llama"), tmp_path_factory.mktemp("ref-source") / "llama")

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
