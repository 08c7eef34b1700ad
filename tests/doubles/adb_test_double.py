#!/usr/bin/env python3
"""TEST DOUBLE of the `adb` client — not adb, and not a phone.

Tests put a wrapper named `adb` that runs this script first on PATH, so optim's real adb code
path (subprocess, argument building, output parsing, retries, cleanup) runs end to end with
no phone attached. It emulates a device file system under $ADB_DOUBLE_DIR/fs and answers:

  adb devices -l
  adb -s SERIAL push LOCAL REMOTE
  adb -s SERIAL shell "getprop NAME" | "mkdir -p D" | "chmod 755 F" | "rm -rf D" | "cat F"
        | "grep -H . /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq"
        | "dumpsys thermalservice" | "cat /sys/class/thermal/thermal_zone*/temp"
        | "logcat -c" | "logcat -d -v raw -s ExecuTorch"
        | "[VAR=x] [taskset MASK] /data/local/tmp/.../benchmark_model|executor_runner|onnxruntime_perf_test ARGS"

The three tools print their documented output formats (see optim/device_bench/parsers.py for
the sources) with synthetic latencies; every latency it prints is also written to
$ADB_DOUBLE_DIR/emitted.jsonl ({"serial", "tool", "unit", "values"}) so tests can recompute the
statistics independently, per device. Every invocation's argv is appended to
$ADB_DOUBLE_DIR/calls.jsonl, and its time span to $ADB_DOUBLE_DIR/spans.jsonl
({"serial", "argv", "pid", "start", "end", "rc"}; wall-clock seconds, time.time()).

Several devices: each serial has its own file system ($ADB_DOUBLE_DIR/fs/SERIAL/...), its own
counters, logcat and "gone" marker, so the calls of two devices may interleave freely
(optim benchmarks several devices in parallel, one adb process per call). Every shared file
(calls.jsonl, spans.jsonl, emitted.jsonl, the counters) is written under an exclusive
fcntl.flock on $ADB_DOUBLE_DIR/.lock, so concurrent invocations never tear a line or lose
an increment.

Environment:
  ADB_DOUBLE_DIR      state directory (required)
  ADB_DOUBLE_DEVICES  JSON list of {serial, state, device, model, abi} (default: one Pixel 6a)
  ADB_DOUBLE_FAULT    comma-separated fault modes:
      no-devices, unauthorized, offline, disappear-once, disappear, tool-crash, tool-garbage,
      old-benchmark-model, et-logcat, ort-no-result-file, hot, no-thermal, no-cpufreq,
      garbage (`adb devices` lists a line adb never prints: "@@@ @@@"),
      noise (every command prints text that is not adb's, no header),
      hang (every call forks a grandchild that sleeps, writes its pid to
            $ADB_DOUBLE_DIR/grandchild.pid, and then hangs itself),
      bad-cpufreq (a non-numeric cpuinfo_max_freq), bad-getprop (ro.product.device with
            control characters)
      disappear-after:SERIAL:N (per device; may be given for several serials) — device SERIAL
            serves its first N on-device tool runs (benchmark_model / executor_runner /
            onnxruntime_perf_test invocations), then vanishes: from the (N+1)-th tool run on,
            it is no longer listed by `adb devices` and every call naming it fails with
            "adb: device 'SERIAL' not found"; the other devices are unaffected.
  ADB_DOUBLE_LATENCY_MS  median synthetic latency (default 12.5)
  ADB_DOUBLE_RENDEZVOUS  comma-separated serials: the first tool run of each listed serial
            waits until every listed serial has started its first tool run (a barrier between
            separate adb processes). Passing it proves the devices were benchmarked at the
            same time; if they run one after another, the first waiter gives up after
            $ADB_DOUBLE_RENDEZVOUS_TIMEOUT_S (default 30) and its tool fails with
            "rendezvous timed out" (exit 1).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

STATE = Path(os.environ["ADB_DOUBLE_DIR"])
FAULTS = set(filter(None, os.environ.get("ADB_DOUBLE_FAULT", "").split(",")))
#: serial → number of tool runs it serves before it vanishes (ADB_DOUBLE_FAULT disappear-after:SERIAL:N)
DISAPPEAR_AFTER = {f.split(":")[1]: int(f.split(":")[2]) for f in FAULTS
                   if f.startswith("disappear-after:") and len(f.split(":")) == 3}
SERIAL: str | None = None  # the device this invocation talks to (set in main)
DEFAULT_DEVICES = [{"serial": "28011JEGR09914", "state": "device", "device": "bluejay", "model": "Pixel 6a",
                    "abi": "arm64-v8a"}]
# Tensor G1 layout as the kernel reports it (kHz): A55 cpu0-3, A76 cpu4-5, X1 cpu6-7
CPU_FREQS = {0: 1803000, 1: 1803000, 2: 1803000, 3: 1803000, 4: 2253000, 5: 2253000, 6: 2802000, 7: 2802000}


@contextlib.contextmanager
def locked():
    """An exclusive lock shared by every invocation of the double (fcntl.flock on .lock)."""
    with open(STATE / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def append_line(name: str, record) -> None:
    """Append one JSON line to $ADB_DOUBLE_DIR/NAME under the lock (one write: never torn)."""
    line = (json.dumps(record) + "\n").encode()
    with locked():
        fd = os.open(STATE / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def gone_marker(serial: str) -> Path:
    return STATE / f"gone_{serial}"


def devices() -> list[dict]:
    devs = json.loads(os.environ["ADB_DOUBLE_DEVICES"]) if os.environ.get("ADB_DOUBLE_DEVICES") else DEFAULT_DEVICES
    if "no-devices" in FAULTS:
        return []
    for d in devs:
        if "unauthorized" in FAULTS:
            d["state"] = "unauthorized"
        if "offline" in FAULTS:
            d["state"] = "offline"
    return [d for d in devs if not gone_marker(d["serial"]).exists()]  # disappear-after: unlisted once gone


def counter(name: str) -> int:
    """Increment and return a persistent counter of this invocation's device (under the lock)."""
    p = STATE / f"counter_{name}_{SERIAL or 'any'}"
    with locked():
        n = int(p.read_text()) + 1 if p.exists() else 1
        p.write_text(str(n))
    return n


def local(remote: str) -> Path:
    """The host path of ``remote`` on this invocation's device: each serial has its own file system."""
    return STATE / "fs" / (SERIAL or "any") / remote.lstrip("/")


def out(s: str = "") -> None:
    sys.stdout.write(s + "\n")


def err(s: str) -> None:
    sys.stderr.write(s + "\n")


def emit(tool: str, values: list[float], unit: str) -> None:
    append_line("emitted.jsonl", {"serial": SERIAL, "tool": tool, "unit": unit, "values": values})


def latencies(n: int, scale: float = 1.0) -> list[float]:
    """n synthetic latencies (ms): lognormal around the median plus rare slow outliers
    (seeded per device and call: two devices never print the same numbers)."""
    base = float(os.environ.get("ADB_DOUBLE_LATENCY_MS", "12.5")) * scale
    rng = random.Random(f"{SERIAL}:{counter('latency_seed')}")
    return [base * rng.lognormvariate(0, 0.04) * (1.6 if rng.random() < 0.03 else 1.0) for _ in range(n)]


def g6(v: float) -> str:
    """C++ ``operator<<`` for double (precision 6, %g style), as benchmark_model prints."""
    return format(v, ".6g")


# ------------------------------------------------------------------------------ tools
def flag(args: list[str], name: str, default: str | None = None) -> str | None:
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def nearest_rank(sorted_vals: list[int], q: int) -> int:
    return sorted_vals[len(sorted_vals) * q // 100]


def bm_stat_line(vals_us: list[int]) -> str:
    """tsl::StatWithPercentiles::OutputToStream for int64 microseconds."""
    n = len(vals_us)
    if n == 0:
        return "count=0"
    mean = sum(vals_us) / n
    if min(vals_us) == max(vals_us):
        line = f"count={n} curr={vals_us[-1]}" + ("(all same)" if n > 1 else "")
    else:
        var = sum(v * v for v in vals_us) / n - mean * mean
        line = (f"count={n} first={vals_us[0]} curr={vals_us[-1]} min={min(vals_us)} max={max(vals_us)} "
                f"avg={g6(mean)} std={int(var ** 0.5) if var > 0 else 0}")
    if "old-benchmark-model" not in FAULTS:
        s = sorted(vals_us)
        line += f" p5={nearest_rank(s, 5)} median={nearest_rank(s, 50)} p95={nearest_rank(s, 95)}"
    return line


def run_benchmark_model(args: list[str]) -> int:
    graph = flag(args, "graph")
    if not graph or not local(graph).is_file():
        err(f"ERROR: Could not open '{graph}'.")
        err(f"ERROR: Failed to mmap model {graph}")
        return 1
    warm = int(flag(args, "warmup_runs", "1"))
    runs = int(flag(args, "num_runs", "50"))
    out("INFO: STARTING!")
    out("INFO: Log parameter values verbosely: [0]")
    out(f"INFO: Min num runs: [{runs}]")
    out(f"INFO: Num threads: [{flag(args, 'num_threads', '-1')}]")
    out(f"INFO: Graph: [{graph}]")
    out("INFO: Loaded model " + graph)
    out(f"INFO: The input model file size (MB): {g6(local(graph).stat().st_size / 1e6)}")
    out("INFO: Initialized session in 35.871ms.")
    wvals = [int(v * 1000) for v in latencies(warm, 1.3)]
    out(f"INFO: Running benchmark for at least {warm} iterations and at least 0 seconds but terminate if exceeding 3600 seconds.")
    out("INFO: " + bm_stat_line(wvals))
    out("")
    vals = [int(v * 1000) for v in latencies(runs)]
    emit("benchmark_model", vals, "us")
    out(f"INFO: Running benchmark for at least {runs} iterations and at least 0 seconds but terminate if exceeding 3600 seconds.")
    out("INFO: " + bm_stat_line(vals))
    out("")
    wavg = sum(wvals) / len(wvals) if wvals else 0
    out(f"INFO: Inference timings in us: Init: 35871, First inference: {wvals[0] if wvals else 0}, "
        f"Warmup (avg): {g6(wavg)}, Inference (avg): {g6(sum(vals) / len(vals))}")
    out("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
        "the actual memory footprint of the model at runtime. Take the information at your discretion.")
    out("INFO: Memory footprint delta from the start of the tool (MB): init=3.02734 overall=9.92188")
    if flag(args, "report_peak_memory_footprint") == "true":
        out("INFO: Overall peak memory footprint (MB) via periodic monitoring: 14.6875")
    return 0


def run_executor_runner(args: list[str]) -> int:
    model = flag(args, "model_path", "model.pte")
    if not local(model).is_file():
        err("E 00:00:00.000912 executorch:executor_runner.cpp:284] FileDataLoader::from() failed: 0x22")
        return 134
    n = int(flag(args, "num_executions", "1"))
    vals = latencies(n)
    emit("executor_runner", vals, "ms")
    lines = [f"I 00:00:00.000{i:03d} executorch:executor_runner.cpp:705] Iteration {i + 1} of {n}: {v:.6f} ms"
             for i, v in enumerate(vals)]
    head = [f"I 00:00:00.000100 executorch:executor_runner.cpp:161] Resetting threadpool with num threads = {flag(args, 'cpu_threads', '-1')}",
            f"I 00:00:00.000526 executorch:executor_runner.cpp:362] Model file {model} is loaded.",
            "I 00:00:00.000595 executorch:executor_runner.cpp:371] Using method forward",
            "I 00:00:00.012001 executorch:executor_runner.cpp:564] Model loaded in 11.402 ms."]
    tail = [f"I 00:00:01.000001 executorch:executor_runner.cpp:714] Model executed successfully {n} time(s) in {sum(vals):.6f} ms.",
            "I 00:00:01.000002 executorch:executor_runner.cpp:723] 1 outputs: ",
            "OutputX 0: tensor(sizes=[1, 10], [0.1, -0.2, ...])"]
    if "et-logcat" in FAULTS:  # Android PAL build: ET_LOG goes to logcat, not stderr
        with open(logcat_file(), "a") as f:
            for l in head + lines + tail[:2]:
                f.write(l.split("] ", 1)[1] + "\n")
        out(tail[2])
    else:
        for l in head + lines + tail[:2]:
            err(l)
        out(tail[2])
    return 0


def run_ort_perf_test(args: list[str]) -> int:
    r = int(args[args.index("-r") + 1]) if "-r" in args else 1000
    positional = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in
                                                                             ("-r", "-x", "-e", "-m", "-t", "-p", "-o"))]
    model = positional[0] if positional else None
    result = positional[1] if len(positional) > 1 else None
    if not model or not local(model).is_file():
        err(f"Error: Load model from {model} failed")
        return 255
    vals_s = [v / 1000.0 for v in latencies(r)]
    emit("onnxruntime_perf_test", vals_s, "s")
    peak = 48_234_496
    if result and "ort-no-result-file" not in FAULTS:
        with open(local(result), "a") as f:
            for i, v in enumerate(vals_s):
                f.write(f"{Path(model).parent.name},{v:g},{peak},97,{i}\n")
    total = sum(vals_s)
    if "-x" in args:
        out(f"Setting intra_op_num_threads to {args[args.index('-x') + 1]}")
    out("Session creation time cost: 0.0412116 s")
    out("First inference time cost: 21 ms")
    out(f"Total inference time cost: {total:g} s")
    out(f"Total inference requests: {r}")
    out(f"Average inference time cost: {total / r * 1000:g} ms")
    out(f"Total inference run time: {total * 1.001:g} s")
    out(f"Number of inferences per second: {r / (total * 1.001):g} ")
    out("Avg CPU usage: 97 %")
    out(f"Peak working set size: {peak} bytes")
    if "-s" in args:
        s = sorted(vals_s)
        n = len(s)
        out(f"Min Latency: {s[0]:g} s")
        out(f"Max Latency: {s[-1]:g} s")
        for name, q in (("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999)):
            out(f"{name} Latency: {s[int(n * q)]:g} s")
    return 0


TOOLS = {"benchmark_model": run_benchmark_model, "executor_runner": run_executor_runner,
         "onnxruntime_perf_test": run_ort_perf_test}


# ------------------------------------------------------------------------------ shell
def logcat_file() -> Path:
    return STATE / f"logcat_{SERIAL}.txt"


def rendezvous(serial: str) -> str | None:
    """ADB_DOUBLE_RENDEZVOUS: wait until every listed serial has started its first tool run.
    Returns an error message on timeout, else None."""
    names = [n for n in os.environ.get("ADB_DOUBLE_RENDEZVOUS", "").split(",") if n]
    if serial not in names:
        return None
    d = STATE / "rendezvous"
    d.mkdir(exist_ok=True)
    (d / serial).touch()
    limit = float(os.environ.get("ADB_DOUBLE_RENDEZVOUS_TIMEOUT_S", "30"))
    deadline = time.monotonic() + limit
    while not all((d / n).exists() for n in names):
        if time.monotonic() > deadline:
            missing = [n for n in names if not (d / n).exists()]
            return f"rendezvous timed out after {limit:g} s: {', '.join(missing)} never started a tool run"
        time.sleep(0.02)
    return None


def thermal_status() -> int:
    return min(counter("thermal") // 2, 3) if "hot" in FAULTS else 0


def shell(dev: dict, command: str) -> int:
    tokens = shlex.split(command)
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        tokens.pop(0)
    if not tokens:
        return 0
    cmd = tokens[0]
    if cmd == "getprop":
        props = {"ro.product.device": dev.get("device", ""), "ro.product.model": dev.get("model", ""),
                 "ro.product.cpu.abi": dev.get("abi", "arm64-v8a")}
        value = props.get(tokens[1], "")
        if "bad-getprop" in FAULTS and tokens[1] == "ro.product.device":
            value = "blue\x1b[31mjay"
        out(value)
        return 0
    if cmd == "mkdir":
        local(tokens[-1]).mkdir(parents=True, exist_ok=True)
        return 0
    if cmd == "chmod":
        p = local(tokens[-1])
        if not p.exists():
            err(f"chmod: {tokens[-1]}: No such file or directory")
            return 1
        p.chmod(0o755)
        return 0
    if cmd == "rm":
        shutil.rmtree(local(tokens[-1]), ignore_errors=True)
        return 0
    if cmd == "grep" and "cpuinfo_max_freq" in command:
        if "no-cpufreq" in FAULTS:
            err("grep: /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq: No such file or directory")
            return 2
        for c, f in CPU_FREQS.items():
            bad = "bad-cpufreq" in FAULTS and c == 7
            out(f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq:{'fast' if bad else f}")
        return 0
    if cmd == "dumpsys" and tokens[1:] == ["thermalservice"]:
        if "no-thermal" in FAULTS:
            err("Can't find service: thermalservice")
            return 1
        st = thermal_status()
        out("IsStatusOverride: false\nThermalEventListeners:\n\tcallbacks: 1\n\tkilled: false\n\tbroadcasts count: -1")
        out(f"Thermal Status: {st}")
        out("Cached temperatures:\n\tTemperature{mValue=37.1, mType=0, mName=BIG, mStatus=0}")
        out("HAL Ready: true\nHAL connection:\n\tThermalHAL 2.0 connected: yes")
        out("Current temperatures from HAL:")
        out(f"\tTemperature{{mValue={38.0 + 4 * st}, mType=0, mName=BIG, mStatus={st}}}")
        out("\tTemperature{mValue=36.2, mType=0, mName=LITTLE, mStatus=0}")
        out("\tTemperature{mValue=33.5, mType=3, mName=skin_therm, mStatus=0}")
        return 0
    if cmd == "cat" and "thermal_zone" in command:
        if "no-thermal" in FAULTS:
            err("cat: /sys/class/thermal/thermal_zone*/temp: No such file or directory")
            return 1
        out("38000\n36500")
        return 0
    if cmd == "cat":
        p = local(tokens[1])
        if not p.is_file():
            err(f"cat: {tokens[1]}: No such file or directory")
            return 1
        sys.stdout.write(p.read_text())
        return 0
    if cmd == "logcat":
        log = logcat_file()
        if "-c" in tokens:
            log.unlink(missing_ok=True)
        elif "-d" in tokens:
            if log.exists():
                sys.stdout.write(log.read_text())
        return 0
    if cmd == "taskset":
        tokens = tokens[2:]
        cmd = tokens[0]
    name = Path(cmd).name
    if name in TOOLS:
        p = local(cmd)
        if not p.is_file():
            err(f"/system/bin/sh: {cmd}: inaccessible or not found")
            return 127
        if not os.access(p, os.X_OK):
            err(f"/system/bin/sh: {cmd}: can't execute: Permission denied")
            return 126
        n_run = counter("tool_runs")
        if "disappear-once" in FAULTS and n_run == 1:
            err(f"error: device '{dev['serial']}' not found")
            return 1
        if "disappear" in FAULTS and n_run >= 1:  # every device: calls fail, `adb devices` still lists it
            (STATE / "gone").write_text("1")
            err(f"error: device '{dev['serial']}' not found")
            return 1
        if n_run > DISAPPEAR_AFTER.get(dev["serial"], n_run):  # this device only, unlisted from now on
            gone_marker(dev["serial"]).write_text("1")
            err(f"error: device '{dev['serial']}' not found")
            return 1
        if n_run == 1:
            problem = rendezvous(dev["serial"])
            if problem:
                err(f"adb test double: {problem}")
                return 1
        if "tool-crash" in FAULTS:
            out("INFO: STARTING!")
            err("Segmentation fault")
            return 139
        if "tool-garbage" in FAULTS:
            out("hello from a tool that prints nothing useful")
            return 0
        return TOOLS[name](tokens[1:])
    err(f"/system/bin/sh: {cmd}: inaccessible or not found")
    return 127


def hang() -> int:
    """A hung adb: fork a grandchild that sleeps (its pid goes to grandchild.pid), then hang."""
    import subprocess
    import time

    child = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(600)"])
    (STATE / "grandchild.pid").write_text(str(child.pid))
    time.sleep(600)
    return 0


def main(argv: list[str]) -> int:
    global SERIAL
    STATE.mkdir(parents=True, exist_ok=True)
    append_line("calls.jsonl", argv)
    SERIAL = argv[1] if argv[:1] == ["-s"] and len(argv) > 1 else None
    start = time.time()
    rc = 1
    try:
        rc = dispatch(argv)
    finally:
        append_line("spans.jsonl", {"serial": SERIAL, "argv": argv, "pid": os.getpid(), "start": start,
                                    "end": time.time(), "rc": rc})
    return rc


def dispatch(argv: list[str]) -> int:
    global SERIAL
    if "hang" in FAULTS:
        return hang()
    if "noise" in FAULTS:
        out("@@@ hello, I am not adb @@@")
        return 0
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if not argv:
        err("adb: usage: no command specified")
        return 1
    if argv[0] == "devices":
        out("List of devices attached")
        if "garbage" in FAULTS:
            out("@@@ @@@")
            return 0
        for d in devices():
            extra = (f" usb:1-1 product:{d.get('device')} model:{d.get('model', '').replace(' ', '_')} "
                     f"device:{d.get('device')} transport_id:3") if d["state"] == "device" else " usb:1-1 transport_id:3"
            out(f"{d['serial']:<22} {d['state']}{extra}")
        out("")
        return 0
    devs = {d["serial"]: d for d in devices()}
    if serial is None:
        if len(devs) != 1:
            err("adb: more than one device/emulator" if devs else "adb: no devices/emulators found")
            return 1
        serial = next(iter(devs))
        SERIAL = serial
    if serial not in devs or (STATE / "gone").exists():  # never connected, or gone (disappear, disappear-after)
        err(f"adb: device '{serial}' not found")
        return 1
    dev = devs[serial]
    if dev["state"] != "device":
        err(f"adb: device {dev['state']}")
        return 1
    if argv[0] == "push":
        src, dst = Path(argv[1]), argv[2]
        target = local(dst)
        if dst.endswith("/"):
            target = target / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        out(f"{src}: 1 file pushed, 0 skipped. 48.2 MB/s ({src.stat().st_size} bytes in 0.001s)")
        return 0
    if argv[0] == "shell":
        return shell(dev, " ".join(argv[1:]))
    err(f"adb test double: unsupported command {argv!r}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
