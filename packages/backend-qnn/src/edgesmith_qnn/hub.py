"""Qualcomm AI Hub: compile for, and profile on, real Snapdragon devices.

The ``qai_hub`` client (a dependency of edgesmith-qnn, installed in the
backend's own environment) is imported only inside :func:`connect`; every
public function also takes a ``client`` (a ``qai_hub.Client``). Without network
access in CI the live service has not been exercised: the tests run the real
client against a loopback server that answers its REST API
(tests/backends/qnn/aihub_service.py), and against the network guard for the
default service URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import json
import os
import shutil
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from edgesmith.errors import BackendError, EdgesmithError, UserError
from edgesmith.options import parse
from edgesmith.scratch import scratch_dir
from edgesmith.types import Artifact, Context, Timings

from . import graph
from .options import NAME, PROFILE_OPTIONS

#: AI Hub's target runtime for an ONNX model whose graph is a QNN context
#: binary behind EPContext nodes: the same shape as a local `compile --device npu`.
TARGET_RUNTIME = "precompiled_qnn_onnx"
TOKEN_ENV = "QAI_HUB_API_TOKEN"
#: The client's own override of its config file path.
CONFIG_ENV = "QAIHUB_CLIENT_INI"
CONFIG_DEFAULT = "~/.qai_hub/client.ini"
INSTALL_HINT = ("it comes with edgesmith-qnn in the backend's own environment: `edgesmith install qnn` "
                "(from a checkout: `edgesmith install ./packages/backend-qnn`), or "
                "pip install 'qai-hub>=0.56,<1' here")
CONFIGURE_HINT = (f"run `qai-hub configure --api_token YOUR_TOKEN` (token from your AI Hub account "
                  f"settings) or set {TOKEN_ENV}")
#: Seconds between status polls (the client's own wait() polls every 10 s).
POLL_S = 10.0
#: Compile options that describe the local HTP target; on AI Hub the device decides.
LOCAL_ONLY = ("soc_model", "htp_arch", "htp_performance_mode", "cpu_fallback", "embed")
PROFILE_JSON = "hub_profile.json"

Progress = Callable[[str, float | None, float | None], None]


@attrs.frozen
class HubProfile:
    """What an AI Hub profile job measured on the device.

    Times come from the client in microseconds and memory in bytes; here they
    are milliseconds and MiB. ``None`` where the service gave no value.
    """

    job_id: str
    device: str
    url: str | None = None
    #: Estimated time of one inference (the service's median over its runs).
    inference_ms: float | None = None
    #: Peak memory during inference.
    peak_memory_mb: float | None = None
    #: Low/high bounds of the inference peak memory, where reported.
    peak_memory_range_mb: tuple[float, float] | None = None
    first_load_ms: float | None = None
    warm_load_ms: float | None = None
    #: Number of timed inferences behind ``inference_ms``.
    runs: int | None = None
    #: Layers per compute unit (NPU/GPU/CPU): CPU layers mean fallback.
    compute_units: Mapping[str, int] = attrs.field(factory=dict)

    def timings(self) -> Timings:
        """The device's numbers in the core's Timings (a fixed-shape graph has no
        tokens: ``total_s`` is one inference, ``load_s`` a warm load)."""
        load = self.warm_load_ms if self.warm_load_ms is not None else self.first_load_ms
        return Timings(
            load_s=None if load is None else load / 1000,
            total_s=None if self.inference_ms is None else self.inference_ms / 1000,
            peak_rss_mb=self.peak_memory_mb,
        )

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["peak_memory_range_mb"] = list(self.peak_memory_range_mb) if self.peak_memory_range_mb else None
        d["compute_units"] = dict(self.compute_units)
        return d


# --- the client --------------------------------------------------------------------------------


def config_path() -> Path:
    return Path(os.path.expanduser(os.environ.get(CONFIG_ENV) or CONFIG_DEFAULT))


def connect(client: Any = None) -> Any:
    """``client`` itself, or a ``qai_hub.Client`` from QAI_HUB_API_TOKEN or the
    client's own config file. No request is made here."""
    if client is not None:
        return client
    try:
        import qai_hub
    except ImportError:
        raise UserError(f"--option hub_device needs the Qualcomm AI Hub client qai_hub, which is "
                        f"not installed here; {INSTALL_HINT}") from None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return qai_hub.Client(config=qai_hub.ClientConfig(api_token=token))
    if config_path().is_file():
        client = qai_hub.Client()
        # The config file defaults to verbose; progress goes through ctx.progress instead.
        _call("reading its configuration", getattr(client, "set_verbose", lambda _v: None), False)
        return client
    raise UserError(f"Qualcomm AI Hub is not configured (no {TOKEN_ENV} and no {config_path()}); "
                    f"{CONFIGURE_HINT}")


def _first_line(exc: BaseException) -> str:
    """One line from a client error. qai_hub puts a headline first ("Internal API
    failure.") and the useful text in a drawn box below it: keep both, joined."""
    lines = []
    for line in str(exc).splitlines():
        line = line.strip(" |│─┌┐└┘-+=*\t")
        if any(c.isalnum() for c in line):
            lines.append(line)
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 or not lines[0].endswith(".") else " ".join(lines)
    return text[:400]


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the client with its prints sent to stderr (stdout may carry --json)
    and its errors turned into one line."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return fn(*args, **kwargs)
    except EdgesmithError:
        raise
    except Exception as exc:
        kind = type(exc)
        msg = _first_line(exc)
        names = [type(e).__name__ for e in _chain(exc)]
        if any(k in n for n in names for k in ("Connection", "Timeout", "SSLError", "ProxyError")):
            # The network, a proxy or the URL in the client's config: the user's to fix (exit 2).
            raise UserError(f"cannot reach Qualcomm AI Hub while {what} ({msg}); check the "
                            f"network or proxy and retry") from None
        if msg.startswith("Failed to load"):  # a config file without api_token/api_url/web_url
            raise UserError(f"the Qualcomm AI Hub client could not use its configuration "
                            f"{config_path()} while {what} ({msg.split('.')[0]}); "
                            f"{CONFIGURE_HINT}") from None
        if msg.startswith("Failed to authenticate") or " 401" in f" {msg}":
            head = msg.split(".")[0]  # the rest is the client's own (wrapped) advice
            raise UserError(f"Qualcomm AI Hub rejected the API token while {what} ({head}); "
                            f"{CONFIGURE_HINT}") from None
        if "qai_hub" in kind.__module__ and kind.__name__ == "UserError":
            raise UserError(f"Qualcomm AI Hub refused {what}: {msg}") from None
        raise BackendError(f"Qualcomm AI Hub failed while {what} ({kind.__name__}: {msg})") from None


# --- devices -----------------------------------------------------------------------------------


def close_names(name: str, names: list[str], n: int = 5) -> list[str]:
    """Device names close to ``name``: containing it, or similar in spelling."""
    key = name.casefold().strip()
    by_key = {x.casefold(): x for x in names}
    hits = [x for x in names if key and key in x.casefold()]
    hits += [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=n, cutoff=0.5)]
    return list(dict.fromkeys(hits))[:n]


def resolve_device(client: Any, name: str, os_version: str = "") -> tuple[Any, dict[str, Any]]:
    """The Device to submit for ``name`` (matched case-insensitively against the
    client's device list) and the facts to record about it."""
    name = name.strip()
    if not name:
        raise UserError("hub_device is empty; give an AI Hub device name, e.g. "
                        "--option 'hub_device=Samsung Galaxy S24 (Family)'")
    devices = list(_call("listing its devices", client.get_devices))
    same = [d for d in devices if d.name.casefold() == name.casefold()]
    if not same:
        names = sorted({d.name for d in devices})
        close = close_names(name, names)
        hint = (f"close matches: {', '.join(repr(x) for x in close)}" if close
                else f"none of its {len(names)} device names is close")
        raise UserError(f"unknown AI Hub device {name!r}; {hint}; list them all with "
                        f"`qai-hub list-devices`")
    versions = sorted({d.os for d in same if d.os})
    if os_version and not os_version.startswith("[") and os_version not in versions:
        raise UserError(f"AI Hub device {same[0].name!r} has no OS {os_version!r}; available: "
                        f"{', '.join(versions) or 'none listed'} (or an interval such as '[14,)')")
    attributes = sorted({a for d in same for a in d.attributes})
    if "framework:qnn" not in attributes:
        raise UserError(f"AI Hub device {same[0].name!r} has no Qualcomm NPU runtime "
                        f"(no framework:qnn attribute); pick a Snapdragon device")
    dev = same[0]
    # Name (and OS if given) only: the service then picks the newest matching device.
    if dataclasses.is_dataclass(dev):
        choice = dataclasses.replace(dev, os=os_version, attributes=[])
    else:
        choice = type(dev)(dev.name, os_version)
    facts = {
        "device": dev.name,
        "device_os": os_version or "latest",
        "os_versions": versions,
        "chipset": next((a.split(":", 1)[1] for a in attributes if a.startswith("chipset:")), None),
        "hexagon": next((a.split(":", 1)[1] for a in attributes if a.startswith("hexagon:")), None),
        "attributes": attributes,
    }
    return choice, facts


# --- jobs --------------------------------------------------------------------------------------


def wait(job: Any, what: str, progress: Progress, *, poll_s: float | None = None,
         timeout: float | None = None, sleep: Callable[[float], None] | None = None) -> Any:
    """Poll ``job`` until it finishes, reporting each state through ``progress``
    (every ``poll_s`` seconds, default :data:`POLL_S` as it is at call time)."""
    poll_s = POLL_S if poll_s is None else poll_s
    sleep = sleep or time.sleep
    start = time.monotonic()
    last = None
    while True:
        status = _call(f"reading the status of {what} job {job.job_id}", job.get_status)
        if status.finished:
            break
        if status.code != last:
            progress(f"AI Hub {what} job {job.job_id}: {status.code.lower().replace('_', ' ')}",
                     None, None)
            last = status.code
        if timeout is not None and time.monotonic() - start >= timeout:
            raise BackendError(f"AI Hub {what} job {job.job_id} is still {status.code} after "
                               f"{timeout:g} s; follow it at {_url(job)} or raise hub_timeout")
        sleep(poll_s)
    if not status.success:
        raise BackendError(f"AI Hub {what} job {job.job_id} failed: "
                           f"{(status.message or status.code).strip().splitlines()[0]}; "
                           f"details at {_url(job)}")
    progress(f"AI Hub {what} job {job.job_id}: done", None, None)
    return status


def _url(job: Any) -> str | None:
    try:
        return str(job.url)
    except Exception:  # the URL needs the client's config; never fail a report on it
        return None


def _stage(model: Any, work: Path) -> Path:
    """Write ``model`` for upload: a single .onnx file, or a directory with the
    .onnx and its one .data file when the weights must live outside it."""
    d = work / "upload"
    d.mkdir()
    graph.save(model, d / graph.MODEL_NAME)
    return d / graph.MODEL_NAME if len(list(d.iterdir())) == 1 else d


def _extract(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (dest / member).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise BackendError(f"the AI Hub download {archive.name} holds a path outside "
                                   f"its folder ({member}); not extracting it")
        zf.extractall(dest)


def unpack(downloaded: Path, output: Path, work: Path) -> list[str]:
    """Put the downloaded target model in ``output`` as ``model.onnx`` plus its
    context binaries, and check every binary its EPContext nodes name is there."""
    if downloaded.is_file() and zipfile.is_zipfile(downloaded):
        root = work / "unzipped"
        root.mkdir()
        _extract(downloaded, root)
    elif downloaded.is_dir():
        root = downloaded
    else:
        root = downloaded.parent
    onnxs = sorted(p for p in root.rglob("*.onnx") if p.is_file())
    if len(onnxs) != 1:
        raise BackendError(f"the AI Hub target model {downloaded.name} holds {len(onnxs)} .onnx "
                           f"files; expected one {TARGET_RUNTIME} model")
    files = []
    for f in sorted(onnxs[0].parent.iterdir()):
        if f.is_file():
            name = graph.MODEL_NAME if f == onnxs[0] else f.name
            shutil.copy2(f, output / name)
            files.append(name)
    model = graph.load(output / graph.MODEL_NAME, weights=False)
    nodes = [n for n in model.graph.node if n.op_type == "EPContext"]
    if not nodes:
        raise BackendError(f"the AI Hub target model {downloaded.name} has no EPContext node; "
                           f"it is not a {TARGET_RUNTIME} model")
    for n in nodes:
        at = {a.name: a for a in n.attribute}
        embedded = at["embed_mode"].i if "embed_mode" in at else 1
        if not embedded and "ep_cache_context" in at:
            ref = at["ep_cache_context"].s.decode()
            if not (output / ref).is_file():
                raise BackendError(f"the AI Hub target model names context binary {ref!r}, "
                                   f"which the download does not hold")
    return files


def _options(required: str, extra: str) -> str:
    if "--target_runtime" in extra:
        raise UserError(f"hub_options may not set --target_runtime; the qnn backend always "
                        f"compiles to {TARGET_RUNTIME}")
    return f"{required} {extra}".strip()


def compile_on_hub(source: Artifact, opts: Mapping[str, Any], output: Path, ctx: Context, *,
                   client: Any = None, poll_s: float | None = None,
                   sleep: Callable[[float], None] | None = None) -> Artifact:
    """`compile --device npu --option hub_device=NAME`: an AI Hub compile job for
    that device, its target model downloaded into ``output``. ``opts`` are the
    compile options as the core parsed them (:data:`edgesmith_qnn.options.COMPILE_OPTIONS`)."""
    local = [k for k in LOCAL_ONLY if opts.get(k)]  # set, and not to the default (off)
    if local:
        raise UserError(f"option(s) {', '.join(local)} describe the local HTP target and do not "
                        f"apply with hub_device (the AI Hub device decides); drop them")
    options = _options(f"--target_runtime {TARGET_RUNTIME}", opts.get("hub_options", ""))
    timeout = opts.get("hub_timeout")
    want_profile = opts.get("hub_profile", False)
    ctx.progress("reading model", None, None)
    path, model, facts = graph.prepare(source, opts)
    quantized = graph.is_qdq(model)
    client = connect(client)
    ctx.progress("looking up the AI Hub device", None, None)
    device, dev_facts = resolve_device(client, opts["hub_device"], opts.get("hub_os", ""))
    name = f"edgesmith {path.parent.name if path.name == graph.MODEL_NAME else path.stem}"
    with scratch_dir("qnn-hub") as tmp:
        work = Path(tmp)
        upload = _stage(model, work)
        del model
        ctx.progress(f"uploading the model and submitting an AI Hub compile job for "
                     f"{dev_facts['device']}", None, None)
        job = _call("the compile job", client.submit_compile_job, model=str(upload), device=device,
                    name=name, options=options)
        if isinstance(job, list):  # one device -> one job, but the client types it as a list too
            job = job[0]
        ctx.progress(f"AI Hub compile job {job.job_id}: {_url(job)}", None, None)
        wait(job, "compile", ctx.progress, poll_s=poll_s, timeout=timeout, sleep=sleep)
        ctx.progress("downloading the compiled model", None, None)
        dl = work / "download"
        dl.mkdir()
        got = _call("downloading the target model", job.download_target_model, str(dl))
        if got is None:
            raise BackendError(f"AI Hub compile job {job.job_id} finished without a target model; "
                               f"see {_url(job)}")
        files = unpack(Path(got), output, work)
    target = _call("reading the target model", job.get_target_model)
    hub: dict[str, Any] = {
        "job_id": job.job_id,
        "url": _url(job),
        **dev_facts,
        "target_runtime": TARGET_RUNTIME,
        "options": options,
        "target_model_id": getattr(target, "model_id", None),
        "client_version": _client_version(client),
    }
    details: dict[str, Any] = {
        "device": "npu",
        "compiled_by": "qualcomm-ai-hub",
        "hub": hub,
        "precision": "qdq" if quantized else "float (precision chosen by AI Hub's compiler)",
        "context_binaries": sorted(f for f in files if f.endswith(".bin")),
        **facts,
    }
    if want_profile:
        prof, raw = _profile_job(client, target, device, dev_facts["device"], "", ctx.progress,
                                 poll_s=poll_s, timeout=timeout, sleep=sleep)
        (output / PROFILE_JSON).write_text(json.dumps(raw, indent=1) + "\n")
        details["hub_profile"] = prof.to_dict()
    details["side_files"] = graph.copy_side_files(path.parent, output)
    return Artifact(path=output, format="qnn", entry=graph.MODEL_NAME, details=details)


def _client_version(client: Any) -> str | None:
    mod = sys.modules.get("qai_hub") or sys.modules.get(type(client).__module__.split(".")[0])
    version = getattr(mod, "__version__", None)
    # qai_hub's __version__ is a packaging Version, not a str: the manifest is JSON.
    return None if version is None else str(version)


# --- profiling ---------------------------------------------------------------------------------


def parse_profile(raw: Mapping[str, Any], job_id: str, device: str, url: str | None = None
                  ) -> HubProfile:
    """A ``download_profile()`` dict -> HubProfile (µs -> ms, bytes -> MiB)."""
    summary = raw.get("execution_summary")
    if not isinstance(summary, Mapping):
        raise BackendError(f"AI Hub profile job {job_id} returned no execution summary; see {url}")

    def ms(key: str) -> float | None:
        v = summary.get(key)
        return None if v is None else round(float(v) / 1000, 4)

    def mib(v: Any) -> float | None:
        return None if v is None else round(float(v) / (1 << 20), 3)

    rng = summary.get("inference_memory_peak_range")
    runs = summary.get("all_inference_times")
    units = Counter(str(d.get("compute_unit", "UNKNOWN")) for d in raw.get("execution_detail") or ())
    return HubProfile(
        job_id=job_id, device=device, url=url,
        inference_ms=ms("estimated_inference_time"),
        peak_memory_mb=mib(summary.get("estimated_inference_peak_memory")),
        peak_memory_range_mb=(mib(rng[0]), mib(rng[1])) if rng else None,
        first_load_ms=ms("first_load_time"),
        warm_load_ms=ms("warm_load_time"),
        runs=len(runs) if runs else None,
        compute_units=dict(units.most_common()),
    )


def _profile_job(client: Any, model: Any, device: Any, device_name: str, extra: str,
                 progress: Progress, **wait_kw: Any) -> tuple[HubProfile, dict[str, Any]]:
    options = _options("", extra)
    progress(f"submitting an AI Hub profile job on {device_name}", None, None)
    submit = getattr(client, "submit_inference_job", None)
    if submit is not None and "profile" in inspect.signature(submit).parameters:
        # qai_hub >= 0.56: profiling is an inference job with profile=True.
        job = _call("the profile job", submit, model, device, name="edgesmith profile",
                    options=options, profile=True)
    else:
        job = _call("the profile job", client.submit_profile_job, model, device,
                    name="edgesmith profile", options=options)
    if isinstance(job, list):
        job = job[0]
    progress(f"AI Hub profile job {job.job_id}: {_url(job)}", None, None)
    wait(job, "profile", progress, **wait_kw)
    raw = _call("downloading the profile", job.download_profile)
    if not isinstance(raw, Mapping):
        raise BackendError(f"AI Hub profile job {job.job_id} returned no profile; see {_url(job)}")
    return parse_profile(raw, job.job_id, device_name, _url(job)), dict(raw)


def profile(artifact: Artifact | str | Path, device: str | None = None, *,
            options: Mapping[str, str] | None = None, client: Any = None,
            progress: Progress | None = None, poll_s: float | None = None,
            sleep: Callable[[float], None] | None = None) -> HubProfile:
    """Profile ``artifact`` on AI Hub device ``device`` and return what it measured.

    ``artifact`` is a qnn/onnx model (directory or .onnx file). A model compiled
    on AI Hub is profiled from its stored target model (no upload) and, without
    ``device``, on the device it was compiled for. ``options`` takes ``hub_os``,
    ``hub_options`` (extra profile options) and ``hub_timeout``.
    """
    from edgesmith import formats

    opts = parse(PROFILE_OPTIONS, options, backend=NAME, operation="hub profile")
    report = progress or (lambda *_a: None)
    art = artifact if isinstance(artifact, Artifact) else formats.detect(artifact)
    if art.format not in ("qnn", "onnx"):
        raise UserError(f"{art.path} is a {art.format} model; AI Hub profiling here takes a qnn or "
                        f"onnx model")
    recorded = dict((art.manifest or {}).get("details", {}).get("hub") or {})
    name = device or recorded.get("device")
    if not name:
        raise UserError("no AI Hub device given and the model was not compiled on AI Hub; pass "
                        "device='NAME' (e.g. 'Samsung Galaxy S24 (Family)')")
    timeout = opts.get("hub_timeout")
    client = connect(client)
    dev, facts = resolve_device(client, name, opts.get("hub_os", ""))
    with scratch_dir("qnn-hub") as tmp:
        model: Any = None
        if recorded.get("target_model_id") and hasattr(client, "get_model"):
            model = _call("looking up the compiled model", client.get_model,
                          recorded["target_model_id"])
        if model is None:
            model = str(_stage_file(graph.model_file(art), Path(tmp)))
        prof, _raw = _profile_job(client, model, dev, facts["device"], opts.get("hub_options", ""),
                                  report, poll_s=poll_s, timeout=timeout, sleep=sleep)
    return prof


def _stage_file(onnx_path: Path, work: Path) -> Path:
    """Copy a local model for upload: the client takes a lone .onnx, or a folder
    with exactly one .onnx and at most one .bin or .data beside it."""
    model = graph.load(onnx_path, weights=False)
    refs = set()
    for n in model.graph.node:
        if n.op_type == "EPContext":
            for a in n.attribute:
                if a.name == "ep_cache_context" and a.s and (onnx_path.parent / a.s.decode()).is_file():
                    refs.add(a.s.decode())
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                refs.add(e.value)
    if not refs:
        return onnx_path
    if len(refs) > 1:
        raise UserError(f"{onnx_path} uses {len(refs)} side files ({', '.join(sorted(refs))}); AI Hub "
                        f"takes a model folder with one .bin or .data file")
    d = work / "upload"
    d.mkdir()
    shutil.copy2(onnx_path, d / onnx_path.name)
    ref = next(iter(refs))
    shutil.copy2(onnx_path.parent / ref, d / ref)
    return d
