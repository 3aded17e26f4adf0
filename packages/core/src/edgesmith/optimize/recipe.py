"""Recipes: TOML files that fix what ``optimize`` does (see docs/recipes/).

Every table and key is checked; a typo is a one-line error naming the file and
the key, never a silently ignored setting. Relative paths are relative to the
recipe file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..errors import UserError
from ..measure.gates import Gates
from ..types import DEVICES, FORMATS
from .targets import Candidate, Target, known_targets, offered

PREFER = ("speed", "size", "quality")

#: Gates for picking a candidate: quality close to the base's, output that reads as text.
#: Size and speed are what the candidates compete on, so they gate nothing unless asked.
DEFAULT_GATES = Gates(max_ppl_ratio=1.10, min_top1=0.85, max_size_ratio=None, min_speedup=None)

# Long enough that decode's spread over the repeats is a few percent on a
# 2-core machine (MLX's CPU build, at a few tokens/s, is the slowest here).
DEFAULT_BENCH = {"prompt_tokens": 128, "gen_tokens": 128, "repeat": 5, "warmup": 1}
# Sequential: clear cases stop after the first round; close ones score up to
# max_tokens (enough to settle SmolLM2-135M's verdicts on the shipped text).
# ``windows = N`` instead scores exactly N windows.
DEFAULT_EVAL = {"window": 128, "max_tokens": 16384, "windows": None, "smoke_tokens": 12, "text": None}
#: [eval] keys with no default: lm-eval tasks run on every candidate and the base
#: (``tasks = ["alice_continuation"]``), documents per task, and the accuracy-drop gate in points.
TASK_EVAL_KEYS = ("tasks", "limit", "max_task_drop")


@attrs.frozen
class Recipe:
    source: str = "built-in defaults"
    model: str | None = None
    targets: tuple[str, ...] | None = None
    prefer: str = "speed"
    budget_mb: float | None = None
    calibration: Path | None = None
    gates: Gates = DEFAULT_GATES
    bench: Mapping[str, Any] = attrs.field(factory=lambda: dict(DEFAULT_BENCH))
    eval: Mapping[str, Any] = attrs.field(factory=lambda: dict(DEFAULT_EVAL))
    #: the backends' targets with the recipe's changes applied, plus the recipe's own
    known: Mapping[str, Target] = attrs.field(factory=known_targets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "model": self.model,
            "targets": list(self.targets) if self.targets else None, "prefer": self.prefer,
            "budget_mb": self.budget_mb, "calibration": str(self.calibration) if self.calibration else None,
            "gates": self.gates.to_dict(), "bench": dict(self.bench), "eval": dict(self.eval),
        }


def _fail(where: str, problem: str) -> UserError:
    return UserError(f"recipe {where}: {problem}")


def _keys(table: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _fail(where, "must be a table")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return table


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # TOML booleans are ints to Python; a number setting must not take true/false.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _fail(where, f"expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


def _path(value: Any, base: Path, where: str) -> Path:
    p = Path(_typed(value, str, where)).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise _fail(where, f"{p} does not exist; fix the path (relative paths start at the recipe's folder)")
    return p


_CANDIDATE_KEYS = ("label", "bits", "group_size", "scheme", "method", "symmetric", "ratio",
                   "calibration", "options")


def _candidate(raw: Any, where: str, base: Path, calibration: Path | None) -> Candidate:
    c = _keys(raw, _CANDIDATE_KEYS, where)
    if "bits" not in c and "scheme" not in c:
        raise _fail(where, "give bits or scheme")
    cal = c.get("calibration")
    if cal is True:
        if calibration is None:
            raise _fail(where, "calibration = true needs [optimize] calibration = FILE")
        cal = calibration
    elif cal is not None and cal is not False:
        cal = _path(cal, base, f"{where}.calibration")
    else:
        cal = None
    opts = {str(k): str(v) for k, v in _keys(c.get("options", {}), tuple(c.get("options", {})),
                                              f"{where}.options").items()}
    label = c.get("label") or _auto_label(c)
    if not isinstance(label, str) or not label or "/" in label or label.startswith("."):
        raise _fail(where, f"label {label!r} must be a plain folder name")
    return Candidate(
        label=label,
        bits=_typed(c["bits"], int, f"{where}.bits") if "bits" in c else None,
        group_size=_typed(c["group_size"], int, f"{where}.group_size") if "group_size" in c else None,
        scheme=_typed(c["scheme"], str, f"{where}.scheme") if "scheme" in c else None,
        method=_typed(c["method"], str, f"{where}.method") if "method" in c else None,
        symmetric=_typed(c["symmetric"], bool, f"{where}.symmetric") if "symmetric" in c else None,
        ratio=float(_typed(c["ratio"], (int, float), f"{where}.ratio")) if "ratio" in c else None,
        calibration=str(cal) if cal else None,
        options=opts,
    )


def _auto_label(c: Mapping[str, Any]) -> str:
    if c.get("scheme"):
        parts = [str(c["scheme"])]
    else:
        parts = [f"int{c['bits']}"]
        if c.get("group_size"):
            parts.append(f"g{c['group_size']}")
    if c.get("method"):
        parts.append(str(c["method"]))
    if c.get("symmetric") is not None:
        parts.append("sym" if c["symmetric"] else "asym")
    if c.get("ratio") is not None:
        parts.append(f"r{c['ratio']}")
    return "-".join(parts)


_TARGET_KEYS = ("title", "backend", "format", "device", "base", "candidates", "compile")


def _target(name: str, raw: Any, base: Path, calibration: Path | None,
            contributed: Mapping[str, Target]) -> Target:
    where = f"[targets.{name}]"
    t = _keys(raw, _TARGET_KEYS, where)
    known = contributed.get(name)
    if known is None and not ("backend" in t and "format" in t):
        raise _fail(where, "a new target needs backend and format (or change one the installed "
                           "backends offer: " + (", ".join(offered(contributed)) or "none") + ")")
    changes: dict[str, Any] = {}
    if "backend" in t:
        changes["backends"] = (_typed(t["backend"], str, f"{where}.backend"),)
        changes["fallback"] = None
    if "format" in t:
        fmt = _typed(t["format"], str, f"{where}.format")
        if fmt not in FORMATS:
            raise _fail(where, f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        changes["format"] = fmt
    for key in ("device", "compile"):
        if key in t:
            dev = _typed(t[key], str, f"{where}.{key}")
            if dev not in DEVICES:
                raise _fail(where, f"{key} {dev!r} is not one of {', '.join(DEVICES)}")
            changes[key] = dev
    if "title" in t:
        changes["title"] = _typed(t["title"], str, f"{where}.title")
    if "base" in t:
        b = _typed(t["base"], dict, f"{where}.base")
        changes["base_options"] = {str(k): str(v) for k, v in b.items()}
        changes["device_options"] = {}
    if "candidates" in t:
        cands = _typed(t["candidates"], list, f"{where}.candidates")
        if not cands:
            raise _fail(where, "candidates is empty; list at least one")
        made = tuple(_candidate(c, f"{where}.candidates[{i}]", base, calibration) for i, c in enumerate(cands))
        labels = [c.label for c in made]
        dup = next((x for x in labels if labels.count(x) > 1), None)
        if dup:
            raise _fail(where, f"two candidates are labelled {dup!r}; give each a distinct label")
        changes["candidates"] = made
    if known is not None:
        return attrs.evolve(known, **changes)
    return Target(name=name, title=changes.pop("title", name), device=changes.pop("device", "cpu"),
                  backends=changes.pop("backends"), format=changes.pop("format"), **changes)


def _gates(raw: Any) -> Gates:
    g = _keys(raw, ("max_ppl_ratio", "min_top1", "max_size_ratio", "min_speedup", "smoke"), "[gates]")
    values: dict[str, Any] = attrs.asdict(DEFAULT_GATES)
    for k, v in g.items():
        if k == "smoke":
            values[k] = _typed(v, bool, "[gates].smoke")
        elif v == "off":
            values[k] = None
        else:
            values[k] = float(_typed(v, (int, float), f"[gates].{k} (a number or \"off\")"))
    return Gates(**values)


def _task_setting(key: str, value: Any, base: Path) -> Any:
    where = f"[eval].{key}"
    if key == "tasks":
        names = _typed(value, list, where)
        if not names:
            raise _fail(where, "is empty; name at least one lm-eval task, e.g. [\"alice_continuation\"]")
        out = []
        for i, name in enumerate(names):
            name = _typed(name, str, f"{where}[{i}]")
            # A task YAML of the user's, relative to the recipe like every other path.
            out.append(str(_path(name, base, f"{where}[{i}]")) if name.endswith((".yaml", ".yml")) else name)
        return out
    if key == "limit":
        n = _typed(value, int, where)
        if n < 1:
            raise _fail(where, f"must be at least 1 document, got {n}")
        return n
    if value == "off":
        return None
    drop = float(_typed(value, (int, float), f"{where} (points, or \"off\")"))
    if drop < 0:
        raise _fail(where, f"is a drop in points and must be 0 or more, got {drop:g}")
    return drop


def load(path: str | Path) -> Recipe:
    """Read and check a recipe file."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read recipe {path}: {exc.strerror or exc}; give a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe {path} is not valid TOML ({exc}); fix it (examples: docs/recipes/)") from None
    base = path.resolve().parent
    _keys(doc, ("model", "optimize", "gates", "bench", "eval", "targets"), str(path))
    opt = _keys(doc.get("optimize", {}), ("targets", "prefer", "budget_mb", "calibration"), "[optimize]")
    model = None
    if "model" in doc:
        m = _keys(doc["model"], ("path",), "[model]")
        model = str(_path(m["path"], base, "[model].path")) if "path" in m else None
    calibration = _path(opt["calibration"], base, "[optimize].calibration") if "calibration" in opt else None
    prefer = opt.get("prefer", "speed")
    if prefer not in PREFER:
        raise _fail("[optimize].prefer", f"{prefer!r} is not one of {', '.join(PREFER)}")
    targets = None
    if "targets" in opt:
        targets = tuple(_typed(t, str, "[optimize].targets[]") for t in _typed(opt["targets"], list,
                                                                               "[optimize].targets"))
    budget = opt.get("budget_mb")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        raise _fail("[optimize].budget_mb", f"expected a positive number of MiB, got {budget!r}")
    bench = dict(DEFAULT_BENCH)
    for k, v in _keys(doc.get("bench", {}), tuple(DEFAULT_BENCH), "[bench]").items():
        bench[k] = _typed(v, int, f"[bench].{k}")
    ev = dict(DEFAULT_EVAL)
    for k, v in _keys(doc.get("eval", {}), (*DEFAULT_EVAL, *TASK_EVAL_KEYS), "[eval]").items():
        if k in TASK_EVAL_KEYS:
            ev[k] = _task_setting(k, v, base)
        else:
            ev[k] = str(_path(v, base, "[eval].text")) if k == "text" else _typed(v, int, f"[eval].{k}")
    contributed = known_targets()
    known = dict(contributed)
    for name, raw in _typed(doc.get("targets", {}), dict, "[targets]").items():
        known[name] = _target(name, raw, base, calibration, contributed)
    return Recipe(source=str(path), model=model, targets=targets, prefer=prefer,
                  budget_mb=float(budget) if budget else None, calibration=calibration,
                  gates=_gates(doc.get("gates", {})), bench=bench, eval=ev, known=known)
