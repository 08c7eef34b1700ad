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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from optim.errors import InputError, ToolError
from optim.model_card import ModelCard

BACKEND_FORMATS = {"xnnpack": ("pte", "onnx"), "litert": ("tflite",)}
FORMAT_BACKEND = {f: b for b, fs in BACKEND_FORMATS.items() for f in fs}


# ---- quantizers ---------------------------------------------------------------------------
def xnnpack_qat_quantizer():
    """ExecuTorch's XNNPACKQuantizer, per-channel symmetric weights, QAT fake-quant."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def litert_qat_quantizer():
    """litert-torch's PT2EQuantizer, per-channel symmetric weights, ``is_qat=True``."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


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

    if backend not in BACKEND_FORMATS:
        raise InputError(f"unknown QAT backend {backend!r}; known: {', '.join(BACKEND_FORMATS)}")
    x = torch.zeros((max(2, batch_size), *card.input.shape[1:]))
    try:
        gm = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)).module()
    except Exception as e:
        raise ToolError(f"QAT: torch.export failed ({type(e).__name__}: {e})") from e
    try:
        if backend == "xnnpack":
            quantizer = xnnpack_qat_quantizer()
            prepared = prepare_qat_pt2e(gm, quantizer)
        else:
            quantizer = litert_qat_quantizer()
            with _litert_pattern_shim():
                prepared = prepare_qat_pt2e(gm, quantizer)
    except Exception as e:
        raise ToolError(f"QAT: prepare_qat_pt2e with the {backend} quantizer failed ({type(e).__name__}: {e})") from e
    return prepared, quantizer


def convert_qat(prepared):
    """Eval mode + ``convert_pt2e``: fake-quant → quantize/dequantize ops with the learnt scales."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared)


# ---- lowering -----------------------------------------------------------------------------
def lower_pte(converted, card: ModelCard, out_dir: Path) -> dict[str, Any]:
    """Converted graph → ``model.pte`` (XNNPACK-delegated). Returns the recipe."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(converted, (torch.zeros(card.input.shape),))
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.pte").write_bytes(prog.buffer)
    return {"lowering": "executorch.exir.to_edge_transform_and_lower(XnnpackPartitioner)", "file": "model.pte"}


def lower_onnx(converted, card: ModelCard, out_dir: Path) -> dict[str, Any]:
    """Converted graph → ``model.onnx`` with QDQ pairs (torch.onnx.export, dynamo). Returns the recipe."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(converted, (torch.zeros(card.input.shape),), str(out_dir / "model.onnx"), dynamo=True, opset_version=18,
                      input_names=[card.input.name], output_names=[h.name for h in card.heads], verbose=False)
    return {"lowering": "torch.onnx.export(dynamo=True, opset 18): quantized_decomposed ops → QuantizeLinear/DequantizeLinear",
            "file": "model.onnx"}


def lower_tflite(converted, card: ModelCard, quantizer, out_dir: Path) -> dict[str, Any]:
    """Converted graph → ``model.tflite`` (litert-torch with the same PT2E quantizer). Returns the recipe."""
    import torch
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    edge = litert_torch.convert(converted, (torch.zeros(card.input.shape),), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(out_dir / "model.tflite"))
    return {"lowering": "litert_torch.convert(quant_config=QuantConfig(pt2e_quantizer=PT2EQuantizer(is_qat=True)))", "file": "model.tflite"}


def lower(fmt: str, converted, card: ModelCard, quantizer, out_dir: Path) -> dict[str, Any]:
    if fmt == "pte":
        return lower_pte(converted, card, out_dir)
    if fmt == "onnx":
        return lower_onnx(converted, card, out_dir)
    if fmt == "tflite":
        return lower_tflite(converted, card, quantizer, out_dir)
    raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMAT_BACKEND)}")


# ---- the whole job ------------------------------------------------------------------------
@dataclass
class QatFormatResult:
    """One format's outcome: ``status`` ``ok`` or ``failed`` (``error`` says why, naming the step)."""

    format: str
    scheme: str = "int8"
    status: str = "ok"
    dir: Path | None = None
    size_mb: float | None = None
    check: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "scheme": self.scheme, "status": self.status, "dir": str(self.dir) if self.dir else None,
                "size_mb": self.size_mb, "check": self.check, "error": self.error, "seconds": self.seconds}


@dataclass
class QatResult:
    out_dir: Path
    results: list[QatFormatResult]
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if all(r.ok for r in self.results) else 3

    def to_dict(self) -> dict[str, Any]:
        return {"method": "qat", "out_dir": str(self.out_dir), "results": [r.to_dict() for r in self.results], "training": self.training}
