"""optim.device_bench.parallel.run_per_device: one worker per device, failures stay per device."""

import threading
import time

from optim.device_bench.parallel import run_per_device


def test_devices_run_concurrently_and_one_failure_stays_its_own():
    started = []
    barrier = threading.Barrier(3, timeout=10)  # passes only if all three run at the same time

    def fn(d):
        started.append(d)
        barrier.wait()
        if d == "b":
            raise RuntimeError("device b vanished")
        return d.upper()

    out = run_per_device(["a", "b", "c", "a"], fn)
    assert list(out) == ["a", "b", "c"]
    assert out["a"] == "A" and out["c"] == "C"
    assert isinstance(out["b"], RuntimeError) and "vanished" in str(out["b"])


def test_single_device_runs_inline():
    caller = threading.get_ident()
    out = run_per_device(["host"], lambda d: threading.get_ident())
    assert out == {"host": caller}


def test_slow_device_does_not_delay_reporting_of_others_result():
    def fn(d):
        if d == "slow":
            time.sleep(0.2)
        return d

    assert run_per_device(["slow", "fast"], fn) == {"slow": "slow", "fast": "fast"}
