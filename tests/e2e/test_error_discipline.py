"""One error discipline on every real stack: bad input ends in one line
`edgesmith: error: ...`, exit 2, and nothing written.

The cases come from the nothing-lost issue: a corrupt safetensors file, a
checkpoint without a tokenizer, a full disk, an empty prompt.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgesmith.testing.cli import invoke, one_line_error

#: backend -> the format its convert writes from a Hugging Face checkpoint.
CONVERTS = {"llamacpp": "gguf", "openvino": "openvino", "mlx": "mlx", "olive": "onnx"}




@pytest.fixture(scope="module")
def checkpoint(tiny_model):
    # intermediate_size differs from the vocabulary for the ONNX Runtime GenAI builder.
    return tiny_model("llama", intermediate_size=320)


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


@pytest.mark.parametrize("backend", sorted(CONVERTS))
def test_corrupt_safetensors(checkpoint, tmp_path, backend):
    src = _copy(checkpoint, tmp_path / "src")
    w = src / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-64])
    one_line_error(invoke("convert", src, "--to", CONVERTS[backend], "--backend", backend, "-o", tmp_path / "o"),
                   "truncated")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("backend", sorted(CONVERTS))
def test_missing_tokenizer(checkpoint, tmp_path, backend):
    src = _copy(checkpoint, tmp_path / "src")
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        (src / name).unlink(missing_ok=True)
    one_line_error(invoke("convert", src, "--to", CONVERTS[backend], "--backend", backend, "-o", tmp_path / "o"),
                   "tokenizer")
    assert not (tmp_path / "o").exists()


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "small"
    where.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.fail("mounting a tmpfs failed: the full-disk tests run as root (as CI does)")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("backend", sorted(CONVERTS))
def test_full_disk(checkpoint, small_disk, backend):
    one_line_error(invoke("convert", checkpoint, "--to", CONVERTS[backend], "--backend", backend,
                          "-o", small_disk / "o"), "full")
    # Olive keeps its workflow log beside -o on failure, named as a log; nothing else stays.
    assert [p.name for p in small_disk.iterdir() if not p.name.endswith("-failed.log")] == []


@pytest.fixture(scope="module")
def artifacts(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("discipline")
    out = {}
    for backend in ("llamacpp", "openvino"):
        r = invoke("convert", checkpoint, "--to", CONVERTS[backend], "--backend", backend, "-o", root / backend)
        assert r.exit_code == 0, r.output
        out[backend] = root / backend
    return out


@pytest.mark.parametrize("backend", ["llamacpp", "openvino"])
def test_empty_prompt(artifacts, backend):
    one_line_error(invoke("run", artifacts[backend], "-p", ""), "prompt is empty")


def test_deeply_nested_gguf_metadata_on_run(tmp_path):
    from ..core.test_nothing_lost import deep_gguf

    one_line_error(invoke("run", deep_gguf(tmp_path / "deep.gguf"), "-p", "hi"), "nested more than")
