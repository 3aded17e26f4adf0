"""A plain onnxruntime loop on the QNN execution provider (HTP backend; on
x86-64 Linux the simulator onnxruntime-qnn ships): per-inference latency of a
fixed-shape graph, QDQ or EPContext (context binary).

The session is set up as onnxruntime-qnn's own examples do: the plugin
library registered once, the HTP backend selected with
``add_provider_for_devices``, CPU fallback disabled so every node runs on the
QNN EP. Each ``session.run`` is timed alone; the figure is inferences per
second, ``--repeat`` / (sum of the timed runs).
"""

from __future__ import annotations

import time

from .common import parse, write

EP = "QNNExecutionProvider"


def main() -> None:
    args = parse(__doc__, [("--feed", {"required": True, "help": "an .npz of the named inputs"})])
    import numpy as np
    import onnxruntime as ort
    import onnxruntime_qnn

    ort.set_default_logger_severity(3)
    if not any(d.ep_name == EP for d in ort.get_ep_devices()):
        ort.register_execution_provider_library(EP, onnxruntime_qnn.get_library_path())
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    so.add_provider_for_devices([d for d in ort.get_ep_devices() if d.ep_name == EP],
                                {"backend_type": "htp", "offload_graph_io_quantization": "0"})
    path = args.artifact / "model.onnx" if args.artifact.is_dir() else args.artifact
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(path), sess_options=so)
    load_s = time.perf_counter() - t0
    with np.load(args.feed) as z:
        feed = {k: z[k] for k in z.files}
    for _ in range(args.warmup):
        session.run(None, feed)
    lat = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        session.run(None, feed)
        lat.append(time.perf_counter() - t)
    write(args, {"stack": "qnn", "timer": "perf_counter around each InferenceSession.run",
                 "versions": {"onnxruntime": ort.__version__, "onnxruntime_qnn": onnxruntime_qnn.__version__},
                 "providers": session.get_providers(), "threads": args.threads, "load_s": load_s,
                 "runs": [{"vendor_rate": len(lat) / sum(lat), "latency_ms": 1e3 * sum(lat) / len(lat),
                           "latency_ms_median": 1e3 * sorted(lat)[len(lat) // 2], "n": len(lat)}]})


if __name__ == "__main__":
    main()
