"""Shared fixtures for the QNN backend tests.

The test model is a tiny BERT-like encoder written with onnx.helper (see
qnn_testkit.py) plus a real byte-level BPE tokenizer trained on the spot.
Everything runs on the real QNN HTP backend (the simulator on x86-64 Linux).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime_qnn", reason="edgesmith-qnn is not installed with its stack")

from qnn_testkit import LLM_SHAPE, SHAPE, build_encoder, build_unsupported  # noqa: E402

from edgesmith import api  # noqa: E402

# Imported rather than listed in pytest_plugins (allowed only at the top level).
from edgesmith.testing.fixtures import offline  # noqa: E402,F401
from edgesmith.testing.tiny import corpus_text, train_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def encoder(tmp_path_factory) -> Path:
    """Directory with model.onnx (dynamic [batch, sequence] inputs) and tokenizer.json."""
    d = build_encoder(tmp_path_factory.mktemp("encoder") / "fp32")
    train_tokenizer(512).save(str(d / "tokenizer.json"))
    return d


@pytest.fixture(scope="session")
def calib_text(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("calib") / "calib.txt"
    p.write_text(corpus_text())
    return p


@pytest.fixture(scope="session")
def unsupported(tmp_path_factory) -> Path:
    return build_unsupported(tmp_path_factory.mktemp("unsupported") / "det")


@pytest.fixture(scope="session")
def quantized(encoder, calib_text, tmp_path_factory) -> Callable[[str], Path]:
    cache: dict[str, Path] = {}

    def make(scheme: str) -> Path:
        if scheme not in cache:
            out = tmp_path_factory.mktemp(f"q-{scheme}") / scheme
            api.quantize(encoder, out, scheme=scheme, calibration=calib_text, backend="qnn",
                         options=SHAPE)
            cache[scheme] = out
        return cache[scheme]

    return make


@pytest.fixture(scope="session")
def compiled(quantized, tmp_path_factory) -> Callable[[str], Path]:
    cache: dict[str, Path] = {}

    def make(scheme: str) -> Path:
        if scheme not in cache:
            out = tmp_path_factory.mktemp(f"npu-{scheme}") / "npu"
            # One scheme with the target named explicitly (Snapdragon 8 Gen 3: SoC 60, v75).
            target = {"soc_model": "60", "htp_arch": "75"} if scheme == "a8w8" else {}
            api.compile(quantized(scheme), output=out, device="npu", backend="qnn",
                        options={"htp_performance_mode": "burst", **target})
            cache[scheme] = out
        return cache[scheme]

    return make


@pytest.fixture(scope="session")
def reference(encoder) -> Callable[[dict], np.ndarray]:
    """fp32 outputs of the source model on the CPU EP."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(encoder / "model.onnx"), providers=["CPUExecutionProvider"])
    return lambda feed: sess.run(None, feed)[0]


@pytest.fixture(scope="session")
def hf_encoder(tmp_path_factory) -> Path:
    """A tiny random-init transformers BertModel exported with torch.onnx (skips
    when torch/transformers are not installed: they come with the olive backend)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from qnn_testkit import export_hf_bert

    d = export_hf_bert(tmp_path_factory.mktemp("hf-bert") / "bert")
    train_tokenizer(512).save(str(d / "tokenizer.json"))
    return d


@pytest.fixture(scope="session")
def causal_lm(calib_text, tmp_path_factory) -> dict[str, Path]:
    """A fixed-window (32) tiny causal LM with logits: float, and compiled a16w8 for the NPU."""
    root = tmp_path_factory.mktemp("causal")
    fp32 = build_encoder(root / "fp32", causal_seq=32)
    train_tokenizer(512).save(str(fp32 / "tokenizer.json"))
    api.quantize(fp32, root / "q", scheme="a16w8", calibration=calib_text, backend="qnn",
                 options={"placement": "0"})
    api.compile(root / "q", output=root / "npu", device="npu", backend="qnn")
    return {"fp32": fp32, "npu": root / "npu"}


@pytest.fixture(scope="session")
def llm_pipeline(arch_model, tmp_path_factory) -> Callable[[str], dict[str, Path]]:
    """``llm_pipeline(arch)``: {"hf", "float", "qdq", "ctx"} of the test kit's ``arch``
    through convert --to qnn, quantize a16w8 and compile for the NPU; made once."""
    cache: dict[str, dict[str, Path]] = {}

    def make(arch: str) -> dict[str, Path]:
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"llm-{arch}")
            hf = arch_model(arch)
            f = api.convert(hf, to="qnn", backend="qnn", output=out / "float", options=LLM_SHAPE)
            q = api.quantize(f.path, scheme="a16w8", backend="qnn", output=out / "qdq")
            c = api.compile(q.path, device="npu", backend="qnn", output=out / "ctx")
            cache[arch] = {"hf": hf, "float": f.path, "qdq": q.path, "ctx": c.path}
        return cache[arch]

    return make
