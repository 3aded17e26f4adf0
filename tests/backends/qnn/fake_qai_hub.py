"""A stand-in for the Qualcomm AI Hub *service*, shaped like the ``qai_hub`` 0.56 client.

There is no network here, so the remote side is faked: the classes below keep
the names, signatures and return shapes of ``qai_hub.Client``,
``qai_hub.Device`` (a dataclass), ``qai_hub.JobStatus`` (``code``,
``finished``, ``success``, ``message``), ``CompileJob`` (``job_id``, ``url``,
``get_status``, ``download_target_model(dir)`` -> path of the downloaded file,
``get_target_model``) and ``InferenceJob.download_profile()`` (the dict built
by ``qai_hub.client._profile_pb_to_python_dict``: times in microseconds,
memory in bytes). The device list is written by hand in the client's shape
(names/OS/attributes as the service lists them), not captured from the live
service. The client records every call so tests can check the arguments.
"""

from __future__ import annotations

import shutil
import types
import zipfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__version__ = "0.56.0+fake"
WEB_URL = "https://workbench.aihub.qualcomm.com"


def _attrs(chipset: str, hexagon: str | None, *, vendor: str, qnn: bool = True,
           os_name: str = "android", fmt: str = "phone") -> list[str]:
    out = [f"chipset:{chipset}", f"format:{fmt}", f"os:{os_name}", f"vendor:{vendor}",
           "framework:tflite", "framework:onnx"]
    if qnn:
        out.append("framework:qnn")
    if hexagon:
        out.append(f"hexagon:{hexagon}")
    return out


#: (name, os, attributes) rows as ``Client.get_devices()`` returns them (one row per OS).
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


class Error(Exception):
    pass


class UserError(Error):
    pass


@dataclass
class ClientConfig:
    api_token: str
    api_url: str = WEB_URL
    web_url: str = WEB_URL
    verbose: bool = False


@dataclass
class Device:
    name: str = ""
    os: str = ""
    attributes: str | list[str] = field(default_factory=list)


class State(Enum):
    SUCCESS = 2
    FAILED = 3
    CREATED = 1
    OPTIMIZING_MODEL = 4
    PROVISIONING_DEVICE = 5
    MEASURING_PERFORMANCE = 6


@dataclass(unsafe_hash=True)
class JobStatus:
    state: State
    message: str | None = None

    @property
    def code(self) -> str:
        return self.state.name

    @property
    def success(self) -> bool:
        return self.state is State.SUCCESS

    @property
    def failure(self) -> bool:
        return self.state is State.FAILED

    @property
    def finished(self) -> bool:
        return self.state in (State.SUCCESS, State.FAILED)

    @property
    def running(self) -> bool:
        return not self.finished and self.state is not State.CREATED

    @property
    def pending(self) -> bool:
        return self.state is State.CREATED


class Model:
    def __init__(self, model_id: str, name: str, model_type: str = "ONNX") -> None:
        self.model_id, self.name, self.model_type = model_id, name, model_type


def profile_dict(*, inference_us: int = 1234, peak_bytes: int = 34 << 20) -> dict[str, Any]:
    """A profile in the shape ``InferenceJob.download_profile()`` returns (v1.2)."""
    return {
        "execution_summary": {
            "estimated_inference_time": inference_us,
            "estimated_inference_peak_memory": peak_bytes,
            "first_load_time": 210_500,
            "first_load_peak_memory": 60 << 20,
            "warm_load_time": 15_250,
            "warm_load_peak_memory": 40 << 20,
            "compile_time": 0,
            "compile_peak_memory": 0,
            "compile_memory_increase_range": None,
            "compile_memory_peak_range": None,
            "first_load_memory_increase_range": (1 << 20, 3 << 20),
            "first_load_memory_peak_range": (50 << 20, 60 << 20),
            "warm_load_memory_increase_range": (0, 1 << 20),
            "warm_load_memory_peak_range": (38 << 20, 40 << 20),
            "inference_memory_increase_range": (0, 1 << 20),
            "inference_memory_peak_range": (32 << 20, 34 << 20),
            "all_compile_times": [],
            "all_first_load_times": [210_500],
            "all_warm_load_times": [15_250, 15_300],
            "all_inference_times": [1200, 1234, 1301, 1250],
        },
        "execution_detail": [
            {"name": "EPContext_0", "type": "MatMul", "compute_unit": "NPU", "execution_time": 400,
             "execution_cycles": 90_000},
            {"name": "ln_1", "type": "LayerNorm", "compute_unit": "NPU", "execution_time": 80},
            {"name": "gelu_1", "type": "Gelu", "compute_unit": "NPU", "execution_time": 60},
            {"name": "argmax", "type": "ArgMax", "compute_unit": "CPU", "execution_time": 30},
        ],
    }


class _Job:
    def __init__(self, owner: Client, job_id: str, name: str, device: Device, model: Any,
                 options: str, states: list[tuple[str, str | None]]) -> None:
        self._owner, self.job_id, self.name, self.device, self.model = owner, job_id, name, device, model
        self.options = options
        self._states = list(states)

    @property
    def url(self) -> str:
        return f"{WEB_URL}/jobs/{self.job_id}/"

    def get_status(self) -> JobStatus:
        code, msg = self._states[0] if len(self._states) == 1 else self._states.pop(0)
        return JobStatus(State[code], msg)


class CompileJob(_Job):
    def __init__(self, *a: Any, target: Path | None, layout: str, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._target, self._layout = target, layout
        self._target_model = Model(f"m{self.job_id}", f"{self.name}_optimized") if target else None

    def get_target_model(self) -> Model | None:
        return self._target_model

    def download_target_model(self, filename: str) -> str | None:
        """Writes what the service would send for precompiled_qnn_onnx: a zipped
        model folder (``layout='zip'``) or a lone .onnx with the context embedded."""
        if self._target is None:
            return None
        dest = Path(filename)
        base = f"job_{self.job_id}_optimized_onnx"
        if self._layout == "onnx":
            out = dest / f"{base}.onnx"
            shutil.copy2(self._target / "model.onnx", out)
            return str(out)
        out = dest / f"{base}.onnx.zip"
        with zipfile.ZipFile(out, "w") as zf:
            if self._layout == "zip-traversal":
                zf.writestr("../evil.txt", "x")
            for f in sorted(self._target.iterdir()):
                if f.suffix == ".bin" and self._layout == "zip-no-bin":
                    continue
                if f.suffix in (".onnx", ".bin"):
                    zf.write(f, f"{base}/{f.name}")
                    if self._layout == "zip-two-onnx" and f.suffix == ".onnx":
                        zf.write(f, f"{base}/second.onnx")
        return str(out)


class InferenceJob(_Job):
    def __init__(self, *a: Any, profile: dict[str, Any], **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._profile = profile

    def download_profile(self, filename: str | None = None) -> dict[str, Any]:
        return self._profile


class Client:
    """Script with ``compile_states``/``profile_states``/``target``/``layout``/``profile``."""

    def __init__(self, config: ClientConfig | None = None, profile: str | None = None) -> None:
        self.config = config
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploads: dict[str, Path] = {}
        self.compile_states = [("CREATED", None), ("OPTIMIZING_MODEL", None), ("SUCCESS", None)]
        self.profile_states = [("CREATED", None), ("PROVISIONING_DEVICE", None),
                               ("MEASURING_PERFORMANCE", None), ("SUCCESS", None)]
        self.target: Path | None = None
        self.layout = "zip"
        self.profile = profile_dict()
        self.verbose = True
        self._n = 0
        self._upload_dir: Path | None = None

    def set_verbose(self, verbose: bool = True) -> None:
        self.calls.append(("set_verbose", {"verbose": verbose}))
        self.verbose = verbose

    def get_devices(self, name: str = "", os: str = "", attributes: Any = None) -> list[Device]:
        self.calls.append(("get_devices", {"name": name, "os": os, "attributes": attributes}))
        return [Device(n, o, list(a)) for n, o, a in DEVICE_ROWS
                if (not name or n == name) and (not os or o == os)]

    def get_model(self, model_id: str) -> Model:
        self.calls.append(("get_model", {"model_id": model_id}))
        return Model(model_id, "stored")

    def _check_device(self, device: Device) -> None:
        if not any(device.name == n and (not device.os or device.os == o) for n, o, _ in DEVICE_ROWS):
            raise UserError(f"{device} is not available.")

    def _keep_upload(self, model: Any) -> Any:
        """Keep a copy of an uploaded path (the temp dir goes away after the call)."""
        if not isinstance(model, (str, Path)):
            return model
        src = Path(model)
        assert src.suffix == ".onnx" or (src.is_dir() and len(list(src.glob("*.onnx"))) == 1), src
        assert self._upload_dir is not None, "set client._upload_dir to keep uploads"
        dest = self._upload_dir / f"upload{len(self.uploads)}"
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            dest.mkdir()
            shutil.copy2(src, dest / src.name)
        self.uploads[str(model)] = dest
        return dest

    def submit_compile_job(self, model: Any, device: Device, name: str | None = None,
                           input_specs: Any = None, options: str = "", single_compile: bool = True,
                           calibration_data: Any = None, retry: bool = True,
                           project: Any = None) -> CompileJob:
        self._check_device(device)
        kept = self._keep_upload(model)
        self.calls.append(("submit_compile_job", {"model": model, "kept": kept, "device": device,
                                                  "name": name, "input_specs": input_specs,
                                                  "options": options}))
        self._n += 1
        return CompileJob(self, f"jc{self._n:07d}", name or "model", device, model, options,
                          self.compile_states, target=self.target, layout=self.layout)

    def submit_inference_job(self, model: Any, device: Device, inputs: Any = None,
                             name: str | None = None, options: str = "", retry: bool = True,
                             profile: bool = True, project: Any = None) -> InferenceJob:
        self._check_device(device)
        kept = self._keep_upload(model)
        self.calls.append(("submit_inference_job", {"model": model, "kept": kept, "device": device,
                                                    "inputs": inputs, "name": name,
                                                    "options": options, "profile": profile}))
        self._n += 1
        return InferenceJob(self, f"jp{self._n:07d}", name or "model", device, model, options,
                            self.profile_states, profile=self.profile)


def as_module(client: Client) -> types.ModuleType:
    """This file as an importable ``qai_hub`` whose ``Client(...)`` hands back
    ``client`` (so a test can script it and read its calls)."""
    mod = types.ModuleType("qai_hub")
    for name in ("ClientConfig", "Device", "JobStatus", "CompileJob", "InferenceJob", "Model",
                 "Error", "UserError", "__version__"):
        setattr(mod, name, globals()[name])

    def make(config: ClientConfig | None = None, profile: str | None = None) -> Client:
        client.config = config
        client.calls.append(("Client", {"config": config, "profile": profile}))
        return client

    mod.Client = make
    return mod
