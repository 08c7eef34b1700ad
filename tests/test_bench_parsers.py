"""Parsers of the on-device tools' output, on real output samples quoted with their sources."""

from __future__ import annotations

import numpy as np
import pytest

from optim.device_bench.android import choose_cores, cpu_mask, parse_max_freqs, parse_thermal
from optim.device_bench.adb import parse_devices
from optim.device_bench.errors import ToolRunError
from optim.device_bench.parsers import (MIB_TO_MB, parse_benchmark_model, parse_executor_runner, parse_ort_perf_test,
                                        parse_ort_result_file)

# --- LiteRT / TFLite benchmark_model ---------------------------------------------------------------

# Real run on an Android phone (Xiaomi Mi 11), from GitHub lp6m/yolov5s_android,
# benchmark/benchmark.md ("None(CPU)" fp32 section). An older build: no percentiles. The
# author's excerpt starts at the timed-phase line (the warm-up line is not quoted).
BM_OLD_ANDROID = """\
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442
Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
"""

# Real run (mobilenet_v1_1.0_224 on a QEMU aarch64 image), from a public GitHub write-up found
# through the code index (file id 16188833293). Shows both phases, the single-run
# "count=1 curr=…" form and doubles printed in scientific notation (avg=2.95034e+06).
BM_SCI_NOTATION = """\
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
"""

# Newer build with percentiles (StatWithPercentiles, LiteRT tflite/tools/benchmark/benchmark_model.cc
# + xla/tsl/util/stats_calculator.h). The timed-phase line is a real logcat line quoted in a
# public GitHub guide to benchmark_model logs (code index file id 66574927932); the warm-up line and
# the summary around it follow the format of benchmark_model.cc (Run() and OnBenchmarkEnd()).
BM_PERCENTILES_LOGCAT = """\
I tflite  : Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
I tflite  : count=1 curr=211669 p5=211669 median=211669 p95=211669
I tflite  : Running benchmark for at least 25 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 median=141253 p95=187533
I tflite  : Inference timings in us: Init: 92318, First inference: 187533, Warmup (avg): 211669, Inference (avg): 145528
I tflite  : Memory footprint delta from the start of the tool (MB): init=54.2852 overall=73.4102
I tflite  : Overall peak memory footprint (MB) via periodic monitoring: 80.5117
"""


def test_benchmark_model_old_build_has_no_percentiles_and_none_are_invented():
    out = parse_benchmark_model(BM_OLD_ANDROID)
    agg = out.aggregate
    assert agg.count == 50
    assert agg.mean == pytest.approx(249.684) and agg.std == pytest.approx(1.442)
    assert agg.min == pytest.approx(247.067) and agg.max == pytest.approx(254.474)
    assert agg.p50 is None and agg.p95 is None  # not estimated from avg/std
    assert out.peak_memory_mb is None  # "Peak memory footprint … overall=" is a delta, not a peak
    assert any("no percentiles" in n for n in out.notes)


def test_benchmark_model_scientific_notation_and_two_phases():
    agg = parse_benchmark_model(BM_SCI_NOTATION).aggregate
    assert agg.count == 50  # the timed phase, not the count=1 warm-up
    assert agg.mean == pytest.approx(2950.34)
    assert agg.min == pytest.approx(2727.568) and agg.max == pytest.approx(3189.954)
    assert agg.extra["first_ms"] == pytest.approx(2990.275)


def test_benchmark_model_percentiles_and_peak_memory_from_logcat_lines():
    out = parse_benchmark_model(BM_PERCENTILES_LOGCAT)
    agg = out.aggregate
    assert agg.count == 25
    assert agg.p50 == pytest.approx(141.253) and agg.p95 == pytest.approx(187.533)
    assert agg.extra["p5_ms"] == pytest.approx(140.545)
    assert out.peak_memory_mb == pytest.approx(80.5117 * MIB_TO_MB)
    assert not out.notes  # Inference (avg) agrees with the stat line


def test_benchmark_model_that_stopped_after_warmup_is_an_error():
    warmup_only = BM_SCI_NOTATION.split("\n\n")[0]
    with pytest.raises(ToolRunError, match="no statistics line for the timed runs"):
        parse_benchmark_model(warmup_only)
    with pytest.raises(ToolRunError):
        parse_benchmark_model("ERROR: Could not open 'model.tflite'.\nERROR: Failed to mmap model model.tflite\n")


def test_benchmark_model_all_same_line_and_op_profiler_lines_are_not_confused():
    text = ("count=1 curr=900\n\ncount=3 curr=1000(all same)\n"
            "Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929\n"
            "Memory (bytes): count=0\nInference timings in us: Init: 1, First inference: 900, Warmup (avg): 900, Inference (avg): 1000\n")
    agg = parse_benchmark_model(text).aggregate
    assert (agg.count, agg.mean, agg.min, agg.max, agg.std) == (3, 1.0, 1.0, 1.0, 0.0)


# --- ExecuTorch executor_runner ---------------------------------------------------------------------

# Format: ET_LOG(Info, "Iteration %u of %u: %f ms") in pytorch/executorch
# examples/portable/executor_runner/executor_runner.cpp, with the POSIX PAL prefix
# "%c %02u:%02u:%02u.%06lu executorch:%s:%zu] %s" (runtime/platform/default/posix.cpp). These three
# lines are a real run's log quoted in a public GitHub test suite (code index file id 61929798776).
ET_REAL = """\
I 00:00:05.833558 executorch:executor_runner.cpp:564] Model loaded in 4463.268273 ms.
I 00:00:06.075611 executorch:executor_runner.cpp:705] Iteration 1 of 1: 241.944288 ms
I 00:00:06.075701 executorch:executor_runner.cpp:714] Model executed successfully 1 time(s) in 241.944288 ms.
"""

# Older executor_runner builds print only the total (ExecuTorch docs, getting-started:
# "I 00:00:00.006576 executorch:executor_runner.cpp:284] Model executed successfully 1 time(s) in 0.691078 ms.")
ET_TOTAL_ONLY = "I 00:00:00.006576 executorch:executor_runner.cpp:284] Model executed successfully 1 time(s) in 0.691078 ms.\n"


def test_executor_runner_iteration_lines_real_sample():
    out = parse_executor_runner(ET_REAL)
    np.testing.assert_allclose(out.latencies_ms, [241.944288])


def test_executor_runner_many_iterations_and_android_logcat_form():
    vals = [10.5, 11.25, 9.75, 30.0]
    posix = "\n".join(f"I 00:00:0{i}.000001 executorch:executor_runner.cpp:705] Iteration {i + 1} of 4: {v:f} ms"
                      for i, v in enumerate(vals))
    np.testing.assert_allclose(parse_executor_runner(posix, expected=4).latencies_ms, vals)
    # Android PAL: __android_log_print(…, "ExecuTorch", "%s", message) → `logcat -v raw` shows bare messages
    raw = "\n".join(f"Iteration {i + 1} of 4: {v:f} ms" for i, v in enumerate(vals))
    np.testing.assert_allclose(parse_executor_runner(raw, expected=4).latencies_ms, vals)


def test_executor_runner_total_only_or_truncated_output_is_an_error():
    with pytest.raises(ToolRunError, match="only the total"):
        parse_executor_runner(ET_TOTAL_ONLY)
    two_of_five = "Iteration 1 of 5: 1.0 ms\nIteration 2 of 5: 1.1 ms\n"
    with pytest.raises(ToolRunError, match="2 of 5"):
        parse_executor_runner(two_of_five, expected=5)
    with pytest.raises(ToolRunError, match="in order"):
        parse_executor_runner("Iteration 2 of 2: 1.0 ms\nIteration 1 of 2: 1.0 ms\n")


# --- onnxruntime_perf_test ----------------------------------------------------------------------------

# Real Android run (taskset 1 … onnxruntime_perf_test -e cpu -r 5 -m times -s -Z -x 1 resnet50-v2-7.onnx),
# from GitHub ArmDeveloperEcosystem/arm-learning-paths,
# content/learning-paths/mobile-graphics-and-gaming/performance_onnxruntime_kleidiai_sme2/profiling_example.md
ORT_ANDROID = """\
Setting intra_op_num_threads to 1
Disabling intra-op thread spinning between runs
Session creation time cost: 0.217932 s
First inference time cost: 196 ms
Total inference time cost: 0.49481 s
Total inference requests: 5
Average inference time cost total: 98.961997 ms
Total inference run time: 0.494854 s
Number of inferences per second: 10.104
Avg CPU usage: 11 %
Peak working set size: 271122432 bytes
Avg CPU usage:11
Peak working set size:271122432
Runs:5
Min Latency: 0.0958204 s
Max Latency: 0.101519 s
P50 Latency: 0.0995086 s
P90 Latency: 0.101519 s
P95 Latency: 0.101519 s
P99 Latency: 0.101519 s
P999 Latency: 0.101519 s
"""


def test_ort_perf_test_stdout_real_android_sample():
    out = parse_ort_perf_test(ORT_ANDROID)
    agg = out.aggregate
    assert agg.count == 5
    assert agg.mean == pytest.approx(98.961997)
    assert agg.p50 == pytest.approx(99.5086) and agg.p95 == pytest.approx(101.519)
    assert agg.p90 == pytest.approx(101.519) and agg.p99 == pytest.approx(101.519)
    assert agg.min == pytest.approx(95.8204) and agg.max == pytest.approx(101.519)
    assert agg.std is None  # the tool prints none
    assert out.peak_memory_mb == pytest.approx(271.122432)


def test_ort_perf_test_without_s_flag_is_an_error():
    no_stats = ORT_ANDROID.split("Min Latency")[0]
    with pytest.raises(ToolRunError, match="-s"):
        parse_ort_perf_test(no_stats)
    with pytest.raises(ToolRunError):
        parse_ort_perf_test("Error: Load model from x.onnx failed\n")


def test_ort_result_file_per_run_lines():
    # PerformanceResult::DumpToFile (onnxruntime/test/perftest/performance_runner.cc):
    # model_name << "," << time_costs[runs] << "," << peak_workingset_size << "," << average_CPU_usage << "," << runs
    text = ("resnet50-v2-7,0.0995086,271122432,11,2\nresnet50-v2-7,0.0958204,271122432,11,0\n"
            "resnet50-v2-7,0.101519,271122432,11,1\n\nMin Latency: 0.0958204 s\nP95 Latency: 0.101519 s\n")
    out = parse_ort_result_file(text)
    np.testing.assert_allclose(out.latencies_ms, [95.8204, 101.519, 99.5086])  # ordered by run index
    assert out.peak_memory_mb == pytest.approx(271.122432)
    with pytest.raises(ToolRunError):
        parse_ort_result_file("Min Latency: 0.1 s\n")


# --- adb and device files ---------------------------------------------------------------------------

def test_parse_adb_devices_states():
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
            "List of devices attached\n"
            "28011JEGR09914         device usb:1-1 product:bluejay model:Pixel_6a device:bluejay transport_id:3\n"
            "emulator-5554          unauthorized usb:1-2 transport_id:1\n"
            "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); see [http://developer.android.com/tools/device.html] usb:1-3\n"
            "R58M12345             offline transport_id:4\n\n")
    devs = parse_devices(text)
    assert [(d.serial, d.state) for d in devs] == [("28011JEGR09914", "device"), ("emulator-5554", "unauthorized"),
                                                    ("0123456789ABCDEF", "no permissions"), ("R58M12345", "offline")]
    assert devs[0].props["device"] == "bluejay" and devs[0].props["model"] == "Pixel_6a"


def test_big_cores_come_from_measured_frequencies_not_the_profile():
    text = "\n".join(f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq:{f}"
                     for c, f in [(0, 1803000), (1, 1803000), (2, 1803000), (3, 1803000), (4, 2253000),
                                  (5, 2253000), (6, 2802000), (7, 2802000)])
    freqs = parse_max_freqs(text)
    assert choose_cores(freqs, None) == [6, 7] and cpu_mask([6, 7]) == "c0"
    assert choose_cores(freqs, 4) == [4, 5, 6, 7] and cpu_mask([4, 5, 6, 7]) == "f0"
    # a device whose big cores are numbered first
    flipped = {0: 2802000, 1: 2802000, 2: 1803000, 3: 1803000}
    assert choose_cores(flipped, None) == [0, 1] and cpu_mask([0, 1]) == "3"
    assert choose_cores({}, 2) == []


def test_parse_dumpsys_thermalservice():
    # layout of `dumpsys thermalservice` (frameworks/base ThermalManagerService.dump)
    text = ("IsStatusOverride: false\nThermal Status: 2\nCached temperatures:\n"
            "\tTemperature{mValue=51.0, mType=0, mName=cached, mStatus=0}\nHAL Ready: true\n"
            "Current temperatures from HAL:\n\tTemperature{mValue=44.5, mType=0, mName=BIG, mStatus=2}\n"
            "\tTemperature{mValue=40.25, mType=0, mName=LITTLE, mStatus=0}\n"
            "\tTemperature{mValue=60.0, mType=3, mName=skin, mStatus=0}\n")
    th = parse_thermal(text)
    assert th["status"] == 2 and th["status_name"] == "moderate"
    assert th["max_cpu_temp_c"] == 44.5  # CPU type only, current (not cached) values
