"""``optim eval ARTIFACT_OR_CKPT --golden DIR [--reference FP32_CKPT]``: golden-set accuracy,
per-class and tail-class deltas versus FP32 with 95 % paired bootstrap intervals."""

from __future__ import annotations

import click

from optim.cli.checkpoint_options import checkpoint_options
from optim.cli.output import json_option, make_table, print_json, state

MAX_CLASS_ROWS = 30  # per-class tables longer than this print only the significant drops


def parse_thresholds(values: tuple[str, ...]) -> dict[str, float]:
    """``("striped=0.3", "pattern:dotted=0.6")`` → ``{"striped": 0.3, "pattern:dotted": 0.6}``."""
    out: dict[str, float] = {}
    for v in values:
        key, sep, num = v.rpartition("=")
        try:
            out[key.strip()] = float(num)
        except ValueError:
            key = ""
        if not sep or not key.strip():
            raise click.BadParameter(f"{v!r}: expected TAG=PROBABILITY, e.g. striped=0.3", param_hint="--threshold")
    return out


def parse_tail_classes(values: tuple[str, ...]) -> dict[str, list[str]] | None:
    """``("kayak", "category=canoe")`` → ``{"": ["kayak"], "category": ["canoe"]}``; the head
    ``""`` means "the model's only multiclass head" (resolved by :func:`optim.evaluate`)."""
    if not values:
        return None
    out: dict[str, list[str]] = {}
    for v in values:
        h, sep, lab = v.partition("=")
        h, lab = (h.strip(), lab.strip()) if sep else ("", v.strip())
        if not lab:
            raise click.BadParameter(f"{v!r}: expected LABEL or HEAD=LABEL", param_hint="--tail-class")
        out.setdefault(h, []).append(lab)
    return out


@click.command("eval")
@click.argument("target", type=click.Path(exists=True))
@click.option("--golden", "golden", required=True, type=click.Path(exists=True, file_okay=False), help="Golden set directory.")
@click.option("--reference", type=click.Path(exists=True), help="FP32 checkpoint (or artifact) to compute deltas against.")
@click.option("--tail-max-count", default=50, show_default=True, type=click.IntRange(min=1),
              help="A class is tail when it had fewer than this many training images (golden set's train_counts.json).")
@click.option("--tail-class", "tail_classes", multiple=True, metavar="[HEAD=]LABEL",
              help="Explicit tail class, overriding training counts; repeatable (HEAD may be left out for a model with one multiclass head).")
@click.option("--threshold", "thresholds", multiple=True, metavar="TAG=P", help="Multi-label threshold override (default 0.5); repeatable.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Images per predict call.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the runtime.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Preprocessed-tensor cache (default $OPTIM_CACHE_DIR or ~/.cache/optim; at most $OPTIM_CACHE_MAX_BYTES, "
              "default 2 GiB). Not trusted: every read is checked against its recorded digest and random rows re-decoded.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the preprocessed-tensor cache.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write eval.json, eval.md and predictions.parquet here "
              "(per-sample results for resuming go to OUT/eval-results/, else to the cache folder's eval-results/).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes decoding and predicting batches; each runtime gets max(1, threads // N) threads. "
                   "Same batch cuts as one process: bit-identical predictions when each runtime has the same thread count "
                   "(e.g. --threads 1 vs --workers 2 --threads 2).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine's processes; ray: Ray Data (map_batches with an actor pool per runtime).")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, metavar="HOST:PORT",
              help="With --engine ray: the Ray cluster to join (default $RAY_ADDRESS, else a local Ray for this run).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Reuse the per-sample results an interrupted run of the same target, reference, golden set and batch size left; "
                   "--no-resume deletes them and starts over.")
@checkpoint_options
@json_option
def command(target: str, golden: str, reference: str | None, tail_max_count: int, tail_classes: tuple[str, ...],
            thresholds: tuple[str, ...], batch_size: int,
            threads: int | None, cache_dir: str | None, no_cache: bool, out_dir: str | None, workers: int, engine: str, ray_address: str | None,
            resume: bool,
            load_kwargs: dict, as_json: bool) -> None:
    """Evaluate TARGET (checkpoint or artifact directory) on a golden set: top-1, top-2/5,
    macro-F1, ECE, head/tail top-1, per-class P/R/F1, multi-label per-tag F1; with
    --reference, deltas (target − reference, in percentage points) with 95 % paired bootstrap
    intervals, top-1 agreement, exact McNemar p and the classes whose drop is significant."""
    from pathlib import Path

    from optim.cli.output import StageProgress
    from optim.golden_sets.evaluate import default_cache_dir, evaluate
    from optim.golden_sets.report import format_interval, format_number, format_percent, summary_rows

    s = state()
    results_dir = Path(out_dir) / "eval-results" if out_dir else Path(cache_dir or default_cache_dir()) / "eval-results"
    with StageProgress("images") as bars:
        report = evaluate(target, golden, reference, tail_max_count=tail_max_count, thresholds=parse_thresholds(thresholds),
                          tail_classes=parse_tail_classes(tail_classes), progress=bars.update,
                          batch_size=batch_size, threads=threads, cache_dir=False if no_cache else cache_dir, load_kwargs=load_kwargs,
                          workers=workers, engine=engine, ray_address=ray_address, ray_verbose=s.verbosity > 0,
                          results_dir=results_dir, resume=resume)
    res = report.settings.get("results") or {}
    if res.get("resumed_rows"):
        s.info(f"resumed: {res['resumed_rows']} of {report.n_samples} samples read back from {res['path']}")
    if out_dir:
        paths = report.write(out_dir)
        s.info("written: " + ", ".join(str(p) for p in paths.values()))
    if as_json:
        print_json(report.to_dict())
        return
    g = report.golden
    s.console.print(f"{report.target} on golden set {g['name']!r} v{g['version']}: {report.n_samples} samples, "
                    f"{'verified' if g['verified'] else '[red]NOT VERIFIED[/red]'}"
                    + (f"; reference {report.reference}" if report.reference else ""))
    for name, h in report.heads.items():
        s.console.print(make_table(f"head {name!r} ({h['kind']}, {h['n_used']} samples used)",
                                   ["metric", "target", "reference", "Δ pp [95 % CI]"], [list(r) for r in summary_rows(h)]))
        d = h.get("delta")
        if h["kind"] == "multiclass":
            if d:
                s.console.print(f"top-1 agreement {format_percent(d['agreement'])}, exact McNemar p = {format_number(d['mcnemar_p'])}; "
                                f"significant per-class drops: {', '.join(d['significant_drops']) or 'none'}")
            deltas = {r["label"]: r for r in (d or {}).get("per_class", [])}
            rows = [r for r in h["per_class"] if len(h["per_class"]) <= MAX_CLASS_ROWS or deltas.get(r["label"], {}).get("significant")]
            if rows:
                s.console.print(make_table(None, ["class", "tail", "support", "precision", "recall", "F1", "Δ top-1 pp [95 % CI]"],
                                           [[r["label"], "yes" if r["is_tail"] else "", r["support"], format_number(r["precision"]), format_number(r["recall"]),
                                             format_number(r["f1"]), format_interval(deltas.get(r["label"]))] for r in rows]))
        elif h.get("per_tag"):
            if d:
                s.console.print(f"tag-set agreement {format_percent(d['agreement'])}")
            s.console.print(make_table(None, ["tag", "tail", "positives", "known", "missing", "threshold", "precision", "recall", "F1"],
                                       [[r["label"], "yes" if r["is_tail"] else "", r["support"], r["n_known"], r["n_missing"], r["threshold"],
                                         format_number(r["precision"]), format_number(r["recall"]), format_number(r["f1"])] for r in h["per_tag"]]))
    for w in report.warnings:
        s.console.print(f"[yellow]warning:[/yellow] {w}")
