"""Device and on-device tool failures. All are :class:`optim.errors.ToolError` (exit 3):
the artifact may be fine, the environment is not."""

from __future__ import annotations

from optim.errors import ToolError


class DeviceError(ToolError):
    """Base class of every Android device problem."""


class AdbNotFoundError(DeviceError):
    """The ``adb`` client is not on PATH."""


class DeviceNotFoundError(DeviceError):
    """No connected device matches (none connected, or none with that serial/profile)."""


class DeviceUnauthorizedError(DeviceError):
    """The device did not accept this computer's adb key (USB debugging prompt not confirmed)."""


class DeviceOfflineError(DeviceError):
    """adb lists the device as offline."""


class DeviceDisconnectedError(DeviceError):
    """The device disappeared during the run and did not come back after one retry."""


class ToolNotConfiguredError(DeviceError):
    """The on-device benchmark tool for this format was never set up (``optim devices setup``)."""


# defined next to the format specs' tool parsers (optim.runtimes.device_tool), re-exported here
from optim.runtimes.device_tool import ToolRunError  # noqa: E402,F401
