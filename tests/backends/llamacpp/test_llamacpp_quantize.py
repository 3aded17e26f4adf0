"""GGUF quantization through llama_model_quantize."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest

from edgesmith import api
from edgesmith.errors import UnsupportedError, UserError
from edgesmith_llamacpp import schemes
from edgesmith_llamacpp.quantize import params_for


def test_scheme_table_matches_llama_cpp() -> None:
    import llama_cpp

    for s in schemes.SCHEMES.values():
        assert getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{s.name}") == s.ftype, s.name
    for bits, name in schemes.BITS_DEFAULT.items():
        assert name in schemes.SCHEMES and (bits >= 8 or int(schemes.SCHEMES[name].bpw) <= bits + 1)


def test_byte_identical_to_llama_model_quantize(gguf_of, tmp_path: Path) -> None:
    import llama_cpp

    src = gguf_of("llama") / "model.gguf"
    art = api.quantize(src, tmp_path / "es", scheme="Q4_K_M", backend="llamacpp", threads=2)
    direct = tmp_path / "direct.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(direct).encode(), ctypes.byref(params)) == 0
    assert (art.path / "model.gguf").read_bytes() == direct.read_bytes()
    # ... and edgesmith's params differ from llama.cpp's defaults only where asked.
    ours = params_for(schemes.SCHEMES["Q4_K_M"], threads=2, allow_requantize=False, pure=False)
    for name, ctype in llama_cpp.llama_model_quantize_params._fields_:
        a, b = getattr(ours, name), getattr(params, name)
        if isinstance(ctype, type) and issubclass(ctype, ctypes._Pointer):
            a, b = bool(a), bool(b)  # pointers: both NULL
        assert a == b, name


@pytest.mark.parametrize("scheme", [s.name for s in schemes.SCHEMES.values() if not s.needs_imatrix])
def test_every_plain_scheme_quantizes_and_runs(gguf_of, tmp_path: Path, scheme: str) -> None:
    art = api.quantize(gguf_of("qwen2"), tmp_path / "q", scheme=scheme, backend="llamacpp")
    assert art.details["scheme"] == scheme
    with api.load(art.path, backend="llamacpp") as runner:
        lp = runner.logprobs(runner.tokenize("The library was quiet."))
    assert np.isfinite(lp).all()


@pytest.mark.parametrize("bits, scheme", [(4, "Q4_K_M"), (8, "Q8_0")])
def test_bits_map_to_default_scheme(gguf_of, tmp_path: Path, bits: int, scheme: str) -> None:
    assert schemes.BITS_DEFAULT[bits] == scheme
    art = api.quantize(gguf_of("llama"), tmp_path / "q", bits=bits, backend="llamacpp")
    assert art.details["scheme"] == scheme
    assert json.loads((art.path / "edgesmith.json").read_text())["details"]["scheme"] == scheme


def test_unmapped_bits_are_refused(gguf_of, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--bits 7"):
        api.quantize(gguf_of("llama"), tmp_path / "q", bits=7, backend="llamacpp")


def test_unsupported_common_fields(gguf_of, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="symmetric"):
        api.quantize(gguf_of("llama"), tmp_path / "q", bits=4, symmetric=True, backend="llamacpp")


def test_requantize_needs_the_flag(quantized_of, tmp_path: Path) -> None:
    q4 = quantized_of("llama", "Q4_K_M")
    with pytest.raises(UserError, match="--allow-requantize"):
        api.quantize(q4, tmp_path / "again", scheme="Q3_K_M", backend="llamacpp")
    assert not (tmp_path / "again").exists()
    art = api.quantize(q4, tmp_path / "again", scheme="Q3_K_M", backend="llamacpp", allow_requantize=True)
    assert art.details["requantized"] is True


def test_imatrix_scheme_with_calibration(gguf_of, calibration: Path, tmp_path: Path) -> None:
    art = api.quantize(gguf_of("llama"), tmp_path / "iq", scheme="IQ2_XS", calibration=calibration,
                       backend="llamacpp")
    info = art.details["imatrix"]
    assert info["chunks"] >= 1 and info["entries"] == 2 * 7  # 7 weight matrices per layer, 2 layers
    with api.load(art.path, backend="llamacpp") as runner:
        out = runner.generate(__import__("edgesmith").RunRequest(prompt="Rain came", max_tokens=4))
    assert out.generated_tokens >= 1


def _logprobs(path: Path, text: str) -> np.ndarray:
    with api.load(path, backend="llamacpp") as runner:
        ids = runner.tokenize(text)[:400]
        return np.asarray(runner.logprobs(ids), dtype=np.float64)


def _kl(ref: np.ndarray, other: np.ndarray) -> float:
    return float(np.mean(np.sum(np.exp(ref) * (ref - other), axis=1)))


def test_imatrix_brings_q2_k_closer_to_f32(gguf_of, calibration: Path, tmp_path: Path) -> None:
    """On calibration-like text, matrix-weighted rounding moves the model's predictions less.

    A random-weight model's perplexity is close to the vocabulary size whatever the
    rounding, so the sensitive measure is the KL divergence to the unquantized model.
    """
    src = gguf_of("llama", "f32")
    text = calibration.read_text()
    plain = api.quantize(src, tmp_path / "plain", scheme="Q2_K", backend="llamacpp")
    weighted = api.quantize(src, tmp_path / "weighted", scheme="Q2_K", calibration=calibration,
                            backend="llamacpp")
    ref = _logprobs(src, text)
    assert _kl(ref, _logprobs(weighted.path, text)) < _kl(ref, _logprobs(plain.path, text))


def test_needs_imatrix_flags_match_llama_cpp(gguf_of, tmp_path: Path) -> None:
    """The schemes we refuse without calibration are exactly those llama.cpp cannot do without."""
    import llama_cpp

    from edgesmith_llamacpp.logs import capture_llama_log

    src = str(gguf_of("llama") / "model.gguf").encode()
    for s in schemes.SCHEMES.values():
        if s.name in ("F16", "BF16"):
            continue
        p = params_for(s, threads=2, allow_requantize=False, pure=False)
        with capture_llama_log():
            rc = llama_cpp.llama_model_quantize(src, str(tmp_path / f"{s.name}.gguf").encode(), ctypes.byref(p))
        assert (rc != 0) == s.needs_imatrix, s.name
