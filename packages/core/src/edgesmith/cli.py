"""The ``edgesmith`` command line: the group, its error discipline and the
assembly of the commands (``cli_info``, ``cli_build``, ``cli_run`` and the
measure, optimize and serve packages' ``cli``), each a thin layer over
:mod:`edgesmith.api`.

User errors print one line ``edgesmith: error: ...`` and exit 2; ``--debug``
(or EDGESMITH_DEBUG=1) shows the traceback instead. Results go to stdout
(``--json`` for machines); progress and notes go to stderr.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

import click

from .errors import EdgesmithError

log = logging.getLogger("edgesmith")


_DEBUG_FLAG = False


def _debug() -> bool:
    return _DEBUG_FLAG or os.environ.get("EDGESMITH_DEBUG", "") not in ("", "0")


class _Group(click.Group):
    """Turns every error into one line and the right exit code.

    User errors (edgesmith's and click's usage errors) exit 2; ``--debug``
    adds the traceback but keeps the exit code.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
            _fail(exc, f"{_one_line(exc.format_message())}{hint}", 2)
        except click.ClickException as exc:
            _fail(exc, _one_line(exc.format_message()), exc.exit_code)
        except click.Abort as exc:
            _fail(exc, "interrupted; no output was left behind", 130, prefix="edgesmith: ")
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        global _DEBUG_FLAG
        _DEBUG_FLAG = False
        try:
            return super().invoke(ctx)
        except EdgesmithError as exc:
            _fail(exc, str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            _fail(exc, "interrupted; no output was left behind", 130, prefix="edgesmith: ")
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # The reader went away (`edgesmith backends | head`): nothing to say, and
            # nothing more to write; the final flush must not fail either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                _fail(exc, f"no space left on the device ({exc.filename or 'writing output'}); free some "
                           f"space or write elsewhere", 2)
            _internal(exc)
        except RecursionError as exc:
            _fail(exc, "the input is nested too deeply to read; check the file", 2)
        except Exception as exc:
            _internal(exc)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _fail(exc: BaseException, message: str, code: int, prefix: str = "edgesmith: error: ") -> NoReturn:
    if _debug():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    click.echo(f"{prefix}{_one_line(message)}", err=True)
    sys.exit(code)


def _internal(exc: Exception) -> NoReturn:
    _fail(exc, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1,
          prefix="edgesmith: ")


def _setup_logging() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("edgesmith: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _sigterm(signum: int, frame: Any) -> None:
    # Unwind like Ctrl-C so temporary outputs are removed.
    raise KeyboardInterrupt


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="edgesmith")
def main(debug: bool) -> None:
    """Convert, quantize, compile and run language models on edge stacks."""
    global _DEBUG_FLAG
    _DEBUG_FLAG = debug
    _setup_logging()
    if threading_main():
        signal.signal(signal.SIGTERM, _sigterm)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _add_commands() -> None:
    # The commands live in their own modules, which import only click at
    # start-up; the API, servers and measuring stacks load when a command runs.
    from .cli_build import COMMANDS as build_commands
    from .cli_env import COMMANDS as env_commands
    from .cli_info import COMMANDS as info_commands
    from .cli_run import COMMANDS as run_commands
    from .measure.cli import commands as measure_commands
    from .optimize.cli import optimize
    from .serve.cli import serve

    for command in (*info_commands, *env_commands, *build_commands, *run_commands, *measure_commands, optimize, serve):
        main.add_command(command)
    # `--debug` is accepted after the subcommand too (`edgesmith convert ... --debug`).
    for command in main.commands.values():
        command.params.append(click.Option(["--debug"], is_flag=True, expose_value=False,
                                           is_eager=True, callback=_set_debug,
                                           help="Show tracebacks (the exit code stays the same)."))


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _DEBUG_FLAG
    if value:
        _DEBUG_FLAG = True


_add_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
