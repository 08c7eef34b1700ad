"""``optim.bench``: one entry point for host and Android benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from optim.device_bench.result import BenchResult
from optim.device_bench.stats import DEFAULT_DRIFT_PCT
from optim.errors import InputError


def bench(artifact: str | Path, device: str = "host", *, threads: int | None = None, runs: int = 100,
          warmup: int = 10, trials: int = 3, cooldown_s: float | None = None, drift_pct: float = DEFAULT_DRIFT_PCT,
          load_kwargs: dict | None = None, measure_memory: bool = True,
          log: Callable[[str], None] | None = None) -> BenchResult:
    """Benchmark ``artifact`` (checkpoint, artifact directory or a registered format's model
    file) on ``device``: ``"host"``, a profile name such as ``"pixel6a"``, an adb serial, or a
    name another registered device kind claims (:mod:`optim.device_bench.devices`).

    Each of ``trials`` trials runs ``warmup`` untimed and ``runs`` timed single-image (batch 1)
    inferences with ``threads`` CPU threads; statistics are in ms (see
    :mod:`optim.device_bench.stats` for definitions). ``cooldown_s`` between trials defaults
    to 0 on the host and to the device profile's value on Android. ``measure_memory`` (host):
    measure peak memory in a fresh child process (a few seconds more per artifact).

    Raises :class:`InputError` (bad arguments or artifact), :class:`optim.errors.ToolError`
    subclasses from :mod:`optim.device_bench.errors` for device/tool failures.
    """
    if runs < 1:
        raise InputError(f"runs must be ≥ 1, got {runs}")
    if warmup < 0:
        raise InputError(f"warmup must be ≥ 0, got {warmup}")
    if trials < 1:
        raise InputError(f"trials must be ≥ 1, got {trials}")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be ≥ 1, got {threads}")
    if not Path(artifact).exists():
        raise InputError(f"{artifact} does not exist")
    from optim.device_bench.devices import get_device

    return get_device(device).bench(artifact, threads=threads, runs=runs, warmup=warmup, trials=trials,
                                    cooldown_s=cooldown_s, drift_pct=drift_pct, load_kwargs=load_kwargs,
                                    measure_memory=measure_memory, log=log)
