"""Host benchmarks: real runtimes timed in-process (figures are never asserted, only their consistency)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import optim
from optim.cli.main import cli
from optim.errors import InputError


def _check_consistent(r, runs, trials):
    lat = r.latency
    assert r.runs == runs and r.trials == trials and len(r.trials_p95_ms) == trials
    assert 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p95 <= lat.p99 <= lat.max
    assert lat.min <= lat.mean <= lat.max and lat.std >= 0
    lo, hi = r.p95_ci_ms
    assert lo <= lat.p95 <= hi
    assert min(r.trials_p95_ms) <= lat.max
    assert r.unavailable == []
    assert "Hyndman & Fan type 7" in r.percentile_method


def test_host_bench_checkpoint(resnet18_ckpt):
    r = optim.bench(resnet18_ckpt, threads=1, runs=20, warmup=2, trials=2)
    _check_consistent(r, 20, 2)
    assert r.format == "torch" and r.device.name == "host" and r.device.kind == "host" and r.threads == 1
    # resnet18 weights alone are 11.2 M params × 4 B = 44.7 MB; a fresh process must see at least that
    assert r.peak_memory_mb is not None and r.peak_memory_mb > 40
    assert "fresh child process" in r.memory_method
    assert "1×3×32×32" in r.input_description
    d = r.to_dict()
    assert d["device"]["serial"] is None and d["latency_ms"]["p95"] == r.latency.p95


def test_warmup_is_run_untimed_and_threads_reach_the_runtime(resnet18_ckpt, monkeypatch):
    import optim.runtimes as runtimes

    calls = {"predict": 0, "threads": None}
    real_open = runtimes.open_runtime

    def counting_open(path, threads=None, **kw):
        rt = real_open(path, threads=threads, **kw)
        calls["threads"] = rt.threads
        inner = rt.predict

        def predict(x):
            assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
            calls["predict"] += 1
            return inner(x)

        rt.predict = predict
        return rt

    monkeypatch.setattr(runtimes, "open_runtime", counting_open)
    r = optim.bench(resnet18_ckpt, threads=2, runs=7, warmup=3, trials=2, measure_memory=False)
    assert r.peak_memory_mb is None and "peak_memory_mb" in r.unavailable
    assert calls == {"predict": 2 * (3 + 7), "threads": 2}
    assert len(r.trials_p95_ms) == 2 and r.runs == 7


def test_bad_arguments_are_input_errors(resnet18_ckpt, tmp_path):
    with pytest.raises(InputError, match="runs"):
        optim.bench(resnet18_ckpt, runs=0)
    with pytest.raises(InputError, match="trials"):
        optim.bench(resnet18_ckpt, trials=0)
    with pytest.raises(InputError, match="does not exist"):
        optim.bench(tmp_path / "missing.pt")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(InputError):
        optim.bench(tmp_path / "empty-dir")
    (tmp_path / "bare.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(InputError, match="bare .onnx file"):
        optim.bench(tmp_path / "bare.onnx")


def test_cli_table_json_and_several_artifacts(resnet18_ckpt, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["bench", str(resnet18_ckpt), "--threads", "1", "--runs", "10", "--warmup", "1", "--trials", "1",
                              "--no-memory"])
    assert res.exit_code == 0, res.stderr
    assert "p95" in res.stdout and "model.pt" in res.stdout and "host" in res.stdout
    out = tmp_path / "bench.json"
    res = runner.invoke(cli, ["bench", str(resnet18_ckpt), str(resnet18_ckpt), "--threads", "1", "--runs", "10",
                              "--warmup", "0", "--trials", "1", "--no-memory", "--json", "--output", str(out)])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert isinstance(data, list) and len(data) == 2
    assert json.loads(out.read_text()) == data
    assert all(d["schema_version"] == 1 and d["latency_ms"]["p95"] > 0 for d in data)
    res = runner.invoke(cli, ["bench", str(tmp_path / "nope.onnx")])
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = runner.invoke(cli, ["bench", str(resnet18_ckpt), "--runs", "0"])
    assert res.exit_code == 2


@pytest.mark.slow
def test_host_bench_real_artifacts_on_each_runtime(resnet18_ckpt, tmp_path):
    """Exports with `optim quantize` (issue 3) and benchmarks each artifact on its host runtime."""
    q = optim.quantize(resnet18_ckpt, formats="onnx,tflite,pte", scheme="fp32", out=tmp_path / "art")
    dirs = sorted(p for p in (tmp_path / "art").iterdir() if p.is_dir())
    assert {d.name for d in dirs} == {"onnx-fp32", "tflite-fp32", "pte-fp32"}, q
    for d in dirs:
        r = optim.bench(d, threads=1, runs=20, warmup=3, trials=2)
        _check_consistent(r, 20, 2)
        assert r.format == d.name.split("-")[0]
        assert r.peak_memory_mb is not None and r.peak_memory_mb > 20  # 44.7 MB of FP32 weights to map
