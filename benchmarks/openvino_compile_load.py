"""Compile-from-IR against load-from-compiled-output on one device (OpenVINO).

    python benchmarks/openvino_compile_load.py [IR_DIR] [--device cpu] [--repeat 3]
        [--hidden 1024 --layers 8]

Without IR_DIR a tiny checkpoint of the given size is made and converted. The
script compiles the IR with `edgesmith compile`, then times, each best of
--repeat runs in this process:
  - runtime: Core.compile_model(IR) vs Core.import_model(blob);
  - openvino-genai: LLMPipeline(IR folder) vs LLMPipeline(compiled folder, CACHE_DIR).
Prints one JSON object. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ir", nargs="?")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    args = ap.parse_args()

    import edgesmith
    from edgesmith_openvino import stack

    work = Path(tempfile.mkdtemp(prefix="ov-bench-"))
    if args.ir:
        ir = Path(args.ir)
    else:
        from edgesmith.testing import tiny_checkpoint

        src = tiny_checkpoint(work / "hf", "llama", hidden_size=args.hidden,
                              intermediate_size=2 * args.hidden, layers=args.layers)
        ir = work / "ir"
        edgesmith.convert(src, "openvino", ir, backend="openvino")
    compiled = work / "compiled"
    art = edgesmith.compile(ir, args.device, compiled, backend="openvino", options={"genai_cache": "true"})
    info = json.loads((compiled / "openvino_compiled.json").read_text())
    dev, props = args.device.upper(), info["properties"]

    stack.quiet()
    import openvino_genai

    core = stack.core()
    blob = (compiled / info["blob"]).read_bytes()
    result = {
        "ir": str(ir),
        "ir_bytes": stack.file_size(ir / "openvino_model.xml", ir / "openvino_model.bin"),
        "device": dev,
        "runtime_compile_from_ir_s": best(lambda: core.compile_model(str(ir / "openvino_model.xml"), dev, props), args.repeat),
        "runtime_import_blob_s": best(lambda: core.import_model(blob, dev, props), args.repeat),
    }
    result["runtime_speedup"] = result["runtime_compile_from_ir_s"] / result["runtime_import_blob_s"]
    if info.get("genai_cache"):
        cache = str(compiled / info["genai_cache"])
        result["genai_from_ir_s"] = best(lambda: openvino_genai.LLMPipeline(str(ir), dev, **props), args.repeat)
        result["genai_from_cache_s"] = best(
            lambda: openvino_genai.LLMPipeline(str(compiled), dev, CACHE_DIR=cache, **props), args.repeat)
        result["genai_speedup"] = result["genai_from_ir_s"] / result["genai_from_cache_s"]
    result["recorded_at_compile"] = {k: art.details.get(k) for k in
                                     ("compile_from_ir_s", "load_from_blob_s", "load_speedup")}
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
