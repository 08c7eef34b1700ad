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
* ``int4-dynamic`` — ``int8-dynamic`` with 4-bit weights for every ``nn.Linear`` (the
  classifier head; "8da4w": 8-bit dynamic activations, 4-bit weights): the quantizer's
  ``set_module_type(nn.Linear, get_symmetric_quantization_config(is_per_channel=True,
  is_dynamic=True, weight_qmin=-8, weight_qmax=7))``; XNNPACK lowers it as per-channel 4-bit
  weights (``qcint4``, two weights a byte in the ``.pte``) × dynamically quantized INT8
  activations. Per channel, not block-wise: block-wise (``qbint4``) needs torchao's source
  transforms (``Int8DynActInt4WeightQuantizer``), not the PT2E quantizer;
* ``fp16`` — the model cast to float16 behind float32 input/output casts, lowered to XNNPACK.

The graph has the card's fixed batch size (usually 1); :class:`ExecuTorchRuntime` feeds
larger batches in chunks. ``threads`` resets ExecuTorch's process-wide threadpool.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError
from optim.model_card import ModelCard
from optim.runtimes.artifact import Artifact
from optim.runtimes.base import Runtime
from optim.runtimes.device_tool import DeviceReader, DeviceTool, ToolCall, ToolOutput, ToolRunError
from optim.runtimes.spec import ExportOutput
from optim.runtimes.spec import FormatSpec

FORMAT = "pte"
SCHEMES = ("fp32", "fp16", "int8", "int8-dynamic", "int4-dynamic")
#: the 4-bit weight range of ``int4-dynamic`` (symmetric, signed: XNNPACK's qc4w)
INT4_RANGE = {"weight_qmin": -8, "weight_qmax": 7}
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


def export(model, card: ModelCard, scheme: str, calib: np.ndarray | None, out_dir: Path, *,
           float_layers: Sequence[str] = ()) -> ExportOutput:
    """Export ``model`` (FP32 eval ``nn.Module``) to ``out_dir/model.pte`` under ``scheme``.

    ``calib``: float32 N×C×H×W calibration batch, required for ``int8``.
    ``float_layers``: qualified module names the PT2E schemes (``int8``, ``int8-dynamic``,
    ``int4-dynamic``) leave unannotated (:func:`optim.runtimes.pt2e.keep_float`): XNNPACK runs them as FP32
    convolutions / fully-connected layers.
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

        from optim.runtimes.pt2e import keep_float, pt2e_prepare_and_calibrate

        dynamic = scheme in ("int8-dynamic", "int4-dynamic")
        if not dynamic and (calib is None or len(calib) == 0):
            raise InputError("pte int8: static INT8 needs calibration images (--calib DIR)")
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
        if scheme == "int4-dynamic":
            quantizer.set_module_type(torch.nn.Linear, get_symmetric_quantization_config(
                is_per_channel=True, is_dynamic=True, **INT4_RANGE))
        keep_float(quantizer, float_layers)
        graph = pt2e_prepare_and_calibrate(model, quantizer, card.input.shape, None if dynamic else calib)
        graph = convert_pt2e(graph)
        recipe["quantization"] = {
            "library": "torchao PT2E + executorch XNNPACKQuantizer",
            "weights": ("int4 per-channel symmetric for nn.Linear (XNNPACK qc4w), int8 per-channel for the rest"
                        if scheme == "int4-dynamic" else "int8 per-channel symmetric"),
            "activations": "int8 per-tensor, computed at run time (supported layers only)" if dynamic else "int8 per-tensor",
            "calibration_images": None if dynamic else len(calib),
        }
        if float_layers:
            recipe["quantization"]["float_layers"] = list(float_layers)
    program = torch.export.export(graph, sample)
    et = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    (out_dir / MODEL_FILE).write_bytes(et.buffer)
    inputs, outputs = tensor_specs(out_dir / MODEL_FILE, card)
    return ExportOutput(files=[MODEL_FILE], inputs=inputs, outputs=outputs, recipe=recipe)


def tensor_specs(model_path: Path, card: ModelCard) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tensor specs of a ``.pte`` optim wrote: the XNNPACK program takes and returns float32
    (quantize/dequantize run inside), with the card's fixed batch."""
    shape = list(card.input.shape)
    inputs = [{"name": card.input.name, "shape": shape, "dtype": "float32", "layout": "NCHW", "quantization": None}]
    outputs = [{"name": f"output_{i}", "shape": [shape[0], h.num_classes], "dtype": "float32", "head": h.name,
                "quantization": None} for i, h in enumerate(card.heads)]
    return inputs, outputs


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


def sidecars(model_file: Path) -> list[Path]:
    """ExecuTorch named-data files (``*.ptd``) next to a bare ``.pte``."""
    return sorted(model_file.parent.glob("*.ptd"))


# ---- QAT ----------------------------------------------------------------------------------
def lower_qat(converted, card: ModelCard, quantizer, out_dir: Path) -> ExportOutput:
    """A QAT-converted PT2E graph (XNNPACK quantizer) → ``model.pte`` (XNNPACK-delegated)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    out_dir = Path(out_dir)
    ep = torch.export.export(converted, (torch.zeros(card.input.shape),))
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(prog.buffer)
    inputs, outputs = tensor_specs(out_dir / MODEL_FILE, card)
    return ExportOutput(files=[MODEL_FILE], inputs=inputs, outputs=outputs, recipe={
        "lowering": "executorch.exir.to_edge_transform_and_lower(XnnpackPartitioner)", "file": MODEL_FILE})


# ---- on-device tool: executor_runner -------------------------------------------------------
LOGCAT_TAG = "ExecuTorch"


def executor_runner_command(call: ToolCall) -> list[str]:
    """``executor_runner --model_path=… --num_executions=warmup+runs --cpu_threads=N``
    (+ ``--data_path`` for a ``.ptd`` sidecar)."""
    args = [call.tool, f"--model_path={call.model}", f"--num_executions={call.expected}", f"--cpu_threads={call.threads}"]
    ptd = [p for p in call.extra if p.endswith(".ptd")]
    if ptd:
        args.append(f"--data_path={ptd[0]}")
    return args


def parse_executor_runner_output(text: str, call: ToolCall, read: DeviceReader) -> ToolOutput:
    """Per-iteration times from stdout/stderr; Android-PAL builds log to logcat (tag
    ``ExecuTorch``) instead, read when stdout has none."""
    from optim.runtimes.tool_parsers import parse_executor_runner

    try:
        return parse_executor_runner(text, expected=call.expected)
    except ToolRunError:
        log = read(f"logcat -d -v raw -s {LOGCAT_TAG}", "reading executor_runner's logcat") or ""
        if "Iteration" not in log:
            raise
        return parse_executor_runner(log, expected=call.expected)


SPEC = FormatSpec(
    name=FORMAT, suffix=".pte", model_file=MODEL_FILE, schemes=SCHEMES, libraries=LIBRARIES,
    export=export, open_runtime=open_artifact, tensor_specs=tensor_specs, sidecars=sidecars,
    runtime_modules=("torch", "executorch.runtime"), size_schemes=("int4-dynamic",),
    qat_backend="xnnpack", lower_qat=lower_qat, qat_libraries=("torch", "torchao", "executorch"),
    device_tool=DeviceTool("executor_runner", executor_runner_command, parse_executor_runner_output,
                           before_trial="logcat -c", description="ExecuTorch executor_runner (arm64-v8a) for .pte."),
    description="ExecuTorch .pte (XNNPACK delegate)",
)
