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


#: modules the torch eager reference (a checkpoint) needs; formats name theirs in their spec
TORCH_MODULES = ("torch", "torchvision")


def preimport(path: str | Path) -> None:
    """Import the runtime libraries ``path``'s format needs (``FormatSpec.runtime_modules``)
    so that their import is not counted as the model's memory."""
    import importlib

    from optim.device_bench.target import resolve_target
    from optim.runtimes.registry import formats

    fmt = resolve_target(path).format
    spec = formats().get(fmt)
    for name in spec.runtime_modules if spec is not None else TORCH_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # the runtime adapter will report the missing library itself
            pass


def status_kb(field: str) -> int | None:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/self/status``; None where unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to the current RSS (Linux ≥ 4.0). False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


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

    preimport(spec["path"])
    from optim.runtimes import open_runtime

    gc.collect()
    before = status_kb("VmRSS")
    if before is None or not reset_peak_rss():
        return {"peak_mb": None, "reason": "/proc/self/status or /proc/self/clear_refs unavailable (not Linux?)"}
    kwargs = {k: v for k, v in spec["load_kwargs"].items() if v not in (None, False)}
    if kwargs.get("input_shape"):
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    rt = open_runtime(spec["path"], threads=spec["threads"], **kwargs)
    x = np.random.default_rng(0).standard_normal((1, *tuple(rt.card.input.shape[1:]))).astype(np.float32)
    for _ in range(spec["iterations"]):
        rt.predict(x)
    hwm = status_kb("VmHWM")
    return {"peak_mb": (hwm - before) * 1024 / 1e6 if hwm is not None else None}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
