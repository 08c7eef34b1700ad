"""The on-device benchmark tool of a format: how to call it and how to read what it prints.

A format's :class:`optim.runtimes.spec.FormatSpec` names its tool (``device_tool``): the
official binary that times the format on a phone (LiteRT ``benchmark_model``, ExecuTorch
``executor_runner``, ``onnxruntime_perf_test`` ...). A device kind (``optim.device_bench``)
pushes the tool and the artifact, runs ``tool.command(call)`` and hands the text to
``tool.parse``; it never needs to know which format it is running.

Parsers are pure text → numbers (:mod:`optim.runtimes.tool_parsers`); garbage raises
:class:`ToolRunError` (exit 3), never a made-up figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from optim.errors import ToolError


class ToolRunError(ToolError):
    """The on-device tool crashed, exited non-zero, or printed nothing parseable (exit 3)."""


@dataclass(frozen=True)
class AggregateTrial:
    """One trial as reported by a tool that prints aggregates only (e.g. LiteRT benchmark_model).

    Times in ms; ``std`` is the population standard deviation; percentiles ``None`` when the
    tool's build does not print them.
    """

    count: int
    mean: float
    std: float | None
    min: float
    max: float
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class ToolOutput:
    """What one run of an on-device tool reported. Times in ms, memory in MB (10^6 bytes).

    Exactly one of ``latencies_ms`` (every reported iteration, in order; warm-up included when
    the tool cannot skip it — the caller drops it) and ``aggregate`` is set.
    """

    tool: str
    latencies_ms: np.ndarray | None = None
    aggregate: AggregateTrial | None = None
    peak_memory_mb: float | None = None
    memory_method: str | None = None
    percentile_method: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ToolCall:
    """One trial's invocation, in the device's paths.

    Attributes:
        tool: path of the tool binary on the device.
        model: path of the artifact's model file on the device.
        extra: paths of the artifact's other files on the device (sidecars).
        threads: CPU threads the tool should use (≥ 1).
        runs / warmup: timed and untimed iterations.
        result_file: a fresh path on the device the tool may write per-run results to.
        expected: iterations the tool should report in all (``warmup + runs``).
    """

    tool: str
    model: str
    extra: tuple[str, ...]
    threads: int
    runs: int
    warmup: int
    result_file: str

    @property
    def expected(self) -> int:
        return self.warmup + self.runs


#: ``read(shell_command, what) -> stdout or None`` — lets a parser fetch more text from the
#: device (a result file, a log) after the run; None when the command failed.
DeviceReader = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class DeviceTool:
    """An official on-device benchmark tool.

    Attributes:
        name: the tool's name, also its key in ``devices.toml`` (``[tools.NAME]``) and the
            ``optim devices setup --NAME-WITH-DASHES PATH`` option.
        command: ``ToolCall → argv`` (strings; the device quotes them).
        parse: ``(stdout+stderr, ToolCall, DeviceReader) → ToolOutput``; raises
            :class:`ToolRunError` when the output is unreadable.
        before_trial: shell command run on the device before each trial (e.g. clearing a
            log the tool writes to), or None.
        description: one line for ``optim devices setup --help``.
    """

    name: str
    command: Callable[[ToolCall], list[str]]
    parse: Callable[[str, ToolCall, DeviceReader], ToolOutput]
    before_trial: str | None = None
    description: str = ""

    @property
    def option(self) -> str:
        """The CLI option that registers it: ``--benchmark-model``."""
        return "--" + self.name.replace("_", "-")
