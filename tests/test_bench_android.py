"""The adb path end to end against a TEST DOUBLE of `adb` (tests/doubles/adb_test_double.py).

No phone is attached to this machine: a small script named `adb`, put first on PATH, emulates
the device (file system, getprop, cpufreq, thermal service) and the three official tools'
documented output. optim's real code runs unchanged: subprocess calls, pushes, taskset
pinning, parsing, statistics, retries and clean-up. The double records every latency it prints,
so the statistics are checked against an independent numpy computation.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import optim
from optim.cli.main import cli
from optim.device_bench.errors import DeviceDisconnectedError, ToolRunError

DOUBLE = Path(__file__).parent / "doubles" / "adb_test_double.py"
SERIAL = "28011JEGR09914"


def fake_arm64_elf(path: Path) -> Path:
    """A file with an arm64 ELF header, standing in for a tool binary (the double never executes it)."""
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5] = 2, 1  # 64-bit, little-endian
    header[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    path.write_bytes(bytes(header) + path.name.encode())
    return path


class AdbDouble:
    def __init__(self, root: Path, monkeypatch):
        self.root = root
        self.state = root / "adb-state"
        self.bin = root / "bin"
        self.bin.mkdir()
        wrapper = self.bin / "adb"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{DOUBLE}" "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        self.mp = monkeypatch
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("ADB_DOUBLE_DIR", str(self.state))
        monkeypatch.setenv("OPTIM_CONFIG_DIR", str(root / "config"))
        monkeypatch.setenv("OPTIM_ADB_RETRY_DELAY_S", "0")
        monkeypatch.delenv("ADB_DOUBLE_FAULT", raising=False)
        monkeypatch.delenv("OPTIM_ADB", raising=False)

    def fault(self, *modes: str) -> None:
        self.mp.setenv("ADB_DOUBLE_FAULT", ",".join(modes))

    def calls(self) -> list[list[str]]:
        p = self.state / "calls.jsonl"
        return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []

    def shell_commands(self) -> list[str]:
        return [" ".join(c[3:]) for c in self.calls() if c[:1] == ["-s"] and c[2:3] == ["shell"]]

    def emitted(self, serial: str | None = None) -> list[dict]:
        """What the double's tools printed, in order (only device ``serial``'s when given)."""
        p = self.state / "emitted.jsonl"
        rows = [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []
        return [r for r in rows if serial is None or r["serial"] == serial]

    def spans(self) -> list[dict]:
        """Every adb invocation's {serial, argv, pid, start, end, rc} (wall-clock seconds)."""
        p = self.state / "spans.jsonl"
        return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []

    def device_tmp(self, serial: str = SERIAL) -> Path:
        """/data/local/tmp of device ``serial`` (each emulated device has its own file system)."""
        return self.state / "fs" / serial / "data" / "local" / "tmp"


@pytest.fixture
def adb(tmp_path, monkeypatch) -> AdbDouble:
    return AdbDouble(tmp_path, monkeypatch)


@pytest.fixture
def tools(tmp_path, adb) -> dict[str, Path]:
    """Three stand-in tool files registered through `optim devices setup` (the real CLI)."""
    d = tmp_path / "android-tools"
    d.mkdir()
    t = {n: fake_arm64_elf(d / n) for n in ("benchmark_model", "executor_runner", "onnxruntime_perf_test")}
    lib = fake_arm64_elf(d / "libonnxruntime.so")
    res = CliRunner().invoke(cli, ["devices", "setup", "--benchmark-model", str(t["benchmark_model"]),
                                   "--executor-runner", str(t["executor_runner"]),
                                   "--onnxruntime-perf-test", str(t["onnxruntime_perf_test"]), "--ort-lib", str(lib)])
    assert res.exit_code == 0, res.output + res.stderr
    t["lib"] = lib
    return t


@pytest.fixture
def models(tmp_path) -> dict[str, Path]:
    """Model files to push (their bytes are checked on the emulated device, never executed)."""
    d = tmp_path / "artifacts"
    d.mkdir()
    out = {}
    for name, body in (("model.tflite", b"TFL3" + os.urandom(256)), ("model.pte", b"ET12" + os.urandom(256)),
                       ("model.onnx", b"\x08\x07" + os.urandom(256)), ("model.onnx.data", os.urandom(512))):
        (d / name).write_bytes(body)
        out[name] = d / name
    return out


def bench_cli(*args: str):
    return CliRunner().invoke(cli, ["bench", *args, "--cooldown", "0", "--json"])


def test_devices_lists_the_phone_with_its_profile_and_tools(adb, tools):
    res = CliRunner().invoke(cli, ["devices", "--json"])
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["devices"] == [{"serial": SERIAL, "state": "device", "model": "Pixel 6a", "product_device": "bluejay",
                               "profile": "pixel6a", "abi": "arm64-v8a"}]
    assert rep["tools"]["benchmark_model"]["path"] == str(tools["benchmark_model"].resolve())
    assert rep["tools"]["onnxruntime_perf_test"]["libs"] == [str(tools["lib"].resolve())]
    table = CliRunner().invoke(cli, ["devices"])
    assert "pixel6a" in table.output and "bluejay" in table.output


def test_tflite_on_pixel6a_profile_end_to_end(adb, tools, models):
    res = bench_cli(str(models["model.tflite"]), "--device", "pixel6a", "--runs", "40", "--warmup", "5", "--trials", "3")
    assert res.exit_code == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["format"] == "tflite" and r["tool"] == "benchmark_model"
    assert r["device"]["name"] == "pixel6a" and r["device"]["serial"] == SERIAL
    assert r["device"]["cpu_mask"] == "c0" and r["threads"] == 2  # cpu6-7 have the highest cpuinfo_max_freq
    # benchmark_model reports aggregates: p95 = median over trials of its nearest-rank p95 (µs → ms)
    trials = [sorted(e["values"]) for e in adb.emitted()]
    assert len(trials) == 3 and all(len(t) == 40 for t in trials)
    tool_p95 = [t[40 * 95 // 100] / 1000 for t in trials]
    assert r["trials_p95_ms"] == pytest.approx(tool_p95)
    assert r["latency_ms"]["p95"] == pytest.approx(float(np.median(tool_p95)))
    assert r["latency_ms"]["max"] == pytest.approx(max(max(t) for t in trials) / 1000)
    assert r["latency_ms"]["mean"] == pytest.approx(np.mean(np.concatenate(trials)) / 1000, rel=1e-5)
    assert r["latency_ms"]["p90"] is None and r["latency_ms"]["p99"] is None
    assert {"p90", "p99", "p95_ci_ms"} <= set(r["unavailable"]) and r["p95_ci_ms"] is None
    assert r["peak_memory_mb"] == pytest.approx(14.6875 * 1.048576)
    assert len(r["thermal"]) == 3 and r["thermal"][0]["before"]["status"] == 0
    # what ran on the "device": pinned to the big cores, warm-up and runs exactly as asked
    runs = [c for c in adb.shell_commands() if "benchmark_model --graph" in c]
    assert len(runs) == 3
    assert all(" taskset c0 " in f" {c} " and "--num_runs=40" in c and "--warmup_runs=5" in c and "--num_threads=2" in c
               for c in runs)
    remote_dir = runs[0].split("--graph=")[1].rsplit("/", 1)[0]
    assert any(c == f"rm -rf {remote_dir}" for c in adb.shell_commands())
    assert not adb.device_tmp().joinpath(Path(remote_dir).name).exists()  # cleaned up


def test_pte_by_serial_per_iteration_statistics_match_numpy(adb, tools, models):
    r = optim.bench(models["model.pte"], SERIAL, runs=30, warmup=4, trials=2, cooldown_s=0)
    assert r.tool == "executor_runner" and r.device.profile == "pixel6a"
    emitted = [np.array(e["values"]) for e in adb.emitted()]
    assert [len(e) for e in emitted] == [34, 34]  # warm-up + runs executions per trial
    pooled = np.concatenate([e[4:] for e in emitted])  # optim must drop the 4 warm-up iterations
    assert r.latency.p95 == pytest.approx(np.percentile(pooled, 95), rel=1e-6)
    assert r.latency.p99 == pytest.approx(np.percentile(pooled, 99), rel=1e-6)
    assert r.latency.std == pytest.approx(pooled.std(), rel=1e-6)
    assert r.trials_p95_ms == pytest.approx([np.percentile(e[4:], 95) for e in emitted], rel=1e-6)
    lo, hi = r.p95_ci_ms
    assert lo <= r.latency.p95 <= hi
    assert "peak_memory_mb" in r.unavailable and r.peak_memory_mb is None  # executor_runner reports none
    cmd = next(c for c in adb.shell_commands() if "executor_runner --model_path" in c)
    assert "--num_executions=34" in cmd and "--cpu_threads=2" in cmd


def test_pte_android_logcat_build(adb, tools, models):
    adb.fault("et-logcat")  # Android-PAL build: iteration lines only in logcat
    r = optim.bench(models["model.pte"], "pixel6a", runs=25, warmup=2, trials=1, cooldown_s=0)
    e = np.array(adb.emitted()[0]["values"])[2:]
    assert r.latency.p50 == pytest.approx(np.percentile(e, 50), rel=1e-6)
    assert any(c.startswith("logcat -d") for c in adb.shell_commands())


def test_onnx_pushes_external_data_and_reads_per_run_result_file(adb, tools, models):
    r = optim.bench(models["model.onnx"], "pixel6a", threads=4, runs=25, warmup=5, trials=2, cooldown_s=0)
    assert r.tool == "onnxruntime_perf_test" and r.device.cpu_mask == "f0"  # 4 fastest: cpu4-7
    emitted = [np.array(e["values"]) * 1000 for e in adb.emitted()]
    pooled = np.concatenate([e[5:] for e in emitted])
    assert r.latency.p95 == pytest.approx(np.percentile(pooled, 95), rel=1e-4)  # file holds %g (6 digits)
    assert r.peak_memory_mb == pytest.approx(48.234496)
    pushed = {Path(c[3]).name for c in adb.calls() if c[2:3] == ["push"]}
    assert {"model.onnx", "model.onnx.data", "onnxruntime_perf_test", "libonnxruntime.so"} <= pushed
    cmd = next(c for c in adb.shell_commands() if "onnxruntime_perf_test -e cpu" in c)
    assert cmd.startswith("LD_LIBRARY_PATH=/data/local/tmp/optim-") and "-r 30 -x 4 -s -I" in cmd


def test_old_benchmark_model_build_reports_p95_unavailable_not_estimated(adb, tools, models):
    adb.fault("old-benchmark-model")
    res = bench_cli(str(models["model.tflite"]), "--device", "pixel6a", "--runs", "20", "--trials", "2")
    assert res.exit_code == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["latency_ms"]["p95"] is None and r["latency_ms"]["p50"] is None
    assert r["latency_ms"]["mean"] is not None
    assert {"p50", "p95"} <= set(r["unavailable"]) and r["trials_p95_ms"] == [None, None]
    assert any("no percentiles" in w for w in r["warnings"])
    table = CliRunner().invoke(cli, ["bench", str(models["model.tflite"]), "--device", "pixel6a", "--runs", "20",
                                     "--trials", "1", "--cooldown", "0"])
    assert "n/a" in table.output and "not measured (n/a)" in table.output


def test_thermal_rise_and_missing_cpufreq_are_warned(adb, tools, models):
    adb.fault("hot", "no-cpufreq")
    r = optim.bench(models["model.tflite"], "pixel6a", runs=10, warmup=1, trials=3, cooldown_s=0)
    assert r.device.cpu_mask is None
    assert not any("taskset" in c for c in adb.shell_commands())
    assert any("NOT pinned" in w for w in r.warnings)
    assert any("thermal status" in w for w in r.warnings)
    assert [t["after"]["status"] for t in r.thermal][-1] > 0


def test_cool_down_waits_longer_while_the_phone_is_throttling(adb, tools, models):
    adb.fault("hot")  # thermal status rises with every reading and never falls
    r = optim.bench(models["model.tflite"], "pixel6a", runs=5, warmup=0, trials=2, cooldown_s=0.05)
    waited = r.thermal[0]["cooldown_s"]
    assert 0.05 < waited <= 0.15 + 1e-9  # kept waiting, but no more than 3 × the cool-down
    assert "cooldown_s" not in r.thermal[-1]  # no cool-down after the last trial


def test_device_that_drops_once_is_retried(adb, tools, models):
    adb.fault("disappear-once")
    r = optim.bench(models["model.tflite"], "pixel6a", runs=10, warmup=1, trials=2, cooldown_s=0)
    assert len(adb.emitted()) == 2  # both trials measured after the retry
    assert any("retried once" in w for w in r.warnings)


def test_device_that_disappears_is_a_clear_error(adb, tools, models):
    adb.fault("disappear")
    with pytest.raises(DeviceDisconnectedError, match="after one retry"):
        optim.bench(models["model.tflite"], "pixel6a", runs=10, warmup=1, trials=2, cooldown_s=0)
    res = bench_cli(str(models["model.tflite"]), "--device", "pixel6a")
    assert res.exit_code == 3 and "disappeared" in res.stderr


@pytest.mark.parametrize("fault, message", [
    ("no-devices", "no Android device connected"),
    ("unauthorized", "unauthorized"),
    ("offline", "offline"),
    ("tool-crash", "crashed (SIGSEGV)"),
    ("tool-garbage", "no statistics line"),
])
def test_faults_exit_3_with_a_clear_message(adb, tools, models, fault, message):
    adb.fault(fault)
    res = bench_cli(str(models["model.tflite"]), "--device", "pixel6a", "--runs", "10", "--trials", "1")
    assert res.exit_code == 3, res.stdout
    assert message in res.stderr
    assert res.stdout == ""  # no numbers printed
    if fault.startswith("tool-"):
        assert not any(p.name.startswith("optim-") for p in adb.device_tmp().iterdir())  # cleaned up anyway


def test_tool_crash_raises_tool_run_error_with_output_tail(adb, tools, models):
    adb.fault("tool-crash")
    with pytest.raises(ToolRunError, match="Segmentation fault"):
        optim.bench(models["model.pte"], "pixel6a", runs=5, warmup=0, trials=1, cooldown_s=0)


def test_no_adb_on_path(tmp_path, monkeypatch, models):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("OPTIM_ADB", raising=False)
    monkeypatch.setenv("OPTIM_CONFIG_DIR", str(tmp_path / "cfg"))
    d = tmp_path / "tools"
    d.mkdir()
    res = CliRunner().invoke(cli, ["devices", "setup", "--benchmark-model", str(fake_arm64_elf(d / "benchmark_model"))])
    assert res.exit_code == 0
    res = bench_cli(str(models["model.tflite"]), "--device", "pixel6a")
    assert res.exit_code == 3 and "adb is not on PATH" in res.stderr and "apt install adb" in res.stderr
    res = CliRunner().invoke(cli, ["devices"])
    assert res.exit_code == 3 and "adb is not on PATH" in res.stderr
    assert "benchmark_model" in res.stdout  # the configured tools are still listed


def test_unset_tool_unknown_device_and_checkpoint_on_android(adb, models, tmp_path):
    res = bench_cli(str(models["model.tflite"]), "--device", "pixel6a")
    assert res.exit_code == 3 and "optim devices setup --benchmark-model" in res.stderr
    fake_arm64_elf(tmp_path / "bm")
    assert CliRunner().invoke(cli, ["devices", "setup", "--benchmark-model", str(tmp_path / "bm")]).exit_code == 0
    res = bench_cli(str(models["model.tflite"]), "--device", "galaxy-s99")
    # a name that is neither a profile nor a connected serial is an input error (issue 11: exit classes)
    assert res.exit_code == 2 and "'galaxy-s99' is neither a device profile" in res.stderr
    res = bench_cli(str(models["model.tflite"]), "--device", "pixel8")  # a profile, but no such phone connected
    assert res.exit_code == 3 and "no connected device matches profile pixel8" in res.stderr
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    res = bench_cli(str(ckpt), "--device", "pixel6a")
    assert res.exit_code == 2 and "only exported artifacts" in res.stderr


def test_setup_rejects_a_non_elf_file(adb, tmp_path):
    script = tmp_path / "benchmark_model"
    script.write_text("#!/bin/sh\necho hi\n")
    res = CliRunner().invoke(cli, ["devices", "setup", "--benchmark-model", str(script)])
    assert res.exit_code == 2 and "not an ELF executable" in res.stderr
    res = CliRunner().invoke(cli, ["devices", "setup"])
    assert res.exit_code == 2


def test_user_profile_extends_builtin_ones(adb, tools, models, monkeypatch, tmp_path):
    monkeypatch.setenv("ADB_DOUBLE_DEVICES", json.dumps([{"serial": "LAB-7", "state": "device", "device": "labphone",
                                                           "model": "Lab Phone", "abi": "arm64-v8a"}]))
    cfg = Path(os.environ["OPTIM_CONFIG_DIR"]) / "devices.toml"
    cfg.write_text(cfg.read_text() + '\n[profiles.lab]\nname = "Lab phone"\ncodenames = ["labphone"]\n'
                   'clusters = [{ cores = 4, core = "Cortex-A78", max_ghz = 2.4 }]\n')
    r = optim.bench(models["model.tflite"], "lab", runs=10, warmup=1, trials=1, cooldown_s=0)
    assert r.device.name == "lab" and r.device.serial == "LAB-7"
    # the double's cpufreq shows 2 fastest cores; the user profile claims 4: optim trusts the device and says so
    assert r.device.cpu_mask == "c0"
    assert any("profile lab lists 4" in w for w in r.warnings)
