"""Qualcomm AI Hub jobs (edgesmith_qnn.hub) up to the client call.

No network here: ``fake_qai_hub`` stands in for the remote service with the
shapes of the qai_hub 0.56 client. Everything on this side of it is real: the
option checks, the static-shape model that is uploaded, the job arguments,
polling and progress, the download unpacked into the output, the manifest,
and (for the compile test) the downloaded EPContext model loaded and run on
the QNN HTP backend. The "downloaded" model is one compiled locally by this
backend, since the fake service cannot compile anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fake_qai_hub as fake
import pytest
from qnn_testkit import SEQ, TEXTS, cosine

from edgesmith import api, formats
from edgesmith.errors import BackendError, UserError
from edgesmith.manifest import MANIFEST_NAME
from edgesmith.options import parse
from edgesmith.types import Context, Timings
from edgesmith_qnn import hub
from edgesmith_qnn.options import COMPILE_OPTIONS

S24 = "Samsung Galaxy S24 (Family)"


@pytest.fixture
def client(tmp_path) -> fake.Client:
    c = fake.Client()
    c._upload_dir = tmp_path / "uploads"
    c._upload_dir.mkdir()
    return c


@pytest.fixture
def hub_module(client, monkeypatch, tmp_path) -> fake.Client:
    """``import qai_hub`` gives the fake; a token in QAI_HUB_API_TOKEN; no config file."""
    monkeypatch.setitem(sys.modules, "qai_hub", fake.as_module(client))
    monkeypatch.setenv("QAI_HUB_API_TOKEN", "tok-123")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "absent" / "client.ini"))
    return client


def details(d: Path) -> dict:
    return json.loads((d / MANIFEST_NAME).read_text())["details"]


def calls(client: fake.Client, name: str) -> list[dict]:
    return [kw for n, kw in client.calls if n == name]


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_compile_on_hub_submits_waits_downloads_and_runs(hub_module, quantized, compiled, reference,
                                                         tmp_path):
    client = hub_module
    client.target = compiled("a8w8")  # what the service sends back (see the module docstring)
    seen: list[str] = []
    out = tmp_path / "s24"
    art = api.compile(quantized("a8w8"), output=out, device="npu", backend="qnn",
                      options={"hub_device": S24.lower()},
                      progress=lambda d, c=None, t=None: seen.append(d))
    # The client was built from the token, then asked for the device list.
    (made,) = calls(client, "Client")
    assert made["config"].api_token == "tok-123"
    (sub,) = calls(client, "submit_compile_job")
    assert sub["options"] == "--target_runtime precompiled_qnn_onnx"
    assert sub["device"] == fake.Device(S24, "", [])  # canonical name; the service picks the OS
    assert sub["input_specs"] is None and sub["name"].startswith("edgesmith ")
    # The upload is the static-shape QDQ model as one .onnx file.
    import onnx

    (up,) = sub["kept"].glob("*.onnx")
    m = onnx.load(str(up), load_external_data=False)
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, SEQ]
    assert any(n.op_type == "QuantizeLinear" for n in m.graph.node)
    # Progress followed the job's states.
    assert any("optimizing model" in s for s in seen), seen
    assert any(s.endswith(": done") for s in seen), seen
    # Output: EPContext model + its binary + side files + manifest with the job facts.
    assert art.entry == "model.onnx"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.onnx", "model_qnn.bin", "tokenizer.json", MANIFEST_NAME])
    d = details(out)
    h = d["hub"]
    assert h["job_id"] == "jc0000001"
    assert h["url"] == "https://workbench.aihub.qualcomm.com/jobs/jc0000001/"
    assert (h["device"], h["device_os"], h["os_versions"]) == (S24, "latest", ["14", "15"])
    assert (h["chipset"], h["hexagon"]) == ("qualcomm-snapdragon-8gen3", "v75")
    assert h["target_runtime"] == "precompiled_qnn_onnx" and h["target_model_id"] == "mjc0000001"
    assert h["client_version"] == fake.__version__
    assert d["compiled_by"] == "qualcomm-ai-hub" and d["precision"] == "qdq"
    assert d["context_binaries"] == ["model_qnn.bin"]
    assert d["input_shapes"] == {"input_ids": [1, SEQ], "attention_mask": [1, SEQ]}
    assert "hub_profile" not in d and not calls(client, "submit_inference_job")
    # The written model loads like any compiled output.
    with api.load(out, backend="qnn") as runner:
        feed = runner.encode(TEXTS[0])
        assert cosine(runner.infer(feed)["last_hidden_state"], reference(feed)) >= 0.98


def test_compile_with_hub_profile_reports_device_numbers(hub_module, quantized, compiled, tmp_path):
    client = hub_module
    client.layout = "onnx"  # a lone .onnx download (context embedded) is taken as well
    embedded = tmp_path / "embedded"
    api.compile(quantized("a8w8"), output=embedded, device="npu", backend="qnn",
                options={"embed": "1"})
    client.target = embedded
    out = tmp_path / "s24p"
    api.compile(quantized("a8w8"), output=out, device="npu", backend="qnn",
                options={"hub_device": S24, "hub_os": "15", "hub_profile": "1"})
    (sub,) = calls(client, "submit_compile_job")
    assert sub["device"] == fake.Device(S24, "15", [])
    (prof,) = calls(client, "submit_inference_job")
    # Profiled from the job's stored target model (no upload), with random inputs.
    assert isinstance(prof["model"], fake.Model) and prof["model"].model_id == "mjc0000001"
    assert prof["profile"] is True and prof["inputs"] is None and prof["device"] == sub["device"]
    d = details(out)
    assert d["context_binaries"] == []
    p = d["hub_profile"]
    assert p["job_id"] == "jp0000002" and p["device"] == S24
    assert p["inference_ms"] == 1.234 and p["peak_memory_mb"] == 34.0
    assert p["peak_memory_range_mb"] == [32.0, 34.0]
    assert (p["first_load_ms"], p["warm_load_ms"], p["runs"]) == (210.5, 15.25, 4)
    assert p["compute_units"] == {"NPU": 3, "CPU": 1}
    raw = json.loads((out / hub.PROFILE_JSON).read_text())
    assert raw["execution_summary"]["estimated_inference_time"] == 1234
    assert sorted(x.name for x in out.glob("*.onnx")) == ["model.onnx"]


def test_profile_function_uploads_local_model_and_returns_edgesmith_types(client, compiled):
    npu = compiled("a16w8")
    seen: list[str] = []
    p = hub.profile(npu, "Samsung Galaxy S23", client=client, poll_s=0,
                    progress=lambda d, c=None, t=None: seen.append(d))
    (sub,) = calls(client, "submit_inference_job")
    # A local compile is uploaded as a folder: the EPContext .onnx and its one .bin.
    assert sorted(f.name for f in sub["kept"].iterdir()) == ["model.onnx", "model_qnn.bin"]
    assert sub["device"] == fake.Device("Samsung Galaxy S23", "", [])
    assert isinstance(p, hub.HubProfile) and p.device == "Samsung Galaxy S23"
    assert p.url == "https://workbench.aihub.qualcomm.com/jobs/jp0000001/"
    assert p.timings() == Timings(load_s=0.01525, total_s=0.001234, peak_rss_mb=34.0)
    assert any("measuring performance" in s for s in seen), seen


def test_profile_of_a_hub_compiled_model_reuses_its_device_and_stored_model(client, tmp_path):
    d = tmp_path / "from-hub"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"not read: the stored target model is profiled")
    (d / MANIFEST_NAME).write_text(json.dumps({
        "format": "qnn", "entry": "model.onnx",
        "details": {"hub": {"device": "Snapdragon X Elite CRD", "target_model_id": "mabc"}}}))
    p = hub.profile(d, client=client, poll_s=0)
    (sub,) = calls(client, "submit_inference_job")
    assert calls(client, "get_model") == [{"model_id": "mabc"}]
    assert sub["model"].model_id == "mabc" and sub["device"].name == "Snapdragon X Elite CRD"
    assert p.inference_ms == 1.234


def test_without_a_token_says_how_to_configure(hub_module, quantized, tmp_path, monkeypatch):
    monkeypatch.delenv("QAI_HUB_API_TOKEN")
    out = tmp_path / "x"
    with pytest.raises(UserError) as exc:
        api.compile(quantized("a8w8"), output=out, device="npu", backend="qnn",
                    options={"hub_device": S24})
    msg = one_line(exc)
    assert "qai-hub configure --api_token" in msg and "QAI_HUB_API_TOKEN" in msg
    assert not out.exists() and not hub_module.calls
    # The client's own config file is enough (and its verbose printing is turned off).
    ini = tmp_path / "absent" / "client.ini"
    ini.parent.mkdir()
    ini.write_text("[api]\napi_token = abc\napi_url = x\nweb_url = y\n")
    c = hub.connect()
    assert c is hub_module and c.config is None and c.verbose is False


def test_without_the_package_says_which_extra(quantized, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "qai_hub", None)  # import qai_hub -> ImportError
    with pytest.raises(UserError) as exc:
        api.compile(quantized("a8w8"), output=tmp_path / "x", device="npu", backend="qnn",
                    options={"hub_device": S24})
    assert "pip install 'edgesmith-qnn[hub]'" in one_line(exc)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("name", "expect"), [
    ("Galaxy S24", ["'Samsung Galaxy S24'", "'Samsung Galaxy S24 (Family)'"]),
    ("Snapdragon X Elte CRD", ["'Snapdragon X Elite CRD'"]),
    ("Nokia 3310", ["none of its 8 device names is close"]),
])
def test_unknown_device_lists_close_matches(client, name, expect):
    with pytest.raises(UserError) as exc:
        hub.resolve_device(client, name)
    msg = one_line(exc)
    assert msg.startswith(f"unknown AI Hub device {name!r}") and "qai-hub list-devices" in msg
    for e in expect:
        assert e in msg


def test_device_checks(client):
    with pytest.raises(UserError, match="no Qualcomm NPU runtime"):
        hub.resolve_device(client, "Google Pixel 8")
    with pytest.raises(UserError, match=r"has no OS '13'; available: 14, 15"):
        hub.resolve_device(client, S24, "13")
    dev, facts = hub.resolve_device(client, "qcs8550 (proxy)", "[12,)")
    assert dev == fake.Device("QCS8550 (Proxy)", "[12,)", [])
    assert facts["chipset"] == "qualcomm-qcs8550-proxy"


def test_bad_options_stop_before_any_request(client, encoder, quantized, tmp_path):
    ctx = Context()

    def run(src, **opts):
        # As the core does before compile_npu: the options parsed first, then the hub job.
        parsed = parse(COMPILE_OPTIONS, {"hub_device": S24, **opts}, backend="qnn", operation="compile qnn")
        return hub.compile_on_hub(formats.detect(src), parsed, tmp_path, ctx, client=client)

    with pytest.raises(UserError, match="soc_model describe the local HTP target"):
        run(quantized("a8w8"), soc_model="60")
    with pytest.raises(UserError, match="may not set --target_runtime"):
        run(quantized("a8w8"), hub_options="--target_runtime tflite")
    with pytest.raises(UserError, match="dynamic dimensions"):
        run(encoder)  # the uploaded graph must be static, as for a local compile
    with pytest.raises(UserError, match="qnn compile qnn: option hub_timeout=0 is not valid"):
        run(quantized("a8w8"), hub_timeout="0")
    assert client.calls == []
    with pytest.raises(UserError, match="apply to Qualcomm AI Hub jobs only"):
        api.compile(quantized("a8w8"), output=tmp_path / "y", device="npu", backend="qnn",
                    options={"hub_profile": "1"})


def test_failed_job_is_one_line_and_leaves_nothing(hub_module, quantized, tmp_path):
    hub_module.compile_states = [("CREATED", None),
                                 ("FAILED", "Tensor 'x' has unsupported dtype\nmore text")]
    out = tmp_path / "x"
    with pytest.raises(BackendError) as exc:
        api.compile(quantized("a8w8"), output=out, device="npu", backend="qnn",
                    options={"hub_device": S24})
    msg = one_line(exc)
    assert msg == ("AI Hub compile job jc0000001 failed: Tensor 'x' has unsupported dtype; "
                   "details at https://workbench.aihub.qualcomm.com/jobs/jc0000001/")
    assert not out.exists()


def test_wait_times_out_and_polls(client, monkeypatch):
    job = fake.CompileJob(client, "jc1", "m", fake.Device(S24), None, "",
                          [("CREATED", None), ("OPTIMIZING_MODEL", None)], target=None, layout="zip")
    clock = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:  # a fake clock: no real waiting
        slept.append(s)
        clock[0] += s

    monkeypatch.setattr(hub.time, "monotonic", lambda: clock[0])
    seen: list[str] = []
    with pytest.raises(BackendError) as exc:
        hub.wait(job, "compile", lambda d, c, t: seen.append(d), poll_s=3, timeout=10, sleep=sleep)
    assert one_line(exc) == ("AI Hub compile job jc1 is still OPTIMIZING_MODEL after 10 s; follow it at "
                             "https://workbench.aihub.qualcomm.com/jobs/jc1/ or raise hub_timeout")
    assert slept == [3, 3, 3, 3]
    assert seen == ["AI Hub compile job jc1: created", "AI Hub compile job jc1: optimizing model"]


@pytest.mark.parametrize(("layout", "match"), [
    ("zip-traversal", "path outside its folder"),
    ("zip-no-bin", "names context binary 'model_qnn.bin'"),
    ("zip-two-onnx", "holds 2 .onnx files"),
])
def test_bad_downloads_are_refused(client, compiled, tmp_path, layout, match):
    job = fake.CompileJob(client, "jc9", "m", fake.Device(S24), None, "", [("SUCCESS", None)],
                          target=compiled("a8w8"), layout=layout)
    (tmp_path / "dl").mkdir()
    (tmp_path / "out").mkdir()
    got = Path(job.download_target_model(str(tmp_path / "dl")))
    with pytest.raises(BackendError, match=match):
        hub.unpack(got, tmp_path / "out", tmp_path)


def test_client_errors_become_one_line():
    with pytest.raises(UserError, match=r"^Qualcomm AI Hub refused the compile job: bad model$"):
        hub._call("the compile job", _raise(fake.UserError("| bad model |\n+-----+")))

    class ConnectionError(OSError):  # noqa: A001 - the name requests uses
        pass

    with pytest.raises(BackendError, match="cannot reach Qualcomm AI Hub while listing"):
        hub._call("listing its devices", _raise(ConnectionError("Max retries exceeded\n...")))
    with pytest.raises(UserError, match="rejected the API token"):
        hub._call("listing its devices", _raise(fake.Error("401 Unauthorized")))
    # The shapes qai_hub 0.56 raises: a headline, then the text in a drawn box.
    box = "\n┌" + "─" * 20 + "┐\n| {} |\n└" + "─" * 20 + "┘"
    auth = fake.UserError("Failed to authenticate." + box.format("bad or expired API token."))
    with pytest.raises(UserError) as exc:
        hub._call("the compile job", _raise(auth))
    assert one_line(exc).startswith("Qualcomm AI Hub rejected the API token while the compile job "
                                    "(Failed to authenticate); run `qai-hub configure --api_token")
    internal = fake.Error("Internal API failure." + box.format("Could not connect to Qualcomm AI Hub."))
    internal.__cause__ = ConnectionError("Max retries exceeded")
    with pytest.raises(BackendError) as exc:
        hub._call("listing its devices", _raise(internal))
    assert one_line(exc) == ("cannot reach Qualcomm AI Hub while listing its devices (Internal API "
                             "failure. Could not connect to Qualcomm AI Hub.); check the network or "
                             "proxy and retry")


def _raise(exc):
    def f():
        raise exc
    return f


def test_parse_profile_with_missing_values():
    raw = {"execution_summary": {"estimated_inference_time": 500, "estimated_inference_peak_memory": None,
                                 "first_load_time": 1000, "warm_load_time": None,
                                 "inference_memory_peak_range": None},
           "execution_detail": []}
    p = hub.parse_profile(raw, "j1", "dev")
    assert (p.inference_ms, p.peak_memory_mb, p.peak_memory_range_mb, p.runs) == (0.5, None, None, None)
    assert p.timings() == Timings(load_s=0.001, total_s=0.0005, peak_rss_mb=None)
    with pytest.raises(BackendError, match="no execution summary"):
        hub.parse_profile({}, "j1", "dev")


def test_hub_code_is_not_imported_with_the_plugin():
    code = ("import sys, edgesmith_qnn.plugin, edgesmith_qnn.hub; "
            "print([m for m in ('qai_hub', 'onnxruntime', 'onnx') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out
