"""Errors the CLI turns into one line and an exit code.

A backend raises :class:`UserError` (or a subclass) for anything the user can
fix: the message is one line that names the problem and the fix. Anything
else is a bug or a vendor failure and is reported as such (exit 1).
"""

from __future__ import annotations


class EdgesmithError(Exception):
    """Base class of every error edgesmith raises on purpose."""

    exit_code = 1


class UserError(EdgesmithError):
    """Bad input or a request that cannot be honoured; exit code 2."""

    exit_code = 2


class UnsupportedError(UserError):
    """The request is valid but no (chosen) backend can do it."""


class OutputExistsError(UserError):
    """The output path exists and ``--force`` was not given."""


class BackendError(EdgesmithError):
    """A vendor stack failed while doing a job that it had accepted."""
