"""The backend contract seen from outside: each of the five backends lists every
operation with typed options, and an unknown option on any operation of any
backend is refused in the same one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.options import KINDS, parse
from edgesmith.testing.fixtures import env_offline

BACKENDS = ("llamacpp", "olive", "openvino", "mlx", "qnn", "transformers")


@pytest.mark.parametrize("name", BACKENDS)
def test_backends_name_json_lists_every_operation_with_typed_options(name):
    out = subprocess.run([sys.executable, "-m", "edgesmith.cli", "backends", name, "--json"],
                         capture_output=True, text=True, env=env_offline(), timeout=120)
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["name"] == name and rec["status"] == "available", rec
    ops = rec["capabilities"]["operations"]
    assert {o["kind"] for o in ops} >= {"load"} and len({o["label"] for o in ops}) == len(ops)
    for op in ops:
        assert ":" in op["handler"], op
        for o in op["options"]:
            assert o["kind"] in KINDS and o["help"] and o["accepted"], (op["label"], o)


@pytest.mark.parametrize("name", BACKENDS)
def test_an_unknown_key_is_refused_alike_on_every_operation(name):
    (rec,) = [r for r in api.backends() if r.name == name]
    for op in rec.info.operations:
        with pytest.raises(UserError) as info:
            parse(op.options, {"no_such_key": "1"}, backend=name, operation=op.label)
        known = ", ".join(sorted(o.name for o in op.options)) or "none"
        assert str(info.value) == (f"{name} {op.label} has no option 'no_such_key'; known options: {known} "
                                   f"(see `edgesmith backends {name}`)")
