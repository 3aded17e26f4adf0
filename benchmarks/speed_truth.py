"""Speed truth: edgesmith's decode tokens/s against each stack's own timer.

For each stack, on the same artifact in one run, alternate rounds of

- A, edgesmith: ``edgesmith bench ARTIFACT --json`` (its own worker process;
  the row's ``decode_tps`` mean when the record has one, else its median);
- B, the vendor: ``speed_truth_vendor/STACK.py`` in the backend's environment,
  the stack's own loop and timer on the same prompt ids, token count and
  threads (same statistic over its repeats as A's);

and report per side mean ± sd over the rounds, the ratio A/B of the means
with a paired bootstrap 95 % interval, and whether that interval lies within
1.0 ± 5 %. Who goes first flips every round, so drift and other people's
load hit both sides alike. QNN has no text generation: there A is
``edgesmith.api.load(...).infer`` on a fixed-shape graph (timed by the runner
itself) and B a plain onnxruntime loop on the QNN EP, on a QDQ model and its
EPContext (context binary), both built on the spot. Not a test: run by hand.

    python benchmarks/speed_truth.py [--from .edgesmith-demo] [--stack NAME ...]
        [--artifact STACK=PATH ...] [--rounds 5] [--prompt-tokens 128]
        [--gen-tokens 128] [--threads N] [--json]

``edgesmith`` must be on PATH or beside this Python (``--edgesmith`` names it);
backend environments come from EDGESMITH_HOME as for the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STACKS = ("llamacpp", "openvino", "olive", "mlx", "qnn")
TOLERANCE = 0.05
#: Seconds one side of one round may take.
TIMEOUT = 1800


# -- where things are --------------------------------------------------------

def chosen_artifacts(out_dir: Path) -> dict[str, Path]:
    """Per stack, the artifact the optimize run chose (first target of that backend)."""
    summary = out_dir / "summary.json"
    if not summary.is_file():
        return {}
    picked: dict[str, Path] = {}
    for target in json.loads(summary.read_text()).get("targets", []):
        chosen = target.get("chosen") or {}
        backend = target.get("backend")
        if backend and chosen.get("path") and backend not in picked:
            path = Path(chosen["path"])
            # The summary's paths are absolute at writing; the folder may have moved.
            if not path.exists() and chosen.get("key"):
                path = out_dir / chosen["key"]
            picked[backend] = path
    return picked


def python_of(stack: str) -> str:
    """The interpreter of the backend's registered environment (this one when it has none)."""
    from edgesmith.plugins import get_manager

    rec = get_manager().records.get(stack)
    if rec is None:
        raise SystemExit(f"backend {stack!r} is not installed (edgesmith backends lists them)")
    return str(rec.environment.python) if rec.environment else sys.executable


def child_env(threads: int) -> dict[str, str]:
    """What edgesmith gives its workers in another environment (thread variables
    included), plus the import path of the vendor modules."""
    from edgesmith.environments import child_env as edgesmith_env

    env = edgesmith_env(threads)
    env["PYTHONPATH"] = str(HERE)
    return env


def run_json(cmd: list[str], env: dict[str, str], out: Path) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode != 0 or not out.is_file():
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(out.read_text())


# -- the two sides -------------------------------------------------------------

class TextStack:
    """A text stack: `edgesmith bench` against the vendor loop."""

    def __init__(self, stack: str, artifact: Path, args: argparse.Namespace, tmp: Path):
        self.stack, self.artifact, self.args, self.tmp = stack, artifact, args, tmp
        self.python = python_of(stack)
        self.env = child_env(args.threads)
        info = run_json([self.python, "-P", str(HERE / "speed_truth_edgesmith.py"), "prompt",
                         "--artifact", str(artifact), "--threads", str(args.threads),
                         "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens),
                         "--out", str(tmp / "prompt.json")], self.env, tmp / "prompt.json")
        self.info = info
        self.ids_file = tmp / f"{stack}-ids.json"
        self.ids_file.write_text(json.dumps(info["ids"]))
        self.stat = "median"  # until a bench record shows it has a mean
        self.settings = {"prompt_ids": len(info["ids"]), "context_length": info["context_length"]}

    def edgesmith(self) -> dict[str, Any]:
        a = self.args
        cmd = [a.edgesmith, "bench", str(self.artifact), "--json", "--backend", self.stack,
               "--threads", str(a.threads), "-N", str(a.prompt_tokens), "-M", str(a.gen_tokens),
               "--repeat", str(a.repeat), "--warmup", str(a.warmup)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        if p.returncode != 0:
            raise RuntimeError(f"edgesmith bench failed ({p.returncode}):\n{p.stderr[-3000:]}")
        row = json.loads(p.stdout)["artifacts"][0]
        if row["status"] != "ok":
            raise RuntimeError(f"edgesmith bench: {row.get('error')}\n{row.get('log_tail', '')}")
        decode = row["decode_tps"]
        self.stat = "mean" if decode.get("mean") is not None else "median"
        return {"value": decode[self.stat], "generated": row["generated_tokens"],
                "prompt": [row["prompt_tokens"]], "record": decode}

    def vendor(self) -> dict[str, Any]:
        a = self.args
        out = self.tmp / f"{self.stack}-vendor.json"
        cmd = [self.python, "-P", "-m", f"speed_truth_vendor.{self.stack}", "--artifact", str(self.artifact),
               "--prompt-ids", str(self.ids_file), "--gen-tokens", str(a.gen_tokens),
               "--threads", str(a.threads), "--warmup", str(a.warmup), "--repeat", str(a.repeat),
               "--out", str(out)]
        if self.stack == "llamacpp" and self.info.get("context_length"):
            cmd += ["--n-ctx", str(self.info["context_length"])]  # the n_ctx edgesmith loaded with
        if self.stack == "mlx":
            cmd += ["--dtype", "float32" if self.info.get("compute_dtype") == "float32" else "model"]
        res = run_json(cmd, self.env, out)
        runs = res["runs"]
        pick = statistics.mean if self.stat == "mean" else statistics.median
        # Every other per-run figure the loop gave (its own stamps, model time alone,
        # ...), summarized the same way, to tell where a gap comes from.
        extra = {k: pick([r[k] for r in runs]) for k in runs[0]
                 if k != "vendor_tps" and all(isinstance(r.get(k), (int, float)) for r in runs)}
        return {"value": pick([r["vendor_tps"] for r in runs]), "generated": [r["generated_tokens"] for r in runs],
                "prompt": [r["prompt_tokens"] for r in runs], "extra": extra, "timer": res["timer"],
                "versions": res["versions"]}

    def problems(self, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
        want_p, want_g = self.args.prompt_tokens, self.args.gen_tokens
        bad = []
        for side, r in (("edgesmith", a), ("vendor", b)):
            if any(g != want_g for g in r["generated"]):
                bad.append(f"{side} generated {r['generated']} tokens, not {want_g} (early EOS?)")
            if any(p != want_p for p in r["prompt"]):
                bad.append(f"{side} prompt of {r['prompt']} tokens, not {want_p}")
        return bad


class QnnStack:
    """QNN: per-inference rate through edgesmith's runner against a plain ORT loop."""

    def __init__(self, artifact: Path, feed: Path, args: argparse.Namespace, tmp: Path, label: str):
        self.stack, self.artifact, self.feed, self.args, self.tmp = label, artifact, feed, args, tmp
        self.python = python_of("qnn")
        self.env = child_env(args.threads)
        self.stat = "mean"  # inferences/s over all timed calls, i.e. 1 / mean latency
        self.settings = {"feed": str(feed), "calls": args.qnn_calls}

    def _common(self) -> list[str]:
        a = self.args
        return ["--artifact", str(self.artifact), "--feed", str(self.feed), "--threads", str(a.threads),
                "--warmup", str(a.qnn_warmup), "--repeat", str(a.qnn_calls)]

    def edgesmith(self) -> dict[str, Any]:
        out = self.tmp / "qnn-edgesmith.json"
        r = run_json([self.python, "-P", str(HERE / "speed_truth_edgesmith.py"), "qnn-run", *self._common(),
                      "--out", str(out)], self.env, out)
        run = r["runs"][0]
        return {"value": run["rate"], "extra": {"latency_ms": run["latency_ms"], "wall_rate": run["wall_rate"]},
                "providers": r["providers"]}

    def vendor(self) -> dict[str, Any]:
        out = self.tmp / "qnn-vendor.json"
        r = run_json([self.python, "-P", "-m", "speed_truth_vendor.qnn", *self._common(), "--out", str(out)],
                     self.env, out)
        run = r["runs"][0]
        return {"value": run["vendor_rate"], "timer": r["timer"], "versions": r["versions"],
                "extra": {"latency_ms": run["latency_ms"], "latency_ms_median": run["latency_ms_median"]},
                "providers": r["providers"]}

    def problems(self, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
        return [f"{side} ran on {r['providers'][0]}, not the QNN EP" for side, r in (("edgesmith", a), ("vendor", b))
                if r["providers"][0] != "QNNExecutionProvider"]


def build_qnn(args: argparse.Namespace, tmp: Path, given: Path | None) -> dict[str, dict[str, Any]]:
    out = tmp / "qnn-build.json"
    cmd = [python_of("qnn"), "-P", str(HERE / "speed_truth_edgesmith.py"), "qnn-build",
           "--dir", str(tmp / "qnn-model"), "--out", str(out)]
    return run_json(cmd + (["--artifact", str(given)] if given else []), child_env(args.threads), out)


# -- other people's load ---------------------------------------------------------

def _busy_s() -> float:
    """CPU-seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def _children_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # every waited-for descendant, recursively
    return ru.ru_utime + ru.ru_stime


class Others:
    """Cores kept busy by processes not ours while a side ran: the machine's busy
    CPU-seconds less our children's, over the wall time. Linux only (else None)."""

    def __enter__(self) -> Others:
        self.ok = os.path.exists("/proc/stat")
        if self.ok:
            self.b, self.c, self.t = _busy_s(), _children_s(), time.perf_counter()
        self.cores = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.ok:
            wall = time.perf_counter() - self.t
            self.cores = max(0.0, (_busy_s() - self.b) - (_children_s() - self.c)) / wall


def wait_quiet(limit_s: float, cores: float, say: Any) -> float | None:
    """Wait (up to ``limit_s``) for a second in which others keep fewer than
    ``cores`` cores busy; returns the last second's figure."""
    if not os.path.exists("/proc/stat"):
        return None
    start = time.perf_counter()
    told = False
    while True:
        b = _busy_s()
        time.sleep(1.0)
        busy = _busy_s() - b
        if busy < cores or time.perf_counter() - start > limit_s:
            return busy
        if not told:
            say(f"others keep {busy:.1f} cores busy; waiting up to {limit_s:.0f} s for a quiet second")
            told = True


# -- statistics ----------------------------------------------------------------

def summary(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def ratio_interval(a: list[float], b: list[float], draws: int = 4000, seed: int = 0) -> dict[str, Any]:
    """mean(a) / mean(b) with a paired bootstrap 95 % interval (rounds resampled
    whole, since both sides of a round share its noise) and the delta-method sd."""
    n = len(a)
    ratio = statistics.mean(a) / statistics.mean(b)
    rng = random.Random(seed)
    boot = []
    for _ in range(draws):
        idx = [rng.randrange(n) for _ in range(n)]
        boot.append(sum(a[i] for i in idx) / sum(b[i] for i in idx))
    boot.sort()
    lo, hi = boot[int(0.025 * draws)], boot[int(0.975 * draws) - 1]
    delta = None
    if n > 1:
        ma, mb = statistics.mean(a), statistics.mean(b)
        va, vb = statistics.variance(a), statistics.variance(b)
        cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)) / (n - 1)
        delta = abs(ratio) * max(0.0, va / ma**2 + vb / mb**2 - 2 * cov / (ma * mb)) ** 0.5 / n**0.5
    if 1 - TOLERANCE <= lo and hi <= 1 + TOLERANCE:
        verdict = "within 5 %"
    elif hi < 1 - TOLERANCE or lo > 1 + TOLERANCE:
        verdict = "off by more than 5 %"
    else:
        verdict = "undecided (interval straddles a 5 % bound)"
    paired = [x / y for x, y in zip(a, b, strict=True)]
    return {"ratio": ratio, "ci95": [lo, hi], "delta_sd": delta, "verdict": verdict,
            "paired_ratios": paired, "paired_median": statistics.median(paired)}


# -- the run -------------------------------------------------------------------

def measure(side: Any, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    a_runs: list[dict[str, Any]] = []
    b_runs: list[dict[str, Any]] = []
    problems: list[str] = []
    noisy: list[dict[str, Any]] = []
    r = 0
    while len(a_runs) < args.rounds:
        # Who goes first flips every round, so a drift in machine state hits both.
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        r += 1
        got = {}
        for who in order:
            wait_quiet(args.wait_quiet, args.quiet_cores, say)
            t = time.perf_counter()
            with Others() as others:
                got[who] = side.edgesmith() if who == "A" else side.vendor()
            got[who]["others_cores"] = others.cores
            say(f"{side.stack} round {r} {'edgesmith' if who == 'A' else 'vendor'}: "
                f"{got[who]['value']:.2f} ({time.perf_counter() - t:.0f} s, others' load "
                f"{others.cores if others.cores is not None else float('nan'):.2f} cores)")
        busy = max((g["others_cores"] or 0.0) for g in got.values())
        if busy > args.max_others and len(noisy) < args.retries:
            # Someone else's job shared the cores with one side: the pair says more
            # about them than about either timer. Measure the round again.
            noisy.append({"edgesmith": got["A"]["value"], "vendor": got["B"]["value"],
                          "others_cores": [got["A"]["others_cores"], got["B"]["others_cores"]]})
            say(f"{side.stack}: round {r} shared the machine ({busy:.2f} cores busy elsewhere); again")
            continue
        problems += side.problems(got["A"], got["B"])
        a_runs.append(got["A"])
        b_runs.append(got["B"])
    a = [x["value"] for x in a_runs]
    b = [x["value"] for x in b_runs]
    extra_keys = b_runs[0].get("extra", {}).keys()
    return {
        "stack": side.stack, "artifact": str(side.artifact), "statistic": side.stat,
        "settings": side.settings,
        # Per round, cores others kept busy during the edgesmith and the vendor side.
        "others_cores": [[x["others_cores"], y["others_cores"]] for x, y in zip(a_runs, b_runs, strict=True)],
        "edgesmith": {**summary(a), "values": a,
                      "extra": {k: statistics.mean(x["extra"][k] for x in a_runs)
                                for k in a_runs[0].get("extra", {})}},
        "vendor": {**summary(b), "values": b, "timer": b_runs[0].get("timer"),
                   "versions": b_runs[0].get("versions"),
                   "extra": {k: statistics.mean(x["extra"][k] for x in b_runs) for k in extra_keys}},
        **ratio_interval(a, b),
        "problems": sorted(set(problems)),
        "discarded_rounds": noisy,
    }


def table(rows: list[dict[str, Any]]) -> str:
    def ms(s: dict[str, Any]) -> str:
        return f"{s['mean']:.2f} ± {s['sd']:.2f}" if s["sd"] is not None else f"{s['mean']:.2f}"

    lines = ["| stack | artifact | edgesmith | vendor | n | ratio | 95 % interval | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['stack']} | {r.get('artifact', '')} | error: {r['error'].splitlines()[0]} |"
                         " | | | | |")
            continue
        lo, hi = r["ci95"]
        lines.append(f"| {r['stack']} | {Path(r['artifact']).name} | {ms(r['edgesmith'])} | {ms(r['vendor'])} "
                     f"| {r['edgesmith']['n']} | {r['ratio']:.3f} | {lo:.3f}–{hi:.3f} | {r['verdict']} |")
    out = "\n".join(lines)
    for r in rows:
        if "error" in r:
            continue
        out += (f"\n{r['stack']}: vendor timer: {r['vendor']['timer']}; per-round ratios "
                + " ".join(f"{x:.3f}" for x in r["paired_ratios"])
                + "; others' load (cores, edgesmith/vendor) "
                + " ".join("/".join("-" if c is None else f"{c:.2f}" for c in pair) for pair in r["others_cores"]))
        for side in ("edgesmith", "vendor"):
            if r[side]["extra"]:
                out += f"\n  {side} also: " + ", ".join(f"{k} {v:.4g}" for k, v in r[side]["extra"].items())
        if r["discarded_rounds"]:
            out += f"\n  {len(r['discarded_rounds'])} round(s) measured again: others kept the cores busy"
        for p in r["problems"]:
            out += f"\n  PROBLEM: {p}"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", type=Path, default=Path(".edgesmith-demo"),
                    help="an `edgesmith optimize` output folder (what `nox -s demo` writes)")
    ap.add_argument("--artifact", action="append", default=[], metavar="STACK=PATH")
    ap.add_argument("--stack", action="append", choices=STACKS, help="run only these (repeatable)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="timed generations per process and side")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, help="default: the physical cores, as edgesmith picks")
    ap.add_argument("--qnn-calls", type=int, default=200, help="timed inferences per QNN process")
    ap.add_argument("--qnn-warmup", type=int, default=20)
    ap.add_argument("--wait-quiet", type=float, default=300, metavar="S",
                    help="before each side, wait up to S seconds for a second in which other "
                         "processes keep fewer than --quiet-cores cores busy (0: do not wait)")
    ap.add_argument("--quiet-cores", type=float, default=0.3)
    ap.add_argument("--max-others", type=float, default=0.25, metavar="CORES",
                    help="a round in which other processes kept more cores busy than this during "
                         "either side is measured again (up to --retries times per stack)")
    ap.add_argument("--retries", type=int, default=10)
    ap.add_argument("--edgesmith", help="the edgesmith CLI (default: on PATH or beside this Python)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error("--rounds must be at least 2 (a spread needs two)")
    from edgesmith.util import physical_cores

    args.threads = args.threads or physical_cores()
    args.edgesmith = args.edgesmith or shutil.which("edgesmith") or str(Path(sys.executable).parent / "edgesmith")
    given_paths = dict(item.split("=", 1) for item in args.artifact)
    unknown = set(given_paths) - set(STACKS)
    if unknown:
        ap.error(f"--artifact names unknown stacks {sorted(unknown)}; known: {', '.join(STACKS)}")
    artifacts = {**chosen_artifacts(args.source), **{k: Path(v) for k, v in given_paths.items()}}
    stacks = args.stack or list(STACKS)

    def say(msg: str) -> None:
        print(f"speed-truth: {msg}", file=sys.stderr, flush=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="speed-truth-") as tmp_name:
        tmp = Path(tmp_name)
        for stack in stacks:
            try:
                if stack == "qnn":
                    # The optimize output has no QNN artifact (no text generation
                    # there yet): without --artifact qnn=PATH, make two here.
                    given = Path(given_paths["qnn"]) if "qnn" in given_paths else None
                    say(f"QNN: {given or 'building a QDQ a8w8 encoder and its EPContext'}")
                    for label, m in build_qnn(args, tmp, given).items():
                        rows.append(measure(QnnStack(Path(m["artifact"]), Path(m["feed"]), args, tmp,
                                                     f"qnn-{label}"), args, say))
                    continue
                if stack not in artifacts:
                    say(f"{stack}: no artifact (not in {args.source}/summary.json; give --artifact {stack}=PATH)")
                    continue
                rows.append(measure(TextStack(stack, artifacts[stack], args, tmp), args, say))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                rows.append({"stack": stack, "artifact": str(artifacts.get(stack, "")), "error": str(exc)})
                say(f"{stack}: {str(exc).splitlines()[0]}")
    result = {"schema": "edgesmith.speed-truth/1", "settings": {
        k: getattr(args, k) for k in ("rounds", "repeat", "warmup", "prompt_tokens", "gen_tokens", "threads",
                                      "qnn_calls", "qnn_warmup", "wait_quiet", "quiet_cores",
                                      "max_others", "retries")} | {"from": str(args.source)},
        "rows": rows}
    print(json.dumps(result, indent=2) if args.json else table(rows))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
