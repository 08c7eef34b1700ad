"""Android benchmark over adb with the official on-device tools.

Steps: pick the device (serial or profile), read its fastest cores from
``/sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq``, push the tool (+ its libraries) and
the artifact's files into a fresh ``/data/local/tmp/optim-XXXX`` directory, then per trial:
thermal status → ``taskset MASK tool ...`` → thermal status → cool down (longer, up to 3×,
while the phone still reports throttling); parse the output;
remove the directory (also on failure).

Which statistics exist depends on the tool (see :mod:`optim.device_bench.parsers`):
``executor_runner`` and ``onnxruntime_perf_test`` (result file) give per-iteration times,
``benchmark_model`` gives aggregates only — p90/p99 and the interval on p95 are then listed as
unavailable, never estimated.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from optim.device_bench.adb import Adb, ConnectedDevice, is_valid_serial, require_ready
from optim.device_bench.devices import Device
from optim.device_bench.config import DeviceConfig, ToolConfig, load_config
from optim.device_bench.errors import (DeviceNotFoundError, DeviceOfflineError, DeviceUnauthorizedError,
                                       ToolNotConfiguredError, ToolRunError)
from optim.device_bench.process import pause
from optim.device_bench.profiles import DeviceProfile, all_profiles, match_profile
from optim.device_bench.result import BenchResult, DeviceInfo
from optim.device_bench.stats import DEFAULT_DRIFT_PCT, summarize_aggregate_trials, summarize_trials
from optim.device_bench.target import Target, resolve_target
from optim.errors import InputError, ToolError
from optim.runtimes.device_tool import DeviceTool, ToolCall, ToolOutput
from optim.runtimes.registry import device_tools, formats

REMOTE_ROOT = "/data/local/tmp"
THERMAL_STATUS = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}


# ----------------------------------------------------------------------------- device choice
@dataclass
class SelectedDevice:
    adb: Adb
    serial: str
    product_device: str | None
    model: str | None
    abi: str | None
    profile: DeviceProfile | None


def _props(adb: Adb) -> tuple[str | None, str | None, str | None]:
    return (adb.getprop("ro.product.device") or None, adb.getprop("ro.product.model") or None,
            adb.getprop("ro.product.cpu.abi") or None)


def select_device(spec: str, adb: Adb | None = None, config: DeviceConfig | None = None) -> SelectedDevice:
    """Find the connected device named by ``spec`` (an adb serial or a profile key).

    Raises:
        InputError (exit 2): ``spec`` is neither a profile nor a connected serial (nor could be
            a serial), or several connected devices match the profile (choose one by serial).
        DeviceNotFoundError: no device connected, or none matches the profile.
        DeviceUnauthorizedError, DeviceOfflineError: the device is not usable.
        ToolRunError: adb's answers cannot be parsed (see :func:`optim.device_bench.adb.parse_devices`).
    """
    profiles = all_profiles(config)
    if spec not in profiles and not is_valid_serial(spec):
        raise InputError(f"--device {spec!r} is neither a device profile ({', '.join(sorted(profiles))}) nor an adb "
                         "serial; see `optim devices`")
    adb = adb or Adb()
    devices = adb.devices()
    if not devices:
        raise DeviceNotFoundError("no Android device connected (`adb devices` lists none): connect the phone by USB "
                                  "with USB debugging enabled (Settings → Developer options)")
    by_serial = {d.serial: d for d in devices}
    if spec in by_serial:
        dev = by_serial[spec]
        require_ready(dev)
        a = adb.for_device(dev.serial)
        pd, model, abi = _props(a)
        return SelectedDevice(a, dev.serial, pd, model, abi, match_profile(profiles, dev.serial, pd))
    if spec not in profiles:
        raise InputError(f"--device {spec!r} is neither a device profile ({', '.join(sorted(profiles))}) nor the "
                         f"serial of a connected device ({', '.join(by_serial) or 'none'}); see `optim devices` "
                         "(or add a [profiles.NAME] section to devices.toml)")
    profile = profiles[spec]
    matches: list[SelectedDevice] = []
    not_ready: list[ConnectedDevice] = []
    for dev in devices:
        if not dev.ready:
            not_ready.append(dev)
            continue
        a = adb.for_device(dev.serial)
        pd, model, abi = _props(a)
        if profile.matches(dev.serial, pd):
            matches.append(SelectedDevice(a, dev.serial, pd, model, abi, profile))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InputError(f"--device {spec}: several connected devices match profile {spec} "
                         f"({', '.join(m.serial for m in matches)}); choose one with --device SERIAL")
    if not_ready:
        require_ready(not_ready[0])  # raises the unauthorized/offline error for the first one
    raise DeviceNotFoundError(f"no connected device matches profile {spec} (ro.product.device in "
                              f"{list(profile.codenames)}); connected: {', '.join(by_serial)}")


# ----------------------------------------------------------------------------- CPU pinning
_FREQ_LINE = re.compile(r"/sys/devices/system/cpu/cpu(\d{1,4})/cpufreq/cpuinfo_max_freq:(\d{1,9})")


def parse_max_freqs(text: str) -> dict[int, int]:
    """``grep -H . /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq`` → {cpu: kHz}.

    Every non-blank line must be ``/sys/devices/system/cpu/cpuN/cpufreq/cpuinfo_max_freq:KHZ``
    with a positive integer frequency and each CPU listed once. Raises :class:`ToolRunError`
    (exit 3) quoting the first other line: a garbled reply never becomes a core mask."""
    freqs: dict[int, int] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        m = _FREQ_LINE.fullmatch(s)
        if not m or int(m.group(2)) <= 0 or int(m.group(1)) in freqs:
            raise ToolRunError(f"adb: the device's cpuinfo_max_freq read returned {s[:160]!r}, not "
                               "'/sys/devices/system/cpu/cpuN/cpufreq/cpuinfo_max_freq:KHZ' (a positive integer, each "
                               "CPU once); optim will not pin to cores it cannot identify")
        freqs[int(m.group(1))] = int(m.group(2))
    return freqs


def choose_cores(freqs: dict[int, int], threads: int | None) -> list[int]:
    """The CPUs to pin to: the ``threads`` fastest (by max frequency, then lowest number);
    all cores of the fastest frequency when ``threads`` is None."""
    if not freqs:
        return []
    order = sorted(freqs, key=lambda c: (-freqs[c], c))
    if threads is None:
        top = max(freqs.values())
        return sorted(c for c in order if freqs[c] == top)
    return sorted(order[: min(threads, len(order))])


def cpu_mask(cores: list[int]) -> str:
    """CPU numbers → taskset hex mask, e.g. [6, 7] → 'c0'."""
    return format(sum(1 << c for c in cores), "x")


# ----------------------------------------------------------------------------- thermal
_TH_STATUS = re.compile(r"Thermal Status:\s*(\S+)")
_TH_TEMP = re.compile(r"Temperature\{mValue=([^,]*), mType=([^,]*), mName=([^,]*)")
_TEMP_VALUE = re.compile(r"-?\d{1,4}(?:\.\d+)?")


def _thermal_error(what: str, value: str) -> ToolRunError:
    return ToolRunError(f"adb: the device's thermal service reported {what} {value[:80]!r}, which is not a valid "
                        "reading; check the device (or the adb on PATH)")


def parse_thermal(dumpsys: str) -> dict:
    """``dumpsys thermalservice`` → {"status": int|None, "status_name", "max_cpu_temp_c": float|None}.

    Temperatures: the largest ``mValue`` of type 0 (CPU) in "Current temperatures from HAL"
    (or anywhere when that section is absent). The status must be an integer 0–6
    (``PowerManager.THERMAL_STATUS_*``) and every temperature a decimal number of °C; anything
    else raises :class:`ToolRunError` (never a NaN or a made-up status)."""
    m = _TH_STATUS.search(dumpsys)
    status = None
    if m:
        if not m.group(1).isdigit() or int(m.group(1)) not in THERMAL_STATUS:
            raise _thermal_error("Thermal Status", m.group(1))
        status = int(m.group(1))
    section = dumpsys.split("Current temperatures from HAL:", 1)
    temps_text = section[1] if len(section) == 2 else dumpsys
    cpu = []
    for v, typ, _ in _TH_TEMP.findall(temps_text):
        if not _TEMP_VALUE.fullmatch(v.strip()):
            raise _thermal_error("temperature", v)
        if typ.strip() == "0":
            cpu.append(float(v))
    return {"status": status, "status_name": THERMAL_STATUS.get(status) if status is not None else None,
            "max_cpu_temp_c": max(cpu) if cpu else None, "source": "dumpsys thermalservice"}


def parse_thermal_zones(text: str) -> float | None:
    """``cat /sys/class/thermal/thermal_zone*/temp`` (one integer m°C per line) → the maximum in
    °C, or None when empty. Raises :class:`ToolRunError` for any other line."""
    vals = []
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if not re.fullmatch(r"-?\d{1,7}", s):
            raise _thermal_error("thermal zone temperature", s)
        vals.append(int(s))
    return max(vals) / 1000.0 if vals else None


def read_thermal(adb: Adb) -> dict:
    proc = adb.shell("dumpsys thermalservice", what="thermal status", check=False)
    if proc.returncode == 0 and "Thermal Status" in proc.stdout:
        return parse_thermal(proc.stdout)
    proc = adb.shell("cat /sys/class/thermal/thermal_zone*/temp", what="thermal zones", check=False)
    return {"status": None, "status_name": None,
            "max_cpu_temp_c": parse_thermal_zones(proc.stdout) if proc.returncode == 0 else None,
            "source": "/sys/class/thermal (max over zones, m°C/1000)"}


# ----------------------------------------------------------------------------- tool commands
def tool_for(fmt: str, path: str | Path) -> DeviceTool:
    """The on-device tool of format ``fmt`` (its ``FormatSpec.device_tool``). Raises
    :class:`InputError` naming ``path`` for a checkpoint or a format without one."""
    spec = formats().get(fmt)
    if spec is None:
        raise InputError(f"{path} is a {fmt} checkpoint: only exported artifacts "
                         f"({', '.join(s.suffix for s in device_tools().values())}) run on Android; export it with "
                         "`optim quantize` first")
    if spec.device_tool is None:
        raise InputError(f"format {fmt!r} has no on-device tool (use "
                         f"{', '.join(s.suffix for s in device_tools().values())} artifacts on Android)")
    return spec.device_tool


def _failure_tail(text: str, n: int = 12) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return "\n".join(lines[-n:]) if lines else "(no output)"


def _rc_meaning(rc: int) -> str:
    signals = {134: "SIGABRT", 135: "SIGBUS", 136: "SIGFPE", 137: "SIGKILL (out of memory?)", 139: "SIGSEGV"}
    return f"crashed ({signals[rc]})" if rc in signals else f"exited with status {rc}"


# ----------------------------------------------------------------------------- the benchmark
def bench_android(path: str | Path, device: str, *, threads: int | None = None, runs: int = 100, warmup: int = 10,
                  trials: int = 3, cooldown_s: float | None = None, drift_pct: float = DEFAULT_DRIFT_PCT,
                  config: DeviceConfig | None = None, adb: Adb | None = None, tool_timeout_s: float = 900.0,
                  log: Callable[[str], None] | None = None) -> BenchResult:
    """Benchmark an artifact on an Android phone named by serial or profile → :class:`BenchResult`.

    Raises InputError (bad artifact, format without a tool), ToolNotConfiguredError,
    AdbNotFoundError, DeviceNotFoundError, DeviceUnauthorizedError, DeviceOfflineError,
    DeviceDisconnectedError, ToolRunError (crash, non-zero exit, unparseable output).
    """
    log = log or (lambda msg: None)
    target = resolve_target(path)
    device_tool = tool_for(target.format, path)
    config = config or load_config()
    tool_name = device_tool.name
    tool = config.tools.get(tool_name)
    if tool is None:
        flag = device_tool.option
        raise ToolNotConfiguredError(
            f"no {tool_name} is set up for .{target.format} artifacts: build or download the official arm64-v8a "
            f"{tool_name} and run `optim devices setup {flag} PATH` (optim ships no Android binaries)")
    for p in (tool.path, *tool.libs):
        if not Path(p).is_file():
            raise ToolNotConfiguredError(f"{tool_name} is set up as {p}, which does not exist; run `optim devices setup` again")

    sel = select_device(device, adb, config)
    a = sel.adb
    warnings: list[str] = []
    if sel.profile is None:
        warnings.append(f"device {sel.serial} ({sel.product_device}) matches no profile: add one to "
                        f"{config.source} to name it in reports")
    if sel.abi and sel.abi != "arm64-v8a":
        warnings.append(f"device ABI is {sel.abi}; the tool must be built for it")

    freq_proc = a.shell("grep -H . /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq", what="reading CPU max frequencies",
                        check=False)
    freqs = parse_max_freqs(freq_proc.stdout)
    cores = choose_cores(freqs, threads)
    n_threads = threads or (len(cores) if cores else 1)
    mask = cpu_mask(cores) if cores else None
    if mask is None:
        warnings.append("could not read cpuinfo_max_freq on the device: the tool was NOT pinned to big cores")
    elif sel.profile is not None and threads is None:
        expected = sel.profile.fastest_cluster_cores
        if expected is not None and expected != len(cores):
            warnings.append(f"device reports {len(cores)} fastest cores (cpu {cores}) but profile {sel.profile.key} lists "
                            f"{expected} in its fastest cluster; pinned to what the device reports")
    cooldown = sel.profile.cooldown_s if (cooldown_s is None and sel.profile) else (cooldown_s if cooldown_s is not None else 30.0)

    remote_dir = f"{REMOTE_ROOT}/optim-{secrets.token_hex(4)}"
    tool_remote = f"{remote_dir}/{tool.path.name}"
    model_remote = f"{remote_dir}/{target.model_file.name}"  # type: ignore[union-attr]
    extra_remote = [f"{remote_dir}/{f.name}" for f in target.files if f != target.model_file]
    outputs: list[ToolOutput] = []
    raw: list[str] = []
    thermal: list[dict] = []
    try:
        a.shell(f"mkdir -p {remote_dir}", what="creating the work directory")
        log(f"pushing {tool_name} and {len(target.files)} artifact file(s) to {sel.serial}:{remote_dir}")
        for f in (tool.path, *tool.libs, *target.files):
            a.push(str(f), f"{remote_dir}/{Path(f).name}")
        a.shell(f"chmod 755 {tool_remote}", what=f"chmod of {tool_name}")
        for t in range(trials):
            before = read_thermal(a)
            call = ToolCall(tool=tool_remote, model=model_remote, extra=tuple(extra_remote), threads=n_threads,
                            runs=runs, warmup=warmup, result_file=f"{remote_dir}/result_{t}.txt")
            cmd = " ".join(shlex.quote(arg) for arg in device_tool.command(call))
            cmd = f"LD_LIBRARY_PATH={remote_dir} " + (f"taskset {mask} " if mask else "") + cmd
            if device_tool.before_trial:
                a.shell(device_tool.before_trial, what=f"preparing {tool_name}", check=False)
            log(f"trial {t + 1}/{trials}: {tool_name} ({warmup} warm-up + {runs} runs, {n_threads} threads"
                + (f", cpu mask {mask}" if mask else "") + ")")
            proc = a.run(["shell", cmd], what=f"{tool_name} trial {t + 1}", timeout=tool_timeout_s)
            text = (proc.stdout or "") + "\n" + (proc.stderr or "")
            raw.append(text)
            if proc.returncode != 0:
                raise ToolRunError(f"{tool_name} {_rc_meaning(proc.returncode)} on {sel.serial} in trial {t + 1}; "
                                   f"last output:\n{_failure_tail(text)}")
            outputs.append(device_tool.parse(text, call, _reader(a)))
            thermal.append({"trial": t + 1, "before": before, "after": read_thermal(a)})
            if t < trials - 1 and cooldown > 0:
                log(f"cooling down {cooldown:g} s")
                thermal[-1]["cooldown_s"] = _cool_down(a, cooldown)
    finally:
        try:
            a.shell(f"rm -rf {remote_dir}", what="cleaning up", check=False)
        except ToolError:  # a disconnected or hung device: keep the original error, warn about the leftovers
            warnings.append(f"could not remove {remote_dir} from the device (it was disconnected)")

    if a.retries_used:
        warnings.append(f"device connection dropped and was retried once during: {', '.join(a.retries_used)}")
    return _assemble(target, sel, outputs, thermal, raw, warnings, threads=n_threads, runs=runs, warmup=warmup,
                     trials=trials, mask=mask, cores=cores, freqs=freqs, tool=tool, drift_pct=drift_pct)


class AdbDevice(Device):
    """An Android phone over adb (``--device pixel6a`` or an adb serial): the format's official
    on-device tool (``FormatSpec.device_tool``), see :func:`bench_android`. Asked last: it
    claims any profile name and anything shaped like an adb serial."""

    kind = "adb"
    fallback = True

    @classmethod
    def claims(cls, name: str) -> bool:
        return True  # select_device() says precisely why a name is neither a profile nor a serial

    def identity(self) -> str:
        """``"adb serial SERIAL"`` of the connected phone this name means (a profile is resolved
        with :func:`select_device`, which raises as documented there)."""
        return f"adb serial {select_device(self.name).serial}"

    def bench(self, artifact, *, threads=None, runs=100, warmup=10, trials=3, cooldown_s=None,
              drift_pct=DEFAULT_DRIFT_PCT, load_kwargs=None, measure_memory=True, log=None) -> BenchResult:
        return bench_android(artifact, self.name, threads=threads, runs=runs, warmup=warmup, trials=trials,
                             cooldown_s=cooldown_s, drift_pct=drift_pct, log=log)


def _cool_down(a: Adb, seconds: float, max_factor: float = 3.0) -> float:
    """Sleep ``seconds``; while the thermal status is still above 0 (throttling), keep waiting
    in steps of at most 10 s, up to ``max_factor × seconds`` in all. Returns the time waited.
    Ends early with :class:`~optim.device_bench.process.ToolStoppedError` on an interrupt."""
    pause(seconds)
    waited = seconds
    while waited < max_factor * seconds:
        status = read_thermal(a).get("status")
        if not status:
            break
        step = min(10.0, seconds)
        pause(step)
        waited += step
    return waited


def _reader(a: Adb):
    """A :data:`optim.runtimes.device_tool.DeviceReader` over ``adb shell``: stdout, or None
    when the command failed."""
    def read(command: str, what: str) -> str | None:
        proc = a.shell(command, what=what, check=False)
        return proc.stdout if proc.returncode == 0 else None

    return read


def _assemble(target: Target, sel: SelectedDevice, outputs: list[ToolOutput], thermal: list[dict], raw: list[str],
              warnings: list[str], *, threads: int, runs: int, warmup: int, trials: int, mask: str | None,
              cores: list[int], freqs: dict[int, int], tool: ToolConfig, drift_pct: float) -> BenchResult:
    notes = sorted({n for o in outputs for n in o.notes})
    if all(o.latencies_ms is not None for o in outputs):
        per_trial = [np.asarray(o.latencies_ms)[warmup: warmup + runs] for o in outputs]
        summary = summarize_trials(per_trial, drift_pct=drift_pct)
    elif all(o.aggregate is not None for o in outputs):
        aggs = [o.aggregate for o in outputs]
        summary = summarize_aggregate_trials(aggs, percentile_method=outputs[0].percentile_method or "",  # type: ignore[arg-type]
                                             drift_pct=drift_pct)
        counts = {a.count for a in aggs}  # type: ignore[union-attr]
        if outputs[0].tool == "benchmark_model" and counts != {runs}:
            warnings.append(f"benchmark_model ran {sorted(counts)} timed iterations instead of {runs} (--max_secs reached?)")
    else:
        raise ToolRunError("trials reported different kinds of output (per-iteration and aggregate); rerun")
    peaks = [o.peak_memory_mb for o in outputs if o.peak_memory_mb is not None]
    peak = max(peaks) if peaks and len(peaks) == len(outputs) else None
    unavailable = list(summary.unavailable)
    if peak is None:
        unavailable.append("peak_memory_mb")
    for th in thermal:
        after = th["after"].get("status")
        if after is not None and after > 0:
            warnings.append(f"thermal status {THERMAL_STATUS.get(after, after)} after trial {th['trial']}: the phone "
                            "may have throttled; cool down longer")
    if thermal and all(th["before"].get("status") is None and th["before"].get("max_cpu_temp_c") is None for th in thermal):
        warnings.append("thermal state could not be read (no dumpsys thermalservice, no /sys/class/thermal)")
    profile = sel.profile
    details = {"product_device": sel.product_device, "pinned_cpus": cores,
               "cpu_max_khz": {str(k): v for k, v in sorted(freqs.items())},
               "tool_path": str(tool.path)}
    if profile is not None:
        details.update(profile_name=profile.name, soc=profile.soc,
                       clusters=[c.model_dump() for c in profile.clusters])
    return BenchResult(
        artifact=str(target.path), format=target.format,
        device=DeviceInfo(name=profile.key if profile else (sel.product_device or sel.serial), kind="android",
                          serial=sel.serial, profile=profile.key if profile else None, model=sel.model, abi=sel.abi,
                          cpu_mask=mask, details=details),
        threads=threads, runs=runs, warmup=warmup, trials=trials, latency=summary.latency, p95_ci_ms=summary.p95_ci,
        trials_p95_ms=summary.trials_p95, trial_spread_pct=summary.spread_pct, peak_memory_mb=peak,
        percentile_method=summary.percentile_method, unavailable=unavailable,
        warnings=warnings + notes + summary.warnings, tool=outputs[0].tool,
        memory_method=outputs[0].memory_method if peak is not None else None,
        input_description=f"the tool's own synthetic input ({outputs[0].tool})", thermal=thermal, raw_outputs=raw,
    )


__all__ = ["bench_android", "select_device", "choose_cores", "cpu_mask", "parse_max_freqs", "parse_thermal",
           "DeviceNotFoundError", "DeviceUnauthorizedError", "DeviceOfflineError"]
