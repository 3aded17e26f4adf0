"""The capability graph: formats are nodes, each backend's convert, quantize and
compile declarations are edges. Routes are cheapest paths through it."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

import attrs

from ..types import BackendInfo


@attrs.frozen
class Edge:
    op: str
    backend: str
    src: str
    dst: str

    def describe(self) -> str:
        return f"{self.op} {self.src} → {self.dst} [{self.backend}]"


def edges(infos: Mapping[str, BackendInfo], architecture: str | None = None) -> list[Edge]:
    """Every convert, quantize and compile edge; with ``architecture``, only of
    operations that take that model type."""
    from ..architectures import refusal

    out = []
    for name, info in sorted(infos.items()):
        for kind in ("convert", "quantize", "compile"):
            pairs = dict.fromkeys((o.source, o.format) for o in info.ops(kind) if not refusal(o, architecture))
            out += [Edge(kind, name, a, b) for a, b in pairs]
    return out


def route(graph: Iterable[Edge], src: str, dst: str, prefer: Sequence[str] = ()) -> list[Edge] | None:
    """Fewest convert steps from ``src`` to ``dst`` (``[]`` when equal, ``None`` when
    unreachable). Among equally short routes, steps by ``prefer``'s backends win:
    the target's own stack knows its format best."""
    if src == dst:
        return []
    converts = [e for e in graph if e.op == "convert" and e.src != e.dst]
    # cost: (steps, steps through other backends, tie-break by names for a stable plan)
    queue: list[tuple[int, int, str, int, list[Edge]]] = [(0, 0, src, 0, [])]
    pushed = 0
    best: dict[str, tuple[int, int]] = {}
    while queue:
        steps, foreign, fmt, _, path = heapq.heappop(queue)
        if fmt == dst:
            return path
        if best.get(fmt, (1 << 30, 0)) <= (steps, foreign):
            continue
        best[fmt] = (steps, foreign)
        for e in converts:
            if e.src == fmt and e.dst not in {p.src for p in path}:
                pushed += 1
                heapq.heappush(queue, (steps + 1, foreign + (e.backend not in prefer), e.dst, pushed,
                                       [*path, e]))
    return None
