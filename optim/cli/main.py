"""The ``optim`` click group: global options, exit codes and command registration.

Exit codes: 0 success · 1 a gate or check failed · 2 usage or input error ·
3 tool or environment error (see :mod:`optim.errors`).
"""

from __future__ import annotations

import functools
import sys
import traceback

import click

from optim.cli.output import CliState, state
from optim.errors import EXIT_INPUT_ERROR, EXIT_TOOL_ERROR, OptimError

EPILOG = "Exit codes: 0 success, 1 a gate or check failed, 2 usage or input error, 3 tool or environment error."


class OptimGroup(click.Group):
    """Maps optim's exceptions to the documented exit codes with a one-line message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OptimError as e:
            _error(ctx, f"error: {e}")
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            _error(ctx, "interrupted", traceback_too=False)
            ctx.exit(130)
        except Exception as e:  # a library or runtime broke: exit 3, not a traceback dump
            first = (str(e).strip().splitlines() or [""])[0]  # library messages can embed their own tracebacks
            _error(ctx, f"error: {type(e).__name__}: {first} (run with -v for the full message and traceback)")
            ctx.exit(EXIT_TOOL_ERROR)


def _error(ctx: click.Context, message: str, *, traceback_too: bool = True) -> None:
    """The one-line error on stderr; names the run's library log when it kept anything, and
    adds the traceback with -v. Runs after the capture ended, so stderr is the real one."""
    s = ctx.obj if isinstance(ctx.obj, CliState) else None
    if s is not None and s.log_path is not None:
        message += f"\nlibrary output of this run: {s.log_path}"
    click.echo(message, err=True)
    if traceback_too and s is not None and s.verbosity > 0:
        traceback.print_exc()


@click.group(cls=OptimGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(package_name="optim", prog_name="optim")
@click.option("-v", "--verbose", count=True,
              help="More detail (repeat for more); tracebacks on errors; library output shown (on stderr) instead of "
                   "written to the run's log ($OPTIM_LOG_DIR or ./optim-logs).")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors; no progress.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """optim: prune, quantize, export, benchmark and gate image classifiers for phones."""
    ctx.obj = CliState(verbosity=-1 if quiet else verbose)


#: command modules under optim.cli, one per line; each defines ``command`` (a click command or group)
COMMAND_MODULES = (
    "inspect_cmd",
    "demo_cmd",
    "quantize_cmd",
    "golden_cmd",
    "eval_cmd",
    "bench_cmd",
    "devices_cmd",
    "verify_cmd",
    "compare_cmd",
    "publish_cmd",
    "keygen_cmd",
    "prune_cmd",
    "distill_cmd",
    "tune_cmd",
)


def _captured(name: str, callback):
    """Wrap a command's callback so that its body runs with library output captured into the
    run's log (:meth:`CliState.captured`); argument parsing and --help happen outside it."""
    if callback is None or getattr(callback, "__optim_captured__", False):
        return callback

    @functools.wraps(callback)
    def run(*args, **kwargs):
        with state().captured(name):
            return callback(*args, **kwargs)

    run.__optim_captured__ = True
    return run


def _capture_all(cmd: click.Command, name: str) -> None:
    """Capture in every command of the tree (a group's own callback too: ``optim devices``)."""
    cmd.callback = _captured(name, cmd.callback)
    if isinstance(cmd, click.Group):
        for sub_name, sub in cmd.commands.items():
            _capture_all(sub, f"{name}-{sub_name}")


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        command = importlib.import_module(f"optim.cli.{name}").command
        _capture_all(command, command.name or name)
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point. Usage errors from click exit with 2."""
    try:
        cli.main(standalone_mode=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_INPUT_ERROR)
        sys.exit(code)
