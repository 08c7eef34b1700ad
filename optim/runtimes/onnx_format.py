"""ONNX: export with ``torch.onnx.export`` (dynamo), INT8 as QDQ through NNCF's ONNX backend,
and the ONNX Runtime (CPU execution provider) host runtime.

Schemes:

* ``fp32`` — ``torch.onnx.export(dynamo=True)``, dynamic batch dimension; large weights go
  to an external-data file ``model.onnx.data`` next to ``model.onnx`` (both are artifact files);
* ``fp16`` — the FP32 graph converted by ``onnxruntime.transformers.float16`` with float32
  inputs/outputs kept (``keep_io_types``), so callers still feed float32;
* ``int8`` — static PTQ, ``nncf.quantize`` on the ONNX model: QuantizeLinear/DequantizeLinear
  (QDQ) pairs, per-channel symmetric INT8 weights, per-tensor activations calibrated on the
  calibration batch (NNCF defaults, preset PERFORMANCE, fast bias correction);
* ``int8-dynamic`` — ``onnxruntime.quantization.quantize_dynamic``: per-channel INT8 weights,
  activations quantized at run time (DynamicQuantizeLinear + ConvInteger/MatMulInteger);
* ``int8-weight`` — weight-only INT8 (a size budget at FP32 accuracy, no calibration):
  ``nncf.compress_weights(mode=INT8_SYM)`` on the FP32 graph: every Conv/Gemm weight becomes an
  INT8 initializer (per output channel, symmetric) behind a ``DequantizeLinear``; activations
  stay float32;
* ``int4-weight`` — weight-only INT4 block-wise for the MatMul/Gemm layers (classifier heads):
  ``nncf.compress_weights(mode=INT4_SYM, group_size=32, all_layers=True, ratio=1)``; NNCF
  writes each Gemm as ONNX Runtime's contrib ``MatMulNBits`` (4-bit weights, one float scale per
  block of 32 input channels; opset < 21 has no block-wise DequantizeLinear); Conv weights get
  the backup mode, INT8 per-channel symmetric as in ``int8-weight``. A layer whose input width
  is not a multiple of 32 gets the largest power-of-two block ≥ 32 that divides it, else INT8.

What ONNX Runtime runs for the weight-only schemes (measured, mobilenet_v3_large, CPU EP): by
default it keeps each weight ``DequantizeLinear`` in the graph and dequantizes on every run
(2–3× slower than FP32). :class:`OnnxRuntime` therefore opens a weight-only graph (one with
DequantizeLinear but no QuantizeLinear, :func:`is_weight_only`) with the session option
``session.disable_quant_qdq = 1``, under which ONNX Runtime's constant folding dequantizes the
weights once at load: FP32 Conv/Gemm kernels, FP32 speed and memory, INT8/INT4 size on disk.
``MatMulNBits`` is a kernel of its own (4-bit weights dequantized block-wise inside the GEMM).
"""

from __future__ import annotations

import shutil
import tempfile
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

FORMAT = "onnx"
SCHEMES = ("fp32", "fp16", "int8", "int8-dynamic", "int8-weight", "int4-weight")
#: weight-only schemes (``nncf.compress_weights``): scheme → (CompressWeightsMode name, group size or None)
WEIGHT_ONLY_SCHEMES = {"int8-weight": ("INT8_SYM", None), "int4-weight": ("INT4_SYM", 32)}
LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "nncf")
MODEL_FILE = "model.onnx"
OPSET = 18

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16"}


def _export_fp32(model, card: ModelCard, path: Path) -> dict[str, Any]:
    """torch.onnx.export (dynamo) to ``path`` with a dynamic batch dimension; weights may be
    written to ``<path>.data``. Falls back to a static batch if the dynamic export fails."""
    import torch

    sample = torch.zeros(card.input.shape, dtype=torch.float32)
    names = dict(input_names=[card.input.name], output_names=[h.name for h in card.heads])
    try:
        torch.onnx.export(model, (sample,), str(path), dynamo=True, opset_version=OPSET, optimize=True,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), verbose=False, **names)
        dynamic = True
    except Exception:
        for p in path.parent.iterdir():
            p.unlink()
        torch.onnx.export(model, (sample,), str(path), dynamo=True, opset_version=OPSET, optimize=True, verbose=False, **names)
        dynamic = False
    return {"exporter": "torch.onnx.export(dynamo=True, optimize=True)", "opset": OPSET, "dynamic_batch": dynamic}


def tensor_specs(model_path: Path, card: ModelCard) -> tuple[list[dict], list[dict]]:
    """Input/output tensor specs of the ONNX model at ``model_path`` (external data not loaded)."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)

    def spec(v, head: str | None = None) -> dict[str, Any]:
        tt = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
        s = {"name": v.name, "shape": shape, "dtype": _ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type)), "quantization": None}
        if head is not None:
            s["head"] = head
        else:
            s["layout"] = "NCHW"
        return s

    heads = {h.name for h in card.heads}
    return [spec(v) for v in m.graph.input], [spec(v, v.name if v.name in heads else None) for v in m.graph.output]


NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def onnx_nodes_of_layers(onnx_model, scopes: dict[str, Sequence[str]], weighted: dict[str, bool] | None = None) -> list[str]:
    """Names of the ONNX nodes that belong to the float layers: nodes whose
    ``pkg.torch.onnx.name_scopes`` metadata (written by ``torch.onnx.export(dynamo=True)``: the
    module path of the FX node, e.g. ``['', 'features', 'features.0', 'features.0.1', ...]``)
    contains one of a layer's scopes. ``scopes``: ``{float layer: (its name, the BatchNorms
    folded into its convolutions)}`` (:func:`optim.runtimes.layers.expand_float_layers`);
    ``weighted``: ``{float layer: whether it holds a Conv/Linear module}``.

    Raises RuntimeError if a float layer maps to no node of the graph, or a layer holding a
    Conv/Linear module to no Conv/Gemm/MatMul (fail closed: it would silently be quantized)."""
    import ast

    weighted = weighted or {}
    owner = {s: f for f, ss in scopes.items() for s in ss}
    names: list[str] = []
    hit: set[str] = set()
    seen: set[str] = set()
    for node in onnx_model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if NAME_SCOPES_KEY not in meta:
            continue
        try:
            path = set(ast.literal_eval(meta[NAME_SCOPES_KEY]))
        except (ValueError, SyntaxError):
            continue
        found = path & owner.keys()
        if found:
            names.append(node.name)
            seen |= {owner[s] for s in found}
            if node.op_type in WEIGHTED_OPS:
                hit |= {owner[s] for s in found}
    missing = [f for f in scopes if f not in seen or (weighted.get(f) and f not in hit)]
    if missing:
        raise RuntimeError(f"float layers {', '.join(missing)} map to no (Conv/Gemm/MatMul) operator in the exported "
                           f"ONNX graph (looked up by the exporter's {NAME_SCOPES_KEY} metadata)")
    return names


def export(model, card: ModelCard, scheme: str, calib: np.ndarray | None, out_dir: Path, *,
           float_layers: Sequence[str] = ()) -> ExportOutput:
    """Export ``model`` (FP32 eval ``nn.Module``) as ONNX under ``scheme`` into ``out_dir``.

    ``calib``: float32 N×C×H×W calibration batch, required for ``int8``.
    ``float_layers``: qualified module names kept in float by ``int8`` (NNCF ``IgnoredScope``
    of their ONNX nodes: no QDQ on their weights or inputs) and ``int8-dynamic``
    (``nodes_to_exclude``); see :func:`onnx_nodes_of_layers`.
    Raises :class:`InputError` for an unknown scheme or missing calibration; library errors
    propagate (the caller wraps them in :class:`optim.runtimes.registry.ExportFailed`).
    """
    import onnx

    if scheme not in SCHEMES:
        raise InputError(f"onnx: unknown scheme {scheme!r}; supported: {', '.join(SCHEMES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / MODEL_FILE
    with tempfile.TemporaryDirectory(prefix="optim-onnx-") as tmp:
        fp32_path = Path(tmp) / MODEL_FILE
        recipe = _export_fp32(model, card, fp32_path)
        if scheme == "fp32":
            for p in Path(tmp).iterdir():  # model.onnx and its external data, if any
                shutil.move(str(p), out_dir / p.name)
        elif scheme == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            m16 = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
            onnx.save(m16, str(target))
            recipe["quantization"] = "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)"
        elif scheme == "int8":
            if calib is None or len(calib) == 0:
                raise InputError("onnx int8: static INT8 needs calibration images (--calib DIR)")
            import nncf
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

            batch = [calib[i : i + 1] for i in range(len(calib))]
            dataset = nncf.Dataset(batch, lambda x: {card.input.name: x})
            # Per-tensor activations stated explicitly: NNCF's CPU hardware config otherwise may
            # pick per-channel activation quantizers in front of depthwise convolutions
            # (mobilenet_v2/v3 after ReLU6/Clip), which ONNX Runtime's QLinearConv rejects
            # ("input zero point must be a scalar or 1D tensor of size 1").
            advanced = AdvancedQuantizationParameters(
                weights_quantization_params=QuantizationParameters(per_channel=True),
                activations_quantization_params=QuantizationParameters(per_channel=False),
            )
            fp32_model = onnx.load(str(fp32_path))
            ignored = _ignored_nodes(model, card, fp32_model, float_layers)
            q = nncf.quantize(fp32_model, dataset, subset_size=len(batch), advanced_parameters=advanced,
                              ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None)
            onnx.save(q, str(target))
            recipe["quantization"] = {
                "library": "nncf.quantize (ONNX backend)", "format": "QDQ", "weights": "int8 per-channel symmetric",
                "activations": "int8 per-tensor (preset PERFORMANCE)", "subset_size": len(batch),
                "fast_bias_correction": True,
            }
            if float_layers:
                recipe["quantization"]["float_layers"] = list(float_layers)
                recipe["quantization"]["ignored_scope"] = f"nncf.IgnoredScope(names=[{len(ignored)} ONNX nodes])"
        elif scheme in WEIGHT_ONLY_SCHEMES:
            fp32_model = onnx.load(str(fp32_path))
            ignored = _ignored_nodes(model, card, fp32_model, float_layers)
            q, recipe["quantization"] = _compress_weights(fp32_model, scheme, ignored)
            onnx.save(q, str(target))
            if float_layers:
                recipe["quantization"]["float_layers"] = list(float_layers)
        else:  # int8-dynamic
            from onnxruntime.quantization import QuantType, quantize_dynamic

            excluded = _ignored_nodes(model, card, onnx.load(str(fp32_path), load_external_data=False), float_layers)
            quantize_dynamic(str(fp32_path), str(target), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=excluded or None)
            recipe["quantization"] = {
                "library": "onnxruntime.quantization.quantize_dynamic", "weights": "int8 per-channel",
                "activations": "uint8 per-tensor, computed at run time",
            }
            if float_layers:
                recipe["quantization"]["float_layers"] = list(float_layers)
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file() and p.name != "artifact.json")
    inputs, outputs = tensor_specs(target, card)
    return ExportOutput(files=files, inputs=inputs, outputs=outputs, recipe=recipe)


def _compress_weights(fp32_model, scheme: str, ignored: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """Weight-only compression of an FP32 ONNX model with ``nncf.compress_weights`` (data-free,
    round to nearest); returns (model, recipe). See the module docstring for the two schemes."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    mode, group = WEIGHT_ONLY_SCHEMES[scheme]
    kwargs: dict[str, Any] = {}
    if group is not None:
        kwargs = dict(group_size=group, ratio=1.0, all_layers=True, backup_mode=nncf.BackupMode.INT8_SYM,
                      advanced_parameters=AdvancedCompressionParameters(
                          group_size_fallback_mode=GroupSizeFallbackMode.ADJUST))
    q = nncf.compress_weights(fp32_model, mode=getattr(nncf.CompressWeightsMode, mode),
                              ignored_scope=nncf.IgnoredScope(names=list(ignored)) if ignored else None, **kwargs)
    fixed = per_axis_scales_to_1d(q)
    ops = {n.op_type for n in q.graph.node}
    recipe: dict[str, Any] = {
        "library": f"nncf.compress_weights(mode={mode}" + (f", group_size={group}, all_layers=True, ratio=1.0, "
                                                           "backup_mode=INT8_SYM)" if group else ")"),
        "weight_only": True, "activations": "float32",
        "weights": ("int4 symmetric, block-wise (32 input channels a scale) for MatMul/Gemm (MatMulNBits); "
                    "int8 per-channel symmetric for Conv" if group else "int8 per-channel symmetric (DequantizeLinear)"),
        "int4_matmuls": sum(n.op_type == "MatMulNBits" for n in q.graph.node),
        "int8_weights": sum(n.op_type == "DequantizeLinear" for n in q.graph.node),
        "scales_reshaped_to_1d": fixed,
    }
    if "QuantizeLinear" in ops:  # fail closed: weight-only must not quantize activations
        raise RuntimeError(f"onnx {scheme}: nncf.compress_weights wrote QuantizeLinear nodes (activation quantization)")
    return q, recipe


def per_axis_scales_to_1d(onnx_model) -> int:
    """Reshape per-axis ``DequantizeLinear`` scales / zero points of shape C×1×…×1 to C (in
    place); returns how many were reshaped. Why: NNCF 3.4's ONNX weight compression keeps the
    reduced axes of a Conv weight's scale (960×1×1 for a 960×160×1×1 weight), which ONNX (and
    ONNX Runtime: "For per axis quantization, scale must be 1D tensor") rejects at run time."""
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx_model.graph.initializer}
    done: set[str] = set()
    for node in onnx_model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        for name in node.input[1:3]:
            t = inits.get(name)
            if t is None or name in done or len(t.dims) < 2 or any(d != 1 for d in t.dims[1:]):
                continue
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).reshape(-1), name))
            done.add(name)
    return len(done)


def is_weight_only(onnx_model) -> bool:
    """True for a weight-only quantized graph: DequantizeLinear (of constant weights) or
    MatMulNBits nodes and no QuantizeLinear / DynamicQuantizeLinear (activations stay float)."""
    ops = {n.op_type for n in onnx_model.graph.node}
    return bool(ops & {"DequantizeLinear", "MatMulNBits"}) and not ops & {"QuantizeLinear", "DynamicQuantizeLinear"}


def _ignored_nodes(model, card: ModelCard, onnx_model, float_layers: Sequence[str]) -> list[str]:
    if not float_layers:
        return []
    from optim.runtimes.layers import expand_float_layers, quantizable_layers

    convs = quantizable_layers(model)
    weighted = {f: any(q == f or q.startswith(f + ".") for q in convs) for f in float_layers}
    return onnx_nodes_of_layers(onnx_model, expand_float_layers(model, float_layers, card.input.shape), weighted)


class OnnxRuntime(Runtime):
    """ONNX Runtime, CPU execution provider. ``threads`` sets intra-op threads (inter-op 1).
    A weight-only graph (:func:`is_weight_only`) is opened with ``session.disable_quant_qdq = 1``
    so that its weights are dequantized once at load (see the module docstring)."""

    format = FORMAT

    def __init__(self, artifact: Artifact, threads: int | None = None):
        import onnxruntime as ort

        super().__init__(artifact.card, threads)
        self.artifact = artifact
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        model_path = artifact.require_file(MODEL_FILE)
        import onnx

        self.weight_only = is_weight_only(onnx.load(str(model_path), load_external_data=False))
        if self.weight_only:
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        batch_dim = self.session.get_inputs()[0].shape[0]
        self.max_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        names = [o.name for o in self.session.get_outputs()]
        heads = [h.name for h in self.card.heads]
        # outputs are named after the heads at export; fall back to card order
        self.output_names = heads if all(h in names for h in heads) else names[: len(heads)]

    def _predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n = len(batch)
        if self.max_batch and n < self.max_batch:  # fixed-batch graph: pad, then drop the padding
            batch = np.concatenate([batch, np.zeros((self.max_batch - n, *batch.shape[1:]), batch.dtype)])
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch)})
        return {h.name: np.asarray(o[:n], dtype=np.float32) for h, o in zip(self.card.heads, outs)}


def open_artifact(artifact: Artifact, threads: int | None = None) -> OnnxRuntime:
    """Open an ONNX artifact on ONNX Runtime (CPU)."""
    return OnnxRuntime(artifact, threads)


def sidecars(model_file: Path) -> list[Path]:
    """External-data files a bare ``.onnx`` file needs next to it (``model.onnx.data`` or
    ``model.data``)."""
    return [c for c in (model_file.with_name(model_file.name + ".data"), model_file.with_suffix(".data")) if c.is_file()]


# ---- QAT ----------------------------------------------------------------------------------
def activations_to_uint8(onnx_model) -> int:
    """Re-express INT8 activation QuantizeLinear/DequantizeLinear pairs as UINT8 (zero point + 128,
    same scale: the dequantized values are identical), in place; weights (DequantizeLinear of an
    INT8 initializer) stay INT8. Returns the number of Q/DQ nodes changed.

    Why (issue 13, the QAT ONNX slowdown): PT2E's XNNPACK quantizer emits INT8 activations. ONNX
    Runtime's CPU EP fuses QDQ into QLinearConv/QLinearAdd with UINT8 activations × INT8 weights
    and converts INT8 activation pairs to UINT8 itself (``QDQS8ToU8Transformer``) only where a
    QuantizeLinear feeds a single DequantizeLinear. A tensor read twice — a residual block's
    input, read by its first convolution and by the skip Add — has one Q with (after ORT makes
    one DQ per consumer) two DQs: it stays INT8 and both readers run as float Conv/Add between
    DQ and Q. Measured on resnet18 (32×32): 9 of 20 Conv and 0 of 8 Add fused before, 20/20
    QLinearConv and 8/8 QLinearAdd after, like NNCF's PTQ graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx_model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    made: dict[str, str] = {}
    changed = 0
    for node in graph.node:
        activation = node.op_type == "QuantizeLinear" or (
            node.op_type == "DequantizeLinear" and node.input[0] in producer and producer[node.input[0]].op_type == "QuantizeLinear")
        if not activation or len(node.input) < 3 or node.input[2] not in inits:
            continue
        zp = node.input[2]
        if inits[zp].data_type != onnx.TensorProto.INT8:
            continue
        if zp not in made:
            shifted = numpy_helper.to_array(inits[zp]).astype(np.int16) + 128
            made[zp] = f"{zp}_uint8"
            graph.initializer.append(numpy_helper.from_array(shifted.astype(np.uint8), made[zp]))
        node.input[2] = made[zp]
        changed += 1
    quantized = {n.output[0] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[2] in made.values()}
    for vi in graph.value_info:
        if vi.name in quantized:
            vi.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    return changed


def lower_qat(converted, card: ModelCard, quantizer, out_dir: Path) -> ExportOutput:
    """A QAT-converted PT2E graph (XNNPACK quantizer) → ``model.onnx`` with QDQ pairs
    (``torch.onnx.export``, dynamo): the learnt scales become QuantizeLinear/DequantizeLinear."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    import onnx

    with tempfile.TemporaryDirectory(prefix="optim-onnx-qat-") as tmp:
        raw = Path(tmp) / MODEL_FILE
        torch.onnx.export(converted, (torch.zeros(card.input.shape),), str(raw), dynamo=True,
                          opset_version=OPSET, input_names=[card.input.name], output_names=[h.name for h in card.heads],
                          verbose=False)
        model = onnx.load(str(raw))
        changed = activations_to_uint8(model)
        onnx.save(model, str(out_dir / MODEL_FILE))
    inputs, outputs = tensor_specs(out_dir / MODEL_FILE, card)
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return ExportOutput(files=files, inputs=inputs, outputs=outputs, recipe={
        "lowering": "torch.onnx.export(dynamo=True, opset 18): quantized_decomposed ops → QuantizeLinear/DequantizeLinear; "
                    "activation Q/DQ re-expressed as UINT8 (activations_to_uint8) so that ONNX Runtime fuses every "
                    "QLinearConv/QLinearAdd",
        "uint8_activation_nodes": changed, "file": MODEL_FILE})


# ---- on-device tool: onnxruntime_perf_test --------------------------------------------------
def perf_test_command(call: ToolCall) -> list[str]:
    """``onnxruntime_perf_test -e cpu -m times -r N -x THREADS -s -I MODEL RESULT_FILE``."""
    return [call.tool, "-e", "cpu", "-m", "times", "-r", str(call.expected), "-x", str(call.threads), "-s", "-I",
            call.model, call.result_file]


def parse_perf_test(text: str, call: ToolCall, read: DeviceReader) -> ToolOutput:
    """The per-run result file first (per-iteration times); the ``-s`` summary on stdout when
    the file is missing (aggregates only, noted). Raises ToolRunError on unreadable output or
    fewer runs than asked."""
    from optim.runtimes.tool_parsers import parse_ort_perf_test, parse_ort_result_file

    result = read(f"cat {call.result_file}", "reading the onnxruntime_perf_test result file")
    if result and result.strip():
        out = parse_ort_result_file(result)
        if len(out.latencies_ms) < call.expected:  # type: ignore[arg-type]
            raise ToolRunError(f"onnxruntime_perf_test recorded {len(out.latencies_ms)} of {call.expected} runs")  # type: ignore[arg-type]
        if out.peak_memory_mb is None:
            out.peak_memory_mb = parse_ort_perf_test(text).peak_memory_mb
        return out
    out = parse_ort_perf_test(text)
    out.notes.append("onnxruntime_perf_test wrote no per-run result file: its own aggregate statistics were used "
                     "(warm-up runs not separable)")
    return out


SPEC = FormatSpec(
    name=FORMAT, suffix=".onnx", model_file=MODEL_FILE, schemes=SCHEMES, libraries=LIBRARIES,
    export=export, open_runtime=open_artifact, tensor_specs=tensor_specs, sidecars=sidecars,
    runtime_modules=("onnxruntime",), size_schemes=tuple(WEIGHT_ONLY_SCHEMES),
    qat_backend="xnnpack", lower_qat=lower_qat,
    qat_libraries=("torch", "torchao", "executorch", "onnx", "onnxscript", "onnxruntime"),
    device_tool=DeviceTool("onnxruntime_perf_test", perf_test_command, parse_perf_test,
                           description="onnxruntime_perf_test (arm64-v8a) for .onnx."),
    description="ONNX (ONNX Runtime, CPU execution provider)",
)
