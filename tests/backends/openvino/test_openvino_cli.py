"""The CLI over the OpenVINO backend, bad inputs, and telemetry staying off."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.testing.fixtures import env_offline


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgesmith.cli", *args], capture_output=True,
                          text=True, env=env_offline(), timeout=600)


def test_cli_quantize_and_run(ov_fp16, tmp_path: Path) -> None:
    out = tmp_path / "int4"
    done = cli("quantize", str(ov_fp16("phi3")), "-o", str(out), "--scheme", "int4_asym",
               "--group-size", "64", "-b", "openvino", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "edgesmith.json").read_text())
    assert manifest["backend"]["name"] == "openvino"
    assert "nncf" in manifest["libraries"] and "openvino" in manifest["libraries"]
    done = cli("run", str(out), "-p", "The morning train", "-n", "4", "-b", "openvino", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert 1 <= result["generated_tokens"] <= 4 and result["backend"] == "openvino"


def test_cli_bad_group_size_is_one_line(ov_fp16, tmp_path: Path) -> None:
    out = tmp_path / "bad"
    done = cli("quantize", str(ov_fp16("llama")), "-o", str(out), "--bits", "4", "--group-size", "48",
               "-b", "openvino")
    assert done.returncode == 2
    errors = [ln for ln in done.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1, done.stderr
    assert "group size 48" in errors[0] and "--group-size" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".bad*"))


def _corrupt(src: Path, dest: Path, how: str) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("edgesmith.json"))
    if how == "truncated-bin":
        data = (dest / "openvino_model.bin").read_bytes()
        (dest / "openvino_model.bin").write_bytes(data[:4096])
    else:
        (dest / "openvino_model.xml").write_text("<?xml version='1.0'?><net name='x'><layers>")
    return dest


@pytest.mark.parametrize("how", ["truncated-bin", "broken-xml"])
def test_corrupt_ir_gives_one_line_errors(ov_fp16, tmp_path: Path, how: str) -> None:
    bad = _corrupt(ov_fp16("llama"), tmp_path / "corrupt", how)
    calls = [
        lambda o: api.quantize(bad, o, scheme="int8_asym", backend="openvino"),
        lambda o: api.compile(bad, "cpu", o, backend="openvino"),
        lambda o: api.load(bad, backend="openvino"),
    ]
    for n, call in enumerate(calls):
        out = tmp_path / f"out{n}"
        with pytest.raises(UserError) as info:
            call(out)
        assert "\n" not in str(info.value).strip() and "re-export" in str(info.value)
        assert not out.exists() and not list(tmp_path.glob(f".out{n}*"))


def test_unknown_run_option_lists_known(ov_int4) -> None:
    with pytest.raises(UserError, match="known options: device"):
        api.load(ov_int4("llama"), backend="openvino", options={"colour": "blue"})


TELEMETRY_PROBE = r"""
import sys, json
from pathlib import Path
from edgesmith import api
onnx_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
api.convert(onnx_dir, "openvino", work / "ir", backend="openvino")  # ovc, first imported in this job
api.quantize(work / "ir", work / "int8", scheme="int8_asym", backend="openvino")  # NNCF, likewise
from openvino.tools.ovc import telemetry_utils
import nncf.telemetry.wrapper as w
print(json.dumps({"module": repr(sys.modules.get("openvino_telemetry", "absent")),
                  "ovc": telemetry_utils.tm.__name__, "nncf": type(w.telemetry).__name__}))
"""


def test_telemetry_is_off_without_pytest_in_the_process(tiny_encoder, tmp_path: Path) -> None:
    # NNCF disables itself when pytest is imported, so look from a clean interpreter, with
    # neither NNCF's switch nor CI set from outside and an empty home directory.
    onnx_path = tiny_encoder(tmp_path / "onnx" / "model.onnx")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in env_offline().items() if k not in ("NNCF_CI", "CI")}
    done = subprocess.run([sys.executable, "-c", TELEMETRY_PROBE, str(onnx_path.parent), str(tmp_path)],
                          capture_output=True, text=True, env={**env, "HOME": str(home)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # sys.modules is as before the jobs; the converter and NNCF kept their no-op stubs.
    assert seen["module"] == "'absent'", seen
    assert seen["ovc"].endswith("telemetry_stub"), seen
    assert seen["nncf"] == "MagicMock", seen
    assert not (home / "intel").exists()  # no client id, no usage stats
