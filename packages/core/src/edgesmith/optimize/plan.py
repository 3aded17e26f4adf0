"""From a model, targets and the installed backends to an ordered list of steps.

A model that is not a Hugging Face checkpoint is imported to one first when an
installed backend can (GGUF → HF by llama.cpp), so every target fans out from
the same full-precision weights. Each target then gets a route to the format
its backend quantizes from (the unquantized *base*, also its quality
reference), one quantize step per candidate, and a compile step when the
target asks for one. Steps shared by targets (the same operation, backend,
source and arguments) are planned once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..plugins import BackendRecord
from ..types import BackendInfo
from . import graph
from .targets import Target


@attrs.define
class Step:
    #: folder of its output, relative to the optimize directory ("openvino/int4-g64")
    key: str
    op: str
    backend: str
    #: "model" or another step's key
    source: str
    #: keyword arguments of the api function (convert: to/options; quantize: spec fields; compile: device)
    call: dict[str, Any]
    targets: list[str] = attrs.field(factory=list)

    def describe(self) -> str:
        if self.op == "convert":
            opts = self.call.get("options") or {}
            what = f"convert to {self.call['to']}" + (f" ({_kv(opts)})" if opts else "")
        elif self.op == "quantize":
            what = "quantize " + _kv({k: v for k, v in self.call.items() if k != "options"}
                                     | (self.call.get("options") or {}))
        else:
            what = f"compile for {self.call['device']}"
        return f"{what} [{self.backend}]"

    def same_work(self, other: Step) -> bool:
        return (self.op, self.backend, self.source, _canon(self.call)) == (
            other.op, other.backend, other.source, _canon(other.call))


def _kv(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={Path(v).name if k == 'calibration' else v}" for k, v in d.items())


def _canon(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


@attrs.define
class TargetPlan:
    name: str
    title: str
    device: str
    backend: str | None = None
    #: whether this machine is the target device; if not, speeds are a stand-in
    present: bool = False
    base: str | None = None
    #: step key of the quality reference (the base, when a backend generates from it)
    reference: str | None = None
    #: candidate label -> key of the step whose output is the deployable artifact
    candidates: dict[str, str] = attrs.field(factory=dict)
    notes: list[str] = attrs.field(factory=list)
    skipped: str | None = None
    #: other stacks for the same device, planned beside this one (each with its own base
    #: and candidates) and measured in the same table
    competitors: list[TargetPlan] = attrs.field(factory=list)

    def groups(self) -> list[TargetPlan]:
        """This plan's own stack, then each competitor's: the rows of one table."""
        return [self, *self.competitors] if self.backend else list(self.competitors)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class Plan:
    model: Path
    model_format: str
    steps: dict[str, Step] = attrs.field(factory=dict)
    targets: list[TargetPlan] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    #: step key of the Hugging Face checkpoint every target is scored against, when a
    #: backend runs it (the transformers reference); else each target's base is its reference
    reference: str | None = None

    def add(self, step: Step) -> str:
        """Add ``step`` unless the same work is planned already; returns its key."""
        key, n = step.key, 1
        while key in self.steps:
            old = self.steps[key]
            if old.same_work(step):
                old.targets += [t for t in step.targets if t not in old.targets]
                return key
            n += 1
            key = f"{step.key}-{n}"
        step.key = key
        self.steps[key] = step
        return key

    def artifacts(self) -> list[str]:
        """Step keys to measure, each once: every target's reference and candidates."""
        out: list[str] = []
        for t in self.targets:
            for g in t.groups():
                for key in [g.reference, *g.candidates.values()]:
                    if key and key not in out:
                        out.append(key)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model), "model_format": self.model_format,
            "steps": [{**attrs.asdict(s), "describe": s.describe()} for s in self.steps.values()],
            "targets": [t.to_dict() for t in self.targets],
            "notes": list(self.notes),
            "reference": self.reference,
        }

    def describe(self) -> list[str]:
        lines = [f"model: {self.model} ({self.model_format})", *self.notes]
        for t in self.targets:
            head = f"target {t.name}: {t.title}"
            if t.skipped:
                lines.append(f"{head} — skipped: {t.skipped}")
                continue
            lines.append(f"{head} — backend {t.backend}, candidates {', '.join(t.candidates)}")
            lines += [f"  note: {n}" for n in t.notes]
            for c in t.competitors:
                lines.append(f"  beside it: {c.title} — backend {c.backend}, candidates {', '.join(c.candidates)}")
                lines += [f"    note: {n}" for n in c.notes]
        lines.append(f"steps ({len(self.steps)}):")
        for n, s in enumerate(self.steps.values(), 1):
            lines.append(f"  {n:2d}. {s.key}: {s.describe()} from {s.source}  ({', '.join(s.targets)})")
        against = f"the Hugging Face checkpoint {self.reference}" if self.reference else "each target's base"
        lines.append(f"measure: {len(self.artifacts())} artifacts (bench, then eval against {against})")
        return lines


def _usable(records: Mapping[str, BackendRecord]) -> dict[str, BackendInfo]:
    return {n: r.info for n, r in records.items() if r.usable and r.info is not None}


def _why_not(name: str, fmt: str, records: Mapping[str, BackendRecord]) -> str:
    rec = records.get(name)
    if rec is None:
        return f"{name} is not installed (pip install edgesmith-{name})"
    if not rec.usable or rec.info is None:
        return f"{name} is {rec.status}: {rec.reason}"
    if fmt not in rec.info.runs:
        return f"{name} does not run {fmt}"
    note = rec.info.notes.get("run")
    return f"{name} is not planned for text generation" + (f": {note}" if note else f" from {fmt}")


def _architecture_refusal(info: BackendInfo, fmt: str, architecture: str | None) -> str | None:
    """Why ``info``'s backend cannot take this architecture into ``fmt``: its
    first refusal among the operations that write ``fmt``, or None."""
    from ..architectures import refusal

    return next((w for o in info.operations if o.format == fmt and (w := refusal(o, architecture))), None)


def build(model: Path, model_format: str, names: list[str], known: Mapping[str, Target],
          records: Mapping[str, BackendRecord], machine: Any, architecture: str | None = None) -> Plan:
    """Plan every target in ``names``; ``architecture`` (the model's model_type)
    keeps out operations that do not take it, and a target whose backend
    takes none is refused here, before anything is built."""
    infos = _usable(records)
    edges = graph.edges(infos, architecture)
    plan = Plan(model=model, model_format=model_format)
    hub, hub_key = model_format, "model"
    if model_format != "hf":
        imported = graph.route(edges, model_format, "hf")
        if imported:
            for e in imported:
                hub_key = plan.add(Step(f"{e.backend}/{e.dst}", "convert", e.backend, hub_key,
                                        {"to": e.dst}, list(names)))
            hub = "hf"
            plan.notes.append(f"import: {model_format} → hf once; every target starts from it")
    for name in names:
        plan.targets.append(_target(plan, known[name], known, hub, hub_key, edges, infos, records, machine,
                                    architecture=architecture))
    runs_hf = [b for b, i in infos.items() if "hf" in i.generation_formats()
               and not _architecture_refusal(i, "hf", architecture)]
    if hub == "hf" and runs_hf:
        plan.reference = hub_key
        plan.notes.append(f"reference: the Hugging Face checkpoint, run by {runs_hf[0]} in full precision; "
                          f"every target's base and candidates are scored against it on the same tokens")
    elif any(t.backend for t in plan.targets):
        plan.notes.append("reference: each target's own base (install edgesmith-transformers to score every "
                          "target against the Hugging Face checkpoint instead)")
    return plan


def _target(plan: Plan, t: Target, known: Mapping[str, Target], hub: str, hub_key: str,
            edges: list[graph.Edge], infos: Mapping[str, BackendInfo],
            records: Mapping[str, BackendRecord], machine: Any, architecture: str | None = None) -> TargetPlan:
    """``t``'s own stack and its competitors'; when its own cannot take the model, the
    first competitor stands in (with the reason as its first note)."""
    declined = t.declines(machine, plan.model)
    if declined:
        tp = TargetPlan(name=t.name, title=t.title, device=t.device, present=bool(t.present(machine)),
                        skipped=f"{t.backends[0]} is not planned: {declined}")
    else:
        tp = _own(plan, t, known, hub, hub_key, edges, infos, records, machine, architecture=architecture)
    rivals = [_own(plan, known[c], known, hub, hub_key, edges, infos, records, machine, fell_back_from=t.name,
                   architecture=architecture) for c in t.competitors if c in known]
    planned = [r for r in rivals if r.backend]
    tp.notes += [f"{r.title} is not planned beside it: {r.skipped}" for r in rivals if not r.backend]
    if tp.backend is None and planned:
        first, *rest = planned
        first.notes.insert(0, f"{tp.skipped}; planned {first.title} instead")
        first.competitors = rest
        return first
    tp.competitors = planned
    if planned:
        tp.notes.append(f"measured beside {', '.join(r.title for r in planned)} in one table: the stack "
                        f"is chosen from the numbers")
    return tp


def _own(plan: Plan, t: Target, known: Mapping[str, Target], hub: str, hub_key: str,
         edges: list[graph.Edge], infos: Mapping[str, BackendInfo],
         records: Mapping[str, BackendRecord], machine: Any, fell_back_from: str | None = None,
         architecture: str | None = None) -> TargetPlan:
    """``t`` planned on its own backend (or its fallback target's)."""
    tp = TargetPlan(name=fell_back_from or t.name, title=t.title, device=t.device,
                    present=bool(t.present(machine)))
    backend = next((b for b in t.backends if b in infos and t.format in infos[b].generation_formats()),
                   None)
    if backend is None:
        why = "; ".join(_why_not(b, t.format, records) for b in t.backends)
        would = _would_be_route(t, hub, edges)
        if t.fallback and t.fallback in known:
            fb = known[t.fallback]
            sub = _own(plan, fb, known, hub, hub_key, edges, infos, records, machine, fell_back_from=t.name,
                       architecture=architecture)
            sub.notes.insert(0, f"no installed backend generates text on this device ({why})"
                                + (f"; the route {would} exists" if would else "")
                                + f"; planned {fb.title} instead")
            return sub
        tp.skipped = why
        return tp
    info = infos[backend]
    load = next(o for o in info.ops("load", t.format) if o.generates)
    refused = _architecture_refusal(BackendInfo(backend, "", operations=(load,)), t.format, architecture)
    if refused:
        tp.skipped = f"{backend} {refused}"
        return tp
    tp.backend = backend
    # Quantize from the target format itself when the backend can, so the base runs
    # and serves as the reference; otherwise from whatever it quantizes into it.
    sources = [a for a, b in info.quantizes if b == t.format]
    base_fmt = t.format if (t.format in sources or not sources) else sources[0]
    route = graph.route(edges, hub, base_fmt, prefer=(backend,))
    if route is None:
        # Refused by architecture (those edges are not in the graph), or no route at all.
        refused = _architecture_refusal(info, base_fmt, architecture)
        tp.skipped = f"{backend} {refused}" if refused else f"no installed backend converts {hub} to {base_fmt}"
        tp.backend = None
        return tp
    base_opts = dict(t.device_options if tp.present and t.device_options else t.base_options)
    if not tp.present:
        tp.notes.append(f"this machine is not the target device: artifacts are built "
                        f"{'with ' + _kv(base_opts) + ' ' if base_opts else ''}and measured here as a stand-in")
    key = hub_key
    for i, e in enumerate(route):
        last = i == len(route) - 1
        opts = base_opts if last else {}
        label = e.dst + (f"-{opts['dtype']}" if "dtype" in opts else "")
        key = plan.add(Step(f"{e.backend}/{label}", "convert", e.backend, key,
                            {"to": e.dst, "options": opts}, [tp.name]))
    tp.base = key
    if base_fmt in info.generation_formats():
        tp.reference = key
    for c in t.candidates:
        k = plan.add(Step(f"{backend}/{c.label}", "quantize", backend, key, c.quantize_kwargs(), [tp.name]))
        if t.compile:
            k = plan.add(Step(f"{backend}/{c.label}-{t.compile}", "compile", backend, k,
                              {"device": t.compile}, [tp.name]))
        tp.candidates[c.label] = k
    return tp


def _would_be_route(t: Target, hub: str, edges: list[graph.Edge]) -> str | None:
    """The chain the target would use, shown when it cannot generate text."""
    for b in t.backends:
        quant = [e for e in edges if e.backend == b and e.op == "quantize" and e.dst == t.format]
        for q in quant:
            route = graph.route(edges, hub, q.src, prefer=(b,))
            if route is None:
                continue
            chain = [*route, q]
            if t.compile:
                chain += [e for e in edges if e.backend == b and e.op == "compile" and e.src == t.format][:1]
            return " → ".join(e.describe() for e in chain)
    return None
