"""docs/models.md claims, cell by cell, what the backends declare now: measured
where a backend takes the architecture, refused (with its reason) where it
does not (regenerate with `python docs/gen_models.py --log .nox/fidelity.jsonl`)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS))
import gen_models  # noqa: E402

from edgesmith import api  # noqa: E402


def test_every_cell_claims_what_the_backends_declare():
    claims = gen_models.page_claims((DOCS / "models.md").read_text())
    records = {r.name: r for r in api.backends()}
    for arch, model_type in gen_models.model_types().items():
        for heading, backend, route in gen_models.STACKS:
            want = gen_models.claim(records, backend, route, model_type)
            expected = f"{gen_models.REFUSED}{want}" if want else "measured"
            assert claims[(arch, heading)] == expected, (arch, heading)


def _checkpoint(tmp_path: Path, architecture: str = "BertModel", model_type: str = "bert") -> Path:
    """A checkpoint of an architecture the text stacks must refuse before any work."""
    import json

    import numpy as np
    from safetensors.numpy import save_file

    d = tmp_path / model_type
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": model_type,
                                               "hidden_size": 32, "num_hidden_layers": 1}))
    save_file({"embeddings.word_embeddings.weight": np.zeros((8, 32), dtype=np.float32)},
              str(d / "model.safetensors"))
    return d


def test_inspect_of_an_encoder_offers_only_the_encoder_exports_and_says_why(tmp_path):
    info = api.inspect(_checkpoint(tmp_path))
    assert info["model_type"] == "bert"
    assert not {"llamacpp", "mlx"} & set(info["backends"]), info["backends"]
    # Olive and OpenVINO export it as an encoder (feature extraction), not as a text generator.
    assert info["backends"]["olive"]["convert"] == ["onnx"] and info["backends"]["openvino"]["convert"] == ["openvino"]
    assert {"llamacpp", "mlx"} <= set(info["refused"])
    assert "does not take bert models" in info["refused"]["llamacpp"][0]


def test_optimize_refuses_the_targets_before_building(tmp_path):
    """A causal LM of an architecture no stack declares (GPT-2): refused per target, with
    what each takes, before anything is built."""
    import subprocess

    out = tmp_path / "out"
    model = _checkpoint(tmp_path, "GPT2LMHeadModel", "gpt2")
    r = subprocess.run([sys.executable, "-m", "edgesmith.cli", "optimize", model, "--target",
                        "portable", "--target", "intel-cpu", "-o", out], capture_output=True, text=True,
                       timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("edgesmith: error:")]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "portable: llamacpp convert hf->gguf does not take gpt2 models (it takes llama," in lines[0]
    assert "intel-cpu: openvino convert hf->openvino does not take gpt2 models" in lines[0]
    assert not out.exists()
