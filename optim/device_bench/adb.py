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
import time
from dataclasses import dataclass, field

from optim.device_bench.errors import (AdbNotFoundError, DeviceDisconnectedError, DeviceOfflineError,
                                       DeviceUnauthorizedError, ToolRunError)

_GONE = re.compile(r"device '.*' not found|no devices/emulators found|device offline|error: closed|"
                   r"device not found|protocol fault|connection reset", re.I)


@dataclass(frozen=True)
class ConnectedDevice:
    """One line of ``adb devices -l``."""

    serial: str
    state: str  # "device" | "unauthorized" | "offline" | "no permissions" | "recovery" | ...
    props: dict[str, str] = field(default_factory=dict)  # product, model, device, transport_id, usb

    @property
    def ready(self) -> bool:
        return self.state == "device"


def parse_devices(text: str) -> list[ConnectedDevice]:
    """Parse ``adb devices -l`` output. Lines before "List of devices attached" (daemon
    start-up chatter) are skipped."""
    out: list[ConnectedDevice] = []
    lines = text.splitlines()
    start = next((i + 1 for i, l in enumerate(lines) if l.startswith("List of devices")), 0)
    for line in lines[start:]:
        line = line.strip()
        if not line or line.startswith("*"):
            continue
        tokens = line.split()
        if len(tokens) < 2:
            continue
        serial, rest = tokens[0], tokens[1:]
        if rest[0] == "no" and len(rest) > 1 and rest[1].startswith("permissions"):
            state = "no permissions"
            rest = [t for t in rest if ":" in t and not t.startswith("(")]
        else:
            state, rest = rest[0], rest[1:]
        props = dict(t.split(":", 1) for t in rest if ":" in t)
        out.append(ConnectedDevice(serial, state, props))
    return out


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
        self.retry_delay_s = float(os.environ.get("OPTIM_ADB_RETRY_DELAY_S", "3")) if retry_delay_s is None else retry_delay_s
        self.default_timeout_s = default_timeout_s
        self.retries_used: list[str] = []

    def for_device(self, serial: str) -> "Adb":
        return Adb(serial, self.adb, self.retry_delay_s, self.default_timeout_s)

    # ------------------------------------------------------------------ low level
    def _exec(self, args: list[str], timeout: float | None) -> subprocess.CompletedProcess:
        cmd = [self.adb] + (["-s", self.serial] if self.serial else []) + args
        try:
            return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=timeout or self.default_timeout_s)
        except FileNotFoundError:
            raise AdbNotFoundError(f"{self.adb} could not be executed") from None
        except subprocess.TimeoutExpired:
            raise ToolRunError(f"`adb {' '.join(args)[:200]}` did not finish within {timeout or self.default_timeout_s:.0f} s") from None

    def run(self, args: list[str], *, what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``adb [-s SERIAL] ARGS``; retry once if the device went away; return the process
        (the caller checks ``returncode`` for the remote command's exit status)."""
        proc = self._exec(args, timeout)
        if not self._gone(proc):
            return proc
        self.retries_used.append(what)
        time.sleep(self.retry_delay_s)
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
        proc = self._exec(["devices", "-l"], 30)
        if proc.returncode != 0:
            raise ToolRunError(f"`adb devices -l` failed: {(proc.stderr or proc.stdout).strip()[:300]}")
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
        return self.shell(f"getprop {name}", what=f"getprop {name}").stdout.strip()


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
