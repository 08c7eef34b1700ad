"""Transport to Android devices: the real ``adb`` client (Debian package ``adb``) via subprocess.

Every call names the device by serial (``adb -s SERIAL ...``). A call that fails because the
device went away (``device 'X' not found``, ``no devices/emulators found``, ``device
offline``, ``closed``) is retried once after a short pause; a second failure raises
:class:`DeviceDisconnectedError`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from optim.device_bench.errors import (AdbNotFoundError, DeviceDisconnectedError, DeviceOfflineError,
                                       DeviceUnauthorizedError, ToolRunError)
from optim.device_bench.process import pause, run_tool
from optim.errors import InputError

_GONE = re.compile(r"device '.*' not found|no devices/emulators found|device offline|error: closed|"
                   r"device not found|protocol fault|connection reset", re.I)


#: connection states ``adb devices`` prints (adb's ``ConnectionStateToString``, packages/modules/adb)
KNOWN_STATES = frozenset({"device", "offline", "unauthorized", "authorizing", "connecting", "bootloader", "recovery",
                          "rescue", "sideload", "host", "detached", "no permissions"})
#: characters adb serials use: USB serials (alphanumerics), ``emulator-5554``, ``host:port``,
#: ``[v6addr%if]:port``, mDNS names such as ``adb-XYZ-abc._adb-tls-connect._tcp``
_SERIAL = re.compile(r"[A-Za-z0-9._:%+\[\]-]{1,128}")
_PROP = re.compile(r"([a-z_]{1,32}):(\S{0,256})")
_HEADER = "List of devices attached"


@dataclass(frozen=True)
class ConnectedDevice:
    """One line of ``adb devices -l``."""

    serial: str
    state: str  # one of KNOWN_STATES
    props: dict[str, str] = field(default_factory=dict)  # product, model, device, transport_id, usb

    @property
    def ready(self) -> bool:
        return self.state == "device"


def is_valid_serial(text: str) -> bool:
    """Whether ``text`` uses only the characters adb serials use (see :data:`_SERIAL`)."""
    return bool(_SERIAL.fullmatch(text))


def _bad_line(line: str, why: str) -> ToolRunError:
    return ToolRunError(f"adb printed a line `adb devices -l` never prints ({why}): {line[:200]!r}; "
                        "check that the adb on PATH (or $OPTIM_ADB) is the real Android platform-tools adb")


def parse_devices(text: str) -> list[ConnectedDevice]:
    """Parse ``adb devices -l`` output strictly → one :class:`ConnectedDevice` per line.

    Format (adb's ``list_transports``): the header ``List of devices attached``, then one line
    per device ``SERIAL<spaces or tab>STATE[ key:value ...]`` (``no permissions`` is followed by
    adb's free-text hint, then ``key:value`` fields). Before the header adb may print daemon
    chatter starting with ``*`` or ``adb``; blank lines are ignored.

    Raises :class:`ToolRunError` (exit 3) quoting the line for anything else: a missing header,
    a serial with characters adb never uses, an unknown state, a malformed field, or a serial
    listed twice. Never invents a device.
    """
    out: list[ConnectedDevice] = []
    lines = text.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == _HEADER)
    except StopIteration:
        shown = next((l for l in lines if l.strip()), "")
        raise ToolRunError(f"adb printed no '{_HEADER}' header for `adb devices -l` (first line: {shown[:200]!r}); "
                           "check that the adb on PATH (or $OPTIM_ADB) is the real Android platform-tools adb") from None
    for line in lines[:start]:
        s = line.strip()
        if s and not (s.startswith("*") or s.startswith("adb")):
            raise _bad_line(line, "unexpected text before the device list")
    seen: set[str] = set()
    for line in lines[start + 1:]:
        s = line.strip()
        if not s:
            continue
        if s.startswith("* "):  # daemon chatter may interleave
            continue
        tokens = s.split()
        if len(tokens) < 2:
            raise _bad_line(line, "no state after the serial")
        serial, rest = tokens[0], tokens[1:]
        if not _SERIAL.fullmatch(serial):
            raise _bad_line(line, f"serial {serial[:64]!r} has characters adb serials never use")
        if rest[:2] == ["no", "permissions"] or (rest[0] == "no" and len(rest) > 1 and rest[1].startswith("permissions")):
            state = "no permissions"
            rest = [t for t in rest if _PROP.fullmatch(t) and not t.startswith("http")]
        else:
            state, rest = rest[0], rest[1:]
        if state not in KNOWN_STATES:
            raise _bad_line(line, f"unknown device state {state[:40]!r}; adb states are {', '.join(sorted(KNOWN_STATES))}")
        props: dict[str, str] = {}
        for t in rest:
            m = _PROP.fullmatch(t)
            if not m:
                raise _bad_line(line, f"field {t[:60]!r} is not key:value")
            props[m.group(1)] = m.group(2)
        if serial in seen:
            raise _bad_line(line, f"serial {serial} is listed twice")
        seen.add(serial)
        out.append(ConnectedDevice(serial, state, props))
    return out


#: seconds each kind of adb call may take by default; $OPTIM_ADB_TIMEOUT_S overrides them all
DEFAULT_TIMEOUTS_S = {"devices": 30.0, "shell": 120.0, "push": 300.0, "tool": 900.0}


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0 <= value < float("inf")):
        raise InputError(f"{name}={raw!r} is not a number of seconds ≥ 0")
    return value


def timeout_override() -> float | None:
    """``$OPTIM_ADB_TIMEOUT_S`` as seconds (> 0), or None when unset.

    Raises :class:`InputError` (exit 2) naming the variable when it is not a positive number."""
    raw = os.environ.get("OPTIM_ADB_TIMEOUT_S")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise InputError(f"OPTIM_ADB_TIMEOUT_S={raw!r} is not a positive number of seconds")
    return value


_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]{0,128}")
#: what each property read from a device may look like (empty = unset)
PROP_PATTERNS = {
    "ro.product.device": re.compile(r"[A-Za-z0-9._-]{0,64}"),
    "ro.product.cpu.abi": re.compile(r"[a-z0-9_-]{0,32}"),
    "ro.product.model": _PRINTABLE,
}


def find_adb() -> str:
    """Path of the ``adb`` client: ``$OPTIM_ADB`` or the first ``adb`` on PATH.

    Raises :class:`AdbNotFoundError` saying how to install it.
    """
    explicit = os.environ.get("OPTIM_ADB")
    if explicit:
        if shutil.which(explicit):
            return shutil.which(explicit)  # type: ignore[return-value]
        raise AdbNotFoundError(f"OPTIM_ADB={explicit} is not an executable")
    found = shutil.which("adb")
    if not found:
        raise AdbNotFoundError("adb is not on PATH: install Android platform-tools "
                               "(Debian/Ubuntu: `apt install adb`) or set OPTIM_ADB to the adb binary")
    return found


class Adb:
    """Thin wrapper over the ``adb`` executable for one device (``serial``)."""

    def __init__(self, serial: str | None = None, adb_path: str | None = None, retry_delay_s: float | None = None,
                 default_timeout_s: float = 120.0):
        self.adb = adb_path or find_adb()
        self.serial = serial
        # pause before the one retry after a disconnect ($OPTIM_ADB_RETRY_DELAY_S, default 3 s)
        self.retry_delay_s = _env_seconds("OPTIM_ADB_RETRY_DELAY_S", 3.0) if retry_delay_s is None else retry_delay_s
        self.default_timeout_s = default_timeout_s
        self.retries_used: list[str] = []

    def for_device(self, serial: str) -> "Adb":
        return Adb(serial, self.adb, self.retry_delay_s, self.default_timeout_s)

    # ------------------------------------------------------------------ low level
    def _exec(self, args: list[str], timeout: float | None) -> subprocess.CompletedProcess:
        """One adb call through :func:`optim.device_bench.process.run_tool` (own process group,
        killed as a group on timeout). ``$OPTIM_ADB_TIMEOUT_S`` overrides every timeout."""
        cmd = [self.adb] + (["-s", self.serial] if self.serial else []) + args
        limit = timeout_override() or timeout or self.default_timeout_s
        return run_tool(cmd, timeout_s=limit, what=f"adb {' '.join(cmd[1:])[:200]}", not_found=AdbNotFoundError)

    def run(self, args: list[str], *, what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``adb [-s SERIAL] ARGS``; retry once if the device went away; return the process
        (the caller checks ``returncode`` for the remote command's exit status)."""
        proc = self._exec(args, timeout)
        if not self._gone(proc):
            return proc
        self.retries_used.append(what)
        pause(self.retry_delay_s)
        proc = self._exec(args, timeout)
        if self._gone(proc):
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise DeviceDisconnectedError(
                f"device {self.serial} disappeared during {what} and was still gone after one retry "
                f"({msg[-1] if msg else 'no message'}); reconnect it (cable, `adb devices`) and run again")
        return proc

    def _gone(self, proc: subprocess.CompletedProcess) -> bool:
        if proc.returncode == 0:
            return False
        text = (proc.stderr or "") + "\n" + (proc.stdout or "")[-2000:]
        return bool(_GONE.search(text))

    # ------------------------------------------------------------------ commands
    def devices(self) -> list[ConnectedDevice]:
        proc = self._exec(["devices", "-l"], DEFAULT_TIMEOUTS_S["devices"])
        if proc.returncode != 0:
            raise ToolRunError(f"`adb devices -l` failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[:300]}")
        return parse_devices(proc.stdout)

    def shell(self, command: str, *, what: str, timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """``adb shell COMMAND`` (one string, run by the device's sh). With ``check``, a
        non-zero exit raises :class:`ToolRunError` naming ``what``."""
        proc = self.run(["shell", command], what=what, timeout=timeout)
        if check and proc.returncode != 0:
            tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()[-5:])
            raise ToolRunError(f"{what} failed on {self.serial} (exit {proc.returncode}): {tail}")
        return proc

    def push(self, local: str, remote: str, *, timeout: float | None = 300) -> None:
        proc = self.run(["push", local, remote], what=f"push of {os.path.basename(local)}", timeout=timeout)
        if proc.returncode != 0:
            raise ToolRunError(f"adb push {local} {remote} failed: {(proc.stderr or proc.stdout).strip()[:300]}")

    def getprop(self, name: str) -> str:
        """``getprop NAME`` → its value ("" when unset).

        Raises :class:`ToolRunError` naming the property and the device when the answer is not
        one line of printable text that fits the property (see :data:`PROP_PATTERNS`): a
        garbled reply never becomes a device name or ABI."""
        text = self.shell(f"getprop {name}", what=f"getprop {name}").stdout
        lines = [l for l in text.replace("\r", "").split("\n") if l.strip()]
        value = lines[0].strip() if lines else ""
        pattern = PROP_PATTERNS.get(name, _PRINTABLE)
        if len(lines) > 1 or not pattern.fullmatch(value):
            raise ToolRunError(f"adb: `getprop {name}` on {self.serial} returned {text.strip()[:120]!r}, not a valid "
                               f"{name} value; check the device (or the adb on PATH)")
        return value


def require_ready(dev: ConnectedDevice) -> None:
    """Raise the matching error unless ``dev`` is usable (state ``device``)."""
    if dev.state == "unauthorized":
        raise DeviceUnauthorizedError(f"device {dev.serial} is unauthorized: unlock the phone and accept the "
                                      "'Allow USB debugging' prompt for this computer, then run again")
    if dev.state == "offline":
        raise DeviceOfflineError(f"device {dev.serial} is offline: reconnect the cable or run `adb reconnect`, "
                                 "then check `adb devices`")
    if dev.state == "no permissions":
        raise DeviceUnauthorizedError(f"device {dev.serial}: no permissions to open the USB device; "
                                      "add a udev rule for it (or run `adb kill-server` as your user)")
    if dev.state != "device":
        raise DeviceOfflineError(f"device {dev.serial} is in state '{dev.state}', not 'device'; boot it normally")
