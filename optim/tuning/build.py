"""One candidate artifact: the format's exporter (PTQ) with some layers kept in float.

The exporter is the registry's ``FormatSpec.export(model, card, scheme, calib, out_dir, *,
float_layers=())`` (mixed precision, issue 13's quantizer side); the artifact is written and
checked on its host runtime by :func:`optim.optimize.ptq.export_one`, exactly like ``optim
quantize --float-layers`` writes one, so ``optim verify`` and ``optim publish`` take it as is.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import ToolError


def quantizable_layers(model, input_shape=None) -> list[str]:
    """Qualified names of the layers INT8 PTQ quantizes, in graph order when ``input_shape``
    (N×C×H×W) is given: :func:`optim.runtimes.layers.quantizable_layers` (the quantizer side's
    one definition)."""
    from optim.runtimes.layers import quantizable_layers as from_quantizer

    return list(from_quantizer(model, input_shape))


def supports_float_layers(spec) -> bool:
    """Whether the format's exporter keeps layers in float (``FormatSpec.supports_float_layers``)."""
    return bool(spec.supports_float_layers)


def source_of(loaded) -> dict[str, Any]:
    """The ``source`` block of ``artifact.json`` for a loaded checkpoint (as ``optim quantize`` writes it)."""
    return {"checkpoint": str(loaded.path), "sha256": loaded.sha256, "source_format": loaded.source_format,
            "card": str(loaded.card_path) if loaded.card_path else None, "lineage": loaded.lineage}


def build_artifact(loaded, spec, scheme: str, out_dir: Path, *, calib, check_batch: np.ndarray, reference: dict,
                   float_layers: Sequence[str] = (), threads: int | None = None):
    """Export ``loaded`` (a :class:`optim.checkpoint.LoadedModel`) as ``spec`` × ``scheme`` into
    ``out_dir/<format>-<scheme>/`` with ``float_layers`` in float, checked on its host runtime
    against the torch ``reference`` outputs on ``check_batch``: exactly what ``optim quantize
    --float-layers`` writes (:func:`optim.optimize.ptq.export_one`).

    ``calib``: the :class:`optim.optimize.calibration.CalibrationSet` (recorded in
    ``artifact.json``). Returns the :class:`optim.optimize.ptq.FormatResult` (``status``
    ``export_failed`` carries the error, ``collapsed`` the quantizer-side collapse message;
    never raises for a library failure).
    """
    from optim.optimize.ptq import export_one
    from optim.runtimes.layers import check_float_layers

    floats = check_float_layers(loaded.model, list(float_layers))
    return export_one(loaded.model, loaded.card, spec.name, scheme, Path(out_dir), calib=calib, check_batch=check_batch,
                      check_desc=f"calibration images ({len(check_batch)})", reference=reference,
                      source=source_of(loaded), threads=threads, float_layers=floats)


def quantized_runtime_factory(loaded, spec, scheme: str, calib, check_batch: np.ndarray, reference: dict,
                              threads: int | None = None) -> Callable[[tuple[str, ...]], Any]:
    """``float_layers -> Runtime`` for :func:`optim.tuning.sensitivity.measure_sensitivity`: each
    call exports into a temporary directory, opens the artifact on the format's host runtime
    and removes the directory when the runtime is closed.

    Raises :class:`ToolError` when the export fails (naming format, scheme and operator)."""
    from optim.runtimes.artifact import Artifact

    def make(float_layers: tuple[str, ...]):
        tmp = Path(tempfile.mkdtemp(prefix="optim-tune-sens-"))
        try:
            r = build_artifact(loaded, spec, scheme, tmp, calib=calib, check_batch=check_batch, reference=reference,
                               float_layers=float_layers, threads=threads)
            if r.artifact_dir is None:
                raise ToolError(r.error or f"{spec.name}-{scheme} export failed")
            rt = spec.open_runtime(Artifact.load(r.artifact_dir), threads)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        inner_close = rt.close

        def close() -> None:
            try:
                inner_close()
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        rt.close = close
        return rt

    return make
