"""Running the real ``edgesmith`` CLI in tests, and the one error shape it must keep."""

from __future__ import annotations

from typing import Any


def invoke(*args: Any) -> Any:
    """``edgesmith ARGS`` through click's runner (in this process); the result."""
    from click.testing import CliRunner

    from ..cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Any, *needles: str) -> str:
    """``result`` must have exit code 2 and exactly one ``edgesmith: error:`` line,
    holding every needle, and no traceback; that line."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("edgesmith: error:")]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    return lines[0]


def error_line(*args: Any) -> str:
    """Run the CLI with ``args``; it must end in one user-error line, which is returned."""
    return one_line_error(invoke(*args))
