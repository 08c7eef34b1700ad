"""The user's device configuration: paths of the on-device benchmark tools and extra profiles.

One TOML file, ``devices.toml``, in ``$OPTIM_CONFIG_DIR`` (if set) or
``$XDG_CONFIG_HOME/optim`` or ``~/.config/optim``::

    [tools.benchmark_model]          # LiteRT/TFLite, for .tflite
    path = "/home/me/android/benchmark_model"
    [tools.executor_runner]          # ExecuTorch, for .pte
    path = "/home/me/android/executor_runner"
    [tools.onnxruntime_perf_test]    # ONNX Runtime, for .onnx
    path = "/home/me/android/onnxruntime_perf_test"
    libs = ["/home/me/android/libonnxruntime.so"]   # pushed next to the tool

    [profiles.my-phone]              # same keys as optim/device_bench/profiles.toml
    name = "My phone"
    codenames = ["foo"]

optim ships no Android binaries: the user builds or downloads the official tools once and
registers them with ``optim devices setup`` (which writes this file) or by editing it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optim.errors import InputError
from optim.files import parse_toml

CONFIG_FILE = "devices.toml"
TOP_LEVEL_KEYS = frozenset({"tools", "profiles"})
TOOL_KEYS = frozenset({"path", "libs"})


def known_tools() -> tuple[str, ...]:
    """Names of the on-device tools of the registered formats (``FormatSpec.device_tool``)."""
    from optim.runtimes.registry import device_tools

    return tuple(device_tools())


def config_dir() -> Path:
    if os.environ.get("OPTIM_CONFIG_DIR"):
        return Path(os.environ["OPTIM_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "optim"


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


@dataclass(frozen=True)
class ToolConfig:
    """An on-device tool: the host path of its binary and shared libraries pushed with it."""

    name: str
    path: Path
    libs: tuple[Path, ...] = ()


@dataclass
class DeviceConfig:
    tools: dict[str, ToolConfig] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None


def load_config(path: str | Path | None = None) -> DeviceConfig:
    """Read the user's ``devices.toml`` (missing file → empty config).

    Raises :class:`InputError` (exit 2) naming the file and key on bad TOML, an unknown
    top-level key, tool name or tool key (typos are errors, never ignored), or a value of the
    wrong type. Profiles are validated when used (:func:`optim.device_bench.profiles.all_profiles`).
    """
    path = Path(path) if path else config_path()
    if not path.exists():
        return DeviceConfig(source=path)
    if path.is_dir():
        raise InputError(f"device config {path} is a directory, not a TOML file")
    data = parse_toml(path.read_bytes(), path, "device config")
    cfg = DeviceConfig(source=path)
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (typo?); a device config holds only "
                         f"{', '.join(f'[{k}.*]' for k in sorted(TOP_LEVEL_KEYS))}")
    tools = data.get("tools") or {}
    known = known_tools()
    if not isinstance(tools, dict):
        raise InputError(f"{path}: [tools] must be a table of tools ({', '.join(known)})")
    for name, entry in tools.items():
        if name not in known:
            raise InputError(f"{path}: [tools.{name}] is not a known tool (typo?); use one of {', '.join(known)}")
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or "path" not in entry:
            raise InputError(f"{path}: [tools.{name}] needs a 'path' key")
        extra = sorted(set(entry) - TOOL_KEYS)
        if extra:
            raise InputError(f"{path}: [tools.{name}] has unknown key(s) {', '.join(map(repr, extra))} (typo?); "
                             f"allowed: {', '.join(sorted(TOOL_KEYS))}")
        libs = entry.get("libs") or []
        if not isinstance(entry["path"], str) or not entry["path"].strip():
            raise InputError(f"{path}: [tools.{name}].path must be a non-empty string (the tool's host path)")
        if not isinstance(libs, list) or not all(isinstance(p, str) and p.strip() for p in libs):
            raise InputError(f"{path}: [tools.{name}].libs must be a list of paths")
        cfg.tools[name] = ToolConfig(name, Path(entry["path"]).expanduser(), tuple(Path(p).expanduser() for p in libs))
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise InputError(f"{path}: [profiles] must be a table of profiles ([profiles.NAME] sections)")
    cfg.profiles = {k: dict(v) for k, v in profiles.items()}
    return cfg


def save_tools(tools: dict[str, ToolConfig], path: str | Path | None = None) -> Path:
    """Write ``tools`` into ``devices.toml`` (profiles and other keys are kept)."""
    import tomli_w

    from optim.files import atomic_write_bytes

    path = Path(path) if path else config_path()
    data: dict[str, Any] = {}
    if path.exists():
        data = parse_toml(path.read_bytes(), path, "device config")
    section = data.setdefault("tools", {})
    for name, t in tools.items():
        entry: dict[str, Any] = {"path": str(t.path)}
        if t.libs:
            entry["libs"] = [str(p) for p in t.libs]
        section[name] = entry
    return atomic_write_bytes(path, tomli_w.dumps(data).encode())


ELF_MAGIC = b"\x7fELF"
EM_AARCH64 = 183
EM_ARM = 40


def check_android_binary(path: str | Path, what: str) -> str | None:
    """Raise :class:`InputError` unless ``path`` is an existing ELF file; return a warning
    string when it is not an arm64 (AArch64) binary, else ``None``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{what}: {path} does not exist or is not a file")
    head = path.read_bytes()[:20]
    if head[:4] != ELF_MAGIC:
        raise InputError(f"{what}: {path} is not an ELF executable; give the Android (arm64-v8a) build of the tool")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    if machine != EM_AARCH64:
        kind = "32-bit ARM" if machine == EM_ARM else f"e_machine {machine}"
        return f"{what}: {path} is a {kind} binary, not arm64-v8a; it will only run on matching devices"
    return None
