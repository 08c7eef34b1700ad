"""ExecuTorch (``.pte``): ``torch.export`` → (PT2E ``XNNPACKQuantizer``) →
``to_edge_transform_and_lower`` with the ``XnnpackPartitioner`` → ``.pte``; run with
ExecuTorch's Python runtime (``executorch.runtime``).

Schemes:

* ``fp32`` — the FP32 graph delegated to XNNPACK;
* ``int8`` — static PTQ: ``prepare_pt2e`` with ``XNNPACKQuantizer`` and
  ``get_symmetric_quantization_config(is_per_channel=True)`` (per-channel symmetric INT8
  weights, per-tensor INT8 activations), calibration forward passes, ``convert_pt2e``;
  float32 input/output (quantize/dequantize happen inside the graph);
* ``int8-dynamic`` — the same quantizer with ``is_dynamic=True``: XNNPACK quantizes only the
  layers it supports dynamically (linear and some convolutions), the rest stays FP32 — the
  size recorded in ``artifact.json`` shows how much;
* ``fp16`` — the model cast to float16 behind float32 input/output casts, lowered to XNNPACK.

The graph has the card's fixed batch size (usually 1); :class:`ExecuTorchRuntime` feeds
larger batches in chunks. ``threads`` resets ExecuTorch's process-wide threadpool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError
from optim.model_card import ModelCard
from optim.runtimes.artifact import Artifact
from optim.runtimes.base import Runtime
from optim.runtimes.registry import ExportOutput

FORMAT = "pte"
SCHEMES = ("fp32", "fp16", "int8", "int8-dynamic")
LIBRARIES = ("torch", "torchao", "executorch")
MODEL_FILE = "model.pte"


def _half_wrapper(model):
    import torch

    class HalfPrecision(torch.nn.Module):
        """float32 in → float16 model → float32 out."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner.half()

        def forward(self, x):
            out = self.inner(x.half())
            if isinstance(out, dict):
                return {k: v.float() for k, v in out.items()}
            if isinstance(out, (tuple, list)):
                return type(out)(o.float() for o in out)
            return out.float()

    return HalfPrecision(model).eval()


def export(model, card: ModelCard, scheme: str, calib: np.ndarray | None, out_dir: Path) -> ExportOutput:
    """Export ``model`` (FP32 eval ``nn.Module``) to ``out_dir/model.pte`` under ``scheme``.

    ``calib``: float32 N×C×H×W calibration batch, required for ``int8``.
    """
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if scheme not in SCHEMES:
        raise InputError(f"pte: unknown scheme {scheme!r}; supported: {', '.join(SCHEMES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = (torch.zeros(card.input.shape),)
    recipe: dict[str, Any] = {"exporter": "torch.export → to_edge_transform_and_lower(XnnpackPartitioner) → to_executorch",
                              "batch": card.input.shape[0]}
    if scheme == "fp32":
        graph = model
    elif scheme == "fp16":
        graph = _half_wrapper(model)
        recipe["quantization"] = {"weights": "float16", "compute": "float16 (XNNPACK)", "io": "float32"}
    else:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        from optim.optimize.calibration import pt2e_prepare_and_calibrate

        dynamic = scheme == "int8-dynamic"
        if not dynamic and (calib is None or len(calib) == 0):
            raise InputError("pte int8: static INT8 needs calibration images (--calib DIR)")
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
        graph = pt2e_prepare_and_calibrate(model, quantizer, card.input.shape, None if dynamic else calib)
        graph = convert_pt2e(graph)
        recipe["quantization"] = {
            "library": "torchao PT2E + executorch XNNPACKQuantizer", "weights": "int8 per-channel symmetric",
            "activations": "int8 per-tensor, computed at run time (supported layers only)" if dynamic else "int8 per-tensor",
            "calibration_images": None if dynamic else len(calib),
        }
    program = torch.export.export(graph, sample)
    et = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    (out_dir / MODEL_FILE).write_bytes(et.buffer)
    shape = list(card.input.shape)
    return ExportOutput(
        files=[MODEL_FILE],
        inputs=[{"name": card.input.name, "shape": shape, "dtype": "float32", "layout": "NCHW", "quantization": None}],
        outputs=[{"name": f"output_{i}", "shape": [shape[0], h.num_classes], "dtype": "float32", "head": h.name,
                  "quantization": None} for i, h in enumerate(card.heads)],
        recipe=recipe,
    )


class ExecuTorchRuntime(Runtime):
    """ExecuTorch's Python runtime (``executorch.runtime.Runtime``) with the XNNPACK delegate."""

    format = FORMAT

    def __init__(self, artifact: Artifact, threads: int | None = None):
        from executorch.runtime import Runtime as EtRuntime

        super().__init__(artifact.card, threads)
        self.artifact = artifact
        path = artifact.require_file(MODEL_FILE)
        if threads:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(int(threads))
        self.program = EtRuntime.get().load_program(path)
        self.method = self.program.load_method("forward")
        self.max_batch = int(artifact.card.input.shape[0])

    def _predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        n = len(batch)
        if n < self.max_batch:
            batch = np.concatenate([batch, np.zeros((self.max_batch - n, *batch.shape[1:]), batch.dtype)])
        outs = self.method.execute([torch.from_numpy(np.ascontiguousarray(batch))])
        return {h.name: outs[i].detach().float().numpy()[:n].copy() for i, h in enumerate(self.card.heads)}


def open_artifact(artifact: Artifact, threads: int | None = None) -> ExecuTorchRuntime:
    """Open a ``.pte`` artifact on the ExecuTorch runtime."""
    return ExecuTorchRuntime(artifact, threads)
