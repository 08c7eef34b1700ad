"""``optim tune CKPT --policy optim.toml --calib DIR --golden DIR``: per-layer sensitivity, a
seeded search judged by verify's checks, and the chosen artifact per format (see
:func:`optim.tuning.api.tune`)."""

from __future__ import annotations

import click

from optim.cli.output import json_option, make_table, print_json, state


def _f(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


@click.command("tune")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--policy", type=click.Path(dir_okay=False), default=None, help="Policy file [default: ./optim.toml].")
@click.option("--calib", required=True, type=click.Path(file_okay=False),
              help="Calibration images (searched recursively); a held-out slice of them measures KL. Not the golden set.")
@click.option("--golden", required=True, type=click.Path(file_okay=False), help="Golden set directory (the gate's).")
@click.option("--train", type=click.Path(file_okay=False), default=None,
              help="Train split (golden-set format): adds pruning ratios with recovery fine-tuning to the search.")
@click.option("--device", default="host", show_default=True, help="Device p95 is measured on: host, pixel6a, an adb serial.")
@click.option("--formats", default=None, help="Comma-separated formats [default: every default format in the registry].")
@click.option("--time-budget", default=None, help="Wall-clock budget for sensitivity + search: 30m, 90s, 1h30m.")
@click.option("--max-trials", type=int, default=40, show_default=True, help="Distinct candidates measured at most (a resumed run counts its finished ones; a repeated proposal costs nothing).")
@click.option("--out", default="optim-tune", show_default=True, type=click.Path(file_okay=False),
              help="Output directory: tune.json, tune.md, tune.html, tune.journal (resume), trials/, chosen/<format>/.")
@click.option("--analyze-only", is_flag=True, help="Only the per-layer sensitivity analysis (ranked table and plot).")
@click.option("--unit", "sensitivity_unit", type=click.Choice(["auto", "layer", "block"]), default="auto", show_default=True,
              help="Sensitivity per layer, per top-level block, or auto (blocks above 30 layers).")
@click.option("--fallback-k", "fallback_ks", default="1,2,4", show_default=True,
              help="Sizes of the float-fallback sets tried (the k most sensitive units), comma-separated.")
@click.option("--prune-ratios", default="0.3", show_default=True, help="With --train: channel-pruning ratios tried, comma-separated.")
@click.option("--tail-weight", type=float, default=0.5, show_default=True,
              help="Weight of tail-class top-1 in the sensitivity ranking (0 = overall top-1 only).")
@click.option("--calib-size", type=int, default=200, show_default=True, help="Calibration images drawn (seeded).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="Runtime threads for eval and bench.")
@click.option("--runs", type=int, default=50, show_default=True, help="Timed iterations per benchmark trial.")
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--trials", type=int, default=3, show_default=True, help="Benchmark trials per candidate.")
@json_option
def command(checkpoint, policy, calib, golden, train, device, formats, time_budget, max_trials, out, analyze_only,
            sensitivity_unit, fallback_ks, prune_ratios, tail_weight, calib_size, seed, threads, runs, warmup, trials,
            as_json) -> None:
    """Find, per format, the fastest artifact of CHECKPOINT that passes every check of the
    policy: per-layer sensitivity (KL, top-1, tail-class top-1), then a seeded Optuna search
    over format × scheme × float-fallback set (× pruning ratio with --train), each candidate
    judged by optim verify's checks; FP32 and plain INT8 are measured first. The chosen
    artifacts are verified with reports in OUT/chosen/<format>/ (ready for optim publish).

    Exit codes: 0 every format has a passing artifact, 1 some format has none, 2 input error,
    3 a tool or device failed outside a trial.
    """
    from optim.errors import InputError
    from optim.tuning.api import tune

    def ints(text: str, what: str) -> list:
        try:
            return [float(x) if what == "ratio" else int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--{'prune-ratios' if what == 'ratio' else 'fallback-k'} {text!r}: comma-separated numbers expected") from None

    s = state()
    result = tune(checkpoint, policy=policy, calib=calib, golden=golden, train=train, device=device, formats=formats,
                  time_budget=time_budget, max_trials=max_trials, out=out, analyze_only=analyze_only,
                  sensitivity_unit=sensitivity_unit, fallback_ks=ints(fallback_ks, "k"), prune_ratios=ints(prune_ratios, "ratio"),
                  tail_weight=tail_weight, calib_size=calib_size, seed=seed, threads=threads, runs=runs, warmup=warmup,
                  trials=trials, progress=s.info)
    rep = result.report
    if as_json:
        print_json(rep)
    else:
        for fmt, sens in (rep.get("sensitivity") or {}).items():
            if "skipped" in sens:
                s.console.print(f"sensitivity {fmt}: {sens['skipped']}", markup=False)
                continue
            rows = [[str(r["rank"]), r["unit"], f"{r['score']:.4f}", f"{r['alone']['kl']:.4f}",
                     _f(r["alone"]["top1_delta_pts"], "+.2f"), _f(r["alone"]["tail_top1_delta_pts"], "+.2f")]
                    for r in sens["rows"][:10]]
            s.console.print(make_table(f"sensitivity {fmt}-{sens['scheme']} (top 10 of {len(sens['rows'])})",
                                       ["rank", "unit", "score", "KL alone", "top-1 Δ pts", "tail Δ pts"], rows))
        if not analyze_only:
            rows = []
            for fmt, c in rep["chosen"].items():
                b = rep["baselines"].get(fmt) or {}
                if c is None:
                    rows.append([fmt, "NONE PASSED", "—", "—", "—", _f(b.get("fp32_p95_ms"), ".2f"), _f(b.get("int8_p95_ms"), ".2f")])
                else:
                    rows.append([fmt, c["candidate"]["label"], _f(c["p95_ms"], ".2f"), _f(c["size_mb"], ".2f"),
                                 _f(c["top1_delta_pts"], "+.2f"), _f(c["fp32_p95_ms"], ".2f"), _f(c["int8_p95_ms"], ".2f")])
            s.console.print(make_table(f"optim tune: {rep['verdict'].upper()} (exit code {rep['exit_code']})",
                                       ["format", "chosen", "p95 ms", "MB", "top-1 Δ pts", "FP32 p95", "INT8 p95"], rows))
            for n in rep.get("notes") or []:
                s.console.print(f"  {n}", markup=False)
        for kind, p in result.paths.items():
            s.info(f"{kind}: {p}")
    if result.exit_code:
        click.get_current_context().exit(result.exit_code)
