"""Several devices at once (issue 15): `optim.bench_devices` and `optim bench --device a --device b`
against two emulated phones of the adb TEST DOUBLE (tests/doubles/adb_test_double.py).

Concurrency is proven, not timed: the double's ADB_DOUBLE_RENDEZVOUS makes the first tool run of
each phone wait until the other phone has started its own first tool run, so a sequential
benchmark fails ("rendezvous timed out"); the recorded call spans must overlap as well.
Statistics are recomputed per serial from what the double printed (emitted.jsonl).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import optim
from optim.cli.main import cli
from optim.device_bench.errors import DeviceDisconnectedError, DeviceNotFoundError
from optim.errors import InputError
from test_bench_android import SERIAL, AdbDouble, fake_arm64_elf

LAB = "LAB-7"
PHONES = [{"serial": SERIAL, "state": "device", "device": "bluejay", "model": "Pixel 6a", "abi": "arm64-v8a"},
          {"serial": LAB, "state": "device", "device": "labphone", "model": "Lab Phone", "abi": "arm64-v8a"}]
LAB_PROFILE = ('\n[profiles.lab]\nname = "Lab phone"\ncodenames = ["labphone"]\n'
               'clusters = [{ cores = 2, core = "Cortex-X1", max_ghz = 2.8 }]\n')


@pytest.fixture
def phones(tmp_path, monkeypatch) -> AdbDouble:
    """Two phones on the double (a Pixel 6a and a lab phone with a user profile `lab`), the
    tools registered with `optim devices setup`, and the two phones meeting at their first tool run."""
    adb = AdbDouble(tmp_path, monkeypatch)
    monkeypatch.setenv("ADB_DOUBLE_DEVICES", json.dumps(PHONES))
    monkeypatch.setenv("ADB_DOUBLE_RENDEZVOUS", f"{SERIAL},{LAB}")
    monkeypatch.setenv("ADB_DOUBLE_RENDEZVOUS_TIMEOUT_S", "20")
    d = tmp_path / "android-tools"
    d.mkdir()
    res = CliRunner().invoke(cli, ["devices", "setup", "--benchmark-model", str(fake_arm64_elf(d / "benchmark_model")),
                                   "--executor-runner", str(fake_arm64_elf(d / "executor_runner"))])
    assert res.exit_code == 0, res.output + res.stderr
    cfg = Path(os.environ["OPTIM_CONFIG_DIR"]) / "devices.toml"
    cfg.write_text(cfg.read_text() + LAB_PROFILE)
    return adb


@pytest.fixture
def model(tmp_path) -> dict[str, Path]:
    out = {}
    for name, body in (("model.tflite", b"TFL3" + os.urandom(256)), ("model.pte", b"ET12" + os.urandom(256))):
        out[name] = tmp_path / name
        out[name].write_bytes(body)
    return out


def tool_spans(adb: AdbDouble, serial: str) -> list[dict]:
    return [s for s in adb.spans() if s["serial"] == serial and any(t in " ".join(s["argv"]) for t in
                                                                     ("benchmark_model --graph", "executor_runner --model"))]


def assert_overlap(adb: AdbDouble) -> None:
    a, b = tool_spans(adb, SERIAL)[0], tool_spans(adb, LAB)[0]
    assert max(a["start"], b["start"]) < min(a["end"], b["end"]), (a, b)  # both phones measured at the same time


def assert_pte_stats_match(r, adb: AdbDouble, serial: str, warmup: int) -> None:
    emitted = [np.array(e["values"]) for e in adb.emitted(serial)]
    pooled = np.concatenate([e[warmup:] for e in emitted])
    assert r.device.serial == serial
    assert r.latency.p95 == pytest.approx(np.percentile(pooled, 95), rel=1e-6)
    assert r.latency.p50 == pytest.approx(np.percentile(pooled, 50), rel=1e-6)
    assert r.trials_p95_ms == pytest.approx([np.percentile(e[warmup:], 95) for e in emitted], rel=1e-6)


def test_two_phones_benchmarked_in_parallel_each_result_its_own(phones, model):
    out = optim.bench_devices(model["model.pte"], ["pixel6a", "lab"], runs=20, warmup=3, trials=2, cooldown_s=0)
    assert list(out) == ["pixel6a", "lab"]
    assert not isinstance(out["pixel6a"], BaseException), out["pixel6a"]
    assert not isinstance(out["lab"], BaseException), out["lab"]
    assert out["pixel6a"].device.profile == "pixel6a" and out["lab"].device.profile == "lab"
    assert_pte_stats_match(out["pixel6a"], phones, SERIAL, 3)
    assert_pte_stats_match(out["lab"], phones, LAB, 3)
    assert out["pixel6a"].latency.p95 != out["lab"].latency.p95  # two phones, two sets of numbers
    assert_overlap(phones)
    for serial in (SERIAL, LAB):  # each phone got its own pushes and its own work directory, removed after
        assert [len(e["values"]) for e in phones.emitted(serial)] == [23, 23]
        assert not any(p.name.startswith("optim-") for p in phones.device_tmp(serial).iterdir())
    pushed = {(c[1], Path(c[3]).name) for c in phones.calls() if c[2:3] == ["push"]}
    assert {(s, f) for s in (SERIAL, LAB) for f in ("model.pte", "executor_runner")} <= pushed


def test_cli_two_devices_json_table_and_output_file(phones, model, tmp_path):
    out_file = tmp_path / "bench.json"
    res = CliRunner().invoke(cli, ["bench", str(model["model.tflite"]), "--device", "pixel6a", "--device", LAB,
                                   "--runs", "20", "--warmup", "2", "--trials", "2", "--cooldown", "0", "--json",
                                   "--output", str(out_file)])
    assert res.exit_code == 0, res.stderr
    payload = json.loads(res.stdout)
    assert json.loads(out_file.read_text()) == payload
    assert set(payload["devices"]) == {"pixel6a", LAB}
    for name, serial in (("pixel6a", SERIAL), (LAB, LAB)):
        entry = payload["devices"][name]
        assert entry["status"] == "ok" and entry["errors"] == [] and len(entry["results"]) == 1
        r = entry["results"][0]
        assert r["device"]["serial"] == serial and r["tool"] == "benchmark_model"
        # benchmark_model aggregates: p95 = median over trials of its nearest-rank p95 (µs → ms), per phone
        trials = [sorted(e["values"]) for e in phones.emitted(serial)]
        tool_p95 = [t[20 * 95 // 100] / 1000 for t in trials]
        assert r["trials_p95_ms"] == pytest.approx(tool_p95)
        assert r["latency_ms"]["p95"] == pytest.approx(float(np.median(tool_p95)))
    assert_overlap(phones)
    table = CliRunner().invoke(cli, ["bench", str(model["model.tflite"]), "--device", "pixel6a", "--device", "lab",
                                     "--runs", "10", "--warmup", "1", "--trials", "1", "--cooldown", "0"])
    assert table.exit_code == 0, table.stderr
    rows = [l for l in table.stdout.splitlines() if "model.tflite (tflite)" in l]
    assert len(rows) == 2 and all(" ok " in r for r in rows)
    assert any("pixel6a" in r for r in rows) and any(" lab " in r for r in rows)


def test_one_phone_vanishing_mid_run_fails_alone(phones, model, monkeypatch):
    phones.fault(f"disappear-after:{LAB}:1")  # the lab phone serves its first tool run, then is gone
    out = optim.bench_devices(model["model.pte"], ["pixel6a", "lab"], runs=15, warmup=2, trials=2, cooldown_s=0)
    err = out["lab"]
    assert isinstance(err, DeviceDisconnectedError) and LAB in str(err) and "trial 2" in str(err)
    assert not isinstance(out["pixel6a"], BaseException), out["pixel6a"]
    assert_pte_stats_match(out["pixel6a"], phones, SERIAL, 2)  # the other phone's two trials, intact
    assert len(phones.emitted(LAB)) == 1
    assert_overlap(phones)
    assert not any(p.name.startswith("optim-") for p in phones.device_tmp(SERIAL).iterdir())


def test_cli_exit_3_with_the_good_phone_printed(phones, model):
    phones.fault(f"disappear-after:{LAB}:1")
    res = CliRunner().invoke(cli, ["bench", str(model["model.tflite"]), "--device", "pixel6a", "--device", "lab",
                                   "--runs", "10", "--warmup", "1", "--trials", "2", "--cooldown", "0", "--json"])
    assert res.exit_code == 3, res.stderr
    payload = json.loads(res.stdout)
    good, bad = payload["devices"]["pixel6a"], payload["devices"]["lab"]
    assert good["status"] == "ok" and good["results"][0]["device"]["serial"] == SERIAL
    trials = [sorted(e["values"]) for e in phones.emitted(SERIAL)]
    assert good["results"][0]["trials_p95_ms"] == pytest.approx([t[10 * 95 // 100] / 1000 for t in trials])
    assert bad["status"] == "failed" and bad["results"] == []
    assert bad["errors"][0]["error"] == "DeviceDisconnectedError" and bad["errors"][0]["exit_code"] == 3
    assert "1 of 2 devices failed (lab)" in res.stderr and LAB in res.stderr and "Traceback" not in res.stderr
    # the phone is still gone: the table run shows the good row and a failed row, exit 3 again
    table = CliRunner().invoke(cli, ["bench", str(model["model.tflite"]), "--device", "pixel6a", "--device", "lab",
                                     "--runs", "10", "--warmup", "1", "--trials", "1", "--cooldown", "0"])
    assert table.exit_code == 3
    lines = table.stdout.splitlines()
    assert any("pixel6a" in l and " ok " in l for l in lines)
    assert any(" lab " in l and "failed (exit 3)" in l for l in lines)
    assert "no connected device matches profile lab" in table.stderr


def test_same_phone_twice_or_a_device_named_twice_is_refused(phones, model):
    for devices, what in ((["pixel6a", SERIAL], "same device (adb serial 28011JEGR09914)"),
                          (["host", "host"], "given more than once"), ([], "no device given")):
        with pytest.raises(InputError, match=what.replace("(", r"\(").replace(")", r"\)")):
            optim.bench_devices(model["model.tflite"], devices, runs=5, warmup=0, trials=1, cooldown_s=0)
    res = CliRunner().invoke(cli, ["bench", str(model["model.tflite"]), "--device", "lab", "--device", LAB])
    assert res.exit_code == 2 and "same device" in res.stderr and res.stdout == ""
    res = CliRunner().invoke(cli, ["bench", str(model["model.tflite"]), "--device", "pixel6a", "--device", "galaxy-s99"])
    assert res.exit_code == 2 and "'galaxy-s99' is neither a device profile" in res.stderr
    assert phones.emitted() == []  # nothing was benchmarked


def test_unreachable_profile_fails_alone_before_the_run(phones, model, monkeypatch):
    monkeypatch.delenv("ADB_DOUBLE_RENDEZVOUS")
    out = optim.bench_devices(model["model.tflite"], ["pixel6a", "pixel8"], runs=5, warmup=0, trials=1, cooldown_s=0)
    assert isinstance(out["pixel8"], DeviceNotFoundError) and "pixel8" in str(out["pixel8"])
    assert out["pixel6a"].device.serial == SERIAL


def test_double_state_survives_concurrent_invocations(phones):
    """16 adb calls at once, on two serials: every line of calls.jsonl/spans.jsonl intact, no lost counter."""
    adb_bin = str(phones.bin / "adb")
    procs = [subprocess.Popen([adb_bin, "-s", s, "shell", "getprop ro.product.device"], stdout=subprocess.PIPE,
                              text=True) for s in (SERIAL, LAB) * 8]
    answers = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert answers == ["bluejay", "labphone"] * 8
    assert len(phones.calls()) == 16 and len(phones.spans()) == 16
    assert sorted({s["serial"] for s in phones.spans()}) == sorted([SERIAL, LAB])


def test_ctrl_c_stops_every_device_worker_and_its_tools(tmp_path):
    """Ctrl-C reaches only the main thread (tools run in their own sessions): run_per_device must
    stop the tools the workers are running, wait for the workers and re-raise, leaving no process."""
    import signal
    import sys
    import threading
    import time

    from optim.device_bench import process
    from optim.device_bench.parallel import run_per_device

    pids = {}

    def worker(d: str):
        script = f"import os, time; open({str(tmp_path / d)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
        return process.run_tool([sys.executable, "-c", script], timeout_s=600, what=f"tool on {d}", grace_s=0.5)

    def interrupt_when_both_run():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all((tmp_path / d).exists() and (tmp_path / d).read_text()
                                                      for d in ("a", "b")):
            time.sleep(0.02)
        pids.update({d: int((tmp_path / d).read_text()) for d in ("a", "b")})
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    # Python installs no KeyboardInterrupt handler when SIGINT was ignored at its start (a
    # background job of a non-interactive shell): install it, or the SIGINT below is lost and
    # the 600 s tools are waited for
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        t = threading.Thread(target=interrupt_when_both_run, daemon=True)
        t.start()
        with pytest.raises(KeyboardInterrupt):
            run_per_device(["a", "b"], worker)
        t.join(timeout=60)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert set(pids) == {"a", "b"}
    for pid in pids.values():  # both 600 s tools are gone (they were killed, not waited for)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not [th for th in threading.enumerate() if th.name.startswith("optim-device")]
    # and tools start again afterwards
    assert process.run_tool([sys.executable, "-c", "print(1)"], timeout_s=30).stdout == "1\n"
    with pytest.raises(process.ToolStoppedError):  # while stopped, pause() and run_tool() refuse
        process.stop_all_tools(grace_s=0)
        try:
            process.pause(30)
        finally:
            process.resume_tools()


def test_host_alongside_a_phone_warns_and_an_input_error_is_exit_2(phones, resnet18_ckpt, monkeypatch):
    """A checkpoint runs on the host but not on a phone: the phone's entry is its InputError, the
    host's result is kept (with a note that a phone was driven meanwhile); the CLI exits 2."""
    monkeypatch.delenv("ADB_DOUBLE_RENDEZVOUS")
    out = optim.bench_devices(resnet18_ckpt, ["host", "pixel6a"], runs=3, warmup=1, trials=1, measure_memory=False)
    assert isinstance(out["pixel6a"], InputError) and "only exported artifacts" in str(out["pixel6a"])
    host = out["host"]
    assert host.device.kind == "host" and host.latency.p95 is not None and host.latency.p95 > 0
    assert any("1 other device(s) ran in parallel" in w for w in host.warnings)
    res = CliRunner().invoke(cli, ["bench", str(resnet18_ckpt), "--device", "host", "--device", "pixel6a", "--runs", "3",
                                   "--warmup", "1", "--trials", "1", "--no-memory", "--json"])
    assert res.exit_code == 2, res.stderr
    payload = json.loads(res.stdout)
    assert payload["devices"]["host"]["status"] == "ok" and len(payload["devices"]["host"]["results"]) == 1
    assert payload["devices"]["pixel6a"]["errors"][0]["exit_code"] == 2
    assert "1 of 2 devices failed (pixel6a)" in res.stderr


def test_verify_refuses_one_phone_named_twice_before_measuring(phones, tmp_path):
    """`optim verify --device pixel6a --device SERIAL` is one phone twice: an input error before any
    artifact is loaded, evaluated or benchmarked (the shared check is device_bench.api.resolve_devices)."""
    policy = tmp_path / "optim.toml"
    policy.write_text("[defaults]\nmax_size_mb = 100\n")
    (tmp_path / "golden").mkdir()
    with pytest.raises(InputError, match=r"same device \(adb serial 28011JEGR09914\)"):
        optim.verify([tmp_path / "no-such-artifact"], tmp_path / "golden", devices=["pixel6a", SERIAL], policy=policy)
    assert phones.emitted() == []
