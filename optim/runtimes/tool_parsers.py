"""Parsers for the output of the official on-device benchmark tools (pure text → numbers).

Formats, from the tools' sources (quoted samples with their sources are in
tests/test_bench_parsers.py):

* LiteRT/TFLite ``benchmark_model`` (tflite/tools/benchmark/benchmark_model.cc): one stat line
  per phase (warm-up, then the timed runs), microseconds, doubles in ``operator<<`` notation
  (``avg=1.24027e+06``)::

      count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442
      count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 median=141253 p95=187533

  ``std`` is the population std; ``p5/median/p95`` (newer builds only; StatWithPercentiles in
  xla/tsl/util/stats_calculator.h) are nearest-rank: sorted[floor(n·q)]. Per-iteration times
  are never printed. With ``--report_peak_memory_footprint=true``:
  ``Overall peak memory footprint (MB) via periodic monitoring: 12.3`` where "MB" is KiB/1024,
  i.e. MiB.
* ExecuTorch ``executor_runner`` (examples/portable/executor_runner/executor_runner.cpp):
  ``ET_LOG(Info, "Iteration %u of %u: %f ms", ...)`` per execution, then
  ``Model executed successfully %u time(s) in %f ms.``; on POSIX builds log lines are
  prefixed ``I 00:00:06.075611 executorch:executor_runner.cpp:705] ``; Android-PAL builds log
  the bare message to logcat (tag ``ExecuTorch``).
* ``onnxruntime_perf_test`` (onnxruntime/test/perftest/performance_runner.cc): with a
  ``result_file`` argument it writes one CSV line per run
  ``model_name,time_cost_seconds,peak_working_set_bytes,avg_cpu_usage,run_index``; stdout has
  ``Total inference requests: N``, ``Average inference time cost: x ms`` and, with ``-s``,
  ``P95 Latency: x s`` (nearest-rank: sorted[floor(n·q)]) and ``Peak working set size: N bytes``.
"""

from __future__ import annotations

import re

import numpy as np

from optim.runtimes.device_tool import AggregateTrial, ToolOutput, ToolRunError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf"
MIB_TO_MB = 1.048576  # 2^20 / 10^6


def _f(s: str) -> float:
    return float(s)


def _ms(value: float, tool: str, what: str) -> float:
    """A latency (ms) a tool reported, checked: finite and ≥ 0. Raises :class:`ToolRunError`
    naming the tool and the field otherwise (a NaN, infinite or negative time is a broken tool
    or a garbled transfer, never a measurement)."""
    if not (0.0 <= value < float("inf")):
        raise ToolRunError(f"{tool} reported {what} = {value!r}, not a valid latency (finite, ≥ 0); "
                           "its output is corrupt: rerun, or check the tool build")
    return value


def _check_aggregate(agg: AggregateTrial, tool: str) -> AggregateTrial:
    """Every time of ``agg`` finite and ≥ 0, ``count`` ≥ 1 and ``min ≤ max``; else ToolRunError."""
    if agg.count < 1:
        raise ToolRunError(f"{tool} reported {agg.count} timed runs; expected at least 1")
    for name in ("mean", "std", "min", "max", "p50", "p90", "p95", "p99"):
        v = getattr(agg, name)
        if v is not None:
            _ms(v, tool, name)
    if agg.min > agg.max:
        raise ToolRunError(f"{tool} reported min {agg.min:g} ms > max {agg.max:g} ms: its output is corrupt")
    return agg


# ---------------------------------------------------------------- LiteRT benchmark_model
_BM_FULL = re.compile(
    rf"count=(?P<count>\d+) first=(?P<first>{_NUM}) curr=(?P<curr>{_NUM}) min=(?P<min>{_NUM}) "
    rf"max=(?P<max>{_NUM}) avg=(?P<avg>{_NUM}) std=(?P<std>{_NUM})"
    rf"(?: p5=(?P<p5>{_NUM}) median=(?P<median>{_NUM}) p95=(?P<p95>{_NUM}))?")
_BM_SAME = re.compile(
    rf"count=(?P<count>\d+) curr=(?P<curr>{_NUM})(?:\(all same\))?"
    rf"(?: p5=(?P<p5>{_NUM}) median=(?P<median>{_NUM}) p95=(?P<p95>{_NUM}))?\s*$")
_BM_ZERO = re.compile(r"count=0\s*$")
_BM_AVG = re.compile(rf"Inference \(avg\): ({_NUM})")
_BM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
BENCHMARK_MODEL_PERCENTILES = "benchmark_model's own nearest-rank percentile sorted[floor(n·q)] per trial; median over trials"


def _bm_stat_lines(text: str) -> list[dict | None]:
    """Every phase stat line in order; ``None`` for a ``count=0`` phase (no runs)."""
    out: list[dict | None] = []
    for line in text.splitlines():
        if "Timings (microseconds)" in line or "Memory (bytes)" in line:
            continue  # per-op profiler summaries, not the run statistics
        m = _BM_FULL.search(line)
        if m:
            out.append(m.groupdict())
            continue
        m = _BM_SAME.search(line)
        if m:
            d = m.groupdict()
            d.update(first=d["curr"], min=d["curr"], max=d["curr"], avg=d["curr"], std="0")
            out.append(d)
            continue
        if _BM_ZERO.search(line):
            out.append(None)
    return out


def parse_benchmark_model(text: str) -> ToolOutput:
    """LiteRT ``benchmark_model`` output → aggregate statistics of the timed runs (ms).

    The timed phase is the last stat line (the first is the warm-up phase). Raises
    :class:`ToolRunError` if no timed-phase line is found.
    """
    stats = _bm_stat_lines(text)
    # warm-up phase line, then timed phase line. A single line is the timed phase only when the
    # end-of-benchmark summary ("Inference timings in us", printed after both phases) follows;
    # otherwise the tool stopped after the warm-up.
    finished = "Inference timings in us" in text
    regular = stats[-1] if (len(stats) >= 2 or (stats and finished)) else None
    if regular is None:
        raise ToolRunError("benchmark_model printed no statistics line for the timed runs "
                           "(expected 'count=N first=… min=… max=… avg=… std=…' after the warm-up line)")
    us = 1e-3
    for key in ("first", "min", "max", "avg", "std", "p5", "median", "p95"):
        if regular.get(key):
            _ms(_f(regular[key]), "benchmark_model", key)
    agg = AggregateTrial(
        count=int(regular["count"]), mean=_f(regular["avg"]) * us, std=_f(regular["std"]) * us,
        min=_f(regular["min"]) * us, max=_f(regular["max"]) * us,
        p50=_f(regular["median"]) * us if regular.get("median") else None,
        p95=_f(regular["p95"]) * us if regular.get("p95") else None,
        extra={"first_ms": _f(regular["first"]) * us, "p5_ms": _f(regular["p5"]) * us if regular.get("p5") else None},
    )
    _check_aggregate(agg, "benchmark_model")
    out = ToolOutput(tool="benchmark_model", aggregate=agg, percentile_method=BENCHMARK_MODEL_PERCENTILES)
    m = _BM_AVG.search(text)
    if m and agg.mean > 0 and abs(_f(m.group(1)) * us - agg.mean) > 1e-3 * agg.mean + 1e-3:
        out.notes.append(f"benchmark_model's 'Inference (avg)' {_f(m.group(1)) * us:.4g} ms differs from its stat line "
                         f"{agg.mean:.4g} ms")
    if agg.p95 is None:
        out.notes.append("this benchmark_model build prints no percentiles (no p5/median/p95): p50 and p95 are "
                         "unavailable; use a newer LiteRT benchmark_model to measure them")
    m = _BM_PEAK.search(text)
    if m and 0 < _f(m.group(1)) < float("inf"):
        out.peak_memory_mb = _f(m.group(1)) * MIB_TO_MB
        out.memory_method = ("benchmark_model --report_peak_memory_footprint: peak process memory footprint "
                             "sampled every 50 ms (tool reports MiB; converted to MB = 10^6 bytes)")
    return out


# ---------------------------------------------------------------- ExecuTorch executor_runner
_ET_ITER = re.compile(rf"Iteration (\d+) of (\d+): ({_NUM}) ms")
_ET_DONE = re.compile(rf"Model executed successfully (\d+) time\(s\) in ({_NUM}) ms")


def parse_executor_runner(text: str, expected: int | None = None) -> ToolOutput:
    """ExecuTorch ``executor_runner`` log (stdout/stderr or logcat) → per-iteration ms.

    Raises :class:`ToolRunError` if no ``Iteration i of n: x ms`` line is present (a build
    with logging disabled prints none), if iterations are missing or out of order, or if
    fewer than ``expected`` were printed.
    """
    rows = [(int(i), int(n), _ms(_f(x), "executor_runner", f"iteration {i}")) for i, n, x in _ET_ITER.findall(text)]
    if not rows:
        hint = ""
        if _ET_DONE.search(text):
            hint = (" It printed only the total ('Model executed successfully …'), from which no percentile can be "
                    "computed; use an executor_runner that logs per-iteration times (ExecuTorch ≥ 1.0 built with "
                    "EXECUTORCH_ENABLE_LOGGING=ON).")
        raise ToolRunError("executor_runner printed no 'Iteration i of n: x ms' lines." + hint)
    idx = [r[0] for r in rows]
    if idx != list(range(1, len(rows) + 1)):
        raise ToolRunError(f"executor_runner iteration lines are not 1..{len(rows)} in order (got {idx[:5]}…)")
    n_declared = rows[0][1]
    if expected is not None and len(rows) < expected:
        raise ToolRunError(f"executor_runner printed {len(rows)} of {expected} iterations (it stopped early)")
    out = ToolOutput(tool="executor_runner", latencies_ms=np.array([r[2] for r in rows], dtype=np.float64))
    if n_declared != len(rows):
        out.notes.append(f"executor_runner declared {n_declared} executions but printed {len(rows)}")
    return out


# ---------------------------------------------------------------- onnxruntime_perf_test
_ORT = {
    "count": re.compile(r"Total inference requests:\s*(\d+)"),
    "runs": re.compile(r"^Runs:\s*(\d+)", re.M),
    "avg_ms": re.compile(rf"Average inference time cost(?: total)?:\s*({_NUM})\s*ms"),
    "min": re.compile(rf"Min Latency:\s*({_NUM})\s*s"),
    "max": re.compile(rf"Max Latency:\s*({_NUM})\s*s"),
    "p50": re.compile(rf"P50 Latency:\s*({_NUM})\s*s"),
    "p90": re.compile(rf"P90 Latency:\s*({_NUM})\s*s"),
    "p95": re.compile(rf"P95 Latency:\s*({_NUM})\s*s"),
    "p99": re.compile(rf"P99 Latency:\s*({_NUM})\s*s"),
    "peak": re.compile(r"Peak working set size:\s*(\d+)\s*bytes"),
}
ORT_PERCENTILES = "onnxruntime_perf_test's own nearest-rank percentile sorted[floor(n·q)] per trial; median over trials"
ORT_MEMORY = "onnxruntime_perf_test 'Peak working set size' (getrusage ru_maxrss of the tool process), MB = 10^6 bytes"


def parse_ort_perf_test(text: str) -> ToolOutput:
    """``onnxruntime_perf_test -s`` stdout → aggregate statistics (ms) and peak working set.

    Used when no per-run result file is available. std is not printed by the tool (None).
    Raises :class:`ToolRunError` without ``Average inference time cost`` or ``P95 Latency``.
    """
    g = {k: r.search(text) for k, r in _ORT.items()}
    if not g["avg_ms"]:
        raise ToolRunError("onnxruntime_perf_test printed no 'Average inference time cost: x ms' line")
    if not g["p95"] or not g["min"] or not g["max"]:
        raise ToolRunError("onnxruntime_perf_test printed no latency statistics (P95 Latency …); run it with -s")
    count = int((g["count"] or g["runs"]).group(1)) if (g["count"] or g["runs"]) else 0
    s = 1e3
    agg = AggregateTrial(count=count, mean=_f(g["avg_ms"].group(1)), std=None,
                         min=_f(g["min"].group(1)) * s, max=_f(g["max"].group(1)) * s,
                         p50=_f(g["p50"].group(1)) * s if g["p50"] else None,
                         p90=_f(g["p90"].group(1)) * s if g["p90"] else None,
                         p95=_f(g["p95"].group(1)) * s,
                         p99=_f(g["p99"].group(1)) * s if g["p99"] else None)
    _check_aggregate(agg, "onnxruntime_perf_test")
    out = ToolOutput(tool="onnxruntime_perf_test", aggregate=agg, percentile_method=ORT_PERCENTILES)
    if g["peak"] and int(g["peak"].group(1)) > 0:
        out.peak_memory_mb = int(g["peak"].group(1)) / 1e6
        out.memory_method = ORT_MEMORY
    return out


def parse_ort_result_file(text: str) -> ToolOutput:
    """``onnxruntime_perf_test`` result file (one CSV line per run) → per-iteration ms.

    Lines: ``model_name,time_cost_seconds,peak_working_set_bytes,avg_cpu_usage,run_index``;
    a statistics block may follow and is ignored. Raises :class:`ToolRunError` if no run line.
    """
    rows: list[tuple[int, float, int]] = []
    for line in text.splitlines():
        parts = line.strip().rsplit(",", 4)
        if len(parts) != 5:
            continue
        try:
            index, seconds, peak_f = int(parts[4]), float(parts[1]), float(parts[2])
        except ValueError:
            continue  # not a run line (the statistics block that may follow)
        _ms(seconds * 1e3, "onnxruntime_perf_test", f"run {index}")
        if index < 0 or not (0 <= peak_f < float("inf")):
            raise ToolRunError(f"onnxruntime_perf_test result file has an invalid run line {line.strip()[:120]!r} "
                               "(negative run index or peak bytes not a finite number ≥ 0)")
        rows.append((index, seconds, int(peak_f)))
    if not rows:
        raise ToolRunError("onnxruntime_perf_test result file holds no per-run lines "
                           "(expected 'model,seconds,peak_bytes,cpu,run_index')")
    rows.sort(key=lambda r: r[0])
    if len({r[0] for r in rows}) != len(rows):
        raise ToolRunError("onnxruntime_perf_test result file lists a run index twice: it is corrupt (or two runs "
                           "appended to one file); rerun")
    out = ToolOutput(tool="onnxruntime_perf_test", latencies_ms=np.array([r[1] * 1e3 for r in rows]))
    peak = max(r[2] for r in rows)
    if peak > 0:
        out.peak_memory_mb = peak / 1e6
        out.memory_method = ORT_MEMORY
    return out
