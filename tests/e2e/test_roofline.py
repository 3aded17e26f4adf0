"""The roofline is physical: decode never reads faster than the machine's memory.

The default model (SmolLM2-135M as GGUF, llama.cpp: the demo's fastest stack
per byte) is benched with llama-bench's shapes, and its decode, counted as
what a decoded token reads, must stay under the measured read bandwidth.
`nox -s demo` checks every artifact it builds the same way
(benchmarks/roofline_check.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgesmith.optimize.default_model import shipped_gguf


def test_default_model_decode_stays_under_the_memory_bandwidth():
    try:
        gguf = shipped_gguf()
    except Exception as exc:  # noqa: BLE001 - the session installs it; say so when it did not
        pytest.fail(f"the default model is not installed here: {exc}")
    out = subprocess.run([sys.executable, "-m", "edgesmith.cli", "bench", str(gguf), "--llama-bench", "-N", "128",
                          "-M", "64", "-K", "3", "--depth", "512", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    bw = doc["bandwidth"]
    assert bw["gb_per_s"] > 0 and bw.get("copy_gb_per_s")
    row = doc["artifacts"][0]
    tests = {t["name"]: t for t in row["tests"]}
    assert set(tests) == {"pp128", "tg64", "tg64@d512"}
    for name in ("tg64", "tg64@d512"):
        t = tests[name]
        counted = t["decode_bytes"]
        # SmolLM2 ties its embeddings: the table is read once, as the output projection
        assert counted["tied"] and counted["bytes"] <= row["weights_bytes"] + counted["kv_cache"]
        assert 0 < t["roofline_fraction"] <= 1.0, (name, t["roofline_fraction"], t["decode_tps"], counted, bw)
    assert tests["tg64@d512"]["decode_bytes"]["kv_cache"] > tests["tg64"]["decode_bytes"]["kv_cache"]
