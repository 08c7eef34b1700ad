"""The ``optim`` click group: global options, exit codes and command registration.

Exit codes: 0 success · 1 a gate or check failed · 2 usage or input error ·
3 tool or environment error (see :mod:`optim.errors`).
"""

from __future__ import annotations

import sys
import traceback

import click

from optim.cli.output import CliState
from optim.errors import EXIT_INPUT_ERROR, EXIT_TOOL_ERROR, OptimError

EPILOG = "Exit codes: 0 success, 1 a gate or check failed, 2 usage or input error, 3 tool or environment error."


class OptimGroup(click.Group):
    """Maps optim's exceptions to the documented exit codes with a one-line message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OptimError as e:
            click.echo(f"error: {e}", err=True)
            if isinstance(ctx.obj, CliState) and ctx.obj.verbosity > 0:
                traceback.print_exc()
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # a library or runtime broke: exit 3, not a traceback dump
            first = (str(e).strip().splitlines() or [""])[0]  # library messages can embed their own tracebacks
            click.echo(f"error: {type(e).__name__}: {first} (run with -v for the full message and traceback)", err=True)
            if isinstance(ctx.obj, CliState) and ctx.obj.verbosity > 0:
                traceback.print_exc()
            ctx.exit(EXIT_TOOL_ERROR)


@click.group(cls=OptimGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(package_name="optim", prog_name="optim")
@click.option("-v", "--verbose", count=True, help="More detail (repeat for more); tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors; no progress.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """optim: prune, quantize, export, benchmark and gate image classifiers for phones."""
    ctx.obj = CliState(verbosity=-1 if quiet else verbose)
    if verbose == 0:
        _quiet_libraries()


def _quiet_libraries() -> None:
    """Hide the exporters' deprecation chatter and TensorFlow-Lite C++ info logs (shown with -v)."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


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
)


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        cli.add_command(importlib.import_module(f"optim.cli.{name}").command)


_register()


def main() -> None:
    """Console-script entry point. Usage errors from click exit with 2."""
    try:
        cli.main(standalone_mode=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_INPUT_ERROR)
        sys.exit(code)
