"""``optim.bench``: one entry point for host and Android benchmarks; ``optim.bench_devices``:
the same on several devices at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

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
    _check_args(artifact, threads=threads, runs=runs, warmup=warmup, trials=trials)
    from optim.device_bench.devices import get_device

    return get_device(device).bench(artifact, threads=threads, runs=runs, warmup=warmup, trials=trials,
                                    cooldown_s=cooldown_s, drift_pct=drift_pct, load_kwargs=load_kwargs,
                                    measure_memory=measure_memory, log=log)


def _check_args(artifact: str | Path, *, threads: int | None, runs: int, warmup: int, trials: int) -> None:
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


def resolve_devices(devices: Sequence[str]) -> tuple[dict[str, Any], dict[str, BaseException]]:
    """The :class:`~optim.device_bench.devices.Device` behind each name of ``devices``, checked
    to be distinct physical devices → ``({name: Device}, {name: ToolError of a device that
    cannot be reached now})``. Shared by :func:`bench_devices` and ``optim verify``.

    Raises :class:`InputError` when ``devices`` is empty, a name is given twice, a name is
    neither a known device nor a connected serial, or two names mean the same physical device
    (one phone benchmarked twice at once would corrupt both measurements). A device that is not
    connected, offline or unauthorized is not an input error: it is returned in the second map
    and fails alone.
    """
    from optim.device_bench.devices import get_device
    from optim.errors import ToolError

    names = list(devices)
    if not names:
        raise InputError("no device given: name at least one (--device host, a profile or an adb serial)")
    dupes = sorted({d for d in names if names.count(d) > 1})
    if dupes:
        raise InputError(f"--device {', '.join(dupes)} given more than once; name each device once")
    handles = {d: get_device(d) for d in names}
    unreachable: dict[str, BaseException] = {}
    owner: dict[str, str] = {}  # physical device → the first name that means it
    for d, dev in handles.items():
        try:
            ident = dev.identity()  # InputError (a bad name) propagates: nothing has run yet
        except ToolError as e:  # not connected, offline, no adb: this device fails alone
            unreachable[d] = e
            continue
        if ident in owner:
            raise InputError(f"--device {owner[ident]} and --device {d} are the same device ({ident}): one device "
                             "cannot be benchmarked twice at once (each run would disturb the other's timings); "
                             "name it once")
        owner[ident] = d
    return handles, unreachable


def bench_devices(artifact: str | Path, devices: Sequence[str], *, log: Callable[[str], None] | None = None,
                  **bench_kwargs: Any) -> dict[str, BenchResult | BaseException]:
    """Benchmark ``artifact`` on every device in ``devices`` at once (one worker thread per
    device, :func:`optim.device_bench.parallel.run_per_device`) → ``{device: BenchResult or
    the exception that device raised}``, in the order given.

    ``bench_kwargs`` are :func:`bench`'s keyword arguments (``threads``, ``runs``, ``warmup``,
    ``trials``, ``cooldown_s``, ``drift_pct``, ``load_kwargs``, ``measure_memory``) and apply
    to every device; ``log`` receives progress lines prefixed with the device name.

    Each device has its own outcome: a device that is lost mid-run (or whose tool crashes)
    gets its :class:`optim.errors.ToolError` subclass (e.g.
    :class:`~optim.device_bench.errors.DeviceDisconnectedError`, naming its serial) as its
    entry, and the others' results are unaffected. A device that cannot be reached before
    the run (not connected, offline, unauthorized) gets its error the same way, without
    being benchmarked. With several devices, a ``host`` result carries a warning that other
    devices were driven from this machine meanwhile (its timings may include that load).

    Raises :class:`InputError` (exit 2), before anything is benchmarked, when: ``devices`` is
    empty; a device is named twice; two names mean the same physical device (e.g. a profile
    and the serial of the phone that matches it: one phone benchmarked twice at once would
    corrupt both measurements); a name is neither a known device nor a connected serial
    (``Device.identity``); or the arguments are invalid (as :func:`bench`).
    """
    from optim.device_bench.parallel import run_per_device

    names = list(devices)
    _check_args(artifact, threads=bench_kwargs.get("threads"), runs=bench_kwargs.get("runs", 100),
                warmup=bench_kwargs.get("warmup", 10), trials=bench_kwargs.get("trials", 3))
    handles, unreachable = resolve_devices(names)
    others = len(names) - 1 - len(unreachable)  # devices actually driven alongside

    def one(d: str) -> BenchResult:
        if d in unreachable:
            raise unreachable[d]
        prefixed = (lambda msg: log(f"{d}: {msg}")) if log else None
        r = handles[d].bench(artifact, **{**bench_kwargs, "log": prefixed})
        if others and handles[d].on_this_machine:
            r.warnings.append(f"benchmarked while {others} other device(s) ran in parallel, driven from this machine: "
                              "these timings may include that load; benchmark this device alone for figures to compare")
        return r

    return run_per_device(names, one)
