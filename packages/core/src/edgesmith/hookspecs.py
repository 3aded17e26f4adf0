"""The hooks a backend implements. Every name has the prefix ``edgesmith_``.

A backend describes itself once, through ``edgesmith_backend``: its
operations are typed records (:class:`~edgesmith.types.Operation`) that name
their handler, formats and options, so the core validates a request, plans a
route and dispatches to the one handler that declared it, with no hook call
per operation and no format checks inside backends.

Output protocol for convert/quantize/compile handlers: ``output`` is an
empty staging directory. Write every file into it and return an
:class:`~edgesmith.types.Artifact` whose ``path`` is ``output`` and whose
format is the one the operation declared. The core writes ``edgesmith.json``
and moves the directory into place only after the handler returns, so a
failed or interrupted job never looks complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .doctor import DoctorRule
    from .optimize.targets import Target
    from .types import BackendInfo

PROJECT = "edgesmith"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def edgesmith_backend() -> BackendInfo:
    """Describe this backend: name, version, its operations, availability check.

    :returns: a :class:`~edgesmith.types.BackendInfo` whose ``name`` equals
        the entry-point name. Its ``operations`` list every convert, quantize,
        compile and load the backend offers, each with its handler (a
        ``"module:function"`` string, imported only when the operation runs)
        and its typed options.

    Must be cheap: no import of the vendor stack (``edgesmith backends`` calls
    it for every backend and must stay fast).
    """


@hookspec
def edgesmith_optimize_targets() -> Sequence[Target]:
    """Deployment targets this backend serves, for ``edgesmith optimize --target``.

    :returns: :class:`~edgesmith.optimize.targets.Target` records. Each names
        the backend(s) that build it (normally this one), the deployed format,
        the options of the unquantized base, the candidates to compare, an
        optional compile device, and ``present(machine)``: whether this
        machine is the device (otherwise its speeds are a stand-in). A target
        with ``offered=False`` is not selectable by name; another target's
        ``fallback`` or ``competitors`` can still use it. ``competitors`` are
        planned beside the target and measured in its table; ``declines(machine,
        model)`` says why the target's own backend is not planned for a model
        here (then its competitors are planned alone). ``rank`` orders targets
        in listings.

    Called once per run of ``optimize`` and ``doctor``; keep it cheap (no
    vendor import). Recipes may change any contributed target or add new ones.
    """


@hookspec
def edgesmith_doctor_rules() -> Sequence[DoctorRule]:
    """When ``edgesmith doctor`` (and ``optimize --target auto``) should pick this backend.

    :returns: :class:`~edgesmith.doctor.DoctorRule` records: ``applies(machine)``
        returns the reason this backend suits the machine (or ``None``); the
        matching rule with the highest ``priority`` wins; ``quantizations`` maps
        weight bits to the label doctor recommends (``{8: "Q8_0", 4: "Q4_K_M"}``).
    """


@hookspec
def edgesmith_deploy_commands(format: str, path: str, entry: str) -> Sequence[str] | None:  # noqa: A002
    """Shell lines that run an artifact with the vendor's own tools, for the deploy README.

    :param format: the artifact's format (``gguf``, ``onnx``, ...).
    :param path: the artifact's directory, relative to the README.
    :param entry: its main file, relative to the README (``path`` itself when
        the directory is the model).
    :returns: the lines (comments allowed), or ``None`` for a format this
        backend does not deploy. Only the backend that made the artifact is asked.
    """
