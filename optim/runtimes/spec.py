"""``FormatSpec``: everything optim knows about one export format, in one object.

Each format module (:mod:`optim.runtimes.onnx_format`, ``tflite_format``,
``executorch_format``, or a third-party module registered through the ``optim.formats``
entry-point group) defines one ``SPEC = FormatSpec(...)``; :mod:`optim.runtimes.registry`
collects them and every other module reads format facts from there (file suffixes, libraries,
schemes, the on-device tool ...). Format names appear as literals only in their own module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optim.errors import InputError, ToolError

def no_sidecars(model_file: Path) -> list[Path]:
    """The default ``FormatSpec.sidecars``: a bare model file needs nothing next to it."""
    return []


@dataclass(frozen=True)
class FormatSpec:
    """One export format.

    Attributes:
        name: registry name, also the first part of artifact directory names
            (``<name>-<scheme>``) and the ``format`` field of ``artifact.json``.
        suffix: the model file's suffix (``".onnx"``); a bare file with it is this format.
        model_file: the model file's name inside an artifact directory (``"model.onnx"``).
        schemes: schemes ``export`` supports (subset of :data:`optim.runtimes.artifact.SCHEMES`).
        libraries: distribution names whose versions go into ``artifact.json`` (PTQ exports).
        export: ``(model, card, scheme, calib, out_dir, *, float_layers=()) -> ExportOutput``:
            write the artifact files of an FP32 eval-mode ``nn.Module`` into the empty
            directory ``out_dir``. This is also PTQ: ``calib`` is the float32 N×C×H×W
            calibration batch, required for ``int8`` (may be None otherwise). ``float_layers``
            (mixed precision): qualified module names (``model.named_modules()``, checked by
            the caller with :func:`optim.runtimes.layers.check_float_layers`) that the
            quantized schemes keep in float; float schemes ignore it. A format whose
            ``export`` lacks the keyword does not support mixed precision
            (:attr:`supports_float_layers`). Raises InputError for a bad scheme/calibration;
            library errors propagate (wrapped by the caller in ``ExportFailed``).
        open_runtime: ``(artifact, threads) -> Runtime``: the host runtime of an artifact.
        tensor_specs: ``(model_path, card) -> (inputs, outputs)``: tensor specs for
            ``artifact.json`` read back from a written model file (see ``ExportOutput``).
        sidecars: ``model_file_path -> [paths]``: files a bare model file needs next to it
            (ONNX external data ...), pushed with it to a device.
        runtime_modules: Python modules the host runtime imports (imported before the
            memory baseline of a host benchmark).
        qat_backend: the QAT quantizer backend whose converted graph ``lower_qat`` takes
            (names in :data:`optim.optimize.qat.QAT_BACKENDS`), or None (no QAT).
        lower_qat: ``(converted_graph, card, quantizer, out_dir) -> ExportOutput``: lower a
            QAT-converted PT2E graph to this format; None if the format has no QAT path.
        qat_libraries: distributions recorded for QAT artifacts.
        device_tool: the official on-device benchmark tool, or None (host only).
        calibrated_schemes: schemes that need the calibration batch (static activation
            quantization); ``optim quantize`` refuses them without ``--calib`` and records the
            calibration set in ``artifact.json``.
        size_schemes: schemes that exist to make the artifact smaller, not faster (weight-only
            INT8/INT4: float compute, FP32 speed at best): ``optim tune`` tries them only when
            the policy sets a size budget for them (``size_mb``), and without float fallback.
        default: included when ``optim quantize`` is given no ``--format``.
        description: one line for help texts.
    """

    name: str
    suffix: str
    model_file: str
    schemes: tuple[str, ...]
    libraries: tuple[str, ...]
    export: Callable[..., Any]
    open_runtime: Callable[[Any, int | None], Any]
    tensor_specs: Callable[[Path, Any], tuple[list[dict[str, Any]], list[dict[str, Any]]]]
    sidecars: Callable[[Path], list[Path]] = no_sidecars
    runtime_modules: tuple[str, ...] = ()
    qat_backend: str | None = None
    lower_qat: Callable[..., Any] | None = None
    qat_libraries: tuple[str, ...] = ()
    device_tool: Any = None
    calibrated_schemes: tuple[str, ...] = ("int8",)
    size_schemes: tuple[str, ...] = ()
    default: bool = True
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def supports_float_layers(self) -> bool:
        """True if ``export`` takes the ``float_layers`` keyword (mixed precision)."""
        import inspect

        try:
            params = inspect.signature(self.export).parameters
        except (TypeError, ValueError):
            return False
        return "float_layers" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise InputError(f"format spec name {self.name!r} must be a non-empty lower-case identifier")
        if not self.suffix.startswith(".") or Path(self.model_file).suffix != self.suffix:
            raise InputError(f"format spec {self.name}: model_file {self.model_file!r} must end with suffix {self.suffix!r}")
        if not set(self.size_schemes) <= set(self.schemes):
            raise InputError(f"format spec {self.name}: size_schemes {sorted(set(self.size_schemes) - set(self.schemes))} "
                             "are not among its schemes")
        if (self.lower_qat is None) != (self.qat_backend is None):
            raise InputError(f"format spec {self.name}: qat_backend and lower_qat go together")


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
