"""Several devices at once: one worker thread per device, each with its own outcome.

A benchmark on a phone is mostly waiting on adb and the device, so threads (not processes)
suffice; a device that fails (lost mid-run, tool crash) fails only its own entry.

Ctrl-C: only the main thread receives KeyboardInterrupt, and the tools run in their own
sessions, so on an interrupt the main thread stops every running tool
(:func:`optim.device_bench.process.stop_all_tools`; the workers then fail fast), waits for
the workers, and re-raises: no adb process and no worker outlives the interrupt.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def run_per_device(devices: Sequence[str], fn: Callable[[str], T]) -> dict[str, T | BaseException]:
    """Call ``fn(device)`` for every device in ``devices``, in parallel (one thread each).

    Returns ``{device: result or the exception it raised}`` in the order of ``devices``
    (duplicates collapsed). An exception in one device never cancels or changes another's
    outcome; ``KeyboardInterrupt``/``SystemExit`` are not caught. With one device, ``fn``
    runs in the calling thread (no pool).
    """
    names = list(dict.fromkeys(devices))
    out: dict[str, T | BaseException] = {}
    if len(names) <= 1:
        for d in names:
            try:
                out[d] = fn(d)
            except Exception as e:  # noqa: BLE001 - recorded per device
                out[d] = e
        return out
    from optim.device_bench.process import resume_tools, stop_all_tools

    pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="optim-device")
    try:
        futures = {d: pool.submit(fn, d) for d in names}
        for d in names:
            try:
                out[d] = futures[d].result()
            except Exception as e:  # noqa: BLE001 - recorded per device
                out[d] = e
    except BaseException:  # KeyboardInterrupt/SystemExit in this (the waiting) thread
        stop_all_tools()
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        finally:
            resume_tools()
        raise
    pool.shutdown(wait=True)
    return out
