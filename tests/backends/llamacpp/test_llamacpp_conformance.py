"""The shared backend checks, run on real llama.cpp with tiny models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing.conformance import BackendConformance


def _truncated(src: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    data = (src / "model.gguf").read_bytes()
    path = dest_dir / "model.gguf"
    path.write_bytes(data[: len(data) // 3])
    return path


class TestLlamacppQuantizeConformance(BackendConformance):
    backend = "llamacpp"
    operation = "quantize"
    op_kwargs = {"scheme": "Q8_0"}

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, gguf_of) -> Path:
        return gguf_of("llama")

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, quantized_of) -> Path:
        return quantized_of("llama", "Q4_K_M")

    def bad_inputs(self, tmp_path: Path):
        # Fixtures are not reachable here; build what each case needs on the spot.
        from edgesmith.testing import tiny_checkpoint

        ckpt = tiny_checkpoint(tmp_path / "ckpt", "llama")
        no_tok = tmp_path / "no-tokenizer"
        shutil.copytree(ckpt, no_tok)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (no_tok / name).unlink(missing_ok=True)
        f16 = tmp_path / "f16"
        api.convert(ckpt, "gguf", f16, backend="llamacpp")
        truncated = _truncated(f16, tmp_path / "truncated")
        return [
            ("truncated GGUF", lambda out: api.quantize(truncated, out, scheme="Q4_K_M", backend="llamacpp")),
            ("truncated GGUF run", lambda out: api.load(truncated, backend="llamacpp")),
            ("checkpoint without tokenizer",
             lambda out: api.convert(no_tok, "gguf", out, backend="llamacpp")),
            ("unknown scheme", lambda out: api.quantize(f16, out, scheme="Q7_X", backend="llamacpp")),
            ("IQ type without calibration",
             lambda out: api.quantize(f16, out, scheme="IQ2_XS", backend="llamacpp")),
            ("unsupported --group-size",
             lambda out: api.quantize(f16, out, bits=4, group_size=64, backend="llamacpp")),
            ("unknown option", lambda out: api.quantize(f16, out, scheme="Q8_0", backend="llamacpp",
                                                        options={"colour": "blue"})),
        ]


class TestLlamacppConvertConformance(BackendConformance):
    backend = "llamacpp"
    operation = "convert"
    op_kwargs = {"to": "gguf"}
    # The converter runs in an edgesmith.worker child (about 4 s on the tiny
    # model) while the parent ticks progress: interrupt it mid-conversion and
    # require the child to be gone afterwards.
    child_process = True
    interrupt_after_s = 1.5

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, tiny_model) -> Path:
        return tiny_model("qwen2")

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, gguf_of) -> Path:
        return gguf_of("qwen2")
