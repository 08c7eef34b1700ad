"""One candidate artifact: the format's exporter (PTQ) with some layers kept in float.

The exporter is the registry's ``FormatSpec.export(model, card, scheme, calib, out_dir, *,
float_layers=())`` (mixed precision, issue 13's quantizer side); the artifact is written and
checked on its host runtime through :func:`optim.optimize.ptq.stage_checked_artifact`, exactly
like ``optim quantize`` writes one, so ``optim verify`` and ``optim publish`` take it as is.
"""

from __future__ import annotations

import copy
import inspect
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError, ToolError


def quantizable_layers(model) -> list[str]:
    """Qualified names of the layers a quantizer quantizes (module order).

    Uses the quantizer side's ``quantizable_layers`` when it is installed (issue 13, part 1);
    otherwise the weighted layers PTQ quantizes in every built-in format: ``Conv1d/2d/3d``,
    ``ConvTranspose*`` and ``Linear`` modules.
    """
    try:
        from optim.optimize.ptq import quantizable_layers as from_quantizer  # type: ignore[attr-defined]
    except ImportError:
        from_quantizer = None
    if from_quantizer is not None:
        return list(from_quantizer(model))
    import torch.nn as nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
    return [name for name, m in model.named_modules() if name and isinstance(m, kinds)]


def supports_float_layers(spec) -> bool:
    """Whether ``spec.export`` takes ``float_layers`` (a keyword parameter or ``**kwargs``)."""
    try:
        params = inspect.signature(spec.export).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "float_layers" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def export_fn(spec, model, card, scheme: str, calib: np.ndarray | None, float_layers: Sequence[str]) -> Callable[[Path], Any]:
    """``staging -> ExportOutput`` for :func:`optim.optimize.ptq.stage_checked_artifact`: a deep
    copy of ``model`` exported by ``spec`` with ``float_layers`` kept in float.

    Raises :class:`ToolError` when layers must stay in float but the format's exporter has no
    ``float_layers`` parameter (it would silently quantize them)."""
    float_layers = tuple(float_layers)
    if float_layers and not supports_float_layers(spec):
        raise ToolError(f"format {spec.name!r}: its exporter takes no float_layers (mixed precision), so layers "
                        f"{list(float_layers)[:4]}… cannot be kept in float; update optim (issue 13 quantizer side)")

    def write(staging: Path):
        kw = {"float_layers": float_layers} if float_layers else {}
        return spec.export(copy.deepcopy(model), card, scheme, calib, staging, **kw)

    return write


def source_of(loaded) -> dict[str, Any]:
    """The ``source`` block of ``artifact.json`` for a loaded checkpoint (as ``optim quantize`` writes it)."""
    return {"checkpoint": str(loaded.path), "sha256": loaded.sha256, "source_format": loaded.source_format,
            "card": str(loaded.card_path) if loaded.card_path else None, "lineage": loaded.lineage}


def build_artifact(loaded, spec, scheme: str, out_dir: Path, *, calib, check_batch: np.ndarray, reference: dict,
                   float_layers: Sequence[str] = (), threads: int | None = None):
    """Export ``loaded`` (a :class:`optim.checkpoint.LoadedModel`) as ``spec`` × ``scheme`` into
    ``out_dir/<format>-<scheme>/`` with ``float_layers`` in float, checked on its host runtime
    against the torch ``reference`` outputs on ``check_batch``.

    ``calib``: the :class:`optim.optimize.calibration.CalibrationSet` (recorded in
    ``artifact.json``). Returns the :class:`optim.optimize.ptq.FormatResult` (``status``
    ``export_failed`` carries the error; never raises for a library failure).
    """
    from optim.optimize.ptq import stage_checked_artifact

    write = export_fn(spec, loaded.model, loaded.card, scheme, None if calib is None else calib.batch, float_layers)
    return stage_checked_artifact(
        spec, scheme, Path(out_dir), write, card=loaded.card, source=source_of(loaded), libraries=spec.libraries,
        calibration=calib.to_metadata() if calib is not None else None,
        check_batch=check_batch, check_desc=f"calibration images ({len(check_batch)})", reference=reference,
        threads=threads)


def quantized_runtime_factory(loaded, spec, scheme: str, calib, check_batch: np.ndarray, reference: dict,
                              threads: int | None = None) -> Callable[[tuple[str, ...]], Any]:
    """``float_layers -> Runtime`` for :func:`optim.tune.sensitivity.measure_sensitivity`: each
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


def check_layers(model, names: Sequence[str]) -> None:
    """Raises :class:`InputError` for a float-fallback name that is not a module of ``model``."""
    known = {n for n, _ in model.named_modules()}
    bad = [n for n in names if n not in known]
    if bad:
        raise InputError(f"float layers {bad[:5]} are not modules of the model")
