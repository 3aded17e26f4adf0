"""The architecture matrix on Olive / ONNX Runtime GenAI, held to transformers.

Each tiny checkpoint of edgesmith.testing.archs (Llama 3.2, Qwen2.5, Qwen3,
Gemma 3, Phi-3.5, Phi-4-mini, SmolLM2) is converted by Olive's ModelBuilder
pass (onnxruntime-genai's builder) to an **fp32** bundle for the CPU, run
with onnxruntime-genai, and compared with transformers' float32 run on the
same token ids: top-1 agreement >= 0.99, mean KL <= 1e-3, every greedy
token, identical tokenization. Also: the bundle loads in onnxruntime-genai
itself (``og.Model``, ``og.Tokenizer``, a generator step), and a
deliberately broken conversion (RoPE bases halved) is caught.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")
pytest.importorskip("torch", reason="the transformers reference needs torch")
pytest.importorskip("transformers", reason="the transformers reference needs transformers")

from edgesmith import api  # noqa: E402
from edgesmith.errors import UserError  # noqa: E402
from edgesmith.testing.archs import ARCHITECTURES  # noqa: E402
from edgesmith.testing.fidelity import assert_caught, beyond_embedding, compare, copy_with_config, record  # noqa: E402


@pytest.fixture(scope="module")
def bundle(arch_conversion):
    """``bundle(arch)``: the arch's checkpoint converted to an fp32 GenAI bundle, once."""
    return lambda arch: arch_conversion(arch, "onnx", "olive", dtype="fp32")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bundle_runs_as_transformers_does(arch, arch_model, bundle, record_property):
    art = bundle(arch)
    assert art.details["dtype"] == "fp32"
    with api.load(art.path, backend="olive") as runner:
        result = compare(arch_model(arch), runner, label=f"{arch} / olive fp32")
    record_property("fidelity", result.as_dict())
    record(result)
    assert not result.failures(), result.row() + "\n" + "\n".join(result.failures())
    assert result.chat_equal


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bundle_loads_in_onnxruntime_genai_itself(arch, arch_model, bundle):
    import json

    cfg = json.loads((arch_model(arch) / "config.json").read_text())
    model = og.Model(str(bundle(arch).path))
    tok = og.Tokenizer(model)
    ids = np.asarray(tok.encode("The clockmaker opened the shutters."), dtype=np.int32)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 2, batch_size=1)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    logits = np.asarray(gen.get_output("logits"))
    assert logits.shape[-1] == cfg["vocab_size"] and np.isfinite(logits).all()
    gen.generate_next_token()
    assert 0 <= int(gen.get_next_tokens()[0]) < cfg["vocab_size"]


def test_token_past_the_embedding_is_refused_by_name(arch_model, bundle):
    """Gemma 3's <image_soft_token> (id 512 of a 512-row embedding, as 262144 in the real
    model): the runner refuses it by name instead of ONNX Runtime failing inside Gather."""
    assert beyond_embedding(arch_model("gemma3")) == {"<image_soft_token>": 512}
    with api.load(bundle("gemma3").path, backend="olive") as runner:
        ids = runner.tokenize("Look: <image_soft_token> here")
        assert 512 in ids
        with pytest.raises(UserError, match=r"token id 512 \('<image_soft_token>'\) is outside"):
            runner.logprobs(ids)


def test_harness_catches_a_broken_conversion(arch_model, tmp_path, record_property):
    """A conversion of the checkpoint with every RoPE base halved, held to the original."""
    src = arch_model("llama3.2")
    broken = copy_with_config(src, tmp_path / "checkpoint", rope_theta=0.5)
    art = api.convert(broken, "onnx", tmp_path / "onnx", backend="olive", dtype="fp32")
    with api.load(art.path, backend="olive") as runner:
        result = compare(src, runner, label="llama3.2 / olive fp32, rope_theta x 0.5")
    record_property("fidelity", result.as_dict())
    record(result)
    assert_caught(result)


# -- the fixes the matrix needed ---------------------------------------------------


def test_builder_sees_the_rope_settings_transformers_5_hides():
    from types import SimpleNamespace

    from edgesmith_olive.workarounds import restore_rope_theta

    llama = SimpleNamespace(rope_parameters={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                             "original_max_position_embeddings": 8192,
                                             "rope_theta": 500000.0, "rope_type": "llama3"})
    restore_rope_theta(llama)
    assert llama.rope_theta == 500000.0 and llama.original_max_position_embeddings == 8192
    gemma = SimpleNamespace(rope_parameters={"full_attention": {"factor": 8.0, "rope_theta": 1e6, "rope_type": "linear"},
                                             "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}})
    restore_rope_theta(gemma)
    assert (gemma.rope_theta, gemma.rope_local_base_freq, gemma.rope_position_scale) == (1e6, 10000.0, 0.125)


def test_runner_does_what_tokenizer_json_does_and_genai_leaves_out():
    from edgesmith_olive.runner import _TextRules

    tok = {"added_tokens": [{"id": 1, "content": "<s>", "rstrip": False, "lstrip": False},
                            {"id": 9, "content": "<|end|>", "rstrip": True, "lstrip": False}],
           "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
           "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                       {"Sequence": {"id": "A", "type_id": 0}}]}}
    rules = _TextRules.of(tok)
    assert rules.prefix == 1 and rules.form == "NFC"
    assert rules.prepare("cafe\u0301<|end|>\n  next") == "caf\u00e9<|end|>next"
    assert _TextRules.of({}).prefix is None and _TextRules.of({}).prepare(" x ") == " x "


def test_bundle_keeps_the_source_tokenizer_class(arch_model, bundle):
    """As PreTrainedTokenizerFast the GenAI tokenizer splits Phi-3.5's dummy-prefix '▁' off every
    first word; the source's LlamaTokenizer is put back over transformers 5's TokenizersBackend."""
    import json

    art = bundle("phi3.5")
    assert json.loads((art.path / "tokenizer_config.json").read_text())["tokenizer_class"] == "LlamaTokenizer"
    assert art.details["repairs"]["tokenizer_class"] == ["TokenizersBackend", "LlamaTokenizer"]
