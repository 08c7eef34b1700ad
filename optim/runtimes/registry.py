"""Format registry: format name → its :class:`~optim.runtimes.spec.FormatSpec`.

The built-in formats are the ``SPEC`` objects of the modules in :data:`BUILTIN_MODULES`;
third-party formats register through the Python entry-point group ``optim.formats``
(``[project.entry-points."optim.formats"] myfmt = "mypkg.myfmt:SPEC"``), discovered with
:func:`importlib.metadata.entry_points`. Adding a format is one module defining ``SPEC`` and
one entry point; nothing else in optim names it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from optim.errors import InputError, ToolError
from optim.runtimes.spec import ExportFailed, ExportOutput, FormatSpec, operator_from_error

__all__ = ["ENTRY_POINT_GROUP", "ExportFailed", "ExportOutput", "FormatSpec", "all_libraries", "all_schemes", "default_formats",
           "device_tools", "format_for_suffix", "format_for_tool", "format_names", "formats", "get_format",
           "operator_from_error"]

ENTRY_POINT_GROUP = "optim.formats"
BUILTIN_MODULES = ("optim.runtimes.onnx_format", "optim.runtimes.tflite_format", "optim.runtimes.executorch_format")


def _load_spec(obj: Any, where: str) -> FormatSpec:
    if isinstance(obj, FormatSpec):
        return obj
    spec = getattr(obj, "SPEC", None)
    if isinstance(spec, FormatSpec):
        return spec
    raise ToolError(f"{where} is not a optim FormatSpec (nor a module defining SPEC = FormatSpec(...))")


def formats() -> dict[str, FormatSpec]:
    """Every registered format, built-ins first, in a stable order: ``{name: FormatSpec}``.

    Read afresh on each call (entry points may change when plugins are installed). Spec
    modules import only light dependencies at top level; the formats' libraries load when
    a spec's functions run. Raises :class:`ToolError` when a plug-in cannot be loaded, is not
    a ``FormatSpec``, or reuses the name or suffix of another format (never a silent override).
    """
    out: dict[str, FormatSpec] = {}
    suffixes: dict[str, str] = {}

    def add(spec: FormatSpec, where: str) -> None:
        if spec.name in out:
            raise ToolError(f"format {spec.name!r} from {where} is already registered; uninstall one of them")
        if spec.suffix in suffixes:
            raise ToolError(f"format {spec.name!r} from {where} claims suffix {spec.suffix} of format "
                            f"{suffixes[spec.suffix]!r}; a suffix names one format")
        out[spec.name] = spec
        suffixes[spec.suffix] = spec.name

    for mod in BUILTIN_MODULES:
        try:
            module = importlib.import_module(mod)
        except ImportError as e:
            raise ToolError(f"built-in format module {mod} cannot be imported ({e}); reinstall optim") from e
        add(_load_spec(module, mod), mod)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        where = f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP})"
        try:
            obj = ep.load()
        except Exception as e:  # a broken plug-in names itself
            raise ToolError(f"{where} cannot be loaded: {type(e).__name__}: {e}") from e
        spec = _load_spec(obj, where)
        if spec.name != ep.name:
            raise ToolError(f"{where} defines format {spec.name!r}; the entry point must be named after it")
        add(spec, where)
    return out


def format_names() -> tuple[str, ...]:
    """Names of every registered format."""
    return tuple(formats())


def default_formats() -> tuple[str, ...]:
    """Formats ``optim quantize`` exports when given none (``FormatSpec.default``)."""
    return tuple(n for n, s in formats().items() if s.default)


def get_format(name: str) -> FormatSpec:
    """The spec of format ``name``. Raises :class:`InputError` for an unknown name."""
    known = formats()
    if name not in known:
        raise InputError(f"unknown format {name!r}; known formats: {', '.join(known)}")
    return known[name]


def format_for_suffix(suffix: str) -> FormatSpec | None:
    """The format whose model files end with ``suffix`` (``".onnx"``), or None."""
    return next((s for s in formats().values() if s.suffix == suffix), None)


def format_for_tool(tool: str) -> FormatSpec | None:
    """The format benchmarked on devices by the on-device tool ``tool``, or None."""
    return next((s for s in formats().values() if s.device_tool is not None and s.device_tool.name == tool), None)


def device_tools() -> dict[str, FormatSpec]:
    """``{tool name: format spec}`` for every format with an on-device tool."""
    return {s.device_tool.name: s for s in formats().values() if s.device_tool is not None}


def all_libraries() -> tuple[str, ...]:
    """Every distribution any registered format records (PTQ and QAT), deduplicated, in order."""
    seen: dict[str, None] = {}
    for s in formats().values():
        for lib in (*s.libraries, *s.qat_libraries):
            seen.setdefault(lib, None)
    return tuple(seen)


def all_schemes() -> tuple[str, ...]:
    """Every scheme any registered format exports (``FormatSpec.schemes``), deduplicated, in order."""
    seen: dict[str, None] = {}
    for s in formats().values():
        for scheme in s.schemes:
            seen.setdefault(scheme, None)
    return tuple(seen)
