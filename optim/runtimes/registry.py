"""Format registry: format name → the module that exports and runs it.

Adding a format = one module implementing the protocol below + one line in ``FORMAT_MODULES``.

A format module defines:

* ``FORMAT: str`` — its registry name (``"onnx"``);
* ``SCHEMES: tuple[str, ...]`` — the schemes it can export (subset of
  :data:`optim.runtimes.artifact.SCHEMES`);
* ``LIBRARIES: tuple[str, ...]`` — distribution names whose versions go into ``artifact.json``;
* ``export(model, card, scheme, calib, out_dir) -> ExportOutput`` — write the artifact files
  of an FP32 eval-mode ``nn.Module`` into the empty directory ``out_dir``; ``calib`` is the
  float32 N×C×H×W calibration batch (required for ``int8``, else may be None);
* ``open_artifact(artifact, threads) -> Runtime`` — the host runtime for an artifact.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from optim.errors import InputError, ToolError

FORMAT_MODULES: dict[str, str] = {
    "onnx": "optim.runtimes.onnx_format",
    "tflite": "optim.runtimes.tflite_format",
    "pte": "optim.runtimes.executorch_format",
}


def get_format(name: str) -> ModuleType:
    """The module implementing format ``name``.

    Raises :class:`InputError` for an unknown name, :class:`ToolError` if its module (or a
    library it needs) cannot be imported.
    """
    if name not in FORMAT_MODULES:
        raise InputError(f"unknown format {name!r}; known formats: {', '.join(FORMAT_MODULES)}")
    try:
        return importlib.import_module(FORMAT_MODULES[name])
    except ImportError as e:
        raise ToolError(f"format {name!r} is not available: {FORMAT_MODULES[name]} cannot be imported ({e})") from e


@dataclass
class ExportOutput:
    """What a format's ``export`` wrote.

    Attributes:
        files: relative names of every file the runtime needs (no metadata).
        inputs / outputs: tensor specs ``{"name", "shape", "dtype", "layout"?, "head"?,
            "quantization": None | {"scale": float, "zero_point": int}}``.
        recipe: how the export was made (library calls, options) for ``artifact.json``.
    """

    files: list[str]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    recipe: dict[str, Any] = field(default_factory=dict)


class ExportFailed(ToolError):
    """A format's exporter failed; names the format, the scheme and (when it can be found) the operator."""

    def __init__(self, fmt: str, scheme: str, cause: BaseException, operator: str | None = None):
        self.format = fmt
        self.scheme = scheme
        self.operator = operator or operator_from_error(cause)
        self.cause = cause
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        op = f" at operator {self.operator}" if self.operator else ""
        super().__init__(f"{fmt} export ({scheme}) failed{op}: {type(cause).__name__}: {first}")


_OP_PATTERNS = (
    r"(aten[.:]{1,2}[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)",  # aten::foo / aten.foo.default
    r"(torchvision[.:]{1,2}[A-Za-z0-9_]+)",
    r"[Oo]p(?:erator)?(?: type)?[ :=]+['\"]?([A-Za-z][A-Za-z0-9_.:]+)",  # "operator Foo", "op_type: Foo"
    r"implementation for ([A-Za-z][A-Za-z0-9_]*)\(",  # ONNX Runtime: "Could not find an implementation for QLinearConv(10) node"
    r"running ([A-Za-z][A-Za-z0-9_]*) node",  # ONNX Runtime: "... while running QLinearConv node. Name: ..."
    r"node[ :]+['\"]?([A-Za-z][A-Za-z0-9_.:]+)",
)


def operator_from_error(exc: BaseException) -> str | None:
    """Best-effort operator name from an exporter's error text (``aten.foo.default``,
    ``QLinearConv`` ...), looking through the exception chain; None if none is named."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 8:
        text = str(e)
        for pat in _OP_PATTERNS:
            m = re.search(pat, text)
            if m:
                return m.group(1).rstrip(".,:'\"")
        e = e.__cause__ or e.__context__
        seen += 1
    return None
