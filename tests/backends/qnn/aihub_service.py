"""A loopback stand-in for the Qualcomm AI Hub *service*, for the real ``qai_hub`` client.

The client (qai-hub 0.56, installed in the QNN environment) talks to AI Hub
over HTTP(S): REST paths under ``/api/v1/`` whose bodies are the protobuf
messages of the client's own wire schema (``qai_hub.public_api_pb2``), sent
with ``Authorization: token ...``; model files go up and come down through
the pre-signed storage URLs the API hands out. :class:`AIHubService` answers
those paths on 127.0.0.1, so a test points a ``client.ini`` (``api_url``) at
it and everything from ``edgesmith_qnn.hub`` down runs for real: ``qai_hub``'s
Client, its config loading, device checks, model zipping, protobuf encoding,
its requests session (urllib3 retries, time-outs), the multipart upload with
ETags and the streamed download. Every request is recorded
(:attr:`AIHubService.requests`) for the tests to assert on.

What it cannot be is the service itself: it compiles and measures nothing.
A compile job's target model is whatever the test hands it (a model this
backend compiled locally); its device list is written by hand in the shape
the client parses (name, OS, ``chipset:``/``hexagon:``/``framework:``
attributes), not captured from the live service, and the file name and zip
layout of a downloaded ``precompiled_qnn_onnx`` model are an assumption.
Paths it does not know answer 404, so a client call it was not written for
fails loudly.
"""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from packaging.version import InvalidVersion, Version
from qai_hub import public_api_pb2 as pb

TOKEN = "tok-ini-123"


def _attrs(chipset: str, hexagon: str | None, *, vendor: str, qnn: bool = True,
           os_name: str = "android", fmt: str = "phone") -> list[str]:
    out = [f"chipset:{chipset}", f"format:{fmt}", f"os:{os_name}", f"vendor:{vendor}",
           "framework:tflite", "framework:onnx"]
    if qnn:
        out.append("framework:qnn")
    if hexagon:
        out.append(f"hexagon:{hexagon}")
    return out


#: (name, os, attributes): one row per device and OS, as ``GET devices`` lists them.
DEVICE_ROWS = [
    ("Samsung Galaxy S24", "14", _attrs("qualcomm-snapdragon-8gen3", "v75", vendor="samsung")),
    ("Samsung Galaxy S24 (Family)", "14", _attrs("qualcomm-snapdragon-8gen3", "v75", vendor="samsung")),
    ("Samsung Galaxy S24 (Family)", "15", _attrs("qualcomm-snapdragon-8gen3", "v75", vendor="samsung")),
    ("Samsung Galaxy S23", "13", _attrs("qualcomm-snapdragon-8gen2", "v73", vendor="samsung")),
    ("Samsung Galaxy S25 (Family)", "15", _attrs("qualcomm-snapdragon-8-elite", "v79", vendor="samsung")),
    ("Snapdragon X Elite CRD", "11", _attrs("qualcomm-snapdragon-x-elite", "v73", vendor="qualcomm",
                                            os_name="windows", fmt="laptop")),
    ("QCS8550 (Proxy)", "12", _attrs("qualcomm-qcs8550-proxy", "v73", vendor="qualcomm", fmt="iot")),
    ("Google Pixel 8", "14", _attrs("google-tensor-g3", None, vendor="google", qnn=False)),
    ("Apple iPhone 15", "17.0", ["chipset:apple-a16", "format:phone", "os:ios", "vendor:apple",
                                 "framework:coreml", "framework:tflite"]),
]

STATES = {
    "CREATED": pb.JOB_STATE_CREATED,
    "OPTIMIZING_MODEL": pb.JOB_STATE_OPTIMIZING_MODEL,
    "PROVISIONING_DEVICE": pb.JOB_STATE_PROVISIONING_DEVICE,
    "MEASURING_PERFORMANCE": pb.JOB_STATE_MEASURING_PERFORMANCE,
    "SUCCESS": pb.JOB_STATE_DONE,
    "FAILED": pb.JOB_STATE_FAILED,
}


def profile_detail(*, inference_us: int = 1234, peak_bytes: int = 34 << 20) -> pb.ProfileDetail:
    """A profile (format 1.2) as the service sends it in ``GET jobs/ID/result``;
    the client turns it into the ``download_profile()`` dict (µs, bytes)."""

    def usage(inc: tuple[int, int], peak: tuple[int, int]) -> pb.ProfileDetail.MemoryUsage:
        return pb.ProfileDetail.MemoryUsage(increase=pb.Range(lower=inc[0], upper=inc[1]),
                                            peak=pb.Range(lower=peak[0], upper=peak[1]))

    npu, cpu = pb.COMPUTE_UNIT_NPU, pb.COMPUTE_UNIT_CPU
    return pb.ProfileDetail(
        major_version=1, minor_version=2,
        execution_time=inference_us, after_execution_peak_memory=peak_bytes,
        cold_load_time=210_500, after_cold_load_peak_memory=60 << 20,
        warm_load_time=15_250, after_warm_load_peak_memory=40 << 20,
        compile_time=0, after_compile_peak_memory=0,
        cold_load_memory=usage((1 << 20, 3 << 20), (50 << 20, 60 << 20)),
        warm_load_memory=usage((0, 1 << 20), (38 << 20, 40 << 20)),
        execution_memory=usage((0, 1 << 20), (32 << 20, 34 << 20)),
        all_cold_load_times=[210_500], all_warm_load_times=[15_250, 15_300],
        all_execution_times=[1200, 1234, 1301, 1250],
        layer_details=[
            pb.LayerDetail(name="EPContext_0", layer_type_name="MatMul", compute_unit=npu,
                           execution_time=400, execution_cycles=90_000),
            pb.LayerDetail(name="ln_1", layer_type_name="LayerNorm", compute_unit=npu, execution_time=80),
            pb.LayerDetail(name="gelu_1", layer_type_name="Gelu", compute_unit=npu, execution_time=60),
            pb.LayerDetail(name="argmax", layer_type_name="ArgMax", compute_unit=cpu, execution_time=30),
        ],
    )


@dataclass
class Request:
    """One request the service received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    #: The parsed protobuf body, for API requests that carry one.
    message: Any = None


@dataclass
class StoredModel:
    model_id: str
    name: str
    model_type: int = pb.MODEL_TYPE_ONNX
    is_directory: bool = False
    producer_id: str = ""
    #: What was uploaded (the file the client sent: .onnx, or the zip of a model folder).
    data: bytes | None = None
    #: What the storage URL serves back, and under which file name.
    download: tuple[str, bytes] | None = None
    upload_id: str = ""
    parts: dict[int, bytes] = field(default_factory=dict)
    #: Its file is on the service (uploaded and confirmed, produced by a job, or stored before).
    ready: bool = False


@dataclass
class Job:
    job_id: str
    kind: str  # "compile" | "inference"
    message: Any  # the CompileJob / InferenceJob protobuf as submitted
    device: pb.Device
    states: list[tuple[str, str | None]]
    target_model_id: str = ""
    polls: int = 0


class AIHubService:
    """The service on ``127.0.0.1:<free port>``; :meth:`start` / :meth:`stop`.

    Script it before the client calls: ``compile_states`` / ``profile_states``
    (one ``(state, failure message)`` per status poll, the last one repeated),
    ``target`` (a compiled model folder to send back as a compile job's
    target model, or a list of them for consecutive jobs) and ``layout`` (``zip``: the folder zipped, ``onnx``: the
    lone .onnx; ``zip-traversal`` / ``zip-no-bin`` / ``zip-two-onnx``: broken
    archives), ``profile`` (a :class:`ProfileDetail`), ``reject_options``
    (a job option the service refuses with HTTP 400, as it does unknown flags).
    """

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[Request] = []
        self.models: dict[str, StoredModel] = {}
        self.jobs: dict[str, Job] = {}
        self.compile_states: list[tuple[str, str | None]] = [
            ("CREATED", None), ("OPTIMIZING_MODEL", None), ("SUCCESS", None)]
        self.profile_states: list[tuple[str, str | None]] = [
            ("CREATED", None), ("PROVISIONING_DEVICE", None), ("MEASURING_PERFORMANCE", None),
            ("SUCCESS", None)]
        self.target: Path | list[Path] | None = None
        self.layout = "zip"
        self.profile = profile_detail()
        self.reject_options: str | None = None
        #: Answer every API request with this HTTP status (e.g. 500) when set.
        self.fail_status: int | None = None
        self._n = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> AIHubService:
        service = self

        class Handler(_Handler):
            owner = service

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="aihub-service",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the service first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def client_ini(self, path: Path, token: str | None = None, *, fields: dict[str, str] | None = None
                   ) -> Path:
        """Write a qai_hub ``client.ini`` (what ``qai-hub configure`` writes) that
        points the client here; ``fields`` replaces the [api] section's entries."""
        entries = fields if fields is not None else {
            "api_token": token or self.token, "api_url": self.url, "web_url": self.url,
            "verbose": "True"}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("[api]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
        return path

    # -- for the tests --------------------------------------------------------------------------

    def api(self, method: str | None = None, pattern: str = "") -> list[Request]:
        """The API requests (``/api/v1/...``), optionally of one method and path pattern."""
        return [r for r in self.requests if r.path.startswith("/api/")
                and (method is None or r.method == method) and re.search(pattern, r.path)]

    def submitted(self, kind: str) -> list[Any]:
        """The CompileJob / InferenceJob messages of the jobs created, in order."""
        field_name = f"{kind}_job"
        return [getattr(r.message, field_name) for r in self.api("POST", r"^/api/v1/jobs/$")
                if r.message is not None and r.message.WhichOneof("job") == field_name]

    def uploaded(self) -> list[StoredModel]:
        return [m for m in self.models.values() if m.data is not None]

    def add_model(self, model_id: str, name: str = "stored", *, producer_id: str = "") -> StoredModel:
        """A model already stored on the service (e.g. the target of an earlier compile)."""
        m = StoredModel(model_id, name, producer_id=producer_id, ready=True)
        self.models[model_id] = m
        return m

    def add_compile_job(self, states: list[tuple[str, str | None]], *, target: Path | None = None,
                        layout: str = "zip", device: str = "Samsung Galaxy S24 (Family)") -> str:
        """A compile job that exists on the service, submitted earlier."""
        job_id = self._id("j")
        job_pb = pb.CompileJob(compile_job_id=job_id, name="earlier", options="")
        job_pb.creation_time.GetCurrentTime()
        dev = self.select(device, "")
        assert dev is not None, device
        job = Job(job_id, "compile", job_pb, dev, list(states))
        if target is not None:
            job.target_model_id = self._target_model(job_id, "earlier", target, layout).model_id
        self.jobs[job_id] = job
        return job_id

    # -- the service's logic --------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}{self._n:07d}"

    @staticmethod
    def _os_matches(dev_os: str, want: str) -> bool:
        if not want:
            return True
        if not want.startswith("["):
            return dev_os == want  # a version must match exactly (the client's docs)
        lo, _, hi = want[1:].rstrip(")").partition(",")
        try:
            v = Version(dev_os)
            return (not lo or v >= Version(lo)) and (not hi or v < Version(hi))
        except InvalidVersion:
            return False

    def devices(self, name: str = "", os: str = "", attributes: list[str] | None = None) -> list[pb.Device]:
        attributes = [a for a in attributes or [] if a]
        return [pb.Device(name=n, os=o, attributes=a) for n, o, a in DEVICE_ROWS
                if (not name or n == name) and self._os_matches(o, os)
                and all(x in a for x in attributes)]

    def select(self, name: str, os: str, attributes: list[str] | None = None) -> pb.Device | None:
        """The device a job for (name, os, attributes) runs on: the newest OS that matches."""
        found = self.devices(name, os, attributes)
        return max(found, key=lambda d: Version(d.os)) if found else None

    def _target_model(self, job_id: str, name: str, target: Path, layout: str) -> StoredModel:
        base = f"job_{job_id}_optimized_onnx"
        if layout == "onnx":
            download = (f"{base}.onnx", (target / "model.onnx").read_bytes())
        else:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                if layout == "zip-traversal":
                    zf.writestr("../evil.txt", "x")
                for f in sorted(target.iterdir()):
                    if f.suffix == ".bin" and layout == "zip-no-bin":
                        continue
                    if f.suffix in (".onnx", ".bin"):
                        zf.write(f, f"{base}/{f.name}")
                        if layout == "zip-two-onnx" and f.suffix == ".onnx":
                            zf.write(f, f"{base}/second.onnx")
            download = (f"{base}.onnx.zip", buf.getvalue())
        m = StoredModel(self._id("m"), f"{name}_optimized", is_directory=layout != "onnx",
                        producer_id=job_id, download=download, ready=True)
        self.models[m.model_id] = m
        return m

    def model_pb(self, m: StoredModel) -> pb.Model:
        out = pb.Model(model_id=m.model_id, name=m.name, model_type=m.model_type,
                       is_directory=m.is_directory, file_upload_complete=m.ready)
        if m.producer_id:
            out.producer_id = m.producer_id
        out.creation_time.GetCurrentTime()
        return out

    def job_pb(self, job: Job) -> pb.Job:
        """The job as ``GET jobs/ID`` returns it; each call is one status poll."""
        job.polls += 1
        state, failure = job.states[min(job.polls, len(job.states)) - 1]
        if job.kind == "compile":
            c = pb.CompileJob()
            c.CopyFrom(job.message)
            c.compile_job_id = job.job_id
            c.job_state = STATES[state]
            c.device.CopyFrom(job.device)
            if failure:
                c.failure_reason = failure
            if job.target_model_id:  # seeded at creation (seed_target_model=true)
                c.target_model.CopyFrom(self.model_pb(self.models[job.target_model_id]))
            return pb.Job(compile_job=c, hub_version="aihub-service (tests)")
        i = pb.InferenceJob()
        i.CopyFrom(job.message)
        i.inference_job_id = job.job_id
        i.job_state = STATES[state]
        i.device.CopyFrom(job.device)
        if failure:
            i.failure_reason = failure
        return pb.Job(inference_job=i, hub_version="aihub-service (tests)")

    def create_job(self, job_pb: pb.Job, query: dict[str, list[str]]) -> tuple[int, Any]:
        kind = job_pb.WhichOneof("job")
        if kind == "compile_job":
            sub = job_pb.compile_job
            wanted = list(sub.devices.devices)
        elif kind == "inference_job":
            sub = job_pb.inference_job
            wanted = [sub.device]
        else:
            return 400, json.dumps({"detail": f"this service takes compile and inference jobs, not {kind}"})
        if self.reject_options and self.reject_options in sub.options:
            return 400, json.dumps({"detail": f"Unrecognized option {self.reject_options!r}."})
        model = self.models.get(sub.model.model_id)
        if model is None or not model.ready:
            return 400, json.dumps({"detail": f"Model {sub.model.model_id!r} has no uploaded file."})
        if len(wanted) != 1:
            return 400, json.dumps({"detail": "one device per job here"})
        dev = self.select(wanted[0].name, wanted[0].os, list(wanted[0].attributes))
        if dev is None:
            return 400, json.dumps({"detail": f"Device {wanted[0].name!r} is not available."})
        job_id = self._id("j")
        stored = type(sub)()
        stored.CopyFrom(sub)
        stored.creation_time.GetCurrentTime()
        states = self.compile_states if kind == "compile_job" else self.profile_states
        job = Job(job_id, kind.removesuffix("_job"), stored, dev, list(states))
        if kind == "compile_job" and query.get("seed_target_model") == ["true"] and self.target:
            # A list: one target per compile job, in order (a language model's graphs).
            target = self.target.pop(0) if isinstance(self.target, list) else self.target
            job.target_model_id = self._target_model(job_id, sub.name, target, self.layout).model_id
        self.jobs[job_id] = job
        res = pb.CreateUpdateResponse(id=job_id)
        res.creation_time.CopyFrom(stored.creation_time)
        return 200, res


_API = "/api/v1"


class _Handler(BaseHTTPRequestHandler):
    owner: AIHubService
    server_version = "aihub-service/tests"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet; the service records every request instead

    # -- plumbing -------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes | str | Any = b"", *, content_type: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        if hasattr(body, "SerializeToString"):
            body, content_type = body.SerializeToString(), "application/x-protobuf"
        elif isinstance(body, str):
            body = body.encode()
            content_type = content_type or "application/json"
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        svc = self.owner
        parts = urlsplit(self.path)
        req = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                      {k.lower(): v for k, v in self.headers.items()}, self._body())
        with svc._lock:
            svc.requests.append(req)
        path = parts.path
        if path.startswith("/storage/"):
            return self._storage(req)
        if not path.startswith(_API + "/"):
            return self._send(404, "not found")
        if req.headers.get("authorization") != f"token {svc.token}":
            return self._send(401, '{"detail": "Invalid token."}')
        if svc.fail_status:
            return self._send(svc.fail_status, "")
        try:
            self._api(req, path[len(_API):])
        except Exception as exc:  # a bug here must show in the test, not hang the client
            self._send(500, json.dumps({"detail": f"aihub-service: {type(exc).__name__}: {exc}"}))
            raise

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    # -- storage (the pre-signed URLs) ----------------------------------------------------------

    def _storage(self, req: Request) -> None:
        svc = self.owner
        m = re.fullmatch(r"/storage/upload/([^/]+)/(\d+)", req.path)
        if m and req.method == "PUT":
            model = svc.models.get(m.group(1))
            if model is None:
                return self._send(404, "<Error><Code>NoSuchUpload</Code></Error>", content_type="application/xml")
            model.parts[int(m.group(2))] = req.body
            return self._send(200, b"", headers={"ETag": f'"etag-{model.model_id}-{m.group(2)}"'})
        m = re.fullmatch(r"/storage/download/([^/]+)", req.path)
        if m and req.method == "GET":
            model = svc.models.get(m.group(1))
            if model is None or model.download is None:
                return self._send(404, "<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
            return self._send(200, model.download[1], content_type="application/octet-stream")
        return self._send(404, "not found")

    # -- the REST API ---------------------------------------------------------------------------

    def _api(self, req: Request, path: str) -> None:
        svc = self.owner
        q = req.query
        one = lambda key: (q.get(key) or [""])[0]  # noqa: E731

        if path == "/devices/" and req.method == "GET":
            found = svc.devices(one("name"), one("os"), q.get("attributes"))
            if one("select") == "True":
                best = svc.select(one("name"), one("os"), q.get("attributes"))
                found = [best] if best is not None else []
            return self._send(200, pb.DeviceList(devices=found, total_query_count=len(found)))

        if path == "/models/" and req.method == "POST":
            req.message = pb.Model.FromString(req.body)
            model = StoredModel(svc._id("m"), req.message.name, req.message.model_type,
                                req.message.is_directory)
            svc.models[model.model_id] = model
            res = pb.CreateUpdateResponse(id=model.model_id)
            res.creation_time.GetCurrentTime()
            return self._send(200, res)

        m = re.fullmatch(r"/models/([^/]+)/(multipart_upload|download)?/?", path)
        if m:
            model = svc.models.get(m.group(1))
            if model is None:
                return self._send(404, json.dumps({"detail": "Not found."}))
            action = m.group(2)
            if action is None and req.method == "GET":
                return self._send(200, svc.model_pb(model))
            if action == "multipart_upload" and req.method == "GET":
                model.upload_id = f"upload-{model.model_id}"
                urls = pb.FileMultipartUploadURL(urls=[f"{svc.url}/storage/upload/{model.model_id}/1"],
                                                 upload_id=model.upload_id, max_part_size=1 << 30)
                return self._send(200, pb.FileUploadResponse(multipart_url=urls))
            if action == "multipart_upload" and req.method == "POST":
                req.message = pb.FileMultipartUploadComplete.FromString(req.body)
                want = [f'"etag-{model.model_id}-{i}"' for i in sorted(model.parts)]
                if req.message.upload_id != model.upload_id or list(req.message.etags) != want:
                    return self._send(400, json.dumps({"detail": "upload id or ETags do not match"}))
                model.data = b"".join(model.parts[i] for i in sorted(model.parts))
                model.ready = True
                return self._send(200, pb.CreateUpdateResponse(id=model.model_id))
            if action == "download" and req.method == "GET":
                if model.download is None:
                    return self._send(404, json.dumps({"detail": "This model has no file yet."}))
                url = pb.FileDownloadURL(url=f"{svc.url}/storage/download/{model.model_id}",
                                         filename=model.download[0])
                return self._send(200, pb.FileDownloadResponse(url=url))

        if path == "/jobs/" and req.method == "POST":
            req.message = pb.Job.FromString(req.body)
            status, res = svc.create_job(req.message, q)
            return self._send(status, res)

        m = re.fullmatch(r"/jobs/([^/]+)/(result/)?", path)
        if m and req.method == "GET":
            job = svc.jobs.get(m.group(1))
            if job is None:
                return self._send(404, json.dumps({"detail": "Not found."}))
            if m.group(2) is None:
                return self._send(200, svc.job_pb(job))
            if job.kind == "inference":
                result = pb.InferenceJobResult(inference_job_id=job.job_id)
                if job.message.is_profiling_on:
                    result.detail.CopyFrom(svc.profile)
                return self._send(200, pb.JobResult(inference_job_result=result))
            return self._send(200, pb.JobResult(compile_job_result=pb.CompileJobResult(
                compile_job_id=job.job_id)))

        return self._send(404, json.dumps({"detail": f"aihub-service has no {req.method} {path}"}))
