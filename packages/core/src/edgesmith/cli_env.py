"""The commands that manage backend environments: ``install``, ``uninstall``."""

from __future__ import annotations

import click

from .cliutil import echo_json, json_option


def _say(message: str) -> None:
    click.echo(f"edgesmith: {message}", err=True)


@click.command()
@click.argument("backends", nargs=-1, metavar="NAME|PATH...")
@click.option("--upgrade", is_flag=True,
              help="Rebuild environments that exist, on the backend's current version and pins.")
@click.option("-e", "--editable", is_flag=True, help="Install a backend directory in editable mode (contributors).")
@click.option("--with", "with_", multiple=True, metavar="REQUIREMENT",
              help="Also install this requirement into each environment (repeatable; for example pytest).")
@click.option("--python", metavar="PYTHON", help="Interpreter for the environments (default: this one).")
@click.option("--find-links", multiple=True, metavar="DIR|URL",
              help="Also look for packages here (repeatable), as pip's --find-links.")
@json_option
def install(backends: tuple[str, ...], upgrade: bool, editable: bool, with_: tuple[str, ...],
            python: str | None, find_links: tuple[str, ...], as_json: bool) -> None:
    """Give each backend its own environment, on the versions it is tested with.

    NAME installs edgesmith-NAME from the package index; PATH a backend
    package's directory. Environments live in EDGESMITH_HOME (default: the
    user's data directory) and are used by every command.
    """
    from . import envinstall

    results = envinstall.install(backends, upgrade=upgrade, editable=editable, with_=with_, python=python,
                                 find_links=find_links, say=_say)
    if as_json:
        echo_json(results)
        return
    for r in results:
        names = ", ".join(f"{b['name']} ({b['status']}{': ' + b['reason'] if b['reason'] else ''})"
                          for b in r["backends"]) or "no backend"
        took = f" in {r['seconds']:.0f} s" if r["action"] == "installed" else ""
        click.echo(f"{r['name']}: {r['action']}{took} — {names}; Python {r['python_version']}, "
                   f"{r['disk_mb']:,} MiB ({r['unshared_mb']:,} MiB not shared with uv's cache) at {r['path']}")


@click.command()
@click.argument("names", nargs=-1, metavar="NAME...")
@json_option
def uninstall(names: tuple[str, ...], as_json: bool) -> None:
    """Remove backend environments made by edgesmith install."""
    from . import envinstall

    removed = envinstall.uninstall(names, say=_say)
    if as_json:
        echo_json({"removed": removed})


COMMANDS = (install, uninstall)
