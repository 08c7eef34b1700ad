"""TFLite / LiteRT: export with litert-torch (no TensorFlow needed) and run on the ai-edge-litert
interpreter.

Schemes:

* ``fp32`` — ``litert_torch.convert(model, sample)``;
* ``int8`` — static PTQ via PT2E: ``torch.export`` → ``prepare_pt2e`` with litert-torch's
  ``PT2EQuantizer`` (``get_symmetric_quantization_config(is_per_channel=True)``: per-channel
  symmetric INT8 weights, per-tensor INT8 activations, histogram observers) → calibration
  forward passes → ``convert_pt2e`` → ``litert_torch.convert(quant_config=QuantConfig(...))``.
  The model's input and output tensors are INT8 too: the runtime quantizes inputs with the
  input tensor's scale and zero point and dequantizes outputs with the output tensor's;
* ``int8-dynamic`` — the same PT2E path with ``is_dynamic=True`` (INT8 weights, activations
  quantized at run time; float32 input/output);
* ``fp16`` — the FP32 flatbuffer with weights cast to float16 by ai-edge-quantizer
  (``FLOAT_CASTING``, compute in float; float32 input/output);
* ``int8-weight`` — weight-only INT8: ai-edge-quantizer ``recipe.weight_only_wi8_afp32()`` on
  the FP32 flatbuffer (INT8 weights with an explicit DEQUANTIZE, float compute, float32 I/O):
  a size budget at FP32 accuracy; on the host the XNNPACK delegate dequantizes the constant
  weights once at load and runs FP32 kernels (speed of ``fp32``, not of ``int8``);
* ``int4-weight`` — weight-only INT4 for the FULLY_CONNECTED layers (classifier heads) and
  weight-only INT8 for the rest: an ai-edge-quantizer recipe of two weight-only configs
  (``add_weight_only_config(ALL_SUPPORTED, num_bits=8)``, then ``FULLY_CONNECTED, num_bits=4``),
  per output channel, symmetric; INT4 weight tensors behind DEQUANTIZE, float compute. Per
  channel, not block-wise: ai-edge-quantizer 0.10 has no block-wise policy for float-compute
  (weight-only) FULLY_CONNECTED ("Unsupported op for ComputePrecision.FLOAT");
* ``int16x8`` — INT16 activations × INT8 weights: ai-edge-quantizer ``recipe.static_wi8_ai16()``
  calibrated on the calibration batch (float32 I/O). More accurate than ``int8`` where
  activation ranges are wide; LiteRT runs it on its built-in (non-XNNPACK) kernels, so it is
  slower than ``int8`` on the CPU.

The graph has the card's fixed batch size (usually 1); :class:`LiteRtRuntime` feeds larger
batches in chunks. Inputs are NCHW as exported by litert-torch; an NHWC input tensor
(H×W×3 last) is handled by transposing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError
from optim.model_card import ModelCard
from optim.runtimes.artifact import Artifact
from optim.runtimes.base import Runtime
from optim.runtimes.device_tool import DeviceReader, DeviceTool, ToolCall, ToolOutput
from optim.runtimes.spec import ExportOutput
from optim.runtimes.spec import FormatSpec

FORMAT = "tflite"
SCHEMES = ("fp32", "fp16", "int8", "int8-dynamic", "int8-weight", "int4-weight", "int16x8")
#: schemes made by ai-edge-quantizer on the FP32 flatbuffer: scheme → (recipe function, needs calibration);
#: a name in ``ai_edge_quantizer.recipe`` or one of :data:`OWN_RECIPES`
AEQ_SCHEMES = {"int8-weight": ("weight_only_wi8_afp32", False), "int4-weight": ("weight_only_wi8_fc_wi4_afp32", False),
               "int16x8": ("static_wi8_ai16", True)}
CALIBRATED_SCHEMES = ("int8", "int16x8")
#: integer I/O tensor types the runtime quantizes/dequantizes with the tensor's scale and zero point
QUANTIZED_IO = (np.int8, np.uint8, np.int16)
LIBRARIES = ("torch", "torchao", "litert-torch", "litert-converter", "ai-edge-litert", "ai-edge-quantizer")
MODEL_FILE = "model.tflite"


@contextlib.contextmanager
def litert_module_name_filter():
    """litert-torch 0.10's own module-name filter strips a ``"L__self___"`` prefix from the
    ``nn_module_stack`` keys (the old dynamo naming); ``torch.export`` in torch 2.13 writes keys
    like ``"L__self__features.0.0"``, so no name ever matches and per-module configs
    (``module_name_config``) are silently ignored — every layer gets quantized. While
    preparing, use torchao's ``get_module_name_filter`` instead (it matches the qualified names
    in the stack's values, as ExecuTorch's XNNPACKQuantizer does)."""
    import litert_torch.quantize.pt2e_quantizer as pq
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    name = "_get_module_name_filter"
    original = getattr(pq, name)
    setattr(pq, name, get_module_name_filter)
    try:
        yield
    finally:
        setattr(pq, name, original)


def _pt2e_quantize(model, card: ModelCard, calib: np.ndarray | None, dynamic: bool, float_layers: Sequence[str] = ()):
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from optim.runtimes.pt2e import keep_float, pt2e_prepare_and_calibrate

    quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
    keep_float(quantizer, float_layers)
    with litert_module_name_filter():
        graph = pt2e_prepare_and_calibrate(model, quantizer, card.input.shape, calib)
    graph = convert_pt2e(graph, fold_quantize=False)
    move_exported_model_to_eval(graph)
    return graph, quantizer


def _fp16_weights(fp32_path: Path, target: Path) -> None:
    from ai_edge_quantizer import qtyping, quantizer

    qt = quantizer.Quantizer(str(fp32_path))
    for op in (qtyping.TFLOperationName.CONV_2D, qtyping.TFLOperationName.DEPTHWISE_CONV_2D,
               qtyping.TFLOperationName.FULLY_CONNECTED):
        qt.update_quantization_recipe(
            regex=".*", operation_name=op, algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING,
            op_config=qtyping.OpQuantizationConfig(
                weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True),
        )
    result = qt.quantize(enable_progress_report=False)
    target.write_bytes(bytes(result.quantized_model))


def weight_only_wi8_fc_wi4_afp32():
    """ai-edge-quantizer recipe: weight-only INT8 (per channel) on every supported op, INT4 (per
    channel) on FULLY_CONNECTED; float32 activations and compute (the later config wins for
    FULLY_CONNECTED)."""
    from ai_edge_quantizer import qtyping, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=8)
    rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.FULLY_CONNECTED, num_bits=4)
    return rm.get_quantization_recipe()


#: weight-only schemes: what their weights are (recorded in the recipe of ``artifact.json``)
WEIGHT_ONLY_WEIGHTS = {"int8-weight": "int8 per-channel symmetric (DEQUANTIZE before each op)",
                       "int4-weight": "int4 per-channel symmetric for FULLY_CONNECTED, int8 per-channel for the rest "
                                      "(DEQUANTIZE before each op)"}

#: recipes optim composes itself from ai-edge-quantizer's RecipeManager
OWN_RECIPES = {"weight_only_wi8_fc_wi4_afp32": weight_only_wi8_fc_wi4_afp32}


def _aeq_quantize(fp32_path: Path, target: Path, scheme: str, calib: np.ndarray | None) -> dict[str, Any]:
    """``scheme`` in :data:`AEQ_SCHEMES`: ai-edge-quantizer's recipe on the FP32 flatbuffer,
    calibrated (signature inputs = the calibration images one at a time, in the graph's
    layout) when the recipe needs it."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    recipe_name, calibrated = AEQ_SCHEMES[scheme]
    make = OWN_RECIPES.get(recipe_name) or getattr(recipe, recipe_name)
    qt = quantizer.Quantizer(str(fp32_path), make())
    result = None
    if calibrated:
        if calib is None or len(calib) == 0:
            raise InputError(f"tflite {scheme}: static quantization needs calibration images (--calib DIR)")
        it = Interpreter(model_path=str(fp32_path))
        key = next(iter(it.get_signature_list()))
        runner = it.get_signature_runner(key)
        (name, detail), = runner.get_input_details().items()
        n0 = int(detail["shape"][0])
        nhwc = _is_nhwc(detail["shape"])
        samples = [calib[i : i + n0] for i in range(0, len(calib) - n0 + 1, n0)]
        data = {key: [{name: np.ascontiguousarray(x.transpose(0, 2, 3, 1) if nhwc else x)} for x in samples]}
        result = qt.calibrate(data, num_threads=1)
    target.write_bytes(bytes(qt.quantize(result, enable_progress_report=False).quantized_model))
    own = recipe_name in OWN_RECIPES
    return {"library": f"ai_edge_quantizer {'RecipeManager: ' if own else 'recipe.'}{recipe_name}()",
            **({"weight_only": True, "activations": "float32"} if scheme in WEIGHT_ONLY_WEIGHTS else {}),
            **({"weights": WEIGHT_ONLY_WEIGHTS[scheme]} if scheme in WEIGHT_ONLY_WEIGHTS else {}),
            "calibration_images": len(calib) if calibrated and calib is not None else None}


def _tensor_spec(d: dict[str, Any], head: str | None = None) -> dict[str, Any]:
    scale, zp = d["quantization"]
    s = {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
         "quantization": {"scale": float(scale), "zero_point": int(zp)} if scale else None}
    if head is None:
        s["layout"] = "NHWC" if _is_nhwc(d["shape"]) else "NCHW"
    else:
        s["head"] = head
    return s


def _is_nhwc(shape) -> bool:
    return len(shape) == 4 and shape[-1] == 3 and shape[1] != 3


def export(model, card: ModelCard, scheme: str, calib: np.ndarray | None, out_dir: Path, *,
           float_layers: Sequence[str] = ()) -> ExportOutput:
    """Export ``model`` (FP32 eval ``nn.Module``) to ``out_dir/model.tflite`` under ``scheme``.

    ``calib``: float32 N×C×H×W calibration batch, required for ``int8``.
    ``float_layers``: qualified module names the PT2E schemes (``int8``, ``int8-dynamic``)
    leave unannotated (:func:`optim.runtimes.pt2e.keep_float`): they lower to float
    CONV_2D / FULLY_CONNECTED ops between DEQUANTIZE and QUANTIZE.
    """
    import litert_torch
    import torch

    litert_torch.config.show_progress = False
    if scheme not in SCHEMES:
        raise InputError(f"tflite: unknown scheme {scheme!r}; supported: {', '.join(SCHEMES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / MODEL_FILE
    sample = (torch.zeros(card.input.shape),)
    recipe: dict[str, Any] = {"exporter": "litert_torch.convert", "batch": card.input.shape[0]}
    if scheme in AEQ_SCHEMES:
        if float_layers:
            raise InputError(f"tflite {scheme}: --float-layers is not supported for this scheme yet "
                             "(it applies to int8 and int8-dynamic)")
        fp32_path = out_dir / ".fp32.tflite"
        litert_torch.convert(model, sample).export(str(fp32_path))
        try:
            recipe["quantization"] = _aeq_quantize(fp32_path, target, scheme, calib)
        finally:
            fp32_path.unlink(missing_ok=True)
    elif scheme in ("fp32", "fp16"):
        edge = litert_torch.convert(model, sample)
        if scheme == "fp32":
            edge.export(str(target))
        else:
            fp32_path = out_dir / ".fp32.tflite"
            edge.export(str(fp32_path))
            try:
                _fp16_weights(fp32_path, target)
            finally:
                fp32_path.unlink(missing_ok=True)
            recipe["quantization"] = {"library": "ai_edge_quantizer FLOAT_CASTING", "weights": "float16 (conv, depthwise conv, fully connected)",
                                      "compute": "float32"}
    else:
        from litert_torch.quantize.quant_config import QuantConfig

        dynamic = scheme == "int8-dynamic"
        if not dynamic and (calib is None or len(calib) == 0):
            raise InputError("tflite int8: static INT8 needs calibration images (--calib DIR)")
        graph, quantizer = _pt2e_quantize(model, card, None if dynamic else calib, dynamic, float_layers)
        litert_torch.convert(graph, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(target))
        recipe["quantization"] = {
            "library": "torchao PT2E + litert_torch PT2EQuantizer", "weights": "int8 per-channel symmetric",
            "activations": "int8 per-tensor, computed at run time" if dynamic else "int8 per-tensor (histogram observer)",
            "calibration_images": None if dynamic else len(calib),
        }
        if float_layers:
            recipe["quantization"]["float_layers"] = list(float_layers)
    inputs, outputs = tensor_specs(target, card)
    return ExportOutput(files=[MODEL_FILE], inputs=inputs, outputs=outputs, recipe=recipe)


def tensor_specs(model_path: Path, card: ModelCard) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Input/output tensor specs of the ``.tflite`` at ``model_path`` (read with the interpreter)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model_path))
    heads = [h.name for h in card.heads]
    return ([_tensor_spec(d) for d in it.get_input_details()],
            [_tensor_spec(d, heads[i] if i < len(heads) else None) for i, d in enumerate(_ordered_outputs(it))])


def _ordered_outputs(it) -> list[dict[str, Any]]:
    """Output tensor details in the model's output order (signature ``output_0, output_1, …``)."""
    sigs = it.get_signature_list()
    if sigs:
        runner = it.get_signature_runner(next(iter(sigs)))
        details = runner.get_output_details()
        key = lambda n: int(m.group(1)) if (m := re.search(r"(\d+)$", n)) else 0  # noqa: E731
        return [details[n] for n in sorted(details, key=key)]
    return list(it.get_output_details())


class LiteRtRuntime(Runtime):
    """The ai-edge-litert interpreter (built-in CPU kernels + default XNNPACK delegate).

    ``threads`` is passed as ``num_threads``. INT8/UINT8/INT16 input tensors (``int8``,
    ``int16x8``) are fed ``clip(round(x / scale) + zero_point)``; such outputs are returned as
    ``(q - zero_point) * scale`` (float32).
    """

    format = FORMAT

    def __init__(self, artifact: Artifact, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(artifact.card, threads)
        self.artifact = artifact
        path = artifact.require_file(MODEL_FILE)
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = _ordered_outputs(self.interpreter)[: len(self.card.heads)]
        self.nhwc = _is_nhwc(self.input["shape"])
        self.max_batch = int(self.input["shape"][0])

    @staticmethod
    def _quantize(x: np.ndarray, d: dict[str, Any]) -> np.ndarray:
        if d["dtype"] in QUANTIZED_IO:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(d["dtype"])
        return x.astype(d["dtype"], copy=False)

    @staticmethod
    def _dequantize(y: np.ndarray, d: dict[str, Any]) -> np.ndarray:
        if d["dtype"] in QUANTIZED_IO:
            scale, zp = d["quantization"]
            return (y.astype(np.float32) - zp) * np.float32(scale)
        return y.astype(np.float32, copy=False)

    def _predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n = len(batch)
        if n < self.max_batch:
            batch = np.concatenate([batch, np.zeros((self.max_batch - n, *batch.shape[1:]), batch.dtype)])
        if self.nhwc:
            batch = batch.transpose(0, 2, 3, 1)
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(self._quantize(batch, self.input)))
        self.interpreter.invoke()
        return {h.name: self._dequantize(self.interpreter.get_tensor(d["index"]), d)[:n]
                for h, d in zip(self.card.heads, self.outputs)}


def open_artifact(artifact: Artifact, threads: int | None = None) -> LiteRtRuntime:
    """Open a TFLite artifact on the ai-edge-litert interpreter."""
    return LiteRtRuntime(artifact, threads)


# ---- QAT ----------------------------------------------------------------------------------
def lower_qat(converted, card: ModelCard, quantizer, out_dir: Path) -> ExportOutput:
    """A QAT-converted PT2E graph (litert quantizer) → ``model.tflite`` (litert-torch with the
    same PT2E quantizer)."""
    import litert_torch
    import torch
    from litert_torch.quantize.quant_config import QuantConfig

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    edge = litert_torch.convert(converted, (torch.zeros(card.input.shape),), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(out_dir / MODEL_FILE))
    inputs, outputs = tensor_specs(out_dir / MODEL_FILE, card)
    return ExportOutput(files=[MODEL_FILE], inputs=inputs, outputs=outputs, recipe={
        "lowering": "litert_torch.convert(quant_config=QuantConfig(pt2e_quantizer=PT2EQuantizer(is_qat=True)))",
        "file": MODEL_FILE})


# ---- on-device tool: benchmark_model -------------------------------------------------------
def benchmark_model_command(call: ToolCall) -> list[str]:
    """LiteRT ``benchmark_model`` with the warm-up/timed counts fixed (no time limits) and
    peak-memory reporting on."""
    return [call.tool, f"--graph={call.model}", f"--num_threads={call.threads}", f"--warmup_runs={call.warmup}",
            "--warmup_min_secs=0", f"--num_runs={call.runs}", "--min_secs=0", "--max_secs=3600",
            "--report_peak_memory_footprint=true"]


def parse_benchmark_model_output(text: str, call: ToolCall, read: DeviceReader) -> ToolOutput:
    """Aggregates of the timed phase (see :func:`optim.runtimes.tool_parsers.parse_benchmark_model`)."""
    from optim.runtimes.tool_parsers import parse_benchmark_model

    return parse_benchmark_model(text)


SPEC = FormatSpec(
    name=FORMAT, suffix=".tflite", model_file=MODEL_FILE, schemes=SCHEMES, libraries=LIBRARIES,
    export=export, open_runtime=open_artifact, tensor_specs=tensor_specs,
    runtime_modules=("ai_edge_litert.interpreter",),
    qat_backend="litert", lower_qat=lower_qat,
    qat_libraries=("torch", "torchao", "litert-torch", "litert-converter", "ai-edge-litert"),
    calibrated_schemes=CALIBRATED_SCHEMES, size_schemes=tuple(WEIGHT_ONLY_WEIGHTS),
    device_tool=DeviceTool("benchmark_model", benchmark_model_command, parse_benchmark_model_output,
                           description="LiteRT/TFLite benchmark_model (arm64-v8a) for .tflite."),
    description="TFLite / LiteRT (ai-edge-litert interpreter)",
)
