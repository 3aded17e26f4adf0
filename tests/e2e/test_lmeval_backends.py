"""Task accuracy through lm-evaluation-harness across the real stacks, from this
core-only environment.

The test kit's bigram checkpoint is converted at full precision by llama.cpp,
OpenVINO, MLX and Olive through edgesmith's API (each in its backend's
environment). Then:

- the real ``lm_eval`` CLI, ``--model edgesmith``, runs the shipped tasks (and a
  task YAML of the user's own) on each conversion, and every accuracy matches
  lm-eval's own ``hf`` model on the source checkpoint (run with torch, in
  llama.cpp's environment) within its standard error;
- ``edgesmith eval --tasks`` shows accuracy ± stderr beside perplexity and gates
  the drop: a conversion passes, a scrambled copy fails;
- lm-eval's ``local-completions`` model, pointed at a live ``edgesmith serve``
  of the GGUF, scores a likelihood task as the edgesmith model does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")

from edgesmith import api  # noqa: E402
from edgesmith.taskdocs import yaml_path  # noqa: E402
from edgesmith.testing import bigram_checkpoint  # noqa: E402

from ..core.test_lmeval_adapter import token_order_task  # noqa: E402
from ..core.test_measure_support import broken_copy  # noqa: E402

STACKS = ("llamacpp", "openvino", "mlx", "olive")
#: Full precision: OpenVINO's CPU plugin runs bf16 and a compressed KV cache unless told.
OV_FULL = {"inference_precision": "f32", "kv_cache_precision": "f32"}
LIMIT = 20
#: (task, metric) pairs compared with lm-eval's hf model.
METRICS = (("alice_continuation", "acc"), ("alice_continuation", "acc_norm"), ("alice_completion", "first_word"),
           ("alice_completion", "exact_match"), ("token_order", "acc"))
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _records() -> dict[str, Any]:
    return {r.name: r for r in api.backends() if r.usable}


def _convert(name: str, src: Path, out: Path) -> Path:
    if name == "llamacpp":
        return api.convert(src, "gguf", out / "gguf-f32", backend="llamacpp", dtype="f32").path
    if name == "openvino":
        ir = api.convert(src, "openvino", out / "ir-f32", backend="openvino", dtype="fp32").path
        return api.compile(ir, "cpu", out / "ov-f32", backend="openvino", options=OV_FULL).path
    if name == "mlx":
        return api.convert(src, "mlx", out / "mlx-f32", backend="mlx", dtype="float32").path
    return api.convert(src, "onnx", out / "onnx-f32", backend="olive", dtype="f32").path


@pytest.fixture(scope="module")
def made(tiny_model, tmp_path_factory) -> dict[str, Any]:
    recs = _records()
    missing = [n for n in (*STACKS, "transformers") if n not in recs]
    if missing:
        pytest.skip(f"needs the backends {', '.join(STACKS)} and transformers; missing {', '.join(missing)}")
    torch_env = recs["llamacpp"].environment
    if torch_env is None:
        pytest.skip("needs llama.cpp in an environment of its own (it holds torch for lm-eval's hf model)")
    tmp = tmp_path_factory.mktemp("lmeval-e2e")
    # intermediate_size differs from the vocabulary size for the ONNX Runtime GenAI builder.
    src = bigram_checkpoint(tiny_model("llama", intermediate_size=768), tmp / "source")
    arts = {name: Path(_convert(name, src, tmp / name)) for name in STACKS}
    mine = token_order_task(src / "tokenizer.json", tmp / "task")
    return {"src": src, "arts": arts, "tmp": tmp, "task": mine, "torch_python": str(torch_env.python)}


def _lm_eval(python: str, model: str, model_args: str, tasks: list[Path], out: Path, limit: int = LIMIT) -> dict:
    """The ``lm_eval`` command of ``python``'s environment (a subprocess): results by task."""
    cmd = [str(Path(python).parent / "lm_eval"), "--model", model, "--model_args", model_args, "--limit", str(limit),
           "--tasks", ",".join(map(str, tasks)), "--output_path", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, **OFFLINE})
    assert done.returncode == 0, f"{model}: {done.stderr[-4000:]}"
    return json.loads(next(out.rglob("results_*.json")).read_text())["results"]


def _tasks(made: dict[str, Any]) -> list[Path]:
    return [yaml_path("alice_continuation"), yaml_path("alice_completion"), made["task"]]


@pytest.fixture(scope="module")
def hf(made) -> dict:
    return _lm_eval(made["torch_python"], "hf", f"pretrained={made['src']},dtype=float32", _tasks(made),
                    made["tmp"] / "out-hf")


@pytest.fixture(scope="module")
def by_stack(made) -> dict[str, dict]:
    return {name: _lm_eval(sys.executable, "edgesmith", f"artifact={art},threads=1", _tasks(made),
                           made["tmp"] / f"out-{name}") for name, art in made["arts"].items()}


def test_lm_eval_cli_runs_edgesmith_on_every_stack_as_its_hf_model_scores(by_stack, hf):
    lines = []
    for task, metric in METRICS:
        ref, se = hf[task][f"{metric},none"], hf[task][f"{metric}_stderr,none"]
        row = [f"{task} {metric}: hf {ref:.3f} ± {se:.3f}"]
        for name, res in by_stack.items():
            got = res[task][f"{metric},none"]
            row.append(f"{name} {got:.3f} ± {res[task][f'{metric}_stderr,none']:.3f}")
            assert abs(got - ref) <= max(se, 1e-9), (name, task, metric, got, ref, se)
        lines.append(" · ".join(row))
    print("\n" + "\n".join(lines))
    assert hf["token_order"]["acc,none"] > 0.6  # a figure with signal, not chance


def test_eval_tasks_gate_the_drop_and_fail_a_scrambled_copy(made, tmp_path):
    scrambled = broken_copy(made["src"], tmp_path / "scrambled", "scramble")
    ov = made["arts"]["openvino"]
    cmd = [sys.executable, "-m", "edgesmith.cli", "eval", str(ov), str(scrambled), "--reference", str(made["src"]),
           "--window", "48", "--windows", "2", "--no-smoke", "--min-speedup", "off", "--max-size-ratio", "off",
           "--max-ppl-ratio", "off", "--min-top1", "off", "--threads", "1",
           "--tasks", str(made["task"]), "--limit", "30", "--max-task-drop", "5", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, **OFFLINE})
    assert done.returncode == 3, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    ref = doc["reference"]["tasks"]["token_order"]
    assert doc["reference"]["backend"]["name"] == "transformers" and ref["n"] == 30 and ref["stderr"] > 0
    conv, bad = doc["artifacts"]
    assert conv["status"] == bad["status"] == "ok"
    task = conv["tasks"]["token_order"]
    assert abs(task["value"] - ref["value"]) <= ref["stderr"] and task["drop"]["method"] == "paired over documents"
    gate = next(g for g in conv["gates"] if g["gate"] == "max_task_drop")
    assert gate["state"] == "pass" and conv["verdict"] == "pass", gate
    bad_gate = next(g for g in bad["gates"] if g["gate"] == "max_task_drop")
    assert bad_gate["state"] == "fail" and bad["verdict"] == "fail", bad_gate
    assert "gate max_task_drop failed" in done.stderr
    print(f"\ntoken_order acc: reference {ref['value']:.3f} ± {ref['stderr']:.3f}, openvino-f32 "
          f"{task['value']:.3f}, scrambled {bad['tasks']['token_order']['value']:.3f} "
          f"(drop {bad_gate['value']:.1f} points, interval {bad_gate['interval']['lo']:.1f}–"
          f"{bad_gate['interval']['hi']:.1f})")


def test_local_completions_scores_a_task_through_edgesmith_serve(made, by_stack):
    pytest.importorskip("starlette")
    from ..core.test_serve_live import ServerProcess, serve_env

    srv = ServerProcess([str(made["arts"]["llamacpp"]), "--backend", "llamacpp", "--threads", "1",
                         "--model-name", "tiny"], serve_env())
    try:
        # The client tokenizes with the source's tokenizer and sends token ids; the server
        # scores exactly those (echo + logprobs over the prompt).
        args = (f"model=tiny,base_url={srv.url}/v1/completions,tokenizer_backend=huggingface,"
                f"tokenizer={made['src']},max_length=512")
        got = _lm_eval(made["torch_python"], "local-completions", args, [made["task"]], made["tmp"] / "out-api")
    finally:
        assert srv.stop() == 0, "".join(srv.lines)
    ours = by_stack["llamacpp"]["token_order"]
    assert got["token_order"]["acc,none"] == pytest.approx(ours["acc,none"]), (got, ours)
    assert any('"POST /v1/completions" 200' in line for line in srv.lines)
