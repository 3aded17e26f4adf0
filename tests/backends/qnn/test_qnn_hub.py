"""Qualcomm AI Hub jobs (edgesmith_qnn.hub) through the real ``qai_hub`` client, up to the network.

No network here, so the service is local: ``aihub_service.AIHubService``
answers the client's REST API (protobuf over HTTP) on 127.0.0.1, and a
``client.ini`` in a temporary directory points the real client at it. The
client is the installed ``qai_hub`` 0.56, untouched: its config loading,
device checks, model zipping, multipart upload, polling and download run as
they would against Qualcomm's service, and the tests assert on what arrived
at the service (the uploaded model, the job messages, the token). With
``QAI_HUB_API_TOKEN`` the client goes to the real service URL; there the
tests' network guard refuses the DNS lookup, which is where they stop.

The service compiles nothing: a compile job's "target model" is one this
backend compiled locally, and the test checks the written output loads and
runs on the QNN HTP backend. The user's own ~/.qai_hub is never read: HOME
and QAIHUB_CLIENT_INI point into the test's temporary directory.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import qai_hub
import requests
from aihub_service import TOKEN, AIHubService
from click.testing import CliRunner
from qai_hub import public_api_pb2 as pb
from qai_hub.util import session as qai_session
from qnn_testkit import SEQ, TEXTS, cosine

from edgesmith import api, formats
from edgesmith.cli import main
from edgesmith.errors import BackendError, UserError
from edgesmith.manifest import MANIFEST_NAME
from edgesmith.options import parse
from edgesmith.types import Context, Timings
from edgesmith_qnn import hub
from edgesmith_qnn.options import COMPILE_OPTIONS

S24 = "Samsung Galaxy S24 (Family)"
#: Where the client goes without a config file's api_url (qai_hub's default).
SERVICE = "https://workbench.aihub.qualcomm.com"


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch) -> Path:
    """A private HOME and QAIHUB_CLIENT_INI (absent until a test writes it), no
    token, no proxy, and no waiting between status polls. Returns the ini path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    ini = tmp_path / "qai_hub" / "client.ini"
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    monkeypatch.delenv("QAI_HUB_API_TOKEN", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(hub, "POLL_S", 0.0)
    return ini


@pytest.fixture
def service():
    svc = AIHubService().start()
    yield svc
    svc.stop()


@pytest.fixture
def configured(service, hub_env) -> AIHubService:
    """The service, and a client.ini (as `qai-hub configure` writes it) pointing at it."""
    service.client_ini(hub_env)
    return service


@pytest.fixture
def client(configured) -> qai_hub.Client:
    return hub.connect()


@pytest.fixture
def no_backoff(monkeypatch):
    """qai_hub's requests session retries failed connections and 5xx answers 6
    times with exponential back-off (~47 s in all); the retries stay, the
    waiting between them goes."""
    monkeypatch.setattr(qai_session, "BACKOFF_FACTOR", 0)


def details(d: Path) -> dict:
    return json.loads((d / MANIFEST_NAME).read_text())["details"]


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def cli(*args) -> tuple[int, list[str]]:
    """Exit code and the ``edgesmith: error:`` lines of one CLI call (in this process)."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, [x for x in res.stderr.splitlines() if x.startswith("edgesmith: error:")]


def hub_compile_args(src: Path, out: Path, device: str = S24, *options: str) -> list:
    return ["compile", src, "-o", out, "--device", "npu", "-b", "qnn", "-O", f"hub_device={device}",
            *[a for o in options for a in ("-O", o)]]


def only_job(svc: AIHubService, kind: str) -> str:
    (job_id,) = [j.job_id for j in svc.jobs.values() if j.kind == kind]
    return job_id


def test_compile_on_hub_submits_waits_downloads_and_runs(configured, quantized, compiled, reference,
                                                         tmp_path):
    svc = configured
    svc.target = compiled("a8w8")  # what the service sends back (see the module docstring)
    seen: list[str] = []
    out = tmp_path / "s24"
    art = api.compile(quantized("a8w8"), output=out, device="npu", backend="qnn",
                      options={"hub_device": S24.lower()},
                      progress=lambda d, c=None, t=None: seen.append(d))
    # Every API call carried the token from client.ini; the storage URLs got none.
    assert svc.api() and all(r.headers["authorization"] == f"token {TOKEN}" for r in svc.api())
    assert all(r.headers["user-agent"] == "qai_hub/0.56.0" for r in svc.api())
    storage = [r for r in svc.requests if r.path.startswith("/storage/")]
    assert [r.method for r in storage] == ["PUT", "GET"]
    assert not any("authorization" in r.headers for r in storage)
    # The device list (edgesmith's lookup), then the client's own check of what edgesmith
    # submits: the canonical name, no OS, no attributes; the service selects the device.
    lookups = svc.api("GET", r"^/api/v1/devices/$")
    assert [r.query for r in lookups] == [{"name": [""], "os": [""], "select": ["False"]},
                                          {"name": [S24], "os": [""], "select": ["True"]}]
    # The upload: the static-shape QDQ model as one .onnx file, confirmed with its ETag.
    (up,) = svc.uploaded()
    assert (up.name, up.model_type, up.is_directory) == ("model.onnx", pb.MODEL_TYPE_ONNX, False)
    (announced,) = svc.api("GET", r"/multipart_upload/$")
    assert announced.query["file_size"] == [str(len(up.data))]
    m = onnx.load_from_string(up.data)
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, SEQ]
    assert any(n.op_type == "QuantizeLinear" for n in m.graph.node)
    # The compile job: that model, the device the service selected (newest OS), the fixed options.
    (sub,) = svc.submitted("compile")
    assert sub.model.model_id == up.model_id
    assert [(d.name, d.os) for d in sub.devices.devices] == [(S24, "15")]
    assert sub.options == "--target_runtime precompiled_qnn_onnx"
    assert sub.name.startswith("edgesmith ") and not sub.tensor_type_list.types
    assert not sub.HasField("calibration_dataset")
    (post,) = svc.api("POST", r"^/api/v1/jobs/$")
    assert post.query["seed_target_model"] == ["true"]
    job_id = only_job(svc, "compile")
    job = svc.jobs[job_id]
    # Progress followed the job's states.
    assert any("optimizing model" in s for s in seen), seen
    assert any(s.endswith(": done") for s in seen), seen
    # Output: EPContext model + its binary + side files + manifest with the job facts.
    assert art.entry == "model.onnx"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.onnx", "model_qnn.bin", "tokenizer.json", MANIFEST_NAME])
    d = details(out)
    h = d["hub"]
    assert h["job_id"] == job_id
    assert h["url"] == f"{svc.url}/jobs/{job_id}/"  # the config's web_url
    assert (h["device"], h["device_os"], h["os_versions"]) == (S24, "latest", ["14", "15"])
    assert (h["chipset"], h["hexagon"]) == ("qualcomm-snapdragon-8gen3", "v75")
    assert h["target_runtime"] == "precompiled_qnn_onnx"
    assert h["target_model_id"] == job.target_model_id
    assert h["client_version"] == str(qai_hub.__version__) == "0.56.0"  # a Version object there
    assert d["compiled_by"] == "qualcomm-ai-hub" and d["precision"] == "qdq"
    assert d["context_binaries"] == ["model_qnn.bin"]
    assert d["input_shapes"] == {"input_ids": [1, SEQ], "attention_mask": [1, SEQ]}
    assert "hub_profile" not in d and not svc.submitted("inference")
    # The written model loads like any compiled output.
    with api.load(out, backend="qnn") as runner:
        feed = runner.encode(TEXTS[0])
        assert cosine(runner.infer(feed)["last_hidden_state"], reference(feed)) >= 0.98


def test_compile_with_hub_profile_reports_device_numbers(configured, quantized, compiled, tmp_path):
    svc = configured
    svc.layout = "onnx"  # a lone .onnx download (context embedded) is taken as well
    embedded = tmp_path / "embedded"
    api.compile(quantized("a8w8"), output=embedded, device="npu", backend="qnn",
                options={"embed": "1"})
    svc.target = embedded
    out = tmp_path / "s24p"
    api.compile(quantized("a8w8"), output=out, device="npu", backend="qnn",
                options={"hub_device": S24, "hub_os": "15", "hub_profile": "1"})
    selects = [r.query for r in svc.api("GET", r"^/api/v1/devices/$") if r.query["select"] == ["True"]]
    assert selects == [{"name": [S24], "os": ["15"], "select": ["True"]}] * 2  # compile, then profile
    (sub,) = svc.submitted("compile")
    assert [(d.name, d.os) for d in sub.devices.devices] == [(S24, "15")]
    (prof,) = svc.submitted("inference")
    # Profiled from the job's stored target model (no second upload), with random inputs.
    assert len(svc.uploaded()) == 1
    assert prof.model.model_id == svc.jobs[only_job(svc, "compile")].target_model_id
    assert prof.is_profiling_on and not prof.HasField("dataset")
    assert (prof.device.name, prof.device.os) == (S24, "15")
    assert (prof.name, prof.options) == ("edgesmith profile", "")
    d = details(out)
    assert d["context_binaries"] == []
    p = d["hub_profile"]
    assert p["job_id"] == only_job(svc, "inference") and p["device"] == S24
    assert p["inference_ms"] == 1.234 and p["peak_memory_mb"] == 34.0
    assert p["peak_memory_range_mb"] == [32.0, 34.0]
    assert (p["first_load_ms"], p["warm_load_ms"], p["runs"]) == (210.5, 15.25, 4)
    assert p["compute_units"] == {"NPU": 3, "CPU": 1}
    # hub_profile.json is the client's own download_profile() dict.
    raw = json.loads((out / hub.PROFILE_JSON).read_text())
    assert raw["execution_summary"]["estimated_inference_time"] == 1234
    assert raw["execution_summary"]["inference_memory_peak_range"] == [32 << 20, 34 << 20]
    assert raw["execution_detail"][0] == {"name": "EPContext_0", "type": "MatMul", "compute_unit": "NPU",
                                          "execution_time": 400, "execution_cycles": 90_000}
    assert sorted(x.name for x in out.glob("*.onnx")) == ["model.onnx"]


def test_profile_function_uploads_local_model_and_returns_edgesmith_types(configured, compiled):
    svc = configured
    npu = compiled("a16w8")
    seen: list[str] = []
    p = hub.profile(npu, "Samsung Galaxy S23", progress=lambda d, c=None, t=None: seen.append(d))
    # A local compile is uploaded as a folder (the client zips it): the EPContext .onnx and its .bin.
    (up,) = svc.uploaded()
    assert (up.model_type, up.is_directory) == (pb.MODEL_TYPE_ONNX, True)
    with zipfile.ZipFile(io.BytesIO(up.data)) as zf:
        files = {Path(n).name: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    assert sorted(files) == ["model.onnx", "model_qnn.bin"]
    assert files["model_qnn.bin"] == (npu / "model_qnn.bin").read_bytes()
    (sub,) = svc.submitted("inference")
    assert sub.model.model_id == up.model_id and sub.is_profiling_on
    assert (sub.device.name, sub.device.os) == ("Samsung Galaxy S23", "13")  # as the service selected
    job_id = only_job(svc, "inference")
    assert isinstance(p, hub.HubProfile) and p.device == "Samsung Galaxy S23" and p.job_id == job_id
    assert p.url == f"{svc.url}/jobs/{job_id}/"
    assert p.timings() == Timings(load_s=0.01525, total_s=0.001234, peak_rss_mb=34.0)
    assert any("measuring performance" in s for s in seen), seen


def test_profile_of_a_hub_compiled_model_reuses_its_device_and_stored_model(configured, tmp_path):
    svc = configured
    svc.add_model("mabc", "edgesmith x_optimized")
    d = tmp_path / "from-hub"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"not read: the stored target model is profiled")
    (d / MANIFEST_NAME).write_text(json.dumps({
        "format": "qnn", "entry": "model.onnx",
        "details": {"hub": {"device": "Snapdragon X Elite CRD", "target_model_id": "mabc"}}}))
    p = hub.profile(d)
    assert len(svc.api("GET", r"^/api/v1/models/mabc/$")) == 1
    assert not svc.uploaded() and not svc.api("POST", r"^/api/v1/models/$")
    (sub,) = svc.submitted("inference")
    assert sub.model.model_id == "mabc" and sub.device.name == "Snapdragon X Elite CRD"
    assert p.inference_ms == 1.234


def test_without_a_token_says_how_to_configure(service, quantized, tmp_path, hub_env):
    out = tmp_path / "x"
    code, errors = cli(*hub_compile_args(quantized("a8w8"), out))
    assert code == 2 and len(errors) == 1, (code, errors)
    assert "qai-hub configure --api_token" in errors[0] and "QAI_HUB_API_TOKEN" in errors[0]
    assert str(hub_env) in errors[0]  # the config file it looked for: QAIHUB_CLIENT_INI
    assert not out.exists() and not service.requests
    # The client's own config file is enough; connecting sends nothing, and the
    # client's verbose printing (on in the file) is turned off.
    service.client_ini(hub_env)
    c = hub.connect()
    assert isinstance(c, qai_hub.Client)
    assert (c.config.api_token, c.config.api_url, c.verbose) == (TOKEN, service.url, False)
    assert not service.requests
    assert not (Path.home() / ".qai_hub").exists()


def test_token_from_the_environment_goes_to_ai_hub_and_stops_at_the_network(
        service, quantized, tmp_path, hub_env, monkeypatch, no_backoff, network_attempts):
    """QAI_HUB_API_TOKEN wins over a config file and goes to Qualcomm's URL: the
    request is built with it, the guard refuses the DNS lookup, the client retries,
    and the user gets one line and exit 2."""
    service.client_ini(hub_env)  # another token, and the local URL: not used
    monkeypatch.setenv("QAI_HUB_API_TOKEN", " tok-env-456 ")
    sent: list[requests.PreparedRequest] = []
    real_send = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):  # records what is about to leave, then sends it
        sent.append(request)
        return real_send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    before = len(network_attempts)
    out = tmp_path / "x"
    try:
        code, errors = cli(*hub_compile_args(quantized("a8w8"), out))
        attempts = network_attempts[before:]
    finally:
        del network_attempts[before:]  # deliberate attempts: not a leak to report
    assert code == 2 and len(errors) == 1, (code, errors)
    assert errors[0] == (
        "edgesmith: error: cannot reach Qualcomm AI Hub while listing its devices (Internal API "
        f"failure. Could not connect to Qualcomm AI Hub. Please visit {SERVICE} to check the "
        "service's status.); check the network or proxy and retry")
    (req,) = sent  # one send; urllib3 retries inside it
    assert req.method == "GET" and req.url.startswith(f"{SERVICE}/api/v1/devices/?")
    assert req.headers["Authorization"] == "token tok-env-456"
    # The client's own retries ran: 1 + 6 lookups, every one refused before leaving the machine.
    assert attempts == ["dns 'workbench.aihub.qualcomm.com'"] * 7
    assert not service.requests and not out.exists()


def test_rejected_token_is_one_line(configured, quantized, tmp_path, hub_env):
    configured.client_ini(hub_env, token="tok-expired")
    out = tmp_path / "x"
    code, errors = cli(*hub_compile_args(quantized("a8w8"), out))
    assert code == 2 and len(errors) == 1, (code, errors)
    assert errors[0].startswith("edgesmith: error: Qualcomm AI Hub rejected the API token while "
                                "listing its devices (Failed to authenticate); run `qai-hub configure")
    assert [r.headers["authorization"] for r in configured.requests] == ["token tok-expired"]
    assert not out.exists()


def test_incomplete_config_file_is_one_line(configured, quantized, tmp_path, hub_env):
    configured.client_ini(hub_env, fields={"api_token": TOKEN})  # no api_url / web_url
    code, errors = cli(*hub_compile_args(quantized("a8w8"), tmp_path / "x"))
    assert code == 2 and len(errors) == 1, (code, errors)
    assert errors[0] == (
        f"edgesmith: error: the Qualcomm AI Hub client could not use its configuration {hub_env} "
        f"while reading its configuration (Failed to load configuration file); {hub.CONFIGURE_HINT}")
    assert not configured.requests


def test_without_the_package_says_how_to_install(quantized, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "qai_hub", None)  # import qai_hub -> ImportError
    with pytest.raises(UserError) as exc:
        api.compile(quantized("a8w8"), output=tmp_path / "x", device="npu", backend="qnn",
                    options={"hub_device": S24})
    msg = one_line(exc)
    assert "edgesmith install qnn" in msg and "pip install 'qai-hub>=0.56,<1'" in msg
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
    assert dev == qai_hub.Device("QCS8550 (Proxy)", "[12,)", [])
    assert facts["chipset"] == "qualcomm-qcs8550-proxy"


def test_bad_options_stop_before_any_request(client, configured, encoder, quantized, tmp_path):
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
    assert configured.requests == []
    with pytest.raises(UserError, match="apply to Qualcomm AI Hub jobs only"):
        api.compile(quantized("a8w8"), output=tmp_path / "y", device="npu", backend="qnn",
                    options={"hub_profile": "1"})


def test_failed_job_is_one_line_and_leaves_nothing(configured, quantized, tmp_path):
    svc = configured
    # The first state is the client's own look at the job right after creating it.
    svc.compile_states = [("CREATED", None), ("FAILED", "Tensor 'x' has unsupported dtype\nmore text")]
    out = tmp_path / "x"
    with pytest.raises(BackendError) as exc:
        api.compile(quantized("a8w8"), output=out, device="npu", backend="qnn",
                    options={"hub_device": S24})
    job_id = only_job(svc, "compile")
    assert one_line(exc) == (f"AI Hub compile job {job_id} failed: Tensor 'x' has unsupported dtype; "
                             f"details at {svc.url}/jobs/{job_id}/")
    assert not out.exists()


def test_service_refusal_and_outage_are_one_line(configured, quantized, tmp_path, no_backoff):
    svc = configured
    svc.reject_options = "--bogus"
    with pytest.raises(UserError) as exc:
        api.compile(quantized("a8w8"), output=tmp_path / "x", device="npu", backend="qnn",
                    options={"hub_device": S24, "hub_options": "--bogus 1"})
    assert one_line(exc) == "Qualcomm AI Hub refused the compile job: Unrecognized option '--bogus'."
    assert svc.submitted("compile")[0].options == "--target_runtime precompiled_qnn_onnx --bogus 1"
    # 503 on every call: the client retries the GET (1 + 6 times), then gives up.
    svc.requests.clear()
    svc.fail_status = 503
    with pytest.raises(BackendError) as exc:
        api.compile(quantized("a8w8"), output=tmp_path / "y", device="npu", backend="qnn",
                    options={"hub_device": S24})
    assert one_line(exc) == (
        "Qualcomm AI Hub failed while listing its devices (InternalError: Internal API failure. "
        f"Qualcomm AI Hub is unavailable right now. Please visit {svc.url} to check the service's "
        "status.)")
    assert [r.path for r in svc.requests] == ["/api/v1/devices/"] * 7
    assert not (tmp_path / "y").exists()


def test_wait_times_out_and_polls(client, configured, monkeypatch):
    # CREATED twice: the first is the client's own look when it builds the job.
    job_id = configured.add_compile_job([("CREATED", None), ("CREATED", None), ("OPTIMIZING_MODEL", None)])
    job = client.get_job(job_id)
    clock = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:  # a fake clock: no real waiting
        slept.append(s)
        clock[0] += s

    monkeypatch.setattr(hub.time, "monotonic", lambda: clock[0])
    seen: list[str] = []
    with pytest.raises(BackendError) as exc:
        hub.wait(job, "compile", lambda d, c, t: seen.append(d), poll_s=3, timeout=10, sleep=sleep)
    assert one_line(exc) == (f"AI Hub compile job {job_id} is still OPTIMIZING_MODEL after 10 s; follow it "
                             f"at {configured.url}/jobs/{job_id}/ or raise hub_timeout")
    assert slept == [3, 3, 3, 3]
    assert seen == [f"AI Hub compile job {job_id}: created", f"AI Hub compile job {job_id}: optimizing model"]
    assert len(configured.api("GET", rf"^/api/v1/jobs/{job_id}/$")) == 1 + 5


@pytest.mark.parametrize(("layout", "match"), [
    ("zip-traversal", "path outside its folder"),
    ("zip-no-bin", "names context binary 'model_qnn.bin'"),
    ("zip-two-onnx", "holds 2 .onnx files"),
])
def test_bad_downloads_are_refused(client, configured, compiled, tmp_path, layout, match):
    job_id = configured.add_compile_job([("SUCCESS", None)], target=compiled("a8w8"), layout=layout)
    job = client.get_job(job_id)
    (tmp_path / "dl").mkdir()
    (tmp_path / "out").mkdir()
    got = Path(job.download_target_model(str(tmp_path / "dl")))  # the client's real download
    assert got.name == f"job_{job_id}_optimized_onnx.onnx.zip"
    with pytest.raises(BackendError, match=match):
        hub.unpack(got, tmp_path / "out", tmp_path)


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


def _graph_targets(ctx: Path, tmp_path: Path) -> list[Path]:
    """What AI Hub's compile jobs return for the pipeline's two graphs: each graph's
    EPContext model and binary from the local compile, in a folder of its own."""
    import shutil

    local = json.loads((ctx / "llm.json").read_text())
    targets = []
    for name in ("prefill", "decode"):
        t = tmp_path / f"target-{name}"
        t.mkdir()
        graph_file = local["graphs"][name]
        for f in ctx.iterdir():
            if f.name == graph_file or (f.suffix == ".bin" and f.name.startswith(Path(graph_file).stem)):
                shutil.copy2(f, t / f.name)
        targets.append(t)
    return targets


def test_a_language_model_compiles_on_hub_one_job_per_graph(configured, llm_pipeline, tmp_path):
    """Prefill and decode graphs of a QDQ pipeline: two uploads, two compile jobs for the
    device; each target model (the local compile's, see the module docstring) lands in
    its graph's folder and the pipeline generates from them on the HTP."""
    b = llm_pipeline("llama3.2")
    configured.target = _graph_targets(b["ctx"], tmp_path)
    out = tmp_path / "hub"
    api.compile(b["qdq"], output=out, device="npu", backend="qnn", options={"hub_device": S24})
    subs = configured.submitted("compile")
    assert [s.name for s in subs] == ["edgesmith prefill", "edgesmith decode"]
    uploaded = [onnx.load_from_string(m.data) for m in configured.uploaded()]
    widths = [[d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] for m in uploaded]
    assert widths == [[1, 32], [1, 1]]
    assert all(any(n.op_type == "QuantizeLinear" for n in m.graph.node) for m in uploaded)
    spec = json.loads((out / "llm.json").read_text())
    assert spec["stage"] == "context" and spec["graphs"] == {"prefill": "prefill/model.onnx",
                                                           "decode": "decode/model.onnx"}
    jobs = spec["details"]["compile"]["graphs"]
    assert {jobs[g]["hub"]["device"] for g in jobs} == {S24}
    with api.load(out, backend="qnn") as runner:
        local_run = api.load(b["ctx"], backend="qnn")
        ids = runner.tokenize("The library was quiet")
        assert np.array_equal(runner.logprobs(ids), local_run.logprobs(ids))
        local_run.close()


def test_a_language_model_is_profiled_on_hub_graph_by_graph(configured, llm_pipeline, tmp_path):
    """-O hub_profile=1: after each graph's compile job, a profile job of its stored target
    model on the same device; the pipeline records both and the token rates they imply."""
    b = llm_pipeline("llama3.2")
    configured.target = _graph_targets(b["ctx"], tmp_path)
    out = tmp_path / "hub"
    api.compile(b["qdq"], output=out, device="npu", backend="qnn", options={"hub_device": S24, "hub_profile": "1"})
    compiled, profiled = configured.submitted("compile"), configured.submitted("inference")
    assert [s.name for s in compiled] == ["edgesmith prefill", "edgesmith decode"]
    assert len(profiled) == 2 and all(p.is_profiling_on and not p.HasField("dataset") for p in profiled)
    # each profile job runs the target model its own graph's compile job made
    targets = [j.target_model_id for j in configured.jobs.values() if j.kind == "compile"]
    assert [p.model.model_id for p in profiled] == targets
    spec = json.loads((out / "llm.json").read_text())
    comp = spec["details"]["compile"]
    assert {comp["graphs"][g]["hub_profile"]["device"] for g in ("prefill", "decode")} == {S24}
    speed = comp["hub_speed"]
    # the loopback service reports 1.234 ms for any model: one token per decode run,
    # one chunk (32 tokens) per prefill run
    assert speed["device"] == S24 and speed["decode_ms"] == speed["prefill_ms"] == 1.234
    assert speed["decode_tps"] == pytest.approx(1000 / 1.234) and speed["prefill_tps"] == pytest.approx(32000 / 1.234)
