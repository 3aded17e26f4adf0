"""``edgesmith doctor --measure``: rank the text stacks by decode speed measured here.

Each installed stack gets the model in its own format at one comparable
quantization: its optimize target's candidate of the asked width (4-bit by
default: llama.cpp Q4_K_M, OpenVINO int4-g64, Olive int4-g32, MLX 4bit-g64),
built with the same plan and steps ``optimize`` uses (so through
``edgesmith.api`` convert/quantize, each output swapped in whole) in a cache
under ``EDGESMITH_HOME/doctor/<model hash>/<backend>/<label>``. Each artifact is
then benchmarked in its own worker with :func:`edgesmith.measure.bench.bench`.

Everything that decides is a pure function of recorded figures: :func:`figure`
reads a bench row, :func:`rank` orders the stacks and finds those tied with
the fastest (intervals that overlap), :func:`decide` compares the ranking with
the rule of thumb, :func:`stale_reason` says whether a stored measurement still
holds. The result is stored in ``measured.json`` beside the cache, so plain
``edgesmith doctor`` can use it later.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

SCHEMA = "edgesmith.doctor-measured/1"
STORE = "measured.json"
#: Entries kept in the store (one per machine and model, newest last).
KEEP = 20
#: The measured shape: 64 prompt tokens, 64 generated, 3 timed runs after one warm-up.
SHAPE = {"prompt_tokens": 64, "gen_tokens": 64, "repeat": 3, "warmup": 1}
#: ``--quick``: shorter runs, still three of them so each figure has a spread.
QUICK = {"prompt_tokens": 16, "gen_tokens": 32, "repeat": 3, "warmup": 1}

Say = Callable[[str], None]


def cache_dir(cache: str | Path | None = None) -> Path:
    """Where doctor keeps artifacts and ``measured.json``: ``cache``, else ``EDGESMITH_HOME/doctor``."""
    from .environments import home

    return Path(cache).expanduser().resolve() if cache else home() / "doctor"


# -- figures ------------------------------------------------------------------


@attrs.frozen
class Figure:
    """A decode speed with its spread: mean ± sd of n runs, or (older rows) the
    median with min–max. ``lo``–``hi`` is the interval ties are judged by; a
    figure without one (a single run, a bare number) ties with anything."""

    value: float
    n: int | None
    kind: str  # "mean ± sd", "median (min–max)" or "single value"
    sd: float | None = None
    lo: float | None = None
    hi: float | None = None

    def overlaps(self, other: Figure) -> bool:
        if None in (self.lo, self.hi, other.lo, other.hi):
            return True
        return self.lo <= other.hi and other.lo <= self.hi  # type: ignore[operator]

    def text(self) -> str:
        n = f"n={self.n}" if self.n else "n unknown"
        if self.kind == "mean ± sd":
            return f"{self.value:.1f} ± {self.sd:.1f} tok/s ({n})"
        if self.kind == "median (min–max)":
            return f"{self.value:.1f} tok/s (median, {self.lo:.1f}–{self.hi:.1f}, {n})"
        return f"{self.value:.1f} tok/s ({n}, no spread: cannot be told apart from any other)"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def figure(decode: Mapping[str, Any] | float | None, runs: int | None = None) -> Figure | None:
    """The decode figure of a bench row's ``decode_tps``: mean ± sd when it has
    them, else the median with min–max (``runs`` gives n then); a bare number is
    a single value."""
    if decode is None:
        return None
    if isinstance(decode, (int, float)):
        return Figure(float(decode), runs or None, "single value") if decode > 0 else None
    n = decode.get("n") or runs
    mean, sd = decode.get("mean"), decode.get("sd")
    if mean is not None:
        if sd is None or not n or n < 2:
            return Figure(float(mean), n, "single value")
        return Figure(float(mean), n, "mean ± sd", float(sd), float(mean) - float(sd), float(mean) + float(sd))
    median = decode.get("median")
    if median is None:
        return None
    lo, hi = decode.get("min"), decode.get("max")
    if lo is None or hi is None or (n or 0) < 2:
        return Figure(float(median), n, "single value")
    return Figure(float(median), n, "median (min–max)", None, float(lo), float(hi))


def ratio(a: Figure, b: Figure) -> tuple[float, float | None]:
    """a / b and its sd (relative sds added in quadrature; None without spreads)."""
    r = a.value / b.value
    if a.sd is None or b.sd is None:
        return r, None
    return r, r * math.hypot(a.sd / a.value, b.sd / b.value)


def ratio_text(a: Figure, b: Figure) -> str:
    """``1.91 ± 0.07×`` from two sds; from two ranges, the range of the ratio."""
    r, sd = ratio(a, b)
    if sd is not None:
        return f"{r:.2f} ± {sd:.2f}×"
    if None not in (a.lo, a.hi, b.lo, b.hi) and b.lo > 0:  # type: ignore[operator]
        return f"{r:.2f}× ({a.lo / b.hi:.2f}–{a.hi / b.lo:.2f})"  # type: ignore[operator]
    return f"{r:.2f}× (no spread)"


# -- stacks and the ranking ---------------------------------------------------

#: The weight width a candidate's name says: Q4_K_M, int8, 4bit-g64, a16w8, IQ4_XS, nf4, mxfp4.
_BITS = re.compile(r"(?i)a\d+w(\d+)|(?<![a-z0-9])(?:i?q|u?int|nf|mxfp|nvfp|fp|w)(\d+)|(\d+)[-_ ]?bits?")


def bits_of(label: str | None) -> int | None:
    m = _BITS.search(label or "")
    return int(next(g for g in m.groups() if g)) if m else None


@attrs.frozen
class Stack:
    """One backend's entry: what was measured (``figure``) or why it could not be (``reason``)."""

    backend: str
    label: str | None = None
    target: str | None = None
    bits: int | None = None
    format: str | None = None
    path: str | None = None
    size_bytes: int | None = None
    figure: Figure | None = None
    reason: str | None = None
    raw: Mapping[str, Any] | None = attrs.field(default=None, eq=False)

    @property
    def measured(self) -> bool:
        return self.figure is not None and self.reason is None

    @property
    def name(self) -> str:
        return f"{self.backend} {self.label}" if self.label else self.backend

    def text(self) -> str:
        return f"{self.name} {self.figure.text()}" if self.figure else self.name

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=False)
        d["figure"] = self.figure.to_dict() if self.figure else None
        d["raw"] = dict(self.raw) if self.raw else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stack:
        fields = {f.name for f in attrs.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        kw["figure"] = Figure(**d["figure"]) if d.get("figure") else None
        return cls(**kw)


@attrs.frozen
class Ranking:
    #: fastest first
    measured: tuple[Stack, ...]
    #: could not run the model here, each with its reason
    unusable: tuple[Stack, ...]
    #: the fastest and every stack whose interval overlaps it, fastest first
    tied: tuple[Stack, ...]

    def get(self, backend: str | None) -> Stack | None:
        return next((s for s in self.measured if s.backend == backend), None)

    def why_not(self, backend: str | None) -> str | None:
        return next((s.reason for s in self.unusable if s.backend == backend), None)


def rank(stacks: Iterable[Stack]) -> Ranking:
    stacks = list(stacks)
    measured = sorted((s for s in stacks if s.measured), key=lambda s: -s.figure.value)  # type: ignore[union-attr]
    unusable = tuple(s for s in stacks if not s.measured)
    tied = tuple(s for s in measured if measured and s.figure.overlaps(measured[0].figure))  # type: ignore[union-attr]
    return Ranking(tuple(measured), unusable, tied)


@attrs.frozen
class Verdict:
    #: the recommended backend (None: nothing was measured)
    backend: str | None
    label: str | None
    reason: str
    rule_backend: str | None
    #: whether the measurement bears the rule of thumb out (None: nothing to compare)
    agrees: bool | None
    #: names of the stacks tied with the fastest (empty: the fastest stands alone)
    tie: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def decide(r: Ranking, rule_backend: str | None, rule_why: str, where: str = "measured here") -> Verdict:
    """The recommendation from the measurement, and how it stands to the rule of thumb.

    The fastest stack wins only beyond the noise: when other stacks' intervals
    overlap its interval it is a tie, and the rule of thumb's stack is kept
    when it is among the tied ones. ``where`` says who measured.
    """
    thumb = f"rule of thumb: {rule_backend} ({rule_why})" if rule_backend else f"rule of thumb: none ({rule_why})"
    if not r.measured:
        why = "; ".join(f"{s.name}: {s.reason}" for s in r.unusable) or "no text stack is installed"
        return Verdict(None, None, f"no stack could be measured here ({why})", rule_backend, None)
    top, tied = r.measured[0], r.tied
    tie = tuple(s.name for s in tied) if len(tied) > 1 else ()
    mine = r.get(rule_backend)
    if mine is not None and mine in tied:
        if len(tied) == 1:
            nxt = r.measured[1] if len(r.measured) > 1 else None
            beyond = f", {ratio_text(top.figure, nxt.figure)} {nxt.name}" if nxt else ""  # type: ignore[union-attr]
            msg = f"{thumb}; {where}: {top.text()} is fastest{beyond}, as the rule of thumb says"
        else:
            others = [s.text() for s in tied if s is not mine]
            msg = (f"{thumb}; {where}: {mine.text()} and {_and(others)} overlap, a tie within "
                   f"the noise, so the rule of thumb stands")
        return Verdict(mine.backend, mine.label, msg, rule_backend, True, tie)
    if mine is not None:
        against = f"{ratio_text(top.figure, mine.figure)} {mine.text()}"  # type: ignore[arg-type]
    elif rule_backend and r.why_not(rule_backend):
        against = f"{rule_backend} could not be measured: {r.why_not(rule_backend)}"
    elif rule_backend:
        against = f"{rule_backend} was not measured"
    else:
        against = ""
    if len(tied) == 1:
        msg = f"{thumb}; {where}: {top.text()} is fastest" + (f", {against}" if against else "")
    else:
        msg = (f"{thumb}; {where}: {_and([s.text() for s in tied])} overlap, a tie within the "
               f"noise; {top.name} has the higher speed, not beyond the noise"
               + (f"; against the rule of thumb: {against}" if against else ""))
    return Verdict(top.backend, top.label, msg, rule_backend, False if rule_backend else None, tie)


# -- which artifact per stack ---------------------------------------------------


def choose_candidate(candidates: Sequence[Any], bits: int) -> tuple[Any | None, str]:
    """The candidate of width ``bits`` (the first one), else the nearest width; and a note."""
    if not candidates:
        return None, "no candidates"
    widths = [(c, _width(c)) for c in candidates]
    exact = next((c for c, b in widths if b == bits), None)
    if exact is not None:
        return exact, f"its {bits}-bit candidate"
    known = [(abs(b - bits), i, c, b) for i, (c, b) in enumerate(widths) if b]
    if known:
        _, _, c, b = min(known, key=lambda k: k[:2])
        return c, f"no {bits}-bit candidate; its nearest is {b}-bit"
    return candidates[0], f"no candidate says its width; took its first ({candidates[0].label})"


def stack_targets(known: Mapping[str, Any], machine: Any, bits: int) -> dict[str, tuple[Any, str]]:
    """One optimize target per backend (its first backend), reduced to the one
    candidate to measure; ``{target name: (target, note)}``. A backend's target
    made for this very machine wins over its generic one (llama.cpp's
    snapdragon-cpu over portable on a Snapdragon); a target's fallback and
    competitors are not planned here (each backend is measured on its own)."""
    from .optimize.targets import Target

    generic = attrs.fields(Target).present.default
    by: dict[str, list[Any]] = {}
    for t in known.values():
        if t.backends:
            by.setdefault(t.backends[0], []).append(t)
    out = {}
    for _backend, ts in sorted(by.items()):
        def order(t: Any) -> tuple[bool, bool, bool, int]:
            here = bool(t.present(machine))
            return (not here, here and t.present is generic, not t.offered, t.rank)

        t = min(ts, key=order)
        c, note = choose_candidate(t.candidates, bits)
        t = attrs.evolve(t, candidates=(c,) if c else (), fallback=None, competitors=())
        if t.device == "npu" and not t.present(machine):
            t = attrs.evolve(t, declines=_no_npu_here)
        out[t.name] = (t, note)
    return out


def _no_npu_here(machine: Any, model: Path) -> str:
    # optimize may plan an NPU's simulator for a small model; doctor ranks speeds of this
    # machine's own devices, and a simulator's speed says nothing about the NPU's.
    return "this machine has no such NPU; doctor ranks only speeds measured on this machine's own devices"


# -- the stored measurement ---------------------------------------------------


def _norm(d: Any) -> Any:
    return json.loads(json.dumps(d, sort_keys=True, default=str))


def fingerprint(path: Path) -> str:
    """Names, sizes and modification times of a model's files (cheap: no reading),
    so an unchanged model is recognised without hashing it again."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "files:" + h.hexdigest()[:32]


def identify(path: Path, entries: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """``{"path", "fingerprint", "content_hash"}`` of a model; the hash comes from a
    stored entry of the same path and fingerprint, else is computed."""
    from .util import content_hash

    path = Path(path).resolve()
    fp = fingerprint(path)
    for e in entries:
        m = e.get("model") or {}
        if m.get("path") == str(path) and m.get("fingerprint") == fp and m.get("content_hash"):
            return {"path": str(path), "fingerprint": fp, "content_hash": m["content_hash"]}
    return {"path": str(path), "fingerprint": fp, "content_hash": content_hash(path)}


def current_versions(records: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """The version and vendor versions of every usable backend."""
    from .plugins import backend_libraries

    return {r.name: {"version": r.info.version, "libraries": backend_libraries(r)}
            for r in records if r.usable and r.info is not None}


def _version_change(name: str, then: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    if then.get("version") != now.get("version"):
        return f"{name} {then.get('version')} → {now.get('version')}"
    a, b = then.get("libraries") or {}, now.get("libraries") or {}
    lib = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), None)
    return f"{name}'s {lib} {a.get(lib)} → {b.get(lib)}" if lib else f"{name} changed"


def machine_change(then: Any, now: Mapping[str, Any]) -> str | None:
    """Which part of the machine description differs (``None``: the same machine)."""
    a, b = _norm(then) or {}, _norm(now) or {}
    if a == b:
        return None
    key = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), "machine")
    return f"its {key} was {a.get(key)!r}, here {b.get(key)!r}"


def stale_reason(entry: Mapping[str, Any], *, machine: Mapping[str, Any], model_hash: str | None,
                 versions: Mapping[str, Mapping[str, Any]]) -> str | None:
    """``None`` when ``entry`` still holds for this machine, model and backends; else why not."""
    if entry.get("schema") != SCHEMA:
        return f"it was written as {entry.get('schema')!r}, not {SCHEMA}"
    other = machine_change(entry.get("machine"), machine)
    if other:
        return f"it was measured on another machine ({other})"
    if model_hash is not None and (entry.get("model") or {}).get("content_hash") != model_hash:
        return "it was measured on another model, or the model changed since"
    then_v = _norm(entry.get("backends") or {})
    now_v = _norm(versions)
    for name in sorted(set(then_v) | set(now_v)):
        if name not in now_v:
            return f"{name} is no longer usable here"
        if name not in then_v:
            return f"{name} was installed since"
        if then_v[name] != now_v[name]:
            return f"a backend changed since ({_version_change(name, then_v[name], now_v[name])})"
    return None


def load_store(path: Path) -> list[dict[str, Any]]:
    """The stored entries (none when the file is missing or unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    entries = data.get("entries") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def save(path: Path, entry: Mapping[str, Any]) -> Path:
    """Add ``entry`` to the store (replacing the one for the same machine and
    model), written whole through the core's claim, so a killed run leaves the
    old file or the new one."""
    from .claim import write_file

    key = (_norm(entry["machine"]), entry["model"]["content_hash"])
    kept = [e for e in load_store(path) if (_norm(e.get("machine")), (e.get("model") or {}).get("content_hash"))
            != key]
    doc = {"schema": SCHEMA, "entries": [*kept, dict(entry)][-KEEP:]}
    return write_file(Path(path), json.dumps(doc, indent=1, default=str) + "\n", True)


def find(entries: Sequence[Mapping[str, Any]], machine: Mapping[str, Any], model: Mapping[str, Any]
         ) -> Mapping[str, Any] | None:
    """The newest entry for this model (by content hash, else by path, so a changed
    model's old entry is found and shown stale), preferring this machine's."""
    same = [e for e in entries if (e.get("model") or {}).get("content_hash") == model["content_hash"]]
    same = same or [e for e in entries if (e.get("model") or {}).get("path") == model["path"]]
    here = [e for e in same if _norm(e.get("machine")) == _norm(machine)]
    return (here or same or [None])[-1]


def stored(model: str | Path | None, cache: Path, machine: Mapping[str, Any],
           versions: Mapping[str, Mapping[str, Any]]) -> tuple[Mapping[str, Any] | None, str | None]:
    """The stored entry for ``model`` (default: the default model, when its package
    is installed) on this machine, and why it no longer holds (``None``: it does).
    Nothing is hashed when nothing is stored."""
    entries = load_store(cache / STORE)
    if not entries:
        return None, None
    if model is None:
        from .errors import UserError
        from .optimize import default_model as dm

        try:
            path = dm.shipped_gguf()
        except UserError:
            return None, None
    else:
        path = Path(model).expanduser()
    if not path.exists():
        return None, None
    ident = identify(path, entries)
    entry = find(entries, machine, ident)
    if entry is None:
        return None, None
    return entry, stale_reason(entry, machine=machine, model_hash=ident["content_hash"], versions=versions)


def refused_by(entry: Mapping[str, Any]) -> dict[str, str]:
    """Backend → why it could not run the model, from a measurement (every
    backend that has no measured stack there)."""
    stacks = stacks_of(entry)
    ok = {s.backend for s in stacks if s.measured}
    return {s.backend: s.reason or "not measured" for s in stacks if not s.measured and s.backend not in ok}


def age_text(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def stacks_of(entry: Mapping[str, Any]) -> list[Stack]:
    return [Stack.from_dict(s) for s in entry.get("stacks") or []]


# -- an optimize run as the source --------------------------------------------


def _bench_rows(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """optimize's cached bench rows (``.optimize/measure/bench-*.json``) by artifact path,
    which keep the repeated runs that summary.json leaves out."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in sorted((directory / ".optimize" / "measure").glob("bench-*.json")):
        try:
            row = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(row, dict) and row.get("status") == "ok" and row.get("path"):
            out.setdefault(row["path"], []).append(row)
    return out


def _runs(row: Mapping[str, Any]) -> int | None:
    runs = row.get("runs") or row.get("generated_tokens")
    return len(runs) if isinstance(runs, list) else None


def _summary_figure(row: Mapping[str, Any], benched: Sequence[Mapping[str, Any]]) -> Figure | None:
    """A summary row's speed: its ``decode`` figure (mean, sd, n) where the summary
    has one, else the cached bench row its ``decode_tps`` number came from."""
    d = row.get("decode") if isinstance(row.get("decode"), Mapping) else row.get("decode_tps")
    if isinstance(d, Mapping):
        return figure(d, _runs(row))
    if not isinstance(d, (int, float)):
        return None
    for b in benched:  # the bench row this very figure came from: its runs give the spread
        bd = b.get("decode_tps") or {}
        if any(isinstance(bd.get(k), (int, float)) and math.isclose(bd[k], d, rel_tol=1e-9)
               for k in ("median", "mean")):
            return figure(bd, _runs(b))
    return figure(float(d))


def stacks_from_summary(summary: Mapping[str, Any], bits: int,
                        bench_rows: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> list[Stack]:
    """One stack per backend from an optimize summary: its candidate of width
    ``bits`` (else its fastest candidate; bases are not comparable and left
    out), or why none was measured."""
    bench_rows = bench_rows or {}
    best: dict[str, Stack] = {}
    failed: dict[str, Stack] = {}
    for t in summary.get("targets") or []:
        if t.get("skipped"):
            name = t.get("backend") or (t.get("name") or "?")
            failed.setdefault(name, Stack(name, target=t.get("name"), reason=t["skipped"]))
            continue
        for r in t.get("rows") or []:
            if r.get("reference"):
                continue
            backend = r.get("backend") or t.get("backend") or t.get("name")
            f = None if r.get("errors") else _summary_figure(r, bench_rows.get(str(r.get("path")), ()))
            s = Stack(backend, r.get("label"), t.get("name"), bits_of(r.get("label")), r.get("format"),
                      r.get("path"), r.get("size_bytes"), f,
                      None if f else ("; ".join(r.get("errors") or []) or "no decode speed recorded"))
            if not s.measured:
                failed.setdefault(backend, s)
                continue
            old = best.get(backend)
            if old is None or (s.bits == bits, s.figure.value) > (old.bits == bits, old.figure.value):  # type: ignore[union-attr]
                best[backend] = s
    return [*best.values(), *(s for b, s in failed.items() if b not in best)]


def from_optimize(directory: str | Path, bits: int) -> dict[str, Any]:
    """An entry (as stored by --measure) read from an optimize output directory."""
    from .errors import UserError

    d = Path(directory).expanduser().resolve()
    f = d / "summary.json"
    if not f.is_file():
        raise UserError(f"--from {directory}: no summary.json there; give the -o directory of a finished "
                        f"`edgesmith optimize` run")
    try:
        s = json.loads(f.read_text())
    except ValueError as exc:
        raise UserError(f"--from {directory}: summary.json is not JSON ({exc}); rerun optimize") from None
    if not isinstance(s, dict) or not str(s.get("schema", "")).startswith("edgesmith.optimize/"):
        raise UserError(f"--from {directory}: summary.json is not an optimize summary; give the -o "
                        f"directory of an `edgesmith optimize` run")
    stacks = stacks_from_summary(s, bits, _bench_rows(d))
    return {"schema": SCHEMA, "source": f"optimize summary {f}", "created": s.get("created"),
            "machine": s.get("machine"), "model": s.get("model") or {}, "backends": s.get("backends") or {},
            "settings": {"bits": bits}, "stacks": [x.to_dict() for x in stacks]}


# -- measuring ----------------------------------------------------------------


def _model(model: str | Path | None, entries: Sequence[Mapping[str, Any]], say: Say
           ) -> tuple[Path, dict[str, Any]]:
    """(the path to plan from, the identity of the model as given)."""
    from .errors import UserError
    from .optimize import default_model as dm

    if model is None:
        gguf = dm.shipped_gguf()
        ident = {**identify(gguf, entries), "name": dm.NAME}
        return dm.default_model(say), ident
    path = Path(model).expanduser()
    if not path.exists():
        raise UserError(f"--model {model} does not exist; give a model file or directory, or leave --model "
                        f"out to measure the default model ({dm.NAME})")
    return path.resolve(), {**identify(path, entries), "name": path.name}


def _width(c: Any) -> int | None:
    return c.bits or bits_of(c.label) or bits_of(c.scheme)


def plan_for(source: Path, bits: int, records: Mapping[str, Any], machine: Any
             ) -> tuple[Any, dict[str, tuple[Any, str]]]:
    """optimize's plan for one candidate per stack, and ``{target: (target, note on the choice)}``."""
    from . import formats
    from .architectures import model_type
    from .optimize import plan as plan_mod
    from .optimize.targets import known_targets

    art = formats.detect(source)
    chosen = stack_targets(known_targets(), machine, bits)
    known = {n: t for n, (t, _) in chosen.items()}
    plan = plan_mod.build(source, art.format, list(known), known, records, machine,
                          architecture=model_type(art))
    return plan, chosen


def refusals(source: Path, records: Mapping[str, Any], machine: Any, bits: int = 4) -> dict[str, str]:
    """Backend → why it cannot run the model (refused architecture, no text
    generation); planned only, nothing built."""
    plan, chosen = plan_for(source, bits, records, machine)
    return {chosen[t.name][0].backends[0]: t.skipped for t in plan.targets if t.skipped}


def build_failure(key: str, steps: Mapping[str, Mapping[str, Any]], planned: Mapping[str, Any]) -> str:
    """Why ``key`` was not built: the error of the step that failed first on its way
    (a step skipped because its source failed says only that)."""
    at = key
    while steps.get(at, {}).get("status") == "skipped" and getattr(planned.get(at), "source", None) in steps:
        at = planned[at].source
    where = f" at {at}" if at != key else ""
    return f"build failed{where}: {steps.get(at, {}).get('error') or 'not built'}"


def _bench(path: Path, backend: str, shape: Mapping[str, int], threads: int, say: Say) -> dict[str, Any]:
    from .errors import EdgesmithError
    from .measure.bench import bench

    try:
        doc = bench([path], backend=backend, threads=threads, prompt_tokens=shape["prompt_tokens"],
                    gen_tokens=shape["gen_tokens"], repeat=shape["repeat"], warmup=shape["warmup"],
                    # doctor compares speeds only; the roofline needs no bandwidth figure here
                    bandwidth_result={"gb_per_s": None, "method": "not measured by doctor"},
                    progress=lambda m: say(f"bench {backend}: {m.split(': ', 1)[-1]}"))
    except EdgesmithError as exc:
        return {"status": "error", "error": str(exc)}
    return doc["artifacts"][0]


def measure(model: str | Path | None, *, cache: Path, bits: int = 4, shape: Mapping[str, int] | None = None,
            threads: int | None = None, say: Say = lambda m: None,
            progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Build one artifact per installed text stack, bench each, store and return the entry."""
    from . import api
    from .claim import claim
    from .doctor import detect_machine
    from .errors import UserError
    from .optimize.execute import run_all
    from .util import physical_cores

    shape = dict(shape or SHAPE)
    if shape["repeat"] < 2:
        raise UserError("--repeat must be at least 2: a speed needs a spread to be compared")
    store = cache / STORE
    machine = detect_machine()
    recs = api.backends()
    records = {r.name: r for r in recs}
    source, ident = _model(model, load_store(store), say)
    plan, chosen = plan_for(source, bits, records, machine)
    threads = threads or physical_cores()
    root = cache / ident["content_hash"].split(":")[-1][:16]
    root.mkdir(parents=True, exist_ok=True)
    stacks: list[Stack] = []
    with claim(root):  # one doctor at a time builds in this model's folder
        say(f"building one {bits}-bit artifact per stack in {root} (reused when already built)")
        steps = run_all(plan, root, say, threads=threads, progress=progress)
        for t in plan.targets:
            target, _ = chosen[t.name]
            if t.skipped:
                stacks.append(Stack(target.backends[0], target=t.name, reason=t.skipped))
                continue
            for label, key in t.candidates.items():
                common = {"backend": t.backend, "label": label, "target": t.name,
                          "bits": _width(target.candidates[0])}
                if steps.get(key, {}).get("status") not in ("done", "reused"):
                    stacks.append(Stack(**common, reason=build_failure(key, steps, plan.steps)))
                    continue
                say(f"bench {t.backend} {label}: {shape['prompt_tokens']} prompt tokens, "
                    f"{shape['gen_tokens']} generated, {shape['repeat']} runs")
                row = _bench(root / key, t.backend, shape, threads, say)
                f = figure(row.get("decode_tps"), _runs(row)) if row.get("status") == "ok" else None
                why = None if f else (f"bench failed: {row.get('error')}" if row.get("status") != "ok"
                                      else "bench recorded no decode speed")
                stacks.append(Stack(**common, format=row.get("format"), path=str(root / key),
                                    size_bytes=row.get("size_bytes"), figure=f, reason=why,
                                    raw={k: row.get(k) for k in ("decode_tps", "eos_early", "load_s",
                                                                  "peak_rss_mb", "generated_tokens")}))
                if f:
                    say(f"bench {t.backend} {label}: {f.text()}")
    covered = {s.backend for s in stacks}
    for r in recs:
        if r.name in covered:
            continue
        if not r.usable:
            stacks.append(Stack(r.name, reason=f"{r.status}: {r.reason}"))
        else:
            stacks.append(Stack(r.name, reason="it contributes no optimize target to build the model for"))
    entry = {
        "schema": SCHEMA, "source": "measured", "created": _now(), "created_unix": time.time(),
        "machine": machine.to_dict(), "model": {**ident, "planned_from": str(source)},
        "backends": current_versions(recs), "settings": {**shape, "threads": threads, "bits": bits},
        "candidates": {t.backends[0]: f"{t.name}: {t.candidates[0].label if t.candidates else '-'} ({note})"
                       for t, note in chosen.values()}, "cache": str(root), "stacks": [s.to_dict() for s in stacks],
    }
    if any(s.measured for s in stacks):  # nothing measured: nothing worth keeping
        say(f"stored the measurement in {save(store, entry)}")
    return entry


def _parse_time(text: Any) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the report -----------------------------------------------------------------


def report(entry: Mapping[str, Any], rule: tuple[str | None, str], *, installed: Mapping[str, bool],
           stale: str | None = None, now: float | None = None) -> dict[str, Any]:
    """Ranking and verdict of a stored or fresh entry against the rule of thumb; a
    backend not usable here now is listed, never recommended."""
    stacks = []
    for s in stacks_of(entry):
        if s.measured and not installed.get(s.backend, False):
            s = attrs.evolve(s, reason="not usable here now (see `edgesmith backends`)")
        stacks.append(s)
    r = rank(stacks)
    source = str(entry.get("source") or "measured")
    v = decide(r, *rule, where="measured here" if source == "measured" else "the optimize run measured")
    created = entry.get("created_unix")
    if not isinstance(created, (int, float)):
        created = _parse_time(entry.get("created"))
    age = (now or time.time()) - created if created is not None else None
    return {"source": entry.get("source"), "note": entry.get("note"), "created": entry.get("created"),
            "age_s": age,
            "age": age_text(age) if age is not None else None, "stale": stale,
            "model": entry.get("model"), "settings": entry.get("settings"),
            "candidates": entry.get("candidates"), "backends": entry.get("backends"),
            "ranking": [s.to_dict() for s in r.measured], "unusable": [s.to_dict() for s in r.unusable],
            "tie": list(v.tie), "verdict": v.to_dict()}


def lines(rep: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows for the human table."""
    out = []
    source = rep.get("source") or "measured"
    model = (rep.get("model") or {}).get("name") or Path(str((rep.get("model") or {}).get("path", "?"))).name
    shape = rep.get("settings") or {}
    how = (f"{shape.get('prompt_tokens')} prompt / {shape.get('gen_tokens')} generated tokens, "
           f"{shape.get('repeat')} runs" if shape.get("repeat") else "")
    where = f"measured here for {model}" if source == "measured" else f"{source}, for {model}"
    out.append(("measurement", where + (f", {rep['age']}" if rep.get("age") else "") + (f" ({how})" if how else "")))
    if rep.get("note"):
        out.append(("", rep["note"]))
    if rep.get("stale"):
        out.append(("", f"not used: {rep['stale']}; rerun `edgesmith doctor --measure`"))
        return out
    tied = set(rep.get("tie") or [])
    for i, d in enumerate(rep.get("ranking") or [], 1):
        s = Stack.from_dict(d)
        mark = " (tie with the fastest)" if s.name in tied and i > 1 else ""
        out.append((f"  {i}. {s.name}", f"{s.figure.text()}{mark}"))  # type: ignore[union-attr]
    for d in rep.get("unusable") or []:
        out.append((f"  -  {Stack.from_dict(d).name}", f"cannot run it here: {d['reason']}"))
    return out
