"""edgesmith's lm-evaluation-harness model (``edgesmith.lmeval``) on the test kit's
bigram checkpoint, run by the numpy reference backend: its three request types
against direct ``Runner.logprobs``/``generate`` calls, the shipped offline
tasks against lm-eval's own ``hf`` model on the same checkpoint, and
``edgesmith eval --tasks`` (accuracy ± stderr, the drop gate, no download
without permission). Needs lm-eval (``edgesmith[lmeval]``) and, for the
``hf`` comparison, torch and transformers (llama.cpp's environment has both).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")

from edgesmith import api  # noqa: E402
from edgesmith.lmeval import EdgesmithLM, task_manager  # noqa: E402
from edgesmith.measure import tasks as tasks_mod  # noqa: E402
from edgesmith.taskdocs import SHIPPED, build, load, yaml_path  # noqa: E402
from edgesmith.testing.cli import one_line_error  # noqa: E402
from edgesmith.types import RunRequest  # noqa: E402

from .test_measure_support import CLI, bigram, broken_copy, short_text  # noqa: E402, F401 - fixtures

CONTEXT = "Alice was beginning to get very tired of sitting by her sister on the bank,"
FAST_EVAL = ["--window", "48", "--windows", "2", "--smoke-tokens", "6", "--threads", "1",
             "--max-size-ratio", "off", "--min-speedup", "off", "--no-smoke"]


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """The numpy reference backend runs in this process too: one BLAS thread, as its
    workers get with --threads 1 (two threads on a busy 2-core machine crawl)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def token_order_task(tokenizer_json: Path, dest: Path, n: int = 60) -> Path:
    """A task of the user's own (a YAML file and its JSONL), for models as small as the
    test kit's: after a passage of the book, which of four is the real next sentence;
    the other three are the same tokens shuffled (the same count, so no choice wins by
    being shorter). The bigram checkpoint orders tokens as the book does, far better
    than chance; a scrambled copy cannot."""
    import random

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    rng = random.Random(5)
    rows = []
    for d in load("alice_continuation"):
        right = d["choices"][d["label"]]
        ids = tok.encode(" " + right, add_special_tokens=False).ids
        others: list[str] = []
        for _ in range(200):
            perm = rng.sample(ids, len(ids))
            text = tok.decode(perm).lstrip(" ")
            if text != right and text not in others and \
                    len(tok.encode(" " + text, add_special_tokens=False).ids) == len(ids):
                others.append(text)
            if len(others) == 3:
                break
        if len(others) < 3:
            continue
        choices = [right, *others]
        rng.shuffle(choices)
        rows.append({"passage": d["passage"], "choices": choices, "label": choices.index(right)})
        if len(rows) == n:
            break
    dest.mkdir(parents=True, exist_ok=True)
    data = dest / "token_order.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    yaml = dest / "token_order.yaml"
    yaml.write_text(f"task: token_order\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
                    "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{passage}}\"\n"
                    "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{label}}\"\n"
                    "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    return yaml


def _instance(kind: str, args: tuple) -> lm_eval.api.instance.Instance:
    from lm_eval.api.instance import Instance

    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


class Counting:
    """A runner's logprobs calls, counted (the adapter reuses them across a context)."""

    def __init__(self, runner):
        self.runner, self.calls = runner, 0

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def logprobs(self, ids):
        self.calls += 1
        return self.runner.logprobs(ids)


@pytest.fixture(scope="module")
def runner(bigram):  # noqa: F811
    with api.load(bigram, backend="ref") as r:
        yield r


@pytest.fixture
def lm(runner, bigram):  # noqa: F811
    return EdgesmithLM(artifact=str(bigram), runner=runner)


def _direct(runner, context: str, continuation: str) -> tuple[float, bool]:
    ctx = runner.tokenize(context)
    whole = runner.tokenize(context + continuation)
    assert whole[: len(ctx)] == ctx
    lp = runner.logprobs(whole[:-1])
    rows = range(len(ctx) - 1, len(whole) - 1)
    return (sum(float(lp[i][whole[i + 1]]) for i in rows),
            all(int(lp[i].argmax()) == whole[i + 1] for i in rows))


def test_loglikelihood_is_the_sum_of_the_runners_logprobs(lm, runner):
    conts = [" and", " and of having nothing to do", " the", " she ran across the field"]
    got = lm.loglikelihood([_instance("loglikelihood", (CONTEXT, c)) for c in conts], disable_tqdm=True)
    for c, (ll, greedy) in zip(conts, got, strict=True):
        want, want_greedy = _direct(runner, CONTEXT, c)
        assert ll == pytest.approx(want, abs=1e-4) and greedy == want_greedy, c
    assert any(ll < -1 for ll, _ in got)  # real scores, not zeros


def test_one_logprobs_call_serves_a_contexts_one_token_choices(runner, bigram):  # noqa: F811
    counting = Counting(runner)
    lm = EdgesmithLM(artifact=str(bigram), runner=counting)
    one_token = [c for c in (" a", " the", " and", " of") if len(runner.tokenize(CONTEXT + c)) ==
                 len(runner.tokenize(CONTEXT)) + 1]
    assert len(one_token) >= 2
    reqs = [_instance("loglikelihood", (CONTEXT, c)) for c in [*one_token, " and of having nothing"]]
    got = lm.loglikelihood(reqs, disable_tqdm=True)
    assert counting.calls == 1  # the longest input holds the context every one-token choice is scored after
    for c, (ll, _) in zip([*one_token, " and of having nothing"], got, strict=True):
        assert ll == pytest.approx(_direct(runner, CONTEXT, c)[0], abs=1e-4)


def test_rolling_loglikelihood_is_the_sum_over_disjoint_windows(runner, bigram):  # noqa: F811
    width = 40
    lm = EdgesmithLM(artifact=str(bigram), runner=runner, max_length=width)
    text = " ".join(d["passage"] for d in load("alice_continuation")[:12])
    ids = runner.tokenize(text, add_special=False)
    assert len(ids) > 3 * width and len(ids) % width  # a short last window too
    # Every token predicted once, in windows of `width` predictions: each sees the `width`
    # tokens before the one it predicts from its window's end (the prefix token first),
    # so a full window starts one token before its first prediction and the last, short
    # one gets a full context (lm-eval's disjoint windows).
    full = [lm.prefix_token_id, *ids]
    want, start = 0.0, 0
    while start < len(ids):
        end = min(start + width, len(ids))
        lp = runner.logprobs(full[max(0, end - width):end])
        want += sum(float(row[t]) for row, t in zip(lp[-(end - start):], ids[start:end], strict=True))
        start = end
    (got,) = lm.loglikelihood_rolling([_instance("loglikelihood_rolling", (text,))], disable_tqdm=True)
    assert got == pytest.approx(want, abs=1e-3)
    whole = runner.logprobs([lm.prefix_token_id, *ids[:-1]])
    assert abs(got - sum(float(whole[i][t]) for i, t in enumerate(ids))) > 1e-3  # windows, not one pass
    assert lm.prefix_token_id == 1  # the tokenizer's declared BOS, as lm-eval's hf model takes it


def test_generate_until_stops_at_the_stop_string(lm, runner):
    free = runner.generate(RunRequest(prompt=CONTEXT, max_tokens=12)).text
    assert len(free) > 6
    stop = free[3:5]
    assert stop.strip() and free.find(stop) == 3
    (unstopped, stopped) = lm.generate_until([
        _instance("generate_until", (CONTEXT, {"until": [], "max_gen_toks": 12, "do_sample": False})),
        _instance("generate_until", (CONTEXT, {"until": [stop], "max_gen_toks": 12, "do_sample": False})),
    ], disable_tqdm=True)
    assert unstopped == free
    assert stopped == free[:3]
    (short,) = lm.generate_until([_instance("generate_until", (CONTEXT, {"until": ["\n\n"], "max_gen_toks": 2}))],
                                 disable_tqdm=True)
    assert short == runner.generate(RunRequest(prompt=CONTEXT, max_tokens=2)).text


def test_model_args_are_checked(bigram):  # noqa: F811
    for args, words in (({}, "artifact=PATH"), ({"artifact": str(bigram), "tokenizer": "x"}, "unknown model argument"),
                        ({"artifact": str(bigram), "trust_remote_code": True}, "never runs code"),
                        ({"artifact": str(bigram), "threads": "two"}, "not a whole number"),
                        ({"artifact": str(bigram), "options": "nokey"}, "KEY=VALUE")):
        with pytest.raises(Exception, match=words):
            EdgesmithLM(**args)


def test_shipped_documents_are_what_the_builder_makes():
    built = build()
    for name, file in SHIPPED.items():
        assert load(name) == built[name], f"run: python -m edgesmith.taskdocs ({file} is stale)"
        assert len(built[name]) == 200 and yaml_path(name).is_file()
    mc = built["alice_continuation"]
    assert {d["label"] for d in mc} == {0, 1, 2, 3}
    assert all(len(set(d["choices"])) == 4 and d["passage"] for d in mc)


def _hf_results(checkpoint: Path, out: Path, limit: int) -> dict:
    """lm-eval's own hf model on the checkpoint, through its CLI (a subprocess, offline)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
           f"pretrained={checkpoint},dtype=float32", "--device", "cpu", "--limit", str(limit),
           "--tasks", *[str(yaml_path(n)) for n in SHIPPED], "--output_path", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(out.rglob("results_*.json")).read_text())["results"]


def test_shipped_tasks_run_offline_and_match_lm_evals_hf_model(lm, bigram, tmp_path, network_attempts):  # noqa: F811
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    limit = 30
    ours = lm_eval.simple_evaluate(model=lm, tasks=list(SHIPPED), task_manager=task_manager(include_defaults=False),
                                   limit=limit)["results"]
    theirs = _hf_results(bigram, tmp_path / "hf", limit)
    for task, metric in (("alice_continuation", "acc"), ("alice_continuation", "acc_norm"),
                         ("alice_completion", "first_word"), ("alice_completion", "exact_match")):
        a, b = ours[task][f"{metric},none"], theirs[task][f"{metric},none"]
        se = theirs[task][f"{metric}_stderr,none"]
        print(f"{task} {metric}: edgesmith {a:.3f}, hf {b:.3f} ± {se:.3f}")
        assert abs(a - b) <= max(se, 1e-9), (task, metric, a, b, se)
    assert ours["alice_continuation"]["acc,none"] > 0.25  # the bigram model reads the book better than chance
    assert not network_attempts


def test_eval_tasks_show_accuracy_and_gate_the_drop(bigram, short_text, tmp_path, capsys):  # noqa: F811
    from click.testing import CliRunner

    from edgesmith.measure import tables

    same = tmp_path / "same"
    shutil.copytree(bigram, same)
    scrambled = broken_copy(bigram, tmp_path / "scrambled", "scramble")
    mine = token_order_task(bigram / "tokenizer.json", tmp_path / "task")
    report = tmp_path / "report.html"
    out = CliRunner().invoke(CLI, ["eval", str(same), str(scrambled), "--reference", str(bigram),
                                   "--text", str(short_text), *FAST_EVAL, "--tasks", f"{mine},alice_continuation",
                                   "--limit", "30", "--max-task-drop", "5", "--json", "--report", str(report)])
    assert out.exit_code == 3, out.output
    doc = json.loads(out.stdout)
    ref = doc["reference"]["tasks"]
    assert set(ref) == {"token_order", "alice_continuation"}
    for t in ref.values():
        assert t["metric"] == "acc" and t["n"] == 30 and 0 < t["stderr"] < 0.2
    assert ref["token_order"]["value"] > 0.6  # the bigram model knows the book's token order
    rows = {Path(r["path"]).name: r for r in doc["artifacts"]}
    ok, bad = rows["same"], rows["scrambled"]
    for name in ref:
        assert ok["tasks"][name]["value"] == ref[name]["value"]
        drop = ok["tasks"][name]["drop"]
        assert drop["value"] == 0 and drop["method"] == "paired over documents" and drop["hi"] == 0
    gates = {g["figure"]: g for g in ok["gates"] if g["gate"] == "max_task_drop"}
    assert set(gates) == {"task_drop.token_order", "task_drop.alice_continuation"}
    for g in gates.values():
        assert g["state"] == "pass" and g["passed"] is True and g["limit"] == 5
        assert set(g) >= {"gate", "option", "figure", "limit", "value", "interval", "state", "passed", "detail"}
    assert ok["verdict"] == "pass"
    bad_gates = {g["figure"]: g for g in bad["gates"] if g["gate"] == "max_task_drop"}
    # A scrambled copy orders tokens at chance: far more than 5 points under the reference.
    assert bad_gates["task_drop.token_order"]["state"] == "fail", bad_gates
    assert bad_gates["task_drop.token_order"]["interval"]["lo"] > 5 and bad["verdict"] == "fail"
    assert "gate max_task_drop failed" in out.stderr and "token_order" in out.stderr
    assert doc["settings"]["tasks"] == [str(mine), "alice_continuation"] and "tasks" in doc["definitions"]
    assert doc["gates"]["max_task_drop"] == 5
    capsys.readouterr()
    tables.eval_table(doc)
    shown = " ".join(capsys.readouterr().out.split())
    want = f"{100 * ref['token_order']['value']:.1f} ± {100 * ref['token_order']['stderr']:.1f}"
    assert f"token_order acc {want} %" in shown, shown  # the reference's, in the title
    cell = bad["tasks"]["token_order"]
    assert f"{100 * cell['value']:.1f} ± {100 * cell['stderr']:.1f}" in shown  # the scrambled copy's column
    page = report.read_text()
    assert "token_order acc ± se %" in page and "alice_continuation acc ± se %" in page  # a column per task
    assert f"<td>{want}</td>" in page  # the reference's row
    assert "task_drop.token_order" in page or "task token_order drop" in page  # the failed gate, explained


def test_python_m_edgesmith_lmeval_is_lm_evals_cli_with_the_model_and_tasks(bigram, ref_site, tmp_path):  # noqa: F811
    from .conftest import env_with

    done = subprocess.run([sys.executable, "-m", "edgesmith.lmeval", "--model", "edgesmith", "--model_args",
                           f"artifact={bigram},backend=ref,threads=1", "--tasks", "alice_continuation", "--limit", "5",
                           "--output_path", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          env=env_with(ref_site, OPENBLAS_NUM_THREADS="1", HF_DATASETS_OFFLINE="0"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert result["results"]["alice_continuation"]["sample_len"] == 5
    assert result["config"]["model"] == "edgesmith" and result["config"]["model_backend"] == "edgesmith/ref"
    bad = subprocess.run([sys.executable, "-m", "edgesmith.lmeval", "--model", "edgesmith", "--model_args",
                          f"artifact={tmp_path / 'missing.gguf'}", "--tasks", "alice_continuation", "--limit", "1"],
                         capture_output=True, text=True, timeout=300, env=env_with(ref_site))
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("edgesmith: error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "missing.gguf does not exist" in errors[0], bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr


def test_special_tokens_come_from_the_artifacts_files(bigram):  # noqa: F811
    from edgesmith.specialtokens import read

    got = read(bigram)
    assert (got.bos_id, got.eos_id, got.bos_text) == (1, 2, "<|im_start|>")
    assert read(bigram / "config.json").bos_id is None  # not a model: nothing declared


def test_a_hub_task_without_permission_fails_naming_the_flag(bigram, network_attempts):  # noqa: F811
    from click.testing import CliRunner

    out = CliRunner().invoke(CLI, ["eval", str(bigram), "--reference", str(bigram), *FAST_EVAL,
                                   "--tasks", "hellaswag", "--limit", "5"])
    line = one_line_error(out, "hellaswag", "--allow-download")
    assert "Rowan/hellaswag" in line
    assert not network_attempts
    unknown = CliRunner().invoke(CLI, ["eval", str(bigram), "--reference", str(bigram), "--tasks", "alice_contnuation"])
    one_line_error(unknown, "alice_contnuation", "alice_continuation")


def test_task_options_are_checked(bigram):  # noqa: F811
    from click.testing import CliRunner

    for args, words in ((["--max-task-drop", "5"], "--tasks"), (["--tasks", "a,a"], "twice"),
                        (["--tasks", "missing.yaml"], "does not exist"),
                        (["--tasks", "alice_continuation", "--max-task-drop", "-1"], "0 or more")):
        one_line_error(CliRunner().invoke(CLI, ["eval", str(bigram), "--reference", str(bigram), *args]), words)


def test_the_drop_interval_and_gate():
    ref = {"value": 0.6, "stderr": 0.05, "n": 100, "samples": {str(i): float(i % 5 < 3) for i in range(100)}}
    same = {**ref}
    assert tasks_mod.drop(ref, same)["hi"] == 0
    worse = {"value": 0.4, "stderr": 0.05, "n": 100, "samples": {str(i): float(i % 5 < 2) for i in range(100)}}
    d = tasks_mod.drop(ref, worse)
    assert d["value"] == pytest.approx(20) and d["method"] == "paired over documents" and d["lo"] > 5
    assert tasks_mod.gate("t", 5, d)["state"] == "fail"
    assert tasks_mod.gate("t", 30, d)["state"] == "pass"
    assert tasks_mod.gate("t", 20, d)["state"] == "undecided"
    unpaired = tasks_mod.drop({**ref, "samples": {}}, {**worse, "samples": {}})
    assert unpaired["method"] == "two standard errors combined"
    assert unpaired["se"] == pytest.approx(100 * math.sqrt(0.05**2 + 0.05**2))
    failed = tasks_mod.gate("t", 5, None, "it crashed")
    assert failed["state"] == "fail" and failed["passed"] is False and "crashed" in failed["detail"]


def test_recipes_name_tasks(tmp_path):
    from edgesmith.errors import UserError
    from edgesmith.optimize.recipe import load as load_recipe

    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml_path("alice_continuation").read_text())
    good = tmp_path / "r.toml"
    good.write_text('[eval]\ntasks = ["alice_continuation", "mine.yaml"]\nlimit = 50\nmax_task_drop = 3\n')
    ev = load_recipe(good).eval
    assert ev["tasks"] == ["alice_continuation", str(mine)] and ev["limit"] == 50 and ev["max_task_drop"] == 3.0
    for body, words in (('tasks = "x"', "expected list"), ("tasks = []", "empty"), ("limit = 0", "at least 1"),
                        ('tasks = ["gone.yaml"]', "does not exist")):
        bad = tmp_path / "bad.toml"
        bad.write_text(f"[eval]\n{body}\n")
        with pytest.raises(UserError, match=words):
            load_recipe(bad)


def test_eval_help_and_backends_do_not_import_lm_eval_or_torch():
    code = ("import sys\nfrom edgesmith.cli import main\nfor args in (['eval', '--help'], ['backends']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print('LOADED', 'lm_eval' in sys.modules, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED False False" in done.stdout, done.stdout + done.stderr
    assert "--tasks" in done.stdout and "--allow-download" in done.stdout


def test_an_optimize_recipe_runs_its_tasks_on_every_candidate(bigram, short_text, ref_site, tmp_path):  # noqa: F811
    from .conftest import env_with

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"""
[optimize]
targets = ["ref-cpu"]

[gates]
max_ppl_ratio = 1.5
min_top1 = 0.5

[bench]
prompt_tokens = 16
gen_tokens = 8
repeat = 1
warmup = 0

[eval]
window = 64
windows = 2
smoke_tokens = 8
text = "{short_text}"
tasks = ["alice_continuation"]
limit = 8
max_task_drop = 100

[targets.ref-cpu]
title = "numpy on any CPU"
backend = "ref"
format = "hf"
candidates = [{{ bits = 8 }}]
""")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "edgesmith.cli", "optimize", str(bigram), "--recipe", str(recipe),
                           "-o", str(out), "--threads", "1"], capture_output=True, text=True, timeout=600,
                          env=env_with(ref_site, OPENBLAS_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    cached = [json.loads(p.read_text()) for p in (out / ".optimize" / "measure").glob("eval-*.json")]
    rows = [c for c in cached if "gates" in c]
    assert rows and all(r["tasks"]["alice_continuation"]["n"] == 8 for r in rows)
    assert all(any(g["gate"] == "max_task_drop" and g["state"] == "pass" for g in r["gates"]) for r in rows)
    assert any("tasks" in c and "gates" not in c for c in cached)  # the base's own accuracy, kept with it
