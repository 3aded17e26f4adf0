"""Every user error ends in one line on stderr, exit code 2, and nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from edgesmith.cli import main
from edgesmith.testing.cli import invoke, one_line_error


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from edgesmith.testing import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("cli") / "tiny", "llama")




def test_missing_source(tmp_path):
    one_line_error(invoke("inspect", tmp_path / "nope"), "does not exist")


def test_unrecognised_directory(tmp_path):
    one_line_error(invoke("inspect", tmp_path), "cannot tell what model")


def test_corrupt_config(tmp_path):
    (tmp_path / "config.json").write_text("{oops")
    one_line_error(invoke("quantize", tmp_path, "--bits", "4", "-o", tmp_path / "o"), "config.json is not valid JSON")


def test_output_exists_needs_force(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("keep")
    one_line_error(invoke("quantize", model, "--bits", "8", "-o", out), "already exists", "--force")
    assert (out / "x").read_text() == "keep"
    ok = invoke("quantize", model, "--bits", "8", "-o", out, "--force")
    assert ok.exit_code == 0, ok.output
    assert not (out / "x").exists()


def test_output_named_like_a_file(model, tmp_path):
    one_line_error(invoke("convert", model, "--to", "gguf", "-o", tmp_path / "m.gguf"), "looks like a file name")


def test_quantize_needs_bits_or_scheme(model, tmp_path):
    one_line_error(invoke("quantize", model, "-o", tmp_path / "o"), "--bits", "--scheme")


def test_bad_option_syntax(model, tmp_path):
    one_line_error(invoke("quantize", model, "--bits", "8", "-O", "novalue", "-o", tmp_path / "o"), "KEY=VALUE")


def test_unknown_option_key_is_named(model, tmp_path):
    one_line_error(invoke("quantize", model, "--bits", "8", "-O", "colour=red", "-o", tmp_path / "o"), "colour")
    assert not (tmp_path / "o").exists()


def test_unknown_backend(model, tmp_path):
    one_line_error(invoke("quantize", model, "--bits", "8", "--backend", "nosuch", "-o", tmp_path / "o"),
                   "no backend named 'nosuch'")


def test_nobody_can_lists_capabilities(model, tmp_path):
    line = one_line_error(invoke("convert", model, "--to", "qnn", "-o", tmp_path / "o", "--backend", "ref"),
                          "cannot convert hf to qnn")
    assert "quantize hf->hf" in line


def test_unknown_scheme_picks_nobody(model, tmp_path):
    one_line_error(invoke("quantize", model, "--scheme", "Q9_Z", "-o", tmp_path / "o"), "Q9_Z")


def test_compile_without_compiler_explains(model, tmp_path):
    one_line_error(invoke("compile", model, "--device", "cpu", "-o", tmp_path / "o"), "no compile step")


def test_pickle_checkpoint_refused(model, tmp_path):
    src = tmp_path / "pickled"
    shutil.copytree(model, src)
    (src / "model.safetensors").unlink()
    (src / "pytorch_model.bin").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    one_line_error(invoke("quantize", src, "--bits", "8", "-o", tmp_path / "o"), "pickle", "--allow-pickle")


def test_run_needs_prompt(model):
    one_line_error(invoke("run", model), "-p PROMPT")


def test_run_rejects_bad_numbers(model):
    one_line_error(invoke("run", model, "-p", "hi", "--max-tokens", "0"), "--max-tokens")
    one_line_error(invoke("run", model, "-p", "hi", "--temperature", "-1"), "--temperature")


def test_click_usage_errors_exit_2(model, tmp_path):
    r = invoke("convert", model, "--to", "tflite", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "tflite" in r.output
    r = invoke("compile", model, "--device", "tpu", "-o", tmp_path / "o")
    assert r.exit_code == 2


def test_calibration_must_exist(model, tmp_path):
    one_line_error(invoke("quantize", model, "--bits", "4", "--calibration", tmp_path / "none.txt",
                          "-o", tmp_path / "o"), "calibration")


def test_debug_shows_traceback(tmp_path):
    r = CliRunner().invoke(main, ["--debug", "inspect", str(tmp_path / "nope")])
    assert r.exit_code != 0 and r.exception is not None


def test_happy_path_json(model, tmp_path):
    r = invoke("quantize", model, "--bits", "4", "--group-size", "64", "-o", tmp_path / "q", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[r.output.index("{"):])
    assert data["format"] == "hf" and data["manifest"]["parent"]["format"] == "hf"
    r = invoke("run", tmp_path / "q", "-p", "The garden", "-n", "4", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])
    assert res["backend"] == "ref" and 1 <= res["generated_tokens"] <= 4
    assert res["timings"]["ttft_s"] > 0
    r = invoke("inspect", tmp_path / "q", "--json")
    info = json.loads(r.output[r.output.index("{"):])
    assert info["manifest"]["operation"]["name"] == "quantize"
    assert "ref" in info["backends"]


def test_human_run_streams_and_reports(model):
    r = invoke("run", model, "-p", "Snow fell", "-n", "3")
    assert r.exit_code == 0, r.output
    assert "decode" in r.output and "ref:" in r.output


def test_chat_single_turn(model):
    r = invoke("run", model, "--chat", "-p", "hello", "--system", "be brief", "-n", "3", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["prompt_tokens"] > 5


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0 and "version" in r.output
