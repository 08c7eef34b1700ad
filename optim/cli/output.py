"""What every command shares: the console, verbosity, ``--json`` output, progress bars and
the capture of library output (see :mod:`optim.logs`).

While a command runs, ``sys.stdout``/``sys.stderr`` (and file descriptors 1 and 2) belong to
the libraries and go to the run's log file; optim's own output must go through
:func:`state` (``console``, ``err_console``, ``info``), :func:`print_json` or :func:`echo`,
never ``print``/``click.echo`` without a file.

Tables: in a terminal they fit its width; anywhere else (a CI log, a pipe, a file) they are
printed at their full natural width (:data:`FULL_WIDTH`), so no cell is cut (``pa…``) or
wrapped.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, TextIO

import click
from rich.console import Console
from rich.table import Table

#: console width used when the output is not a terminal: wide enough that rich never cuts or
#: wraps a table cell (tables are not expanded, so they keep their natural width)
FULL_WIDTH = 100_000


def console_width(stream) -> int | None:
    """The width to render for ``stream``: the terminal's columns for a terminal (``None``:
    let rich ask the terminal), :data:`FULL_WIDTH` otherwise (CI logs, pipes, files)."""
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        pass
    return FULL_WIDTH


def make_console(stream: TextIO) -> Console:
    """A rich console on ``stream`` (no highlighting, long text lines not wrapped)."""
    return Console(file=stream, width=console_width(stream), highlight=False, soft_wrap=True)


def _retarget(console: Console, stream: TextIO) -> None:
    console.file = stream
    console.width = console_width(stream)


@dataclass
class CliState:
    """Global options of the ``optim`` group, stored on the click context as ``ctx.obj``.

    ``log_path``: the current run's library log once it holds something (see :meth:`captured`)."""

    verbosity: int = 0  # -1 quiet, 0 normal, ≥1 verbose
    console: Console = None  # type: ignore[assignment]
    err_console: Console = None  # type: ignore[assignment]
    log_path: Any = None
    _capturing: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.console = self.console or make_console(sys.stdout)
        self.err_console = self.err_console or make_console(sys.stderr)

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    @property
    def out(self) -> TextIO:
        """optim's stdout (the original one, also while library output is captured)."""
        return self.console.file

    @property
    def err(self) -> TextIO:
        """optim's stderr (the original one, also while library output is captured)."""
        return self.err_console.file

    def info(self, msg: str) -> None:
        """A progress/status line on stderr (suppressed by --quiet)."""
        if not self.quiet:
            self.err_console.print(msg)

    def debug(self, msg: str) -> None:
        if self.verbosity > 0:
            self.err_console.print(f"[dim]{msg}[/dim]")

    @contextlib.contextmanager
    def captured(self, command: str) -> Iterator[None]:
        """Run a command's body with library output sent to the log (:func:`optim.logs.capture_library_output`;
        nothing captured with -v). The consoles point at the original stdout/stderr meanwhile.
        On exit ``log_path`` is set if the log kept anything, and (unless --quiet) a line on
        stderr says where it is. Re-entrant (an inner command reuses the outer capture)."""
        from optim.logs import capture_library_output

        if self._capturing:
            yield
            return
        saved = (self.console.file, self.err_console.file)
        self._capturing = True
        cap, failed = None, False
        try:
            with capture_library_output(command, verbose=self.verbosity > 0) as cap:
                _retarget(self.console, cap.out)
                _retarget(self.err_console, cap.err)
                try:
                    yield
                except click.exceptions.Exit:
                    raise  # ctx.exit(code): a finished command (e.g. a failed check), not an error
                except BaseException:
                    failed = True  # the CLI's error message names the log (OptimGroup)
                    raise
                finally:
                    _retarget(self.console, saved[0])
                    _retarget(self.err_console, saved[1])
        finally:
            self._capturing = False
            if cap is not None and cap.kept:
                self.log_path = cap.log_path
                if not failed:
                    self.info(f"library output: {cap.log_path}")


def state() -> CliState:
    ctx = click.get_current_context()
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    return ctx.obj


json_option = click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout instead of a table.")


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to optim's stdout (never mixed with library output)."""
    out = state().out if click.get_current_context(silent=True) else sys.stdout
    out.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    out.flush()


def echo(message: str, *, err: bool = False) -> None:
    """``click.echo`` to optim's own stdout/stderr (``click.echo`` alone would write into the
    library log while a command runs)."""
    s = state()
    click.echo(message, file=s.err if err else s.out)


def make_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table with the given columns; cells are str()-ed, floats to 4 significant digits.

    In a terminal a too-wide table wraps its cells to the terminal's width; in a CI log (not a
    terminal) it is printed at full width, nothing wrapped or cut (see :func:`console_width`)."""
    table = Table(title=title, show_lines=False, show_header=any(columns))
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[(f"{v:.4g}" if isinstance(v, float) else str(v)) for v in r])
    return table


def progress(iterable=None, *, total: int | None = None, desc: str = ""):
    """A tqdm progress bar on optim's stderr, silent under --quiet or when it is not a terminal."""
    from tqdm.auto import tqdm

    if click.get_current_context(silent=True):
        s = state()
        quiet, stream = s.quiet, s.err
    else:
        quiet, stream = False, sys.stderr
    return tqdm(iterable, total=total, desc=desc, file=stream, disable=quiet or not _isatty(stream), leave=False)


class StageProgress:
    """Rich progress bars, one per stage, with a rate column (e.g. images/s) and the time left,
    on optim's stderr; silent under --quiet or when stderr is not a terminal. Use as a context
    manager; :meth:`update` ``(stage, done, total)`` matches the library's progress callbacks."""

    def __init__(self, unit: str = "images"):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        if click.get_current_context(silent=True):
            s = state()
            quiet, console = s.quiet, s.err_console
        else:
            quiet, console = False, make_console(sys.stderr)
        self.enabled = not quiet and _isatty(console.file)
        self.unit = unit
        self._tasks: dict[str, Any] = {}
        self._start: dict[str, tuple[float, int]] = {}
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=True,
                                  disable=not self.enabled)

    def __enter__(self) -> "StageProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def update(self, stage: str, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total, completed=done, rate="")
            self._start[stage] = (now, done)  # resumed items do not count towards the rate
        t0, d0 = self._start[stage]
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
        self._progress.update(self._tasks[stage], completed=done, total=total, rate=f"{rate:,.1f} {self.unit}/s" if rate else "")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
