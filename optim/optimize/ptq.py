"""Post-training quantization and export: ``optim.quantize`` (the API behind ``optim quantize``).

For each requested format × scheme: export the FP32 checkpoint with the format's own library
(:mod:`optim.runtimes.registry`), write ``<out>/<format>-<scheme>/`` with ``artifact.json``,
open it on its host runtime and compare it with torch eager FP32 on the check inputs (the
calibration images when given). One format failing does not stop the others; the result
lists what succeeded and what failed (format, scheme, operator, message).
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_TOOL_ERROR, InputError, ToolError
from optim.files import size_mb
from optim.optimize.calibration import DEFAULT_CALIB_SIZE, DEFAULT_SEED, CalibrationSet, load_calibration_set
from optim.optimize.export_checks import compare_outputs, summarize_check
from optim.runtimes.artifact import Artifact, artifact_dir_name, library_versions, update_metadata, write_metadata
from optim.runtimes.layers import check_float_layers
from optim.runtimes.registry import ExportFailed, all_schemes, default_formats, format_names, get_format
from optim.runtimes.spec import FormatSpec

log = logging.getLogger(__name__)

N_SYNTHETIC_CHECK_INPUTS = 8

STATUS_OK = "ok"
STATUS_EXPORT_FAILED = "export_failed"
STATUS_CHECK_FAILED = "check_failed"
STATUS_COLLAPSED = "collapsed"


@dataclass
class FormatResult:
    """The outcome of one format × scheme.

    Attributes:
        status: ``ok`` | ``export_failed`` (exporter or runtime broke: see ``error``,
            ``operator``) | ``check_failed`` (FP32 export differs from torch by > 1e-4) |
            ``collapsed`` (quantization broke the model: top-1 agreement with FP32
            significantly below 0.90, see :func:`optim.optimize.export_checks.collapse_verdict`;
            the artifact is written, ``message`` says what to do).
        artifact_dir: the artifact directory (None if the export failed).
        size_bytes: sum of the artifact's files (metadata excluded).
        export_seconds: wall time of the export itself (s).
        check: the ``checks`` record (see :func:`optim.optimize.export_checks.summarize_check`).
    """

    format: str
    scheme: str
    status: str
    artifact_dir: Path | None = None
    size_bytes: int | None = None
    export_seconds: float | None = None
    check: dict[str, Any] | None = None
    error: str | None = None
    operator: str | None = None

    @property
    def size_mb(self) -> float | None:
        """Size in MB (10^6 bytes)."""
        return None if self.size_bytes is None else size_mb(self.size_bytes)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def collapsed(self) -> bool:
        """True if quantization broke the model (see ``status``)."""
        return self.status == STATUS_COLLAPSED

    @property
    def message(self) -> str | None:
        """The collapse message (``check.message``), else None."""
        return (self.check or {}).get("message")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "scheme": self.scheme, "status": self.status,
            "artifact": str(self.artifact_dir) if self.artifact_dir else None,
            "size_bytes": self.size_bytes, "size_mb": None if self.size_mb is None else round(self.size_mb, 6),
            "export_seconds": None if self.export_seconds is None else round(self.export_seconds, 3),
            "top1_agreement": (self.check or {}).get("top1_agreement"),
            "max_abs_error": (self.check or {}).get("max_abs_error"),
            "collapsed": (self.check or {}).get("collapsed"), "message": self.message,
            "check": self.check, "error": self.error, "operator": self.operator,
        }


@dataclass
class QuantizeResult:
    """All artifacts of one ``optim.quantize`` call."""

    checkpoint: Path
    out_dir: Path
    results: list[FormatResult] = field(default_factory=list)
    calibration: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 all ok; 3 an export failed (tool error); 1 a check failed (an FP32 export differs
        from torch, or a quantized artifact collapsed)."""
        if any(r.status == STATUS_EXPORT_FAILED for r in self.results):
            return EXIT_TOOL_ERROR
        if any(r.status in (STATUS_CHECK_FAILED, STATUS_COLLAPSED) for r in self.results):
            return EXIT_CHECK_FAILED
        return EXIT_OK

    def artifact(self, fmt: str, scheme: str) -> Artifact:
        """The artifact of ``fmt``/``scheme``; raises :class:`InputError` if it was not produced."""
        for r in self.results:
            if r.format == fmt and r.scheme == scheme and r.artifact_dir is not None:
                return Artifact.load(r.artifact_dir)
        raise InputError(f"no {fmt}-{scheme} artifact was produced in {self.out_dir}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1, "checkpoint": str(self.checkpoint), "out": str(self.out_dir), "ok": self.ok,
            "exit_code": self.exit_code, "calibration": self.calibration, "results": [r.to_dict() for r in self.results],
        }


def _as_list(value: str | Sequence[str], known: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    if not items:
        raise InputError(f"no {what} given; choose from {', '.join(known)}")
    bad = [v for v in items if v not in known]
    if bad:
        raise InputError(f"unknown {what} {', '.join(map(repr, bad))}; choose from {', '.join(known)}")
    return list(dict.fromkeys(items))


def _check_inputs(card, calib: CalibrationSet | None) -> tuple[np.ndarray, str]:
    if calib is not None:
        return calib.batch, f"calibration images ({calib.size} from {calib.root})"
    rng = np.random.default_rng(DEFAULT_SEED)
    batch = rng.standard_normal((N_SYNTHETIC_CHECK_INPUTS, *card.input.shape[1:])).astype(np.float32)
    return batch, f"synthetic N(0,1) inputs, seed {DEFAULT_SEED} (no calibration images given): numeric equivalence only"


def _error_summary(exc: BaseException) -> str:
    """One line for ``exc``: its type and the most telling line of its message (TorchScript's
    interpreter wraps the real error after a "Traceback of TorchScript" dump: its last line)."""
    lines = [l.strip() for l in str(exc).strip().splitlines() if l.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[-1] if len(lines) > 1 and any("Traceback" in l for l in lines) else lines[0]
    name = type(exc).__name__
    text = line[:300] if line.startswith(name) else f"{name}: {line[:300]}"
    return text.replace("Traceback", "trace")


def export_one(
    model, card, fmt: str, scheme: str, out_dir: Path, *,
    calib: CalibrationSet | None, check_batch: np.ndarray, check_desc: str, reference: dict[str, np.ndarray],
    source: dict[str, Any], threads: int | None = None, float_layers: Sequence[str] = (),
) -> FormatResult:
    """Export one format × scheme into ``out_dir/<format>-<scheme>`` and check it; never raises
    for a library failure (it becomes ``status="export_failed"``). ``float_layers``: module
    names kept in float (already checked against the model, see
    :func:`optim.runtimes.layers.check_float_layers`); recorded in the recipe."""
    try:
        spec = get_format(fmt)
    except ToolError as e:
        return FormatResult(fmt, scheme, STATUS_EXPORT_FAILED, error=str(e))
    if scheme not in spec.schemes:
        err = ExportFailed(fmt, scheme, NotImplementedError(f"scheme {scheme} is not supported by the {fmt} exporter (supported: {', '.join(spec.schemes)})"))
        return FormatResult(fmt, scheme, STATUS_EXPORT_FAILED, error=str(err))
    float_layers = tuple(float_layers)
    if float_layers and not spec.supports_float_layers:
        err = ExportFailed(fmt, scheme, NotImplementedError(f"the {fmt} exporter does not support float_layers (mixed precision)"))
        return FormatResult(fmt, scheme, STATUS_EXPORT_FAILED, error=str(err))

    def write(staging: Path):
        batch = None if calib is None else calib.batch
        if not float_layers:
            return spec.export(copy.deepcopy(model), card, scheme, batch, staging)
        exported = spec.export(copy.deepcopy(model), card, scheme, batch, staging, float_layers=float_layers)
        exported.recipe = {**exported.recipe, "float_layers": list(float_layers)}
        return exported

    return stage_checked_artifact(
        spec, scheme, out_dir, write,
        card=card, source=source, libraries=spec.libraries,
        calibration=calib.to_metadata() if (calib is not None and scheme in spec.calibrated_schemes) else None,
        check_batch=check_batch, check_desc=check_desc, reference=reference, threads=threads,
    )


def stage_checked_artifact(
    spec: FormatSpec, scheme: str, out_dir: Path, write: Callable[[Path], Any], *,
    card, source: dict[str, Any], libraries: Sequence[str], calibration: dict[str, Any] | None,
    check_batch: np.ndarray, check_desc: str, reference: dict[str, np.ndarray], threads: int | None = None,
) -> FormatResult:
    """Write one artifact through a staging directory and publish it only once it is checked.

    ``write(staging)`` writes the format's files and returns an
    :class:`optim.runtimes.registry.ExportOutput`; then ``artifact.json`` is written, the artifact
    is run on its host runtime (``spec.open_runtime``) against the torch ``reference`` outputs
    on ``check_batch``, and the staging directory is renamed to ``out_dir/<format>-<scheme>``.
    A library failure becomes ``status="export_failed"`` naming the format and operator (nothing
    is left behind); :class:`InputError` and interrupts propagate.
    """
    fmt = spec.name
    final = out_dir / artifact_dir_name(fmt, scheme)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=out_dir))
    t0 = time.perf_counter()
    try:
        try:
            exported = write(staging)
        except InputError:
            raise
        except Exception as e:
            raise ExportFailed(fmt, scheme, e) from e
        seconds = time.perf_counter() - t0
        artifact = write_metadata(
            staging, fmt=fmt, scheme=scheme, files=exported.files, card=card, inputs=exported.inputs,
            outputs=exported.outputs, source=source, calibration=calibration,
            recipe={**exported.recipe, "export_seconds": round(seconds, 3)},
            versions={"optim": library_versions("optim")["optim"], **library_versions(*libraries)},
        )
        try:
            runtime = spec.open_runtime(artifact, threads)
            candidate = runtime.predict(check_batch)
            runtime.close()
        except Exception as e:
            raise ExportFailed(fmt, scheme, RuntimeError(f"the exported artifact does not run on its host runtime: {type(e).__name__}: {e}")) from e
        check = summarize_check(compare_outputs(reference, candidate, card), scheme, len(check_batch), check_desc)
        update_metadata(artifact, checks=check)
        if final.exists():
            shutil.rmtree(final)
        staging.chmod(0o755)  # mkdtemp makes it owner-only
        staging.rename(final)
    except ExportFailed as e:
        shutil.rmtree(staging, ignore_errors=True)
        log.warning("%s", e)
        return FormatResult(fmt, scheme, STATUS_EXPORT_FAILED, export_seconds=time.perf_counter() - t0, error=str(e), operator=e.operator)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    status = STATUS_COLLAPSED if check.get("collapsed") else STATUS_CHECK_FAILED if check["passed"] is False else STATUS_OK
    return FormatResult(fmt, scheme, status, artifact_dir=final, size_bytes=Artifact.load(final).size_bytes,
                        export_seconds=seconds, check=check)


def quantize(
    checkpoint: str | Path,
    *,
    formats: str | Sequence[str] | None = None,
    scheme: str | Sequence[str] = "int8",
    calib: str | Path | None = None,
    calib_size: int = DEFAULT_CALIB_SIZE,
    out: str | Path = "artifacts",
    threads: int | None = None,
    load_kwargs: dict[str, Any] | None = None,
    on_result: Callable[[FormatResult], None] | None = None,
    float_layers: str | Sequence[str] | None = None,
) -> QuantizeResult:
    """PTQ + export of a checkpoint to each format, each checked on its host runtime.

    Args:
        checkpoint: checkpoint file (see :func:`optim.load_checkpoint`).
        formats: registered format names (:func:`optim.runtimes.registry.format_names`) — a
            sequence or comma-separated string; None = the default formats
            (:func:`optim.runtimes.registry.default_formats`).
        scheme: ``"fp32"``, ``"fp16"``, ``"int8"`` (static, per-channel weights, per-tensor
            activations) or ``"int8-dynamic"`` — one, several, or comma-separated.
        calib: directory of images (searched recursively; a golden set works) read with the
            model card's preprocessing. Required for ``int8``; when given, it is also the
            check input for every scheme.
        calib_size: images drawn from ``calib`` (seeded, seed 0; all if fewer).
        out: output directory; artifacts go to ``<out>/<format>-<scheme>/`` (replaced if present).
        threads: CPU threads for the check runs (None = library default).
        load_kwargs: passed to :func:`optim.load_checkpoint` (arch, card, trust_pickle, input_shape).
        on_result: called with each :class:`FormatResult` as it is done (progress display).
        float_layers: mixed precision — qualified module names (``model.named_modules()``,
            e.g. ``"features.16.0"``; a container covers its children; sequence or
            comma-separated) that the quantized schemes keep in float
            (:func:`optim.runtimes.layers.quantizable_layers` lists the candidates). Recorded
            in ``artifact.json`` ``recipe.float_layers``.

    Returns:
        :class:`QuantizeResult`; ``.exit_code`` is 3 if any export failed, 1 if an FP32 export
        differs from torch by more than 1e-4 max-abs or a quantized artifact collapsed (status
        ``collapsed``: top-1 agreement with FP32 significantly below 0.90 on the check images), else 0.

    Raises:
        InputError: unknown format/scheme, bad checkpoint, missing or empty calibration
            directory, ``int8`` without ``calib`` (optim never calibrates on random noise), a
            float layer that is not a module of the model (close matches listed), or a
            model that rejects its card's ``input.shape`` (checked at load: :func:`optim.checkpoint.check_card_fits`).
    """
    from optim.checkpoint import load_checkpoint
    from optim.runtimes.base import TorchRuntime

    fmts = _as_list(default_formats() if formats is None else formats, format_names(), "format")
    schemes = _as_list(scheme, all_schemes(), "scheme")
    calibrated = sorted({s for f in fmts for s in schemes if s in get_format(f).calibrated_schemes})
    if calibrated and calib is None:
        raise InputError(
            f"static {'/'.join(s.upper() for s in calibrated)} needs calibration images: pass --calib DIR (any directory of "
            "images, e.g. the golden set; calib=... in the API). optim does not calibrate on random data. "
            "Or choose --scheme int8-dynamic / fp16 / fp32."
        )
    if calib_size < 1:
        raise InputError(f"--calib-size must be ≥ 1, got {calib_size}")
    loaded = load_checkpoint(checkpoint, **(load_kwargs or {}))
    card = loaded.card
    floats = check_float_layers(loaded.model, float_layers)
    calib_set = load_calibration_set(calib, card.preprocessing, calib_size, input_shape=card.input.shape) if calib is not None else None
    check_batch, check_desc = _check_inputs(card, calib_set)
    try:
        reference = TorchRuntime(loaded.model, card, threads=threads).predict(check_batch)
    except (RuntimeError, AssertionError):
        # the model accepts its card's shape (checked at load) but not a larger batch: a static
        # batch dimension (e.g. a torch.export program). Feed it the card's N at a time.
        reference = TorchRuntime(loaded.model, card, threads=threads, max_batch=card.input.shape[0]).predict(check_batch)
    source = {"checkpoint": str(loaded.path), "sha256": loaded.sha256, "source_format": loaded.source_format,
              "card": str(loaded.card_path) if loaded.card_path else None, "lineage": loaded.lineage}
    result = QuantizeResult(checkpoint=loaded.path, out_dir=Path(out), calibration=calib_set.to_metadata() if calib_set else None)
    for s in schemes:
        for fmt in fmts:
            r = export_one(loaded.model, card, fmt, s, Path(out), calib=calib_set, check_batch=check_batch,
                           check_desc=check_desc, reference=reference, source=source, threads=threads,
                           float_layers=floats)
            result.results.append(r)
            if on_result is not None:
                on_result(r)
    return result
