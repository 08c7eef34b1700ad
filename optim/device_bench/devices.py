"""``Device``: the one interface every device kind implements, and the registry of kinds.

A device kind (``host``: this machine; ``adb``: an Android phone over adb; or a third-party
kind) is one class with a ``kind`` name, a ``claims(name)`` test for the ``--device`` value,
and ``bench(artifact, …) → BenchResult``. Built-in kinds are listed in :data:`BUILTIN`;
third-party kinds register through the entry-point group ``optim.devices``
(``[project.entry-points."optim.devices"] mykind = "mypkg.mydevice:MyDevice"``). Kinds with
``fallback = True`` (adb, which accepts any profile name or serial) are asked last.

A device kind reads everything format-specific from the format's
:class:`~optim.runtimes.spec.FormatSpec` (its host runtime, its on-device tool), so a new
format needs no change here and a new device kind needs no change to the formats.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

from optim.device_bench.result import BenchResult
from optim.device_bench.stats import DEFAULT_DRIFT_PCT
from optim.errors import InputError, ToolError

ENTRY_POINT_GROUP = "optim.devices"
BUILTIN = ("optim.device_bench.host:HostDevice", "optim.device_bench.android:AdbDevice")


class Device(ABC):
    """A place an artifact can be benchmarked.

    Attributes:
        kind: the kind's registry name (``"host"``, ``"adb"``).
        fallback: asked after every non-fallback kind (a catch-all such as adb serials).
        on_this_machine: the benchmark runs on this machine's own CPUs (``host``), so other
            work driven from this machine at the same time can show in its timings.
        name: the ``--device`` value this instance was made for.
    """

    kind: ClassVar[str] = ""
    fallback: ClassVar[bool] = False
    on_this_machine: ClassVar[bool] = False

    def __init__(self, name: str):
        self.name = name

    @classmethod
    @abstractmethod
    def claims(cls, name: str) -> bool:
        """True if ``--device name`` means a device of this kind."""

    def identity(self) -> str:
        """The physical device this name means, as a short description that is equal for two
        names of the same device (adb: ``"adb serial SERIAL"``, whether named by profile or
        serial). :func:`optim.device_bench.api.bench_devices` refuses two names with the same
        identity. Default: ``"KIND NAME"``. Raises :class:`InputError` for a name that means no
        device, :class:`ToolError` subclasses when the device cannot be reached."""
        return f"{self.kind} {self.name}"

    @abstractmethod
    def bench(self, artifact: str | Path, *, threads: int | None = None, runs: int = 100, warmup: int = 10,
              trials: int = 3, cooldown_s: float | None = None, drift_pct: float = DEFAULT_DRIFT_PCT,
              load_kwargs: dict | None = None, measure_memory: bool = True,
              log: Callable[[str], None] | None = None) -> BenchResult:
        """Benchmark ``artifact`` (checked by :func:`optim.bench`: exists, counts valid) →
        :class:`BenchResult` (times in ms, memory in MB = 10^6 bytes). Raises
        :class:`InputError` for an artifact this device cannot run, :class:`ToolError`
        subclasses for device/tool failures."""


def _load(ref: str, where: str) -> type[Device]:
    module, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ToolError(f"device kind {where} ({ref}) cannot be loaded: {type(e).__name__}: {e}") from e
    if not (isinstance(obj, type) and issubclass(obj, Device) and obj.kind):
        raise ToolError(f"device kind {where} ({ref}) is not a optim Device subclass with a kind name")
    return obj


def device_kinds() -> dict[str, type[Device]]:
    """Every registered device kind ``{kind: class}``: built-ins first, then entry points.
    Raises :class:`ToolError` for a plug-in that cannot be loaded or reuses a kind name."""
    out: dict[str, type[Device]] = {}
    refs = [(ref, ref, None) for ref in BUILTIN]
    refs += [(ep.value, f"entry point {ep.name} ({ENTRY_POINT_GROUP})", ep.name)
             for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)]
    for ref, where, ep_name in refs:
        cls = _load(ref, where)
        if ep_name is not None and ep_name != cls.kind:
            raise ToolError(f"{where} defines device kind {cls.kind!r}; the entry point must be named after it")
        if cls.kind in out:
            raise ToolError(f"device kind {cls.kind!r} from {where} is already registered; uninstall one of them")
        out[cls.kind] = cls
    return out


def get_device(name: str) -> Device:
    """The device ``--device name`` means: the first kind whose ``claims(name)`` is true
    (non-fallback kinds first). Raises :class:`InputError` when no kind claims it."""
    kinds = sorted(device_kinds().values(), key=lambda c: c.fallback)  # stable: registry order within each group
    for cls in kinds:
        if cls.claims(name):
            return cls(name)
    raise InputError(f"--device {name!r} names no known device (kinds: {', '.join(c.kind for c in kinds)}); "
                     "see `optim devices`")
