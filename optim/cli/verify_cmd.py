"""``optim verify ARTIFACT... --device D --golden G``: the release gate."""

from __future__ import annotations

import click

from optim.cli.output import json_option, print_json, state

STATUS_STYLE = {"pass": "[green]pass[/green]", "fail": "[bold red]FAIL[/bold red]", "error": "[yellow]ERROR[/yellow]",
                "skipped": "[dim]skipped[/dim]"}


def print_verdict_table(report: dict) -> None:
    """The verdict tables on the console, one per artifact (shared with ``optim demo``)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from optim.gate.reports.format import row

    s = state()
    from optim.gate.reports.format import reference_line

    s.console.print(f"optim verify: {report['verdict'].upper()} (exit code {report['exit_code']})", markup=False)
    s.console.print(reference_line(report), markup=False)
    for a in report["artifacts"]:
        rows = []
        for c in a["checks"]:
            r = row(c)
            unit = c.get("unit") or ""
            bare = {k: (r[k].replace(f" {unit}", "") if unit else r[k]) for k in ("measured", "threshold", "margin", "interval")}
            rows.append([escape(c["id"]), bare["measured"], bare["threshold"], bare["margin"], escape(bare["interval"]),
                         unit, STATUS_STYLE.get(c["status"], c["status"])])
        table = Table(title=f"{a['name']}: {a['verdict'].upper()} (sha256 {a['content_sha256'][:12]})",
                      box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, collapse_padding=True)
        for col in ("check", "measured", "budget", "margin", "95 % CI", "unit", "status"):
            table.add_column(col, no_wrap=True, justify="left" if col in ("check", "unit", "status") else "right")
        for r in rows:
            table.add_row(*r)
        s.console.print(table)
        for c in a["checks"]:
            if c["status"] in ("fail", "error") and c.get("reason"):
                s.console.print(f"  {c['id']}: {c['reason']}", markup=False)
    for e in report.get("input_errors") or []:
        s.console.print(f"  input error: {e}", markup=False)


@click.command("verify")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--device", "devices", multiple=True, default=("host",), show_default=True,
              help="Device to benchmark on: host, a profile name (pixel6a) or an adb serial; repeat for several.")
@click.option("--golden", required=True, type=click.Path(), help="Golden set directory (verified by its golden.json hash).")
@click.option("--policy", type=click.Path(), default=None, help="Policy file [default: ./optim.toml].")
@click.option("--reference", type=click.Path(), default=None,
              help="FP32 reference checkpoint [default: the FP32 original from the artifact's lineage, else its source "
                   "checkpoint, if on disk]. Never the compressed model itself.")
@click.option("--out", type=click.Path(file_okay=False), default="optim-verify", show_default=True,
              help="Directory for verify.json, verify.md, verify.junit.xml, verify.html.")
@click.option("--sign-key", type=click.Path(dir_okay=False), default=None, envvar="OPTIM_SIGN_KEY",
              help="PEM private key that signs the attestation verify.intoto.json [env OPTIM_SIGN_KEY; see `optim keygen`].")
@click.option("--threads", type=int, default=None, help="Runtime threads for eval and bench.")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed iterations per trial.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Discarded iterations per trial.")
@click.option("--trials", type=int, default=3, show_default=True)
@click.option("--cooldown", type=float, default=None, help="Seconds between trials [default: the device profile's; 0 on the host].")
@json_option
def command(artifacts, devices, golden, policy, reference, out, sign_key, threads, runs, warmup, trials, cooldown, as_json) -> None:
    """Gate ARTIFACT directories for release: size, golden-set accuracy versus the FP32
    reference, and p95 latency on each --device, judged against the policy (optim.toml).

    Every check reports measured value, threshold, margin and (accuracy, latency) its 95 %
    interval. It fails closed: a required device not measured, a golden set that does not
    verify, or a metric that could not be computed never passes.

    Exit codes: 0 every check passed, 1 a check failed, 2 input error, 3 a tool or device
    failed so a check could not be measured.
    """
    from optim.gate.verify import verify

    s = state()
    result = verify(list(artifacts), golden, devices=list(devices), policy=policy, reference=reference, out=out,
                    threads=threads, runs=runs, warmup=warmup, trials=trials, cooldown_s=cooldown,
                    progress=s.info, sign_key=sign_key)
    if as_json:
        print_json(result.report)
    else:
        print_verdict_table(result.report)
        for kind, p in result.paths.items():
            s.info(f"{kind}: {p}")
    click.get_current_context().exit(result.exit_code)
