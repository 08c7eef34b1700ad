"""`optim verify --device pixel6a` on the real Android benchmark path, against the TEST
DOUBLE of `adb` (tests/doubles/adb_test_double.py, see tests/test_bench_android.py): no phone
is attached here. The double answers as a Pixel 6a running LiteRT's benchmark_model; accuracy
comes from a hand-made EvalReport dict (the model file is never run)."""

from __future__ import annotations

import os

import pytest

from gate_inputs import eval_report
from optim.gate.policy import Policy
from optim.gate.verify import verify
from test_bench_android import AdbDouble, fake_arm64_elf
from test_gate_publish import make_artifact


@pytest.fixture
def phone(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from optim.cli.main import cli

    adb = AdbDouble(tmp_path, monkeypatch)
    tools = tmp_path / "android-tools"
    tools.mkdir()
    res = CliRunner().invoke(cli, ["devices", "setup", "--benchmark-model", str(fake_arm64_elf(tools / "benchmark_model"))])
    assert res.exit_code == 0, res.output
    art = make_artifact(tmp_path, "tflite-int8", payload=b"TFL3" + os.urandom(256))
    (tmp_path / "golden").mkdir()
    (tmp_path / "model.pt").write_bytes(b"ref")
    return adb, art, tmp_path


def gate(tmp, art, p95_budget, out=None):
    pol = Policy.from_dict({"defaults": {"required_devices": ["pixel6a"], "max_top1_drop_pts": 1.0},
                            "targets": {"tflite-*": {"p95_ms": {"pixel6a": p95_budget}}}})
    return verify([art], tmp / "golden", devices=["pixel6a"], policy=pol, reference=tmp / "model.pt", out=out,
                  runs=20, warmup=2, trials=2, cooldown_s=0, evaluate_fn=lambda *a, **k: eval_report())


def test_pixel6a_p95_judged_against_budget(phone):
    adb, art, tmp = phone
    ok = gate(tmp, art, 45.0, out=tmp / "v")
    c = {c["id"]: c for c in ok.report["artifacts"][0]["checks"]}["p95[pixel6a]"]
    bench = ok.report["artifacts"][0]["bench"]["pixel6a"]
    assert bench["device"]["name"] == "pixel6a" and bench["device"]["serial"] == "28011JEGR09914"
    assert c["status"] == "pass" and c["measured"] == bench["latency_ms"]["p95"]
    assert 10 < c["measured"] < 30  # the double's latencies are about 12.5 ms
    assert ok.exit_code == 0
    assert "p95 latency [pixel6a]" in (tmp / "v" / "verify.md").read_text()
    # the same phone and numbers against a 5 ms budget
    bad = gate(tmp, art, 5.0)
    c = {c["id"]: c for c in bad.report["artifacts"][0]["checks"]}["p95[pixel6a]"]
    assert c["status"] == "fail" and c["margin"] < 0 and bad.exit_code == 1


def test_old_benchmark_model_without_percentiles_fails_closed(phone):
    adb, art, tmp = phone
    adb.fault("old-benchmark-model")  # prints avg/std only: p95 unavailable, never estimated
    res = gate(tmp, art, 45.0)
    c = {c["id"]: c for c in res.report["artifacts"][0]["checks"]}["p95[pixel6a]"]
    assert c["status"] == "fail" and "no per-iteration times" in c["reason"] and res.exit_code == 1


@pytest.mark.parametrize("fault", ["no-devices", "unauthorized", "tool-crash"])
def test_phone_problems_are_infrastructure_errors(phone, fault):
    adb, art, tmp = phone
    adb.fault(fault)
    res = gate(tmp, art, 45.0)
    c = {c["id"]: c for c in res.report["artifacts"][0]["checks"]}["p95[pixel6a]"]
    assert c["status"] == "error" and c["reason"].startswith("benchmark on pixel6a failed")
    assert res.verdict == "error" and res.exit_code == 3
