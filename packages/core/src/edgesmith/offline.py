"""One offline, no-telemetry environment for every job, worker and test.

edgesmith never reaches the network at run time: models are local files, and
the libraries underneath must neither look anything up on a hub nor report
usage. :data:`OFFLINE_ENV` is the one table of environment variables that
tells them so; a backend adds its own stack's switches as ``extra`` (Olive's
``OLIVE_DISABLE_TELEMETRY``, NNCF's ``NNCF_CI``...) where it applies them:

- :func:`applied` sets them for a ``with`` block (a job) and puts the
  environment back afterwards;
- :func:`environment` / :func:`child_env` give them as a mapping for a
  child process (a worker, a vendor CLI);
- :func:`set_defaults` sets those not already set, for the rest of the
  process, for code that outlives any job (a loaded runner).

Several libraries read these variables once, when they are first imported
(``huggingface_hub`` keeps ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_TELEMETRY``
in module constants): apply them before importing the stack, which a
handler does by importing its vendor modules inside the job.

This module imports nothing outside the standard library, so that tools
running without edgesmith installed (the noxfile) can load it by path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

OFFLINE_ENV: dict[str, str] = {
    # huggingface_hub, and transformers / optimum / datasets through it: no Hub
    # requests at all, so a path that does not exist fails instead of being looked
    # up as a repository id, and no file is downloaded behind the user's back.
    "HF_HUB_OFFLINE": "1",
    # The older spelling of the same switch: huggingface_hub still honours it, and
    # tools pinned to transformers 4 read only this one.
    "TRANSFORMERS_OFFLINE": "1",
    # datasets' own switch (read by datasets, not by the hub client): calibration
    # loaders must not fetch dataset scripts or files.
    "HF_DATASETS_OFFLINE": "1",
    # huggingface_hub sends a usage ping (library, version, user agent) with
    # downloads and on some calls unless this is set.
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # The cross-tool opt-out convention (consoledonottrack.com); huggingface_hub
    # honours it too, as do other tools that have no switch of their own.
    "DO_NOT_TRACK": "1",
}


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The offline variables, with a backend's own switches (``extra``) added."""
    return {**OFFLINE_ENV, **(extra or {})}


def child_env(base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that must stay offline: ``base``
    (default: this process's environment) with the offline variables on top."""
    return {**(os.environ if base is None else base), **environment(extra)}


@contextlib.contextmanager
def env_restored(*keys: str) -> Iterator[None]:
    """After the block, each of ``keys`` has its earlier value again (or is unset
    if it was unset), whatever the block or the libraries it called set."""
    saved = {key: os.environ.get(key) for key in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def applied(extra: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Set the offline variables (and ``extra``) for the block; afterwards every
    one of them has its earlier value again, or is unset if it was unset.
    Yields what was set."""
    wanted = environment(extra)
    with env_restored(*wanted):
        os.environ.update(wanted)
        yield wanted


def set_defaults(extra: Mapping[str, str] | None = None) -> None:
    """Set, for the rest of the process, the offline variables not already set
    (a value the user chose wins). For code that runs outside any job."""
    for key, value in environment(extra).items():
        os.environ.setdefault(key, value)
