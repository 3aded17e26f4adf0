"""The architecture matrix on MLX, held to transformers.

Each tiny checkpoint of edgesmith.testing.archs (Llama 3.2, Qwen2.5, Qwen3,
Gemma 3, Phi-3.5, Phi-4-mini, SmolLM2) is converted to a **float32** MLX
directory with mlx-lm and run in float32 (the CPU build on Linux), then
compared with transformers' float32 run on the same token ids: top-1
agreement >= 0.99, mean KL <= 1e-3, every greedy token, identical
tokenization. Also: the directory loads with ``mlx_lm.load`` itself, and a
deliberately broken conversion (RoPE bases halved) is caught.

The reference needs torch, which the MLX stack does not; without it these
tests skip (``pip install torch`` into the MLX environment to run them).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mlx_lm", reason="edgesmith-mlx is not installed with its stack")
pytest.importorskip("torch", reason="the transformers reference needs torch, which the MLX stack does not install")
pytest.importorskip("transformers", reason="the transformers reference needs transformers")

from edgesmith import api  # noqa: E402
from edgesmith.errors import UserError  # noqa: E402
from edgesmith.testing.archs import ARCHITECTURES  # noqa: E402
from edgesmith.testing.fidelity import assert_caught, beyond_embedding, compare, copy_with_config, record  # noqa: E402


@pytest.fixture(scope="module")
def mlx_f32(arch_conversion):
    """``mlx_f32(arch)``: the arch's checkpoint converted to a float32 MLX directory, once."""
    return lambda arch: arch_conversion(arch, "mlx", "mlx", dtype="float32")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_mlx_runs_as_transformers_does(arch, arch_model, mlx_f32, record_property):
    art = mlx_f32(arch)
    assert art.details["dtype"] == "float32"
    with api.load(art.path, backend="mlx", options={"dtype": "float32"}) as runner:
        result = compare(arch_model(arch), runner, label=f"{arch} / mlx float32")
    record_property("fidelity", result.as_dict())
    record(result)
    assert not result.failures(), result.row() + "\n" + "\n".join(result.failures())
    assert result.chat_equal


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_directory_loads_in_mlx_lm_itself(arch, arch_model, mlx_f32):
    import mlx.core as mx
    from mlx_lm import load

    cfg = json.loads((arch_model(arch) / "config.json").read_text())
    path = mlx_f32(arch).path
    saved = json.loads((path / "config.json").read_text())
    # mlx-lm reads RoPE settings from the top level only; the conversion writes them there.
    rope = cfg["rope_parameters"].get("full_attention", cfg["rope_parameters"])
    assert saved["rope_theta"] == rope["rope_theta"]
    if rope["rope_type"] != "default":
        assert saved["rope_scaling"]["rope_type"] == rope["rope_type"]
    model, tok = load(str(path))
    ids = tok.encode("The clockmaker opened the shutters.")
    logits = model(mx.array([ids]))[0].astype(mx.float32)
    mx.eval(logits)
    logits = np.array(logits)
    assert logits.shape == (len(ids), cfg["vocab_size"]) and np.isfinite(logits).all()
    vendor = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    with api.load(path, backend="mlx", options={"dtype": "float32"}) as runner:
        ours = runner.logprobs(ids)
    if arch == "phi3.5":
        # mlx-lm's SuScaledRoPE always uses long_factor; transformers (and edgesmith's runner,
        # edgesmith_mlx.longrope) use short_factor below 4096 tokens. Phi-4-mini's are equal.
        assert np.abs(vendor - ours).max() > 0.1
    else:
        np.testing.assert_allclose(vendor, ours, atol=1e-4)


def test_token_past_the_embedding_is_refused_by_name(arch_model, mlx_f32):
    """Gemma 3's <image_soft_token> (id 512 of a 512-row embedding, as 262144 in the real
    model) tokenizes as transformers does; scoring it is refused with its name, where
    transformers itself fails with an index error."""
    assert beyond_embedding(arch_model("gemma3")) == {"<image_soft_token>": 512}
    with api.load(mlx_f32("gemma3").path, backend="mlx") as runner:
        ids = runner.tokenize("Look: <image_soft_token> here")
        assert 512 in ids
        with pytest.raises(UserError, match=r"token ids must be in \[0, 512\); got 512 \('<image_soft_token>'"):
            runner.logprobs(ids)


def test_harness_catches_a_broken_conversion(arch_model, tmp_path, record_property):
    """A conversion of the checkpoint with every RoPE base halved, held to the original."""
    src = arch_model("llama3.2")
    broken = copy_with_config(src, tmp_path / "checkpoint", rope_theta=0.5)
    art = api.convert(broken, "mlx", tmp_path / "mlx", backend="mlx", dtype="float32")
    with api.load(art.path, backend="mlx", options={"dtype": "float32"}) as runner:
        result = compare(src, runner, label="llama3.2 / mlx float32, rope_theta x 0.5")
    record_property("fidelity", result.as_dict())
    record(result)
    assert_caught(result)


# -- the fixes the matrix needed ---------------------------------------------------


def test_rope_settings_reach_mlx_lm():
    """transformers 5 keeps RoPE settings in rope_parameters; mlx-lm reads the top level."""
    from edgesmith_mlx.mlxio import rope_theta_fix

    llama3 = {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
              "original_max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_type": "llama3"}
    got = rope_theta_fix({"rope_parameters": llama3})
    assert got["rope_theta"] == 500000.0 and got["rope_scaling"]["rope_type"] == "llama3"
    assert got["rope_scaling"]["factor"] == 32.0 and "rope_theta" not in got["rope_scaling"]
    gemma = {"full_attention": {"factor": 8.0, "rope_theta": 1e6, "rope_type": "linear"},
             "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}
    got = rope_theta_fix({"rope_parameters": gemma})
    assert got == {"rope_local_base_freq": 10000.0, "rope_theta": 1e6,
                   "rope_scaling": {"factor": 8.0, "rope_type": "linear", "type": "linear"}}
    assert rope_theta_fix({"rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}}) == {"rope_theta": 1e6}
    assert rope_theta_fix({"rope_theta": 7.0, "rope_parameters": {"rope_theta": 1e6}}) == {}  # the top level wins


def test_longrope_picks_its_table_by_position():
    """Short factors up to original_max_position_embeddings, long ones beyond (transformers'
    choice); mlx-lm's SuScaledRoPE uses the long ones throughout."""
    import mlx.core as mx
    from mlx_lm.models.rope_utils import SuScaledRoPE

    from edgesmith_mlx.longrope import LongRoPE

    short, long = [1.0] * 8, [float(k + 1) for k in range(8)]
    vendor = SuScaledRoPE(16, base=10000.0, max_position_embeddings=131072,
                          original_max_position_embeddings=4096, short_factor=short, long_factor=long)
    cfg = {"rope_theta": 10000.0, "original_max_position_embeddings": 4096, "max_position_embeddings": 131072}
    ours = LongRoPE(vendor, cfg, {"short_factor": short, "long_factor": long})
    x = mx.random.normal((1, 1, 4, 16), key=mx.random.key(0))
    far, near = 5000, 10
    assert np.allclose(np.array(ours(x, offset=far)), np.array(vendor(x, offset=far)), atol=1e-5)
    assert not np.allclose(np.array(ours(x, offset=near)), np.array(vendor(x, offset=near)), atol=1e-3)
