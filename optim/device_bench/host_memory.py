"""Peak memory of loading and running an artifact on the host, measured in a fresh process.

Why a child process: in a long-lived process, memory freed by earlier work (an export, a
previous artifact) stays resident and is reused, so "peak RSS added" can read 0 MB for an
11 MB model. A fresh Python process gives the same figure whatever ran before.

Method (Linux): the child imports the format's runtime library (torch, onnxruntime,
ai_edge_litert, executorch), records its resident set (VmRSS), resets the high-water mark
(writing 5 to /proc/self/clear_refs, Linux ≥ 4.0), opens the artifact with
:func:`optim.open_runtime`, runs ``iterations`` single-image predictions, and reports
VmHWM − VmRSS-before. MB = 10^6 bytes. Elsewhere the figure is None, never a guess.

Run as ``python -m optim.device_bench.host_memory '<json args>'`` (used by
:func:`measure_peak_memory`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from optim.device_bench.process import ToolTimeoutError, run_tool

MEMORY_METHOD = ("fresh child process: peak resident set (Linux VmHWM, reset via /proc/self/clear_refs) while "
                 "opening the artifact and running {n} single-image predictions, minus the resident set before "
                 "opening (runtime library already imported); MB = 10^6 bytes")


def measure_peak_memory(path: str | Path, *, threads: int | None, load_kwargs: dict | None = None,
                        iterations: int = 5, timeout_s: float = 600.0) -> tuple[float | None, str]:
    """Spawn a child that measures the peak memory of ``path`` → ``(MB or None, method or reason)``."""
    args = json.dumps({"path": str(path), "threads": threads, "load_kwargs": load_kwargs or {}, "iterations": iterations})
    try:  # own process group, killed as a whole on timeout (optim.device_bench.process)
        proc = run_tool([sys.executable, "-m", "optim.device_bench.host_memory", args], timeout_s=timeout_s,
                        what="the peak-memory child process")
    except ToolTimeoutError:
        return None, f"memory measurement did not finish within {timeout_s:.0f} s (the child process was stopped)"
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return None, f"memory measurement failed (exit {proc.returncode}): {tail}"
    try:
        data = json.loads(lines[-1])
        peak = data.get("peak_mb")
        peak = None if peak is None else float(peak)
    except (ValueError, TypeError, AttributeError):
        return None, f"memory measurement printed an unreadable result: {lines[-1][:200]!r}"
    if peak is None:
        return None, str(data.get("reason", "peak memory not available on this OS"))
    if not (0 <= peak < float("inf")):
        return None, f"memory measurement printed an invalid figure ({peak!r} MB)"
    return peak, MEMORY_METHOD.format(n=iterations)


def _child(spec: dict) -> dict:
    import gc

    import numpy as np

    from optim.device_bench.host import _preimport, _reset_peak_rss, _status_kb
    from optim.device_bench.target import resolve_target

    _preimport(resolve_target(spec["path"]).format)
    from optim.runtimes import open_runtime

    gc.collect()
    before = _status_kb("VmRSS")
    if before is None or not _reset_peak_rss():
        return {"peak_mb": None, "reason": "/proc/self/status or /proc/self/clear_refs unavailable (not Linux?)"}
    kwargs = {k: v for k, v in spec["load_kwargs"].items() if v not in (None, False)}
    if kwargs.get("input_shape"):
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    rt = open_runtime(spec["path"], threads=spec["threads"], **kwargs)
    x = np.random.default_rng(0).standard_normal((1, *tuple(rt.card.input.shape[1:]))).astype(np.float32)
    for _ in range(spec["iterations"]):
        rt.predict(x)
    hwm = _status_kb("VmHWM")
    return {"peak_mb": (hwm - before) * 1024 / 1e6 if hwm is not None else None}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
