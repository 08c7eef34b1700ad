"""Running external tools (``adb``, the host-memory child) so that none outlives its timeout.

Every external command of :mod:`optim.device_bench` goes through :func:`run_tool`. The tool
starts in a new session (``start_new_session=True``: its own process group, no controlling
terminal), so on a timeout the whole group — the tool and every child it forked that stayed in
the group — is sent SIGTERM, given ``grace_s`` seconds, then SIGKILL. Without this, killing a
hung ``adb`` leaves e.g. its ``adb shell`` helper or a forked grandchild running (and holding the
output pipes open, which would also hang the reader).

Limits, by design: a child that calls ``setsid()`` itself (the adb *server* daemon does, on
purpose: it is shared by every adb client) leaves the group and is not killed; nothing is
killed after a tool exits normally, so such daemons keep running as the user expects.

Several threads (one per device, :mod:`optim.device_bench.parallel`) may run tools at once:
timeouts use ``communicate(timeout=...)`` and ``os.killpg``, which work in any thread (no
``signal.signal`` handler, which only the main thread may install). Because each tool runs in
its own session, a Ctrl-C on the terminal reaches only optim's main thread, never the tools:
:func:`stop_all_tools` (called by the main thread on KeyboardInterrupt) kills every tool any
thread is running and makes new ones fail fast (:func:`pause` too) until :func:`resume_tools`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from optim.errors import ToolError

#: seconds between SIGTERM and SIGKILL of a timed-out tool's process group
DEFAULT_GRACE_S = 2.0


class ToolTimeoutError(ToolError):
    """An external tool did not finish within its timeout; its process group was killed."""


class ToolStoppedError(ToolError):
    """The run was interrupted (Ctrl-C in the main thread): the tool was stopped or not started."""


_lock = threading.Lock()  # guards _running and the check of _stopping around a tool's start
_running: dict[int, str] = {}  # pgid → label of every tool running now, in any thread
_stopping = threading.Event()


def stop_all_tools(grace_s: float = DEFAULT_GRACE_S) -> int:
    """Stop every tool :func:`run_tool` is running in any thread (SIGTERM to its process group,
    SIGKILL after ``grace_s`` seconds), and make :func:`run_tool` and :func:`pause` raise
    :class:`ToolStoppedError` until :func:`resume_tools`. The threads that started the tools
    reap them (their ``run_tool`` raises :class:`ToolStoppedError`). Returns how many groups
    were signalled. Thread-safe; meant for the main thread on KeyboardInterrupt."""
    with _lock:
        _stopping.set()
        groups = list(_running)
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(group_alive(g) for g in groups):
        time.sleep(0.05)
    for pgid in groups:
        if group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
    return len(groups)


def resume_tools() -> None:
    """Allow tools to start again after :func:`stop_all_tools`."""
    _stopping.clear()


def pause(seconds: float) -> None:
    """``time.sleep(seconds)`` that ends early with :class:`ToolStoppedError` when
    :func:`stop_all_tools` is called meanwhile (cool-downs and retry delays of worker threads)."""
    if _stopping.wait(max(0.0, seconds)):
        raise ToolStoppedError("interrupted: the benchmark was stopped")


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone (or holds only processes we may not signal)


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def run_tool(cmd: Sequence[str], *, timeout_s: float, what: str | None = None, env: dict[str, str] | None = None,
             grace_s: float = DEFAULT_GRACE_S, not_found: type[ToolError] = ToolError) -> subprocess.CompletedProcess:
    """Run ``cmd`` (argv list, no shell) in its own session and return the finished process
    (``stdout``/``stderr`` decoded as UTF-8, undecodable bytes replaced).

    Args:
        cmd: the command and its arguments.
        timeout_s: seconds the command may run (> 0).
        what: how to name the command in errors (default: the command line, cut to 200 chars).
        env: environment for the child (default: this process's).
        grace_s: seconds between SIGTERM and SIGKILL of the process group on a timeout.
        not_found: the :class:`ToolError` subclass raised when the executable cannot be started.

    Raises:
        ToolTimeoutError (a :class:`ToolError`, exit 3): the command ran past ``timeout_s``;
            its whole process group was terminated (SIGTERM, then SIGKILL after ``grace_s``).
        ``not_found``: the executable does not exist or cannot be executed.
    """
    label = what or " ".join(cmd)[:200]
    with _lock:  # a tool starts either before stop_all_tools() sees _running or not at all
        if _stopping.is_set():
            raise ToolStoppedError(f"interrupted: `{label}` was not started")
        try:
            proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, errors="replace", env=env,
                                    start_new_session=True)
        except (FileNotFoundError, PermissionError, OSError) as e:
            raise not_found(f"`{label}` could not be started: {e.strerror or e}") from None
        pgid = proc.pid  # start_new_session: the child is the leader of a new group whose id is its pid
        _running[pgid] = label
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc, pgid, grace_s)
        raise ToolTimeoutError(f"`{label}` did not finish within {timeout_s:g} s and was stopped (its process group "
                               "was killed); check that the tool or device responds, or raise the timeout") from None
    except BaseException:  # KeyboardInterrupt while waiting: take the tool down with us
        _kill_group(proc, pgid, grace_s)
        raise
    finally:
        with _lock:
            _running.pop(pgid, None)
    if _stopping.is_set():  # stopped by stop_all_tools(): its exit status means nothing
        if group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        raise ToolStoppedError(f"interrupted: `{label}` was stopped")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen, pgid: int, grace_s: float) -> None:
    _signal_group(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    # the leader may have exited on SIGTERM while a child ignored it: SIGKILL whatever is left
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    try:
        proc.communicate(timeout=grace_s)  # reap the leader, close the pipes
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL (uninterruptible I/O)
        proc.kill()
