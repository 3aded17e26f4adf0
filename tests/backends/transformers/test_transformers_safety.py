"""Safe by default: safetensors only unless pickle is allowed, no checkpoint code
unless trusted, and no network even where the user's environment allows it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers_testkit import pickled, run_python, with_config

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.formats import detect
from edgesmith.testing.tiny import tiny_checkpoint

TEXT = "The library was quiet except for the turning of pages."


def _scores(path, **kw) -> np.ndarray:
    with api.load(path, backend="transformers", **kw) as r:
        return r.logprobs(r.tokenize(TEXT))


def test_pickle_weights_load_only_when_allowed(tiny_model, tmp_path):
    src = tiny_model("llama")
    only = pickled(src, tmp_path / "pickle-only")
    with pytest.raises(UserError, match="stores its weights as pickle.*--allow-pickle"):
        api.load(only, backend="transformers")
    # Handed over as an Artifact, the core's own check is skipped: the backend refuses too.
    with pytest.raises(UserError, match="--allow-pickle"):
        api.load(detect(only), backend="transformers")
    assert np.array_equal(_scores(only, allow_pickle=True), _scores(src))


def test_safetensors_win_over_a_pickle_beside_them(tiny_model, tmp_path):
    """With both, the pickle is never read: here it holds other weights (another seed)."""
    src = tiny_model("llama")
    other = tiny_checkpoint(tmp_path / "other", "llama", seed=1)
    both = pickled(other, tmp_path / "both")
    (both / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    assert np.array_equal(_scores(both), _scores(src))
    assert not np.allclose(_scores(both, allow_pickle=True), _scores(other))


#: A checkpoint's own model code (auto_map): a Llama under another model_type name that
#: leaves a file behind when imported, so a test sees whether it ran.
CONFIG_CODE = '''
import os, pathlib
pathlib.Path(os.environ["EDGESMITH_TEST_MARKER"]).write_text("ran")
from transformers import LlamaConfig
class TinyConfig(LlamaConfig):
    model_type = "tinycustom"
'''
MODEL_CODE = '''
from transformers import LlamaForCausalLM
from .configuration_tiny import TinyConfig
class TinyForCausalLM(LlamaForCausalLM):
    config_class = TinyConfig
'''

#: Run in a fresh interpreter (the hub client reads its settings once, at import): each
#: case is loaded, generated from, scored and asked for its chat prompt, or its error kept;
#: ``marker`` says after each case whether checkpoint code has run so far.
SCRIPT = '''
import json, os
from edgesmith import api
from edgesmith.testing.fixtures import network_guard, NETWORK_ATTEMPTS
from edgesmith.types import RunRequest
out = {}
with network_guard():
    for label, path, trust in json.loads(%r):
        try:
            with api.load(path, backend="transformers", trust_remote_code=trust) as r:
                ids = r.tokenize("Once upon a time")
                out[label] = {"tokens": r.generate(RunRequest(prompt="Once upon a time", max_tokens=4)).token_ids,
                              "chat": r.chat_prompt([{"role": "user", "content": "hi"}]),
                              "top": [int(i) for i in r.logprobs(ids).argmax(axis=1)]}
        except Exception as exc:
            out[label] = {"error": type(exc).__name__ + ": " + str(exc)}
        out[label]["marker"] = os.path.exists(os.environ.get("EDGESMITH_TEST_MARKER", "/nonexistent"))
out["network"] = list(NETWORK_ATTEMPTS)
print(json.dumps(out, default=list))
'''


def _run(cases, tmp_path, **env):
    return run_python(SCRIPT % json.dumps(cases), {"HF_HOME": str(tmp_path / "hf-home"), **env})


def test_checkpoint_code_runs_only_when_trusted(arch_model, tmp_path):
    src = arch_model("llama3.2")
    code = {"AutoConfig": "configuration_tiny.TinyConfig", "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM"}
    # Its own model_type: nothing but its code can build it.
    custom = with_config(src, tmp_path / "custom", model_type="tinycustom", architectures=["TinyForCausalLM"],
                         auto_map=code)
    # A model_type transformers knows, with code of its own beside it: untrusted, transformers' class runs.
    known = with_config(src, tmp_path / "known", auto_map=code)
    for d in (custom, known):
        (d / "configuration_tiny.py").write_text(CONFIG_CODE)
        (d / "modeling_tiny.py").write_text(MODEL_CODE)
    marker = tmp_path / "marker"
    got = _run([["refused", str(custom), False], ["known", str(known), False], ["trusted", str(custom), True],
                ["plain", str(src), False]], tmp_path, EDGESMITH_TEST_MARKER=str(marker))
    refused = got["refused"]
    assert "UserError" in refused["error"] and "--trust-remote-code" in refused["error"], refused
    assert not refused["marker"] and not got["known"]["marker"], "checkpoint code ran without --trust-remote-code"
    assert got["known"]["top"] == got["plain"]["top"]
    assert got["trusted"]["marker"] and marker.read_text() == "ran"
    assert got["trusted"]["top"] == got["plain"]["top"] and got["trusted"]["tokens"] == got["plain"]["tokens"]


def test_no_network_even_where_the_environment_allows_it(arch_model, tmp_path):
    """The user's environment lets the hub client go online and report usage; loading,
    generating, scoring and a checkpoint that names another repository's code
    (refused: it would be downloaded) make no network access at all."""
    src = arch_model("qwen2.5")
    elsewhere = with_config(src, tmp_path / "elsewhere", auto_map={
        "AutoConfig": "someorg/somerepo--configuration_x.XConfig",
        "AutoModelForCausalLM": "someorg/somerepo--modeling_x.XForCausalLM"})
    allowed = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "0",
               "DO_NOT_TRACK": "0"}
    got = _run([["plain", str(src), False], ["elsewhere", str(elsewhere), True]], tmp_path, **allowed)
    assert got["network"] == [], got["network"]
    assert len(got["plain"]["tokens"]) == 4 and "<|im_start|>" in got["plain"]["chat"]
    assert "names model code in the repository someorg/somerepo" in got["elsewhere"]["error"]
