"""``optim compare CANDIDATE... --golden G --policy optim.toml``: a leaderboard of checkpoints
and artifacts, each against its own FP32 reference, with a recommendation."""

from __future__ import annotations

import click

from optim.cli.output import json_option, print_json, state


def print_compare(report: dict) -> None:
    """The recommendation, the leaderboard, failing checks and paired differences."""
    from rich import box
    from rich.table import Table

    from optim.gate.reports.compare_report import PAIR_TITLES, leaderboard, pair_rows

    s = state()

    def table(title, titles, rows, caption=None):
        t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left",
                  pad_edge=False, collapse_padding=True)
        for i, col in enumerate(titles):
            t.add_column(col, overflow="fold", justify="left" if i < 3 else "right")
        for r in rows:
            t.add_row(*r)
        return t

    titles, rows = leaderboard(report)
    s.console.print(table("optim compare: leaderboard", titles, rows,
                          "metrics in % [95 % CI]; Δ in points versus each candidate's own FP32 reference; ms; "
                          "MB = 10^6 bytes; ★ recommended"), markup=False)
    for c in report["candidates"]:
        for f in c["failed_checks"]:
            s.console.print(f"  {c['name']}: {f['id']} ({f['status']}): {f['reason']}", markup=False)
        for n in c.get("notes") or []:
            s.console.print(f"  {c['name']}: {n}", markup=False)
    if report["pairs"]:
        s.console.print(table("paired differences (same golden images)", PAIR_TITLES, pair_rows(report),
                              "a − b in points [95 % paired bootstrap CI]; exact McNemar test"), markup=False)
    for e in report.get("input_errors") or []:
        s.console.print(f"  input error: {e}", markup=False)
    s.console.print(report["recommendation"]["text"], markup=False)


@click.command("compare")
@click.argument("candidates", nargs=-1, type=str)
@click.option("--golden", required=True, type=click.Path(), help="Golden set directory (verified by its golden.json hash).")
@click.option("--policy", type=click.Path(), default=None, help="Policy file [default: ./optim.toml].")
@click.option("--device", "devices", multiple=True, default=("host",), show_default=True,
              help="Device to benchmark artifacts on: host, a profile name (pixel6a) or an adb serial; repeat for several. "
                   "The first one ranks.")
@click.option("--metric", default="top1", show_default=True,
              type=click.Choice(["top1", "top2", "top5", "macro_f1", "tail_top1", "tail_macro_f1"]),
              help="Accuracy metric of the Pareto plot and the recommendation.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Directory for compare.json, compare.md and compare.html (with the Pareto plot).")
@click.option("--trust-pickle", is_flag=True,
              help="Allow checkpoints that can run code when loaded (pickled modules, TorchScript). Only for files you trust.")
@click.option("--allow-module", "allow_modules", multiple=True, metavar="MODULE",
              help="Let a checkpoint's architecture reference import MODULE; repeatable.")
@click.option("--threads", type=int, default=None, help="Runtime threads for eval and bench.")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed iterations per trial.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Discarded iterations per trial.")
@click.option("--trials", type=int, default=3, show_default=True)
@click.option("--cooldown", type=float, default=None, help="Seconds between trials [default: the device profile's; 0 on the host].")
@json_option
def command(candidates, golden, policy, devices, metric, out, trust_pickle, allow_modules, threads, runs, warmup, trials,
            cooldown, as_json) -> None:
    """Compare CANDIDATE checkpoints and artifact directories on one golden set: a leaderboard
    (top-1/top-k, macro-F1, tail metrics with 95 % intervals; p50/p95 per device; size;
    verdict under the policy), paired significance between candidates, a Pareto plot and a
    recommendation.

    Each candidate is judged against its own FP32 reference (from its lineage; a checkpoint
    without one is its own baseline), so a bake-off of different backbones works. Name a
    candidate with NAME=PATH; otherwise it is named after its path.

    Exit codes: 0 a candidate passes (recommended), 1 none passes, 2 input error, 3 none
    passes and some could not be measured.
    """
    from optim.gate.compare import compare

    s = state()
    result = compare(list(candidates), golden, policy=policy, devices=list(devices), out=out, metric=metric,
                     threads=threads, runs=runs, warmup=warmup, trials=trials, cooldown_s=cooldown,
                     load_kwargs={"trust_pickle": trust_pickle, "allow_modules": tuple(allow_modules)}, progress=s.info)
    if as_json:
        print_json(result.report)
    else:
        print_compare(result.report)
        for kind, p in result.paths.items():
            s.info(f"{kind}: {p}")
    click.get_current_context().exit(result.exit_code)
