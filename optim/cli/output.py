"""What every command shares: the console, verbosity, ``--json`` output and progress bars."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table


@dataclass
class CliState:
    """Global options of the ``optim`` group, stored on the click context as ``ctx.obj``."""

    verbosity: int = 0  # -1 quiet, 0 normal, ≥1 verbose
    console: Console = None  # type: ignore[assignment]
    err_console: Console = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.console = self.console or Console(highlight=False, soft_wrap=True)
        self.err_console = self.err_console or Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    def info(self, msg: str) -> None:
        """A progress/status line on stderr (suppressed by --quiet)."""
        if not self.quiet:
            self.err_console.print(msg)

    def debug(self, msg: str) -> None:
        if self.verbosity > 0:
            self.err_console.print(f"[dim]{msg}[/dim]")


def state() -> CliState:
    ctx = click.get_current_context()
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    return ctx.obj


json_option = click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout instead of a table.")


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def make_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table with the given columns; cells are str()-ed, floats to 4 significant digits."""
    table = Table(title=title, show_lines=False, show_header=any(columns))
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[(f"{v:.4g}" if isinstance(v, float) else str(v)) for v in r])
    return table


def progress(iterable=None, *, total: int | None = None, desc: str = ""):
    """A tqdm progress bar on stderr, silent under --quiet or when stderr is not a terminal."""
    from tqdm.auto import tqdm

    quiet = state().quiet if click.get_current_context(silent=True) else False
    return tqdm(iterable, total=total, desc=desc, disable=quiet or not sys.stderr.isatty(), leave=False)
