"""QAT: PT2E fake-quant training distilled from the FP32 checkpoint, INT8 artifacts per format."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from optim.cli.main import cli
from optim.errors import InputError
from optim.optimize.distillation import DistillConfig
from optim.optimize.finetune import FinetuneConfig
from optim.optimize.ptq import STATUS_COLLAPSED, STATUS_OK
from optim.optimize.qat import quantize_qat
from optim.runtimes.artifact import Artifact
from train_split import write_mnist_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_mnist_split(tmp_path_factory.mktemp("train"), range(0, 5000, 125))  # 40 digits


def _cfg(**kw):
    return FinetuneConfig(epochs=1, batch_size=16, lr=1e-4, max_steps=2, distill=DistillConfig(0.5, 4.0), **kw)


def _exported_and_ran(status: str, check: dict | None, artifact: str | None) -> bool:
    """The fixture's resnet18 has random weights, so its logits are near-uniform and INT8's top-1
    agreement with FP32 says nothing about QAT: quantize's collapse flag (agreement significantly
    below 0.90, exit 1) may fire, and counts here as exported-and-ran when the artifact was written
    and its agreement measured (as in tests/test_quantize_matrix.py). The flag itself is tested on a
    model that collapses deterministically (tests/test_mixed_precision.py)."""
    return status == STATUS_OK or (status == STATUS_COLLAPSED and artifact is not None and check is not None
                                   and check.get("top1_agreement") is not None)


@pytest.mark.slow
def test_qat_onnx_artifact(resnet18_ckpt, split, tmp_path):
    res = quantize_qat(resnet18_ckpt, train=split, formats="onnx", config=_cfg(), out=tmp_path / "a", progress=False)
    (r,) = res.results
    assert _exported_and_ran(r.status, r.check, r.artifact_dir), (r.status, r.error)
    assert res.exit_code == (1 if r.status == STATUS_COLLAPSED else 0)
    art = Artifact.load(r.artifact_dir)
    assert art.format == "onnx" and art.scheme == "int8"
    assert art.metadata["recipe"]["method"] == "qat" and art.metadata["recipe"]["training"]["steps"] == 2
    assert 0 < art.size_mb < 0.4 * 44.7  # INT8 weights: about a quarter of resnet18's 44.7 MB FP32
    # checked on its host runtime against the FP32 teacher
    assert art.metadata["checks"]["n_inputs"] == 40 and art.metadata["checks"]["max_abs_error"] < 5.0
    import onnx

    ops = {n.op_type for n in onnx.load(str(art.dir / "model.onnx"), load_external_data=False).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    log = (tmp_path / "a" / "qat-xnnpack.run" / "run_log.jsonl").read_text().splitlines()
    assert json.loads(log[0])["event"] == "start" and any('"grad_health"' in line for line in log)


def test_qat_refuses_golden_and_needs_train(resnet18_ckpt, split, tmp_path):
    with pytest.raises(InputError, match="golden set"):
        quantize_qat(resnet18_ckpt, train=split, golden=split, formats="onnx", config=_cfg(), out=tmp_path)
    r = CliRunner().invoke(cli, ["quantize", str(resnet18_ckpt), "--method", "qat", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--train" in r.output


@pytest.mark.slow
def test_qat_all_formats_cli(resnet18_ckpt, split, tmp_path):
    r = CliRunner().invoke(cli, ["quantize", str(resnet18_ckpt), "--method", "qat", "--train", str(split), "--batch-size", "16",
                                 "--out", str(tmp_path / "q"), "--json"])
    rep = json.loads(r.stdout)
    by_fmt = {x["format"]: x for x in rep["results"]}
    assert set(by_fmt) == {"onnx", "tflite", "pte"}
    assert all(_exported_and_ran(x["status"], x["check"], x["artifact"]) for x in by_fmt.values()), \
        {k: (v["status"], v["error"]) for k, v in by_fmt.items()}
    assert r.exit_code == (1 if any(x["status"] == STATUS_COLLAPSED for x in by_fmt.values()) else 0)
    for x in by_fmt.values():
        assert 0 < x["size_mb"] < 0.4 * 44.7
    assert set(rep["training"]) == {"xnnpack", "litert"}
