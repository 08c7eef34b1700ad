"""Library output goes to a log file, not the console.

The exporters and runtimes optim drives print freely: ExecuTorch's C++ ``cpuinfo`` lines,
litert-torch's ``print("Relu partition has more than one output node")``, absl, TensorFlow
and CUDA_HOME messages, torch's logging warnings. Most of it comes from C/C++ code writing to
file descriptors 1 and 2 directly, so swapping ``sys.stdout`` is not enough.

:func:`capture_library_output` redirects, for the duration of a command, the process's file
descriptors 1 and 2 (``os.dup2``) into a log file, and gives the caller two streams on
duplicates of the *original* descriptors for optim's own output (tables, JSON, progress,
errors). Python's ``sys.stdout``/``sys.stderr`` keep writing to descriptors 1 and 2, so a
library's ``print`` and its ``logging``/``warnings`` output (a handler on the root logger and
``warnings.showwarning`` are set while capturing) land in the log too.

Where the real descriptors are not behind ``sys.stdout``/``sys.stderr`` (click's
``CliRunner`` and pytest replace them with in-memory streams), only the Python level is
captured: ``sys.stdout``/``sys.stderr`` point at the log and the replaced streams become the
console.

With ``verbose=True`` nothing is captured: library output is shown, but descriptor 1 is sent to
descriptor 2 so that stdout still holds only optim's own output (``--json`` stays parseable).

The log file is ``optim-<command>-<YYYYmmdd-HHMMSS>-<pid>.log`` in ``$OPTIM_LOG_DIR`` or
``./optim-logs``; a log that stays empty is removed (and the directory, if this run created
it), so quiet commands leave nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from optim.errors import InputError

LOG_DIR_ENV = "OPTIM_LOG_DIR"
DEFAULT_LOG_DIR = "optim-logs"


@dataclass
class Capture:
    """What :func:`capture_library_output` yields.

    ``out``/``err``: text streams for optim's own output (the original stdout/stderr);
    ``log_path``: the log file (``None`` when verbose: nothing is captured);
    ``mode``: ``"fd"`` (descriptors 1 and 2 redirected), ``"python"`` (only ``sys.stdout``/
    ``sys.stderr``: an in-memory test runner) or ``"verbose"``."""

    out: TextIO
    err: TextIO
    log_path: Path | None
    mode: str
    kept: bool = False  # set on exit: the log held something and was kept

    def __post_init__(self) -> None:
        self._log_stream: TextIO | None = None


def log_dir() -> Path:
    """``$OPTIM_LOG_DIR`` if set, else ``./optim-logs`` (relative to the working directory)."""
    return Path(os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR)


def _open_log(command: str, directory: Path) -> tuple[int, Path, bool]:
    """Create the log file exclusively (never follows or overwrites a file that is there).

    Returns (fd, path, whether the directory was created by this call).
    Raises :class:`InputError` when the directory is a symbolic link (the default one only:
    ``./optim-logs`` planted as a link would send files elsewhere), not a directory, or not
    writable; the message says to set ``$OPTIM_LOG_DIR`` or run with ``-v``."""
    explicit = bool(os.environ.get(LOG_DIR_ENV))
    fix = f"set {LOG_DIR_ENV} to a writable directory, or run with -v (nothing captured)"
    if not explicit and directory.is_symlink():
        raise InputError(f"log directory {directory} is a symbolic link; optim does not follow it (remove it, or {fix})")
    created = False
    try:
        if not directory.exists():
            directory.mkdir(parents=explicit, mode=0o755)
            created = True
        if not directory.is_dir():
            raise InputError(f"log directory {directory} is not a directory ({fix})")
    except OSError as e:
        raise InputError(f"log directory {directory} cannot be created: {e.strerror or e} ({fix})") from None
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", command).strip("-.") or "command"
    stem = f"optim-{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for i in range(100):
        path = directory / (stem + (f"-{i}" if i else "") + ".log")
        try:
            return os.open(path, flags, 0o644), path, created
        except FileExistsError:
            continue
        except OSError as e:
            raise InputError(f"log file {path} cannot be created: {e.strerror or e} ({fix})") from None
    raise InputError(f"log directory {directory}: {stem}*.log all exist ({fix})")


def _real_fd(stream, fd: int) -> bool:
    """Whether ``stream`` (sys.stdout/sys.stderr) writes to the process's descriptor ``fd``."""
    try:
        return stream is not None and stream.fileno() == fd and os.fstat(fd) is not None
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers (a C++ library's buffered printf output would
    otherwise reach the real stdout after the descriptors are restored)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def _flush(*streams) -> None:
    for s in streams:
        with contextlib.suppress(Exception):
            s.flush()


def _console_stream(fd: int, like) -> TextIO:
    """A line-buffered text stream on ``fd`` with the encoding of ``like`` (owns and closes ``fd``)."""
    return open(fd, "w", encoding=getattr(like, "encoding", None) or "utf-8",
                errors=getattr(like, "errors", None) or "backslashreplace", buffering=1, closefd=True)


@contextlib.contextmanager
def capture_library_output(command: str, *, verbose: bool = False) -> Iterator[Capture]:
    """Send everything libraries print during the ``with`` block to a log file.

    ``command``: a name for the log file (``optim-<command>-<time>-<pid>.log``).
    Yields a :class:`Capture`: write optim's own output to ``capture.out``/``capture.err``
    only. On exit the descriptors and streams are restored (also on an exception or
    KeyboardInterrupt); an empty log is deleted (``capture.kept`` is False), a non-empty one
    is kept at ``capture.log_path``.

    Raises :class:`InputError` when the log directory is unusable (see :func:`log_dir`).
    Not re-entrant: nest only by reusing the outer :class:`Capture`.
    """
    _flush(sys.stdout, sys.stderr)
    fd_mode = _real_fd(sys.stdout, 1) and _real_fd(sys.stderr, 2)
    if verbose:
        if not fd_mode:  # in-memory streams: a library's print goes to stderr, like the fds below
            saved_stdout = sys.stdout
            sys.stdout = sys.stderr
            try:
                yield Capture(out=saved_stdout, err=sys.stderr, log_path=None, mode="verbose")
            finally:
                sys.stdout = saved_stdout
            return
        out_fd = os.dup(1)
        out = _console_stream(out_fd, sys.stdout)
        os.dup2(2, 1)  # library prints go to stderr: stdout keeps only optim's output
        try:
            yield Capture(out=out, err=sys.stderr, log_path=None, mode="verbose")
        finally:
            _flush(sys.stdout, sys.stderr)
            _flush_c_stdio()
            _flush(out)
            os.dup2(out_fd, 1)
            out.close()
        return

    directory = log_dir()
    log_fd, path, created = _open_log(command, directory)
    log_stream = open(os.dup(log_fd), "a", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=True)
    handler = logging.StreamHandler(log_stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved_stdout, saved_stderr = sys.stdout, sys.stderr
    saved_fds: tuple[int, int] | None = None
    if fd_mode:
        saved_fds = (os.dup(1), os.dup(2))
        cap = Capture(out=_console_stream(saved_fds[0], saved_stdout), err=_console_stream(saved_fds[1], saved_stderr),
                      log_path=path, mode="fd")
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
    else:
        cap = Capture(out=saved_stdout, err=saved_stderr, log_path=path, mode="python")
        sys.stdout = sys.stderr = log_stream
    cap._log_stream = log_stream
    root = logging.getLogger()
    root.addHandler(handler)
    warnings_ctx = warnings.catch_warnings()  # restores showwarning and the filters on exit
    warnings_ctx.__enter__()

    def _warning_to_log(message, category, filename, lineno, file=None, line=None):
        with contextlib.suppress(Exception):
            log_stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = _warning_to_log  # also when a test runner records warnings
    try:
        yield cap
    finally:
        warnings_ctx.__exit__(None, None, None)
        root.removeHandler(handler)
        _flush(sys.stdout, sys.stderr, log_stream)
        _flush_c_stdio()
        if saved_fds is not None:
            _flush(cap.out, cap.err)
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            cap.out.close()  # closes saved_fds
            cap.err.close()
        else:
            sys.stdout, sys.stderr = saved_stdout, saved_stderr
        log_stream.close()
        cap.kept = os.fstat(log_fd).st_size > 0
        os.close(log_fd)
        if not cap.kept:
            with contextlib.suppress(OSError):
                path.unlink()
            if created:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only if empty
