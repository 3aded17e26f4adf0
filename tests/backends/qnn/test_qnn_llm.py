"""Language models on the HTP: Hugging Face -> static prefill/decode graphs ->
QDQ (a16w8) -> context binaries -> generation on the QNN HTP simulator.

Every stage is held to transformers on the test kit's checkpoints (Llama 3.2's
RoPE scaling and tied embeddings, Qwen2.5's biases and RoPE base): the float
graphs exactly (full-precision bounds), the quantized ones within what 8-bit
weights and 16-bit activations cost. A copy with its RoPE base changed must
fail the same bounds, so they can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from qnn_testkit import LLM_SHAPE

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.testing.fidelity import assert_caught, compare, copy_with_config, record
from edgesmith.types import RunRequest

#: Quantized and run on the HTP; the float export is held to transformers on every text
#: architecture the export takes (docs/models.md's QNN column).
ARCHS = ("llama3.2", "qwen2.5")
FLOAT_ARCHS = ("smollm2", "llama3.2", "qwen2.5", "qwen3")
POSITIONS = 128
#: What a16w8 may cost against transformers' float32 on the kit's peaked models (measured on
#: the HTP simulator: Llama 3.2 top-1 0.844, KL 0.134, greedy 5/20; Qwen2.5 0.891, 0.082, 17/20;
#: the CPU EP's emulation of the same QDQ graphs costs as much: it is the quantization).
QDQ_TOP1, QDQ_KL, QDQ_GREEDY = 0.8, 0.2, 4


@pytest.mark.parametrize("arch", FLOAT_ARCHS)
def test_the_float_graphs_are_transformers_own(arch, llm_pipeline, arch_model, tmp_path):
    b = llm_pipeline(arch) if arch in ARCHS else {
        "hf": arch_model(arch),
        "float": api.convert(arch_model(arch), to="qnn", backend="qnn", output=tmp_path / "f",
                             options=LLM_SHAPE).path}
    spec = json.loads((b["float"] / "llm.json").read_text())
    assert spec["stage"] == "float" and spec["context"] == 160 and spec["chunk"] == 32
    for name, width in (("prefill", 32), ("decode", 1)):
        g = onnx.load(b["float"] / spec["graphs"][name], load_external_data=False)
        shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in g.graph.input}
        assert shapes["input_ids"] == [1, width]
        assert shapes["past_key_0"][2] == 160 and shapes["attention_mask"] == [1, 1, width, 160 + width]
        assert all(all(d > 0 for d in s) for s in shapes.values()), "every input is static"
    with api.load(b["float"], backend="qnn") as runner:
        fid = compare(b["hf"], runner, label=f"{arch} / qnn float graphs (cpu)", max_positions=POSITIONS)
    record(fid)
    print(fid.row())
    assert not fid.failures(), fid.failures()
    assert fid.chat_equal is True


@pytest.mark.parametrize("arch", ARCHS)
def test_a16w8_generates_on_the_htp_close_to_transformers(arch, llm_pipeline):
    b = llm_pipeline(arch)
    spec = json.loads((b["ctx"] / "llm.json").read_text())
    assert spec["stage"] == "context"
    for name in ("prefill", "decode"):
        placed = spec["details"]["compile"]["graphs"][name]["placement"]
        assert placed["all_on_qnn"], placed
        assert spec["details"]["quantize"]["placement"][name]["all_on_qnn"]
        ctx_graph = onnx.load(b["ctx"] / spec["graphs"][name], load_external_data=False)
        assert {n.op_type for n in ctx_graph.graph.node} == {"EPContext"}
    assert spec["details"]["compile"]["context_binaries"]
    with api.load(b["ctx"], backend="qnn") as runner:
        assert runner.device == "htp"
        fid = compare(b["hf"], runner, label=f"{arch} / qnn-a16w8 (htp)", max_positions=POSITIONS)
        result = runner.generate(RunRequest(prompt="The library was quiet", max_tokens=16))
    record(fid)
    print(fid.row())
    assert not fid.failures(top1=QDQ_TOP1, mean_kl=QDQ_KL, greedy=False), fid.failures(top1=QDQ_TOP1, mean_kl=QDQ_KL)
    assert fid.greedy_matched >= QDQ_GREEDY, (fid.greedy_ref, fid.greedy_cand)
    assert result.token_ids and result.timings.decode_tps > 0


def test_a_wrong_rope_base_fails_the_same_bounds(llm_pipeline, arch_model, tmp_path):
    bad = copy_with_config(arch_model("llama3.2"), tmp_path / "bad-rope",
                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    out = api.convert(bad, to="qnn", backend="qnn", output=tmp_path / "float", options=LLM_SHAPE)
    with api.load(out.path, backend="qnn") as runner:
        fid = compare(llm_pipeline("llama3.2")["hf"], runner, label="llama3.2 / qnn, rope base 10000",
                      max_positions=POSITIONS)
    assert_caught(fid)


def test_the_cache_carries_the_prompt(llm_pipeline):
    """Scoring a text in one pass equals prefilling half of it and decoding the rest."""
    b = llm_pipeline("llama3.2")
    with api.load(b["float"], backend="qnn") as runner:
        ids = runner.tokenize("The library was quiet except for the turning of pages, and the clock.")
        whole = runner.logprobs(ids)
        pipe = runner._pipe
        pipe.reset()
        rows = [pipe.extend(ids[:5])] + [pipe.step("decode", [t]) for t in ids[5:]]
    stepped = np.concatenate(rows)
    assert np.abs(whole - (stepped - np.log(np.exp(stepped).sum(1, keepdims=True)))).max() < 1e-4


def test_refusals_are_one_line(arch_model, tmp_path, llm_pipeline):
    cases = [
        (lambda: api.convert(arch_model("gemma3"), to="qnn", backend="qnn", output=tmp_path / "g"),
         "not in the static graphs yet; run it on the Snapdragon CPU"),
        (lambda: api.convert(arch_model("llama3.2"), to="qnn", backend="qnn", output=tmp_path / "c",
                             options={"context": "16", "chunk": "32"}), "chunk=32 is longer"),
        (lambda: api.quantize(llm_pipeline("llama3.2")["ctx"], scheme="a16w8", backend="qnn", output=tmp_path / "q"),
         "already context"),
    ]
    for call, words in cases:
        with pytest.raises(UserError) as err:
            call()
        assert words in str(err.value) and "\n" not in str(err.value)
    b = llm_pipeline("llama3.2")
    with api.load(b["ctx"], backend="qnn") as runner, pytest.raises(UserError, match="context of 160"):
        runner.logprobs([1] * 161)


def test_the_readme_loop_runs_the_context_binaries_without_edgesmith(llm_pipeline, tmp_path):
    """The README's deploy snippet, run as written in a plain Python on the compiled pipeline:
    its tokens are the ones edgesmith's host loop gets from the same decode graph."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).parents[3] / "README.md").read_text()
    code = re.search(r"<!-- qnn-llm-deploy -->\n```python\n(.*?)```", readme, re.S).group(1)
    b = llm_pipeline("llama3.2")
    script = tmp_path / "deploy.py"
    # ... and the snippet imports nothing of edgesmith, directly or through what it imports.
    script.write_text(code.replace('d = "llm-npu"', f'd = {str(b["ctx"])!r}')
                      + "import sys\nassert not [m for m in sys.modules if m.startswith('edgesmith')]\n")
    out = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    # the QNN libraries print a LIBNATIVE line of their own; the loop prints the ids last
    got = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("[")][-1])
    with api.load(b["ctx"], backend="qnn") as runner:
        ids = runner.tokenize("The library was")
        pipe = runner._pipe
        pipe.reset()
        want = []
        for t in ids:
            row = pipe.step("decode", [t])[0]
        for _ in range(9):
            want.append(int(row.argmax()))
            row = pipe.step("decode", [want[-1]])[0]
    assert got == want


def test_the_deploy_command_of_a_pipeline_loads_both_graphs_on_the_htp(llm_pipeline):
    """What optimize's deploy README says for a chosen QNN pipeline runs as written (in
    the pipeline's folder, as the README's paths are relative)."""
    import ast
    import os
    import subprocess
    import sys

    from edgesmith_qnn.contrib import edgesmith_deploy_commands

    ctx = llm_pipeline("llama3.2")["ctx"]
    cmds = edgesmith_deploy_commands(format="qnn", path=ctx.name, entry=f"{ctx.name}/decode_ctx.onnx")
    assert cmds[1].startswith("#") and "README" in cmds[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(cmds[0], shell=True, cwd=ctx.parent, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    # it loaded every graph of the pipeline, and a graph that does not load fails it
    loaded = ast.literal_eval([ln for ln in out.stdout.splitlines() if ln.startswith("[")][-1])
    assert sorted(Path(g).name for g in loaded) == ["decode_ctx.onnx", "prefill_ctx.onnx"]
    broken = ctx.parent / "broken"
    broken.mkdir()
    (broken / "decode_ctx.onnx").write_bytes(b"not a model")
    cmd = edgesmith_deploy_commands(format="qnn", path="broken", entry="broken/decode_ctx.onnx")[0]
    assert subprocess.run(cmd, shell=True, cwd=ctx.parent, env=env, capture_output=True).returncode != 0


def test_optimize_plans_the_npu_only_where_the_simulator_can_measure_it(llm_pipeline, tmp_path):
    """Without a Hexagon NPU the HTP is the simulator: the snapdragon-npu target takes the
    test kit's model (0.44M weights) and declines one past SIMULATOR_MAX_PARAMS, naming why."""
    import struct

    from edgesmith.doctor import Machine
    from edgesmith_qnn.contrib import SIMULATOR_MAX_PARAMS, edgesmith_optimize_targets

    (npu,) = edgesmith_optimize_targets()
    x86 = Machine(os="Linux", arch="x86_64", cpu_vendor="Intel", cpu_model="x", isa=(), physical_cores=2,
                  logical_cores=2, memory_bytes=2**34)
    phone = Machine(os="Android", arch="aarch64", cpu_vendor="Qualcomm", cpu_model="x", isa=(), physical_cores=8,
                    logical_cores=8, memory_bytes=2**33, snapdragon="SM8650", npus=("Qualcomm Hexagon NPU",))
    assert npu.competitors == ("snapdragon-cpu",)
    small = llm_pipeline("llama3.2")["hf"]
    assert npu.declines(x86, small) is None
    # a checkpoint one weight over the limit (int8, so the file stays small)
    big = tmp_path / "big"
    big.mkdir()
    for f in ("config.json", "tokenizer.json"):
        (big / f).write_bytes((small / f).read_bytes())
    n = SIMULATOR_MAX_PARAMS + 1
    head = json.dumps({"w": {"dtype": "I8", "shape": [n], "data_offsets": [0, n]}}).encode()
    (big / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + bytes(n))
    why = npu.declines(x86, big)
    assert why and "no Hexagon NPU" in why and "5M" in why
    assert npu.declines(phone, big) is None  # on the device itself there is no limit


def test_a_split_pipeline_runs_its_parts_in_turn_like_the_whole(llm_pipeline, tmp_path):
    """-O parts=2: each step is two graphs by layers (the first from the token ids, the
    second from the hidden state), each with only its layers' cache. Float: transformers'
    own logits; a16w8 on the HTP: the same bounds as the unsplit pipeline, every node of
    all four graphs on the HTP."""
    b = llm_pipeline("llama3.2")
    f = api.convert(b["hf"], to="qnn", backend="qnn", output=tmp_path / "float", options={**LLM_SHAPE, "parts": "2"})
    spec = json.loads((f.path / "llm.json").read_text())
    assert spec["parts"] == 2 and sorted(spec["graphs"]) == ["decode.0", "decode.1", "prefill.0", "prefill.1"]
    ins = {k: [i.name for i in onnx.load(f.path / g, load_external_data=False).graph.input]
           for k, g in spec["graphs"].items()}
    outs = {k: [o.name for o in onnx.load(f.path / g, load_external_data=False).graph.output]
            for k, g in spec["graphs"].items()}
    assert ins["decode.0"] == ["input_ids", "cos", "sin", "attention_mask", "past_key_0", "past_value_0"]
    assert ins["decode.1"] == ["hidden", "cos", "sin", "attention_mask", "past_key_1", "past_value_1"]
    assert outs["prefill.0"] == ["hidden", "new_key_0", "new_value_0"] and outs["prefill.1"][0] == "logits"
    with api.load(f.path, backend="qnn") as split, api.load(b["float"], backend="qnn") as whole:
        ids = split.tokenize("The library was quiet and the river ran past the old mill")
        assert np.abs(split.logprobs(ids) - whole.logprobs(ids)).max() < 1e-4
    q = api.quantize(f.path, scheme="a16w8", backend="qnn", output=tmp_path / "qdq")
    c = api.compile(q.path, device="npu", backend="qnn", output=tmp_path / "ctx")
    cspec = json.loads((c.path / "llm.json").read_text())
    assert all(g["placement"]["all_on_qnn"] for g in cspec["details"]["compile"]["graphs"].values())
    assert len(cspec["details"]["compile"]["context_binaries"]) == 4
    with api.load(c.path, backend="qnn") as runner:
        fid = compare(b["hf"], runner, label="llama3.2 / qnn-a16w8 in 2 parts (htp)", max_positions=POSITIONS)
    print(fid.row())
    assert not fid.failures(top1=QDQ_TOP1, mean_kl=QDQ_KL, greedy=False), fid.failures(top1=QDQ_TOP1, mean_kl=QDQ_KL)
    with pytest.raises(UserError, match="parts=3: the model has 2 layers"):
        api.convert(b["hf"], to="qnn", backend="qnn", output=tmp_path / "bad", options={**LLM_SHAPE, "parts": "3"})
