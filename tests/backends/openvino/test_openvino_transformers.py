"""The transformers this backend is pinned to (pins.txt: 5.0.0) exports every
architecture it is meant for; Gemma 3 is the one that decides the pin."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith import api
from edgesmith.types import RunRequest

#: model_type of each family: Llama 3.2 and SmolLM2 (llama), Qwen2.5 (qwen2),
#: Qwen3, Gemma 3 text, Phi-3.5 and Phi-4-mini (phi3).
MODEL_TYPES = ("llama", "qwen2", "qwen3", "gemma3_text", "phi3")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_optimum_intel_accepts_the_installed_transformers(model_type: str) -> None:
    """optimum-intel refuses an export outside its per-architecture bounds
    (Gemma 3: at most 5.0); the pinned transformers is inside all of them."""
    pytest.importorskip("optimum.intel", reason="Hugging Face export needs optimum-intel")
    import optimum.exporters.openvino  # noqa: F401 - registers the OpenVINO export configs
    import transformers
    from optimum.exporters.tasks import TasksManager
    from packaging.version import Version

    make = TasksManager.get_exporter_config_constructor(
        exporter="openvino", model_type=model_type, task="text-generation-with-past",
        library_name="transformers")
    config = getattr(make, "func", make)
    have = Version(transformers.__version__)
    low, high = getattr(config, "MIN_TRANSFORMERS_VERSION", None), getattr(config, "MAX_TRANSFORMERS_VERSION", None)
    assert low is None or have >= Version(str(low)), f"{model_type} needs transformers >= {low}"
    assert high is None or have <= Version(str(high)), f"{model_type} needs transformers <= {high}, have {have}"


def _tiny_gemma3(dest, tiny_model):
    """Gemma 3 text (Gemma3ForCausalLM): 2 layers, one sliding (window 16) and
    one full, written by transformers itself, with the test kit's tokenizer."""
    import shutil

    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    base = tiny_model("llama")
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=16,
                           layer_types=["sliding_attention", "full_attention"], max_position_embeddings=2048,
                           bos_token_id=1, eos_token_id=2, pad_token_id=0)
    Gemma3ForCausalLM(cfg).save_pretrained(dest, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        shutil.copy(base / name, dest / name)
    return dest


def test_gemma3_text_exports_and_scores_like_transformers(tiny_model, tmp_path) -> None:
    pytest.importorskip("optimum.intel", reason="Hugging Face export needs optimum-intel")
    import torch
    from transformers import AutoModelForCausalLM

    src = _tiny_gemma3(tmp_path / "gemma3", tiny_model)
    ir = api.convert(src, "openvino", tmp_path / "ir", backend="openvino", dtype="fp32").path
    # float32 execution: OpenVINO's CPU default is bf16 where the CPU has it.
    blob = api.compile(ir, "cpu", tmp_path / "cpu", backend="openvino",
                       options={"inference_precision": "f32"}).path
    text = "The morning train left the station. " * 4  # longer than the sliding window
    with api.load(blob, backend="openvino") as runner:
        ids = runner.tokenize(text)
        ours = np.asarray(runner.logprobs(ids), dtype=np.float64)
        reply = runner.generate(RunRequest(prompt="hi", max_tokens=4, temperature=0.0))
    assert reply.generated_tokens >= 1
    assert len(ids) > 16
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1).numpy()
    assert ours.shape == ref.shape
    assert (ours.argmax(1) == ref.argmax(1)).all()
    assert np.abs(ours - ref).max() < 1e-3
