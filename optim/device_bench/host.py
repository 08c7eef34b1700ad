"""Host benchmark: time ``Runtime.predict`` on one preprocessed-shape input (batch 1).

Each timed iteration is ``time.perf_counter_ns()`` around one ``Runtime.predict(x)`` call on a
fixed float32 1×C×H×W input (seeded N(0, 1) values: a CNN's latency does not depend on pixel
values, and the on-device tools also feed synthetic inputs). The runtime is opened once with
the requested thread count; each trial runs ``warmup`` untimed then ``runs`` timed iterations.

Peak memory: measured in a fresh child process (see :mod:`optim.device_bench.host_memory`),
because a long-lived process reuses memory freed by earlier work and would under-report it.
Where it cannot be measured the figure is ``None`` (listed in ``unavailable``), never a guess.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from optim.device_bench.devices import Device
from optim.device_bench.host_memory import measure_peak_memory
from optim.device_bench.result import BenchResult, DeviceInfo
from optim.device_bench.stats import DEFAULT_DRIFT_PCT, summarize_trials

HOST_TOOL = "optim host timer: time.perf_counter_ns around Runtime.predict"
def host_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def bench_host(path: str | Path, *, threads: int | None = None, runs: int = 100, warmup: int = 10, trials: int = 3,
               drift_pct: float = DEFAULT_DRIFT_PCT, cooldown_s: float = 0.0, seed: int = 0,
               load_kwargs: dict | None = None, measure_memory: bool = True) -> BenchResult:
    """Benchmark ``path`` (checkpoint or artifact directory) on this machine → :class:`BenchResult`.

    Raises :class:`optim.errors.InputError` for a bad path; runtime failures propagate as
    :class:`optim.errors.ToolError` from the runtime adapter.
    """
    from optim.runtimes import open_runtime

    warnings: list[str] = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    ncpu = os.cpu_count() or 1
    if load is not None and load > 0.5 * ncpu:
        warnings.append(f"host is busy (1-min load average {load:.2f} on {ncpu} CPUs): latencies include contention")

    # only options the user set: artifact directories take none of the checkpoint options
    kwargs = {k: v for k, v in (load_kwargs or {}).items() if v not in (None, False)}
    runtime = open_runtime(path, threads=threads, **kwargs)
    try:
        shape = (1, *tuple(runtime.card.input.shape[1:]))
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        per_trial: list[np.ndarray] = []
        for t in range(trials):
            for _ in range(warmup):
                runtime.predict(x)
            times = np.empty(runs, dtype=np.float64)
            for i in range(runs):
                t0 = time.perf_counter_ns()
                runtime.predict(x)
                times[i] = (time.perf_counter_ns() - t0) / 1e6
            per_trial.append(times)
            if cooldown_s and t < trials - 1:
                time.sleep(cooldown_s)
        fmt = runtime.format
    finally:
        runtime.close()

    summary = summarize_trials(per_trial, drift_pct=drift_pct, seed=seed)
    peak_mb, memory_note = None, "not requested (measure_memory=False)"
    if measure_memory:
        peak_mb, memory_note = measure_peak_memory(path, threads=threads, load_kwargs=kwargs)
    unavailable = list(summary.unavailable)
    if peak_mb is None:
        unavailable.append("peak_memory_mb")
        if measure_memory:
            warnings.append(f"peak memory not measured: {memory_note}")
    if threads is None:
        warnings.append("threads not set: the runtime's default thread count was used; pass --threads for a figure "
                        "you can compare")
    return BenchResult(
        artifact=str(path), format=fmt,
        device=DeviceInfo(name="host", kind="host", details=host_info()),
        threads=threads, runs=runs, warmup=warmup, trials=trials,
        latency=summary.latency, p95_ci_ms=summary.p95_ci, trials_p95_ms=summary.trials_p95,
        trial_spread_pct=summary.spread_pct, peak_memory_mb=peak_mb,
        percentile_method=summary.percentile_method, unavailable=unavailable,
        warnings=warnings + summary.warnings, tool=f"{HOST_TOOL} ({fmt})",
        memory_method=memory_note if peak_mb is not None else None,
        input_description=f"float32 {'×'.join(map(str, shape))}, seeded N(0,1) values (seed {seed})",
    )


class HostDevice(Device):
    """This machine (``--device host``): the artifact's host runtime timed in-process
    (:func:`bench_host`). Opens checkpoints and artifact directories; a bare model file is
    accepted when it sits in its artifact directory."""

    kind = "host"
    on_this_machine = True

    @classmethod
    def claims(cls, name: str) -> bool:
        return name == cls.kind

    def identity(self) -> str:
        return "this machine (host)"

    def bench(self, artifact, *, threads=None, runs=100, warmup=10, trials=3, cooldown_s=None,
              drift_pct=DEFAULT_DRIFT_PCT, load_kwargs=None, measure_memory=True, log=None) -> BenchResult:
        from optim.errors import InputError
        from optim.runtimes.artifact import METADATA_FILE
        from optim.runtimes.registry import format_for_suffix

        p = Path(artifact)
        if p.is_file() and format_for_suffix(p.suffix) is not None:
            if (p.parent / METADATA_FILE).is_file():
                artifact = p.parent  # the host runtimes open the artifact directory
            else:
                raise InputError(f"{p} is a bare {p.suffix} file: host runtimes open artifact directories "
                                 f"(with {METADATA_FILE}, written by `optim quantize`); pass that directory")
        return bench_host(artifact, threads=threads, runs=runs, warmup=warmup, trials=trials, drift_pct=drift_pct,
                          cooldown_s=cooldown_s or 0.0, load_kwargs=load_kwargs, measure_memory=measure_memory)
