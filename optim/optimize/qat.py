"""Quantization-aware training (QAT) with PT2E, distilled from the FP32 teacher.

One QAT run per quantizer backend, then the same exports as PTQ:

* ``xnnpack`` — torchao PT2E ``prepare_qat_pt2e`` with ExecuTorch's ``XNNPACKQuantizer``
  (symmetric per-channel INT8 weights, asymmetric per-tensor INT8 activations, fake-quantized
  in training) → ``convert_pt2e`` → two artifacts:
  - ``pte-int8``: ``to_edge_transform_and_lower`` with the XNNPACK partitioner → ``model.pte``;
  - ``onnx-int8``: the converted graph's quantize/dequantize ops exported by
    ``torch.onnx.export(dynamo=True)`` as ONNX QuantizeLinear/DequantizeLinear (QDQ) pairs,
    which ONNX Runtime runs as INT8 kernels. (The QAT-trained scales are kept; this replaces
    NNCF's separate QAT so that one training run serves both formats.)
* ``litert`` — the same with litert-torch's ``PT2EQuantizer`` (``is_qat=True``) →
  ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))`` → ``model.tflite``
  (``tflite-int8``).

Training = :func:`optim.optimize.finetune.finetune` on the prepared graph (distillation loss
from the FP32 teacher, gradient health, resumable run per backend in ``OUT/qat-<backend>.run``).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError, ToolError
from optim.model_card import ModelCard
from optim.optimize.finetune import FinetuneConfig, TrainingDiverged, finetune
from optim.optimize.ptq import STATUS_EXPORT_FAILED, FormatResult, QuantizeResult



# ---- quantizers ---------------------------------------------------------------------------
def xnnpack_qat_quantizer():
    """ExecuTorch's XNNPACKQuantizer, per-channel symmetric weights, QAT fake-quant."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def litert_qat_quantizer():
    """litert-torch's PT2EQuantizer, per-channel symmetric weights, ``is_qat=True``."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


#: QAT quantizer backends: name → quantizer factory. A format takes part in QAT by naming one
#: of them as its ``FormatSpec.qat_backend`` and lowering the converted graph (``lower_qat``).
QAT_BACKENDS: dict[str, Callable[[], Any]] = {"xnnpack": xnnpack_qat_quantizer, "litert": litert_qat_quantizer}
#: backends whose converted graph keeps weight quantization unfolded (litert-torch wants it so, as in PTQ)
UNFOLDED_BACKENDS = frozenset({"litert"})


def backend_formats() -> dict[str, tuple[str, ...]]:
    """``{backend: formats lowered from it}`` from the registered formats' ``qat_backend``."""
    from optim.runtimes.registry import formats

    out: dict[str, tuple[str, ...]] = {b: () for b in QAT_BACKENDS}
    for name, spec in formats().items():
        if spec.qat_backend in out:
            out[spec.qat_backend] = (*out[spec.qat_backend], name)
    return out


@contextlib.contextmanager
def _litert_pattern_shim():
    """litert-torch 0.10.0 hands plain functions (conv+BN patterns) to torchao's
    ``_get_aten_graph_module_for_pattern``, which calls ``torch.export.export``; torch 2.13
    only exports ``nn.Module``s, so QAT annotation of conv+BN fails. Wrap the pattern in
    torchao's ``WrapperModule`` (what torchao does for its own patterns) while preparing."""
    import torch
    import litert_torch.quantize.pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.export_utils import WrapperModule

    original = utils._get_aten_graph_module_for_pattern

    def wrapped(pattern, *args, **kwargs):
        return original(pattern if isinstance(pattern, torch.nn.Module) else WrapperModule(pattern), *args, **kwargs)

    utils._get_aten_graph_module_for_pattern = wrapped
    try:
        yield
    finally:
        utils._get_aten_graph_module_for_pattern = original


def prepare_qat(model, card: ModelCard, backend: str, batch_size: int):
    """``torch.export`` (dynamic batch) → ``prepare_qat_pt2e`` with the backend's quantizer.

    Returns ``(prepared graph module in train mode, quantizer)``. Raises ToolError if export
    or preparation fails.
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    if backend not in QAT_BACKENDS:
        raise InputError(f"unknown QAT backend {backend!r}; known: {', '.join(QAT_BACKENDS)}")
    x = torch.zeros((max(2, batch_size), *card.input.shape[1:]))
    try:
        gm = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)).module()
    except Exception as e:
        raise ToolError(f"QAT: torch.export failed ({type(e).__name__}: {e})") from e
    try:
        quantizer = QAT_BACKENDS[backend]()
        with _litert_pattern_shim() if backend == "litert" else contextlib.nullcontext():
            prepared = prepare_qat_pt2e(gm, quantizer)
    except Exception as e:
        raise ToolError(f"QAT: prepare_qat_pt2e with the {backend} quantizer failed ({type(e).__name__}: {e})") from e
    return prepared, quantizer


def convert_qat(prepared, fold_quantize: bool = True):
    """Eval mode + ``convert_pt2e``: fake-quant → quantize/dequantize ops with the learnt scales.
    (litert-torch wants unfolded weight quantization: ``fold_quantize=False``, as in PTQ.)"""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    converted = convert_pt2e(prepared, fold_quantize=fold_quantize)
    move_exported_model_to_eval(converted)
    return converted


# ---- lowering -----------------------------------------------------------------------------
def lower(fmt: str, converted, card: ModelCard, quantizer, out_dir: Path):
    """Lower ``converted`` to ``fmt`` in ``out_dir`` with the format's ``lower_qat``
    (:class:`optim.runtimes.spec.FormatSpec`) → its ``ExportOutput``. Library chatter on
    stdout (ExecuTorch's partitioner prints) goes to stderr, so that ``--json`` output stays
    parseable. Raises InputError for a format without a QAT path."""
    from optim.runtimes.registry import get_format

    spec = get_format(fmt)
    if spec.lower_qat is None:
        raise InputError(f"format {fmt!r} has no QAT lowering; QAT formats: {', '.join(qat_formats())}")
    with contextlib.redirect_stdout(sys.stderr):
        return spec.lower_qat(converted, card, quantizer, out_dir)


def qat_formats() -> tuple[str, ...]:
    """Registered formats with a QAT path (a known ``qat_backend`` and ``lower_qat``)."""
    return tuple(f for fs in backend_formats().values() for f in fs)


# ---- the whole job ------------------------------------------------------------------------
@dataclass
class QatResult(QuantizeResult):
    """:class:`optim.optimize.ptq.QuantizeResult` plus the training runs (per backend)."""

    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "method": "qat", "training": self.training}


def _export_artifact(fmt: str, converted, quantizer, card: ModelCard, out_dir: Path, *, source: dict[str, Any],
                     training: dict[str, Any], check_batch: np.ndarray, check_desc: str, reference: dict[str, np.ndarray],
                     threads: int | None) -> FormatResult:
    """Lower one format into a staging dir, write ``artifact.json`` (issue-3 writer), check it on
    its host runtime against the FP32 teacher, then move it to ``out_dir/<format>-int8``
    (the same staging and checks as PTQ: :func:`optim.optimize.ptq.stage_checked_artifact`)."""
    from optim.optimize.ptq import stage_checked_artifact
    from optim.runtimes.registry import ExportOutput, get_format

    scheme = "int8"
    try:
        spec = get_format(fmt)
    except ToolError as e:
        return FormatResult(fmt, scheme, STATUS_EXPORT_FAILED, error=str(e))

    def write(staging: Path) -> ExportOutput:
        exported = lower(fmt, converted, card, quantizer, staging)
        exported.recipe = {**exported.recipe, "method": "qat", "quantizer": spec.qat_backend, "training": training,
                           "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor (learnt in QAT)"}
        return exported

    return stage_checked_artifact(spec, scheme, out_dir, write, card=card, source=source, libraries=spec.qat_libraries,
                                  calibration=None, check_batch=check_batch, check_desc=check_desc, reference=reference,
                                  threads=threads)


def quantize_qat(
    checkpoint: str | Path,
    *,
    train: str | Path,
    formats: str | Sequence[str] | None = None,
    golden: str | Path | None = None,
    teacher: str | Path | None = None,
    config: FinetuneConfig | None = None,
    out: str | Path = "artifacts-qat",
    threads: int | None = None,
    load_kwargs: dict[str, Any] | None = None,
    resume: bool = True,
    progress: bool = True,
    on_result: Callable[[FormatResult], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_info: Callable[[str], None] | None = None,
) -> QatResult:
    """QAT with distillation from the checkpoint (the FP32 teacher), then INT8 exports.

    Args:
        checkpoint: the FP32 model to quantize (a pruned checkpoint works); also the teacher
            unless ``teacher`` is given.
        train: train split (golden-set format or an image-folder tree), never the gate's golden set.
        formats: formats with a QAT path (:func:`qat_formats`; sequence or comma-separated);
            None = all of them.
        golden: the gate's golden set; training on it is refused.
        teacher: checkpoint of the FP32 teacher (default: ``checkpoint`` itself). For
            pruned + QAT, pass the unpruned original; its card must have the same heads.
        config: fine-tuning settings (epochs, lr, α, T …); default ``FinetuneConfig(epochs=1, lr=1e-4)``.
        out: artifacts go to ``<out>/<format>-int8/``; runs to ``<out>/qat-<backend>.run/``.

    Returns:
        :class:`QatResult`; ``exit_code`` 3 if any format failed (the others still complete).

    Raises:
        InputError: bad checkpoint, formats, training data, or training data = golden set.
        TrainingDiverged: NaN/inf during QAT.
    """
    import torch

    from optim.checkpoint import load_checkpoint
    from optim.optimize.ptq import _as_list
    from optim.optimize.train_data import TrainSet, check_not_golden
    from optim.runtimes.base import TorchRuntime

    info = on_info or (lambda m: None)
    fmts = _as_list(qat_formats() if formats is None else formats, qat_formats(), "format")
    config = config or FinetuneConfig(epochs=1, lr=1e-4)
    check_not_golden(train, golden)
    loaded = load_checkpoint(checkpoint, **(load_kwargs or {}))
    card, teacher_model = loaded.card, loaded.model
    if teacher is not None:
        t_loaded = load_checkpoint(teacher, **(load_kwargs or {}))
        if [(h.name, h.kind, h.labels) for h in t_loaded.card.heads] != [(h.name, h.kind, h.labels) for h in card.heads]:
            raise InputError(f"teacher {teacher}: its heads differ from {checkpoint}'s; distillation needs the same heads and labels")
        teacher_model = t_loaded.model
    data = TrainSet.load(train, card)
    n_check = min(len(data), 64)
    idx = np.random.default_rng(config.seed).permutation(len(data))[:n_check]
    check_batch = data.images(idx, card)
    check_desc = f"{n_check} training images (seed {config.seed})"
    reference = TorchRuntime(loaded.model, card, threads=threads).predict(check_batch)
    source = {"checkpoint": str(loaded.path), "sha256": loaded.sha256, "source_format": loaded.source_format,
              "card": str(loaded.card_path) if loaded.card_path else None, "lineage": loaded.lineage}
    out_dir = Path(out)
    result = QatResult(checkpoint=loaded.path, out_dir=out_dir)
    by_backend = {b: [f for f in fs if f in fmts] for b, fs in backend_formats().items()}
    for backend, backend_fmts in by_backend.items():
        if not backend_fmts:
            continue
        run_dir = out_dir / f"qat-{backend}.run"
        info(f"QAT ({backend} quantizer) for {', '.join(backend_fmts)}: {len(data)} images, {config.epochs} epoch(s), run log {run_dir / 'run_log.jsonl'}")
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):
                prepared, quantizer = prepare_qat(copy.deepcopy(loaded.model), card, backend, config.batch_size)
            ft = finetune(prepared, teacher_model, card, data, config, run_dir, resume=resume, progress=progress,
                          on_warning=on_warning, desc=f"QAT {backend}")
            converted = convert_qat(prepared, fold_quantize=backend not in UNFOLDED_BACKENDS)
        except (InputError, TrainingDiverged):
            raise
        except Exception as e:
            from optim.runtimes.registry import ExportFailed

            for fmt in backend_fmts:
                err = ExportFailed(fmt, "int8", RuntimeError(f"QAT with the {backend} quantizer failed: {type(e).__name__}: {e}"))
                r = FormatResult(fmt, "int8", STATUS_EXPORT_FAILED, error=str(err))
                result.results.append(r)
                if on_result:
                    on_result(r)
            continue
        training = {"backend": backend, "steps": ft.steps, "final_loss": ft.final_loss, "seconds": round(time.perf_counter() - t0, 1),
                    "run_log": str(ft.log_path), "config": config.to_dict(), "train_manifest": str(data.manifest),
                    "n_train": len(data), "gradient_warnings": len(ft.warnings),
                    "teacher": str(teacher or loaded.path)}
        result.training[backend] = training
        for fmt in backend_fmts:
            with torch.no_grad():
                r = _export_artifact(fmt, converted, quantizer, card, out_dir, source=source, training=training,
                                     check_batch=check_batch, check_desc=check_desc, reference=reference, threads=threads)
            result.results.append(r)
            if on_result:
                on_result(r)
    return result
