"""The typed result of one benchmark (``optim.bench``) and its JSON form.

The JSON keys are a contract with the gate (issue 6): fields may be added, never renamed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optim.device_bench.stats import STAT_NAMES, LatencyStats
from optim.errors import InputError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DeviceInfo:
    """Where the benchmark ran: ``name`` is ``"host"`` or a profile name (``"pixel6a"``) or,
    for an Android device without a profile, its ``ro.product.device``."""

    name: str
    kind: str  # "host" | "android"
    serial: str | None = None
    profile: str | None = None
    model: str | None = None
    abi: str | None = None
    cpu_mask: str | None = None  # taskset mask used (hex), Android only
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "serial": self.serial, "profile": self.profile,
                "model": self.model, "abi": self.abi, "cpu_mask": self.cpu_mask, "details": dict(self.details)}


@dataclass
class BenchResult:
    """One artifact benchmarked on one device.

    Attributes (times in ms; MB = 10^6 bytes):
        artifact: path that was benchmarked; format: "onnx" | "tflite" | "pte" | "torch".
        latency: pooled statistics over all timed (post-warm-up) iterations of all trials.
        p95_ci_ms: 95 % bootstrap interval on p95, or None when per-iteration times are missing.
        trials_p95_ms: p95 of each trial; trial_spread_pct: (max−min)/median × 100 of those.
        peak_memory_mb: what ``memory_method`` says, or None.
        unavailable: statistics the tool did not provide (never estimated).
        tool: what measured ("python time.perf_counter_ns", "benchmark_model", ...).
        thermal: per trial, thermal status before/after (Android).
    """

    artifact: str
    format: str
    device: DeviceInfo
    threads: int | None
    runs: int
    warmup: int
    trials: int
    latency: LatencyStats
    p95_ci_ms: tuple[float, float] | None
    trials_p95_ms: list[float | None]
    trial_spread_pct: float | None
    peak_memory_mb: float | None
    percentile_method: str
    unavailable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tool: str = ""
    memory_method: str | None = None
    input_description: str | None = None
    thermal: list[dict[str, Any]] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)  # not in JSON; kept for -v debugging

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema_version 1), as the gate expects."""
        return {
            "schema_version": SCHEMA_VERSION,
            "artifact": self.artifact,
            "format": self.format,
            "device": self.device.to_dict(),
            "threads": self.threads,
            "runs": self.runs,
            "warmup": self.warmup,
            "trials": self.trials,
            "latency_ms": self.latency.to_dict(),
            "p95_ci_ms": list(self.p95_ci_ms) if self.p95_ci_ms is not None else None,
            "trials_p95_ms": list(self.trials_p95_ms),
            "trial_spread_pct": self.trial_spread_pct,
            "peak_memory_mb": self.peak_memory_mb,
            "unavailable": list(self.unavailable),
            "percentile_method": self.percentile_method,
            "warnings": list(self.warnings),
            "tool": self.tool,
            "memory_method": self.memory_method,
            "input": self.input_description,
            "thermal": list(self.thermal),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        from optim.files import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "BenchResult":
        """Rebuild from :meth:`to_dict` output. Raises :class:`InputError` naming the missing key."""
        try:
            if data.get("schema_version") != SCHEMA_VERSION:
                raise InputError(f"{source}: schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
            dev = data["device"]
            lat = data["latency_ms"]
            return cls(
                artifact=data["artifact"], format=data["format"],
                device=DeviceInfo(name=dev["name"], kind=dev["kind"], serial=dev.get("serial"),
                                  profile=dev.get("profile"), model=dev.get("model"), abi=dev.get("abi"),
                                  cpu_mask=dev.get("cpu_mask"), details=dev.get("details") or {}),
                threads=data["threads"], runs=data["runs"], warmup=data["warmup"], trials=data["trials"],
                latency=LatencyStats(**{k: lat[k] for k in STAT_NAMES}),
                p95_ci_ms=tuple(data["p95_ci_ms"]) if data["p95_ci_ms"] is not None else None,
                trials_p95_ms=list(data["trials_p95_ms"]), trial_spread_pct=data["trial_spread_pct"],
                peak_memory_mb=data["peak_memory_mb"], percentile_method=data["percentile_method"],
                unavailable=list(data["unavailable"]), warnings=list(data["warnings"]),
                tool=data.get("tool", ""), memory_method=data.get("memory_method"),
                input_description=data.get("input"), thermal=list(data.get("thermal") or []),
            )
        except KeyError as e:
            raise InputError(f"{source}: benchmark result lacks key {e.args[0]!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> "BenchResult":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"benchmark result {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise InputError(f"benchmark result {path} is not JSON ({e})") from None
        return cls.from_dict(data, source=str(path))
