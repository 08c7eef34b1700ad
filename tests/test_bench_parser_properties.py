"""Property-based tests (hypothesis) of every parser of text that comes back from a phone.

On arbitrary text — random, or made of the tokens the real formats use so that near-misses
are common — each parser either returns a well-formed result or raises ToolRunError (exit 3).
Never another exception, never a NaN, infinite or negative latency, never an invented device.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optim.device_bench.adb import KNOWN_STATES, is_valid_serial, parse_devices
from optim.device_bench.android import parse_max_freqs, parse_thermal, parse_thermal_zones
from optim.device_bench.errors import ToolRunError
from optim.device_bench.parsers import (parse_benchmark_model, parse_executor_runner, parse_ort_perf_test,
                                        parse_ort_result_file)

SETTINGS = settings(max_examples=50, deadline=None)

numbers = st.one_of(st.integers(-10**6, 10**12).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["nan", "-inf", "inf", "1e400", "-0", "1.2.3", "", "1e+06", "2.95034e+06"]))


def lines_of(*templates: str):
    """Text made of lines drawn from ``templates`` with random numbers, plus random lines."""
    line = st.one_of(
        st.tuples(st.sampled_from(templates), st.lists(numbers, min_size=12, max_size=12)).map(
            lambda t: t[0].format(*t[1])),
        st.text(max_size=60),
    )
    return st.lists(line, max_size=12).map("\n".join)


BM = lines_of("count={} first={} curr={} min={} max={} avg={} std={}",
              "count={} first={} curr={} min={} max={} avg={} std={} p5={} median={} p95={}",
              "count={} curr={}(all same)", "count={}",
              "Inference timings in us: Init: {}, First inference: {}, Warmup (avg): {}, Inference (avg): {}",
              "Overall peak memory footprint (MB) via periodic monitoring: {}")
ET = lines_of("I 00:00:00.0001 executorch:executor_runner.cpp:705] Iteration {} of {}: {} ms",
              "Iteration {} of {}: {} ms", "Model executed successfully {} time(s) in {} ms.")
ORT = lines_of("Total inference requests: {}", "Average inference time cost: {} ms", "Min Latency: {} s",
               "Max Latency: {} s", "P50 Latency: {} s", "P95 Latency: {} s", "P99 Latency: {} s",
               "Peak working set size: {} bytes", "Runs: {}")
ORT_FILE = lines_of("model,{},{},97,{}", "{},{},{},{},{}")
DEVICES = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(
        st.tuples(st.one_of(st.from_regex(r"[A-Za-z0-9]{4,16}", fullmatch=True), st.text(max_size=12)),
                  st.one_of(st.sampled_from(sorted(KNOWN_STATES)), st.text(max_size=12)),
                  st.lists(st.one_of(st.sampled_from(["usb:1-1", "product:bluejay", "model:Pixel_6a", "transport_id:3"]),
                                     st.text(max_size=10)), max_size=4)).map(
            lambda t: f"{t[0]}\t{t[1]} " + " ".join(t[2])),
        st.sampled_from(["* daemon started successfully", "", "List of devices attached"]),
        st.text(max_size=40)), max_size=6).map(lambda ls: "List of devices attached\n" + "\n".join(ls)),
)


def finite_non_negative(*values) -> bool:
    return all(v is None or (math.isfinite(v) and v >= 0) for v in values)


def check_output(parse, text):
    try:
        out = parse(text)
    except ToolRunError:
        return None
    if out.latencies_ms is not None:
        assert out.aggregate is None and len(out.latencies_ms) >= 1
        assert np.all(np.isfinite(out.latencies_ms)) and np.all(out.latencies_ms >= 0)
    else:
        a = out.aggregate
        assert a is not None and a.count >= 1 and a.min <= a.max
        assert finite_non_negative(a.mean, a.std, a.min, a.max, a.p50, a.p90, a.p95, a.p99)
    assert out.peak_memory_mb is None or (math.isfinite(out.peak_memory_mb) and out.peak_memory_mb > 0)
    return out


@SETTINGS
@given(BM)
def test_benchmark_model_parser_on_arbitrary_text(text):
    check_output(parse_benchmark_model, text)


@SETTINGS
@given(ET, st.one_of(st.none(), st.integers(1, 5)))
def test_executor_runner_parser_on_arbitrary_text(text, expected):
    out = check_output(lambda t: parse_executor_runner(t, expected=expected), text)
    if out is not None and expected is not None:
        assert len(out.latencies_ms) >= expected


@SETTINGS
@given(ORT)
def test_ort_perf_test_parser_on_arbitrary_text(text):
    check_output(parse_ort_perf_test, text)


@SETTINGS
@given(ORT_FILE)
def test_ort_result_file_parser_on_arbitrary_text(text):
    check_output(parse_ort_result_file, text)


@SETTINGS
@given(DEVICES)
def test_adb_devices_parser_never_invents_a_device(text):
    try:
        devices = parse_devices(text)
    except ToolRunError as e:
        assert "adb" in str(e)
        return
    serials = [d.serial for d in devices]
    assert len(serials) == len(set(serials))
    for d in devices:
        assert is_valid_serial(d.serial) and d.state in KNOWN_STATES
        assert d.serial in text  # every device comes from a line of the text, verbatim


@SETTINGS
@given(lines_of("/sys/devices/system/cpu/cpu{}/cpufreq/cpuinfo_max_freq:{}"))
def test_cpufreq_parser_gives_positive_integers_or_tool_error(text):
    try:
        freqs = parse_max_freqs(text)
    except ToolRunError:
        return
    assert all(isinstance(c, int) and c >= 0 and isinstance(f, int) and f > 0 for c, f in freqs.items())


@SETTINGS
@given(lines_of("Thermal Status: {}", "Current temperatures from HAL:",
                "\tTemperature{{mValue={}, mType={}, mName=BIG, mStatus={}}}"), lines_of("{}"))
def test_thermal_parsers_give_valid_readings_or_tool_error(dumpsys, zones):
    try:
        th = parse_thermal(dumpsys)
        assert th["status"] is None or 0 <= th["status"] <= 6
        assert th["max_cpu_temp_c"] is None or math.isfinite(th["max_cpu_temp_c"])
    except ToolRunError:
        pass
    try:
        t = parse_thermal_zones(zones)
        assert t is None or math.isfinite(t)
    except ToolRunError:
        pass


@pytest.mark.parametrize("text, why", [
    ("List of devices attached\n@@@ @@@\n", "serial '@@@'"),
    ("@@@ hello, I am not adb @@@\n", "no 'List of devices attached' header"),
    ("List of devices attached\n28011JEGR09914 wat usb:1-1\n", "unknown device state 'wat'"),
    ("List of devices attached\n28011JEGR09914 device usb:1-1 ???\n", "is not key:value"),
    ("List of devices attached\nA device\nA device\n", "listed twice"),
    ("List of devices attached\nlonely\n", "no state"),
])
def test_adb_devices_garbage_is_a_tool_error_quoting_the_line(text, why):
    with pytest.raises(ToolRunError, match="adb") as e:
        parse_devices(text)
    assert why in str(e.value)


def test_adb_devices_real_formats_still_parse():
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\nList of devices attached\n"
            "28011JEGR09914         device usb:1-1 product:bluejay model:Pixel_6a device:bluejay transport_id:3\n"
            "emulator-5554          offline transport_id:1\n"
            "192.168.1.5:5555       unauthorized transport_id:4\n"
            "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); see "
            "[http://developer.android.com/tools/device.html] usb:1-2 transport_id:5\n"
            "adb-28011JEGR-x1._adb-tls-connect._tcp\tdevice\n\n")
    devs = parse_devices(text)
    assert [(d.serial, d.state) for d in devs] == [
        ("28011JEGR09914", "device"), ("emulator-5554", "offline"), ("192.168.1.5:5555", "unauthorized"),
        ("0123456789ABCDEF", "no permissions"), ("adb-28011JEGR-x1._adb-tls-connect._tcp", "device")]
    assert devs[0].props["model"] == "Pixel_6a" and devs[3].props == {"usb": "1-2", "transport_id": "5"}


@pytest.mark.parametrize("text", ["/sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq:fast",
                                  "/sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq:0",
                                  "/sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq:-5",
                                  "garbage"])
def test_non_numeric_cpufreq_never_becomes_a_core_mask(text):
    with pytest.raises(ToolRunError, match="cpuinfo_max_freq"):
        parse_max_freqs("/sys/devices/system/cpu/cpu6/cpufreq/cpuinfo_max_freq:2802000\n" + text)


@pytest.mark.parametrize("text, what", [
    ("count=5 first=nan curr=1 min=1 max=2 avg=1 std=0\nInference timings in us: x", "first"),
    ("count=5 first=1 curr=1 min=-3 max=2 avg=1 std=0\nInference timings in us: x", "min"),
    ("count=5 first=1 curr=1 min=9 max=2 avg=1 std=0\nInference timings in us: x", "min 0.009 ms > max"),
])
def test_benchmark_model_nan_negative_or_inconsistent_stats_are_refused(text, what):
    with pytest.raises(ToolRunError, match="benchmark_model") as e:
        parse_benchmark_model(text)
    assert what in str(e.value)


def test_executor_runner_and_ort_refuse_nan_and_negative_times():
    with pytest.raises(ToolRunError, match="iteration 2"):
        parse_executor_runner("Iteration 1 of 2: 1.5 ms\nIteration 2 of 2: nan ms")
    with pytest.raises(ToolRunError, match="run 1"):
        parse_ort_result_file("m,0.01,100,97,0\nm,-0.02,100,97,1\n")
    with pytest.raises(ToolRunError, match="twice"):
        parse_ort_result_file("m,0.01,100,97,0\nm,0.02,100,97,0\n")
    with pytest.raises(ToolRunError):
        parse_ort_result_file("m,0.01,inf,97,0\n")
