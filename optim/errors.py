"""Error types and the exit codes the CLI maps them to.

Exit codes (documented in the README and ``optim --help``):

* 0 — success;
* 1 — a gate or check failed (:class:`CheckFailed`);
* 2 — usage or input error: a missing, corrupt or unsafe file, a bad config (:class:`InputError`);
* 3 — tool or environment error: a runtime or exporter that broke, a device that vanished
  (:class:`ToolError`).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_INPUT_ERROR = 2
EXIT_TOOL_ERROR = 3


class OptimError(Exception):
    """Base class of every error optim raises on purpose; carries the CLI exit code."""

    exit_code: int = EXIT_TOOL_ERROR


class InputError(OptimError, ValueError):
    """Bad user input: a missing or corrupt file, an unknown label, a config with a typo."""

    exit_code = EXIT_INPUT_ERROR


class UnsafeCheckpointError(InputError):
    """A checkpoint needs full unpickling (it could run code) and the user did not trust it."""


class ToolError(OptimError, RuntimeError):
    """A library, runtime, exporter or device failed; the input may be fine."""

    exit_code = EXIT_TOOL_ERROR


class CheckFailed(OptimError):
    """A gate or check ran and the artifact did not pass."""

    exit_code = EXIT_CHECK_FAILED


def describe_validation_error(error) -> str:
    """One line naming every bad field of a pydantic ``ValidationError``:
    ``"a.b: message; c: unknown key (typo?)"`` (dotted paths; ``<root>`` for the top level)."""
    problems = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = "unknown key (typo?)" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{key}: {msg}")
    return "; ".join(problems)
