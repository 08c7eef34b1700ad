"""``optim prune CKPT``: structured channel pruning, optionally followed by recovery
fine-tuning with distillation from the unpruned FP32 model (see :mod:`optim.optimize.pruning`
and :mod:`optim.optimize.finetune`)."""

from __future__ import annotations

import click

from optim.cli.checkpoint_options import checkpoint_options
from optim.cli.output import json_option, make_table, print_json, state


def _g(v) -> str:
    return "n/a" if v is None else f"{v / 1e6:.3f} M"


@click.command("prune")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--ratio", type=float, help="Fraction of channels removed in every prunable layer (0–1), e.g. 0.3.")
@click.option("--target-macs", type=float, help="Prune until MACs at the card's input shape ≤ this (e.g. 5e8).")
@click.option("--target-size-mb", type=float, help="Prune until the FP32 size ≤ this many MB (10^6 bytes).")
@click.option("--importance", type=click.Choice(["l1", "l2", "taylor"]), default="l1", show_default=True,
              help="Channel importance: L1/L2 group magnitude, or first-order Taylor (needs --train).")
@click.option("--round-to", type=int, default=None, help="Keep channel counts multiples of this (e.g. 8).")
@click.option("--finetune/--no-finetune", default=False, show_default=True, help="Recover accuracy by fine-tuning after pruning (needs --train).")
@click.option("--train", "train_dir", type=click.Path(), help="Train split in the golden-set format (manifest.csv + images); never the gate's golden set.")
@click.option("--golden", type=click.Path(), help="The gate's golden set: training on it is refused.")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW learning rate (cosine decay).")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Weight of the label loss; 1 − alpha weighs the teacher's soft targets.")
@click.option("--temperature", type=float, default=4.0, show_default=True, help="Distillation temperature T.")
@click.option("--no-distill", is_flag=True, help="Label-only fine-tuning (no teacher).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--grad-every", type=int, default=10, show_default=True, help="Gradient-health record every N steps.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run log and resumable state (default: OUT.run/).")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue an interrupted fine-tuning run from --run-dir.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pruned checkpoint to write (its card goes to OUT.optim.toml).")
@checkpoint_options
@json_option
def command(checkpoint: str, ratio, target_macs, target_size_mb, importance: str, round_to, finetune: bool, train_dir, golden,
            epochs: int, batch_size: int, lr: float, alpha: float, temperature: float, no_distill: bool, seed: int,
            grad_every: int, run_dir, resume: bool, out: str, load_kwargs: dict, as_json: bool) -> None:
    """Prune CHECKPOINT's channels (Torch-Pruning; classifier heads are never pruned) and
    write the smaller model to OUT, reloadable by every optim command.

    Give one of --ratio, --target-macs, --target-size-mb. Prints parameters, FP32 size and
    MACs before and after; with --finetune, the fine-tuning loss and the run log path
    (JSON lines: loss, per-layer gradient norms, first/last gradient ratio, warnings).
    """
    from optim.optimize.prune_pipeline import prune_checkpoint

    s = state()
    run = prune_checkpoint(checkpoint, out, ratio=ratio, target_macs=target_macs, target_size_mb=target_size_mb,
                           importance=importance, round_to=round_to, finetune=finetune, train=train_dir, golden=golden,
                           epochs=epochs, batch_size=batch_size, lr=lr, alpha=alpha, temperature=temperature,
                           distill=not no_distill, seed=seed, grad_every=grad_every, run_dir=run_dir, resume=resume,
                           progress=not s.quiet, load_kwargs=load_kwargs, on_info=s.info,
                           on_warning=lambda m: s.info(f"[yellow]warning: {m}[/yellow]"))
    report, result, after = run.report, run.pruning, run.after
    if as_json:
        print_json(report)
        return
    b = result.before
    rows = [
        ["parameters", f"{b.parameters / 1e6:.3f} M", f"{after.parameters / 1e6:.3f} M", f"{after.parameters / b.parameters:.2f}×"],
        ["FP32 size (MB = 10^6 B)", f"{b.fp32_mb:.2f}", f"{after.fp32_mb:.2f}", f"{after.fp32_mb / b.fp32_mb:.2f}×"],
        ["MACs", _g(b.macs), _g(after.macs), f"{after.macs / b.macs:.2f}×" if b.macs and after.macs else "n/a"],
    ]
    s.console.print(make_table(f"pruned {checkpoint} → {out} (input {'×'.join(map(str, b.input_shape))}, "
                               f"channel ratio {result.channel_ratio:.2f}, heads kept: {', '.join(result.ignored_layers)})",
                               ["", "before", "after", "after/before"], rows))
    if report["finetune"]:
        f = report["finetune"]
        s.console.print(f"fine-tuned {f['steps']} steps in {f['seconds']} s, final loss {f['final_loss']:.4f}; run log {f['run_log']}"
                        + (f"; {len(f['warnings'])} gradient-health warning(s)" if f["warnings"] else ""))
