"""``optim distill TEACHER --student ARCH --train DIR --out student.pt``: train a student of
another architecture from the teacher (see :mod:`optim.optimize.distill`)."""

from __future__ import annotations

import click

from optim.cli.checkpoint_options import checkpoint_options
from optim.cli.output import json_option, make_table, print_json, state


def _g(v) -> str:
    return "n/a" if v is None else f"{v / 1e6:.3f} M"


@click.command("distill")
@click.argument("teacher", type=click.Path(dir_okay=False))
@click.option("--student", required=True,
              help="Student architecture with the teacher's classes, e.g. 'torchvision:mobilenet_v3_large(num_classes=250)' "
                   "(random weights; a user module needs --allow-module).")
@click.option("--train", "train_dir", required=True, type=click.Path(),
              help="Train split in the golden-set format (manifest.csv + images, or class folders); never the gate's golden set.")
@click.option("--golden", type=click.Path(), help="The gate's golden set: training on it is refused (it is never evaluated on here).")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW learning rate (cosine decay).")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Weight of the label loss; 1 − alpha weighs the teacher's soft targets.")
@click.option("--temperature", type=float, default=4.0, show_default=True, help="Distillation temperature T.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--grad-every", type=int, default=10, show_default=True, help="Gradient-health record every N steps.")
@click.option("--bn-recalibrate/--no-bn-recalibrate", default=True, show_default=True,
              help="Re-estimate BatchNorm statistics after training over --bn-batches class-balanced batches "
                   "(compact models with BN momentum 0.01 need it after a short schedule).")
@click.option("--bn-batches", type=int, default=50, show_default=True, help="Batches for BatchNorm re-estimation.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run log and resumable state (default: OUT.run/).")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue an interrupted run from --run-dir.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Student checkpoint to write (its card goes to OUT.optim.toml).")
@checkpoint_options
@json_option
def command(teacher: str, student: str, train_dir: str, golden, epochs: int, batch_size: int, lr: float, alpha: float,
            temperature: float, seed: int, grad_every: int, bn_recalibrate: bool, bn_batches: int, run_dir, resume: bool,
            out: str, load_kwargs: dict, as_json: bool) -> None:
    """Distill TEACHER into a student of another architecture and write it to OUT.

    The student gets the teacher's card (heads, labels, preprocessing) with its own
    architecture, and a lineage naming the teacher, so `optim quantize OUT` → `optim verify`
    compares it with the teacher's FP32 reference automatically. Loss: Hinton distillation
    (KL with T², BCE on the teacher's sigmoids for multi-label heads); run log (JSON lines:
    loss, per-layer gradient norms, warnings) in --run-dir. Prints the student's parameters
    and FP32 size (MB = 10^6 bytes) beside the teacher's.
    """
    from optim.files import sha256_file
    from optim.optimize.distill import distill

    s = state()
    result = distill(teacher, student, train_dir, out, golden=golden, epochs=epochs, batch_size=batch_size, lr=lr,
                     alpha=alpha, temperature=temperature, seed=seed, grad_every=grad_every, run_dir=run_dir, resume=resume,
                     bn_batches=bn_batches if bn_recalibrate else 0, load_kwargs=load_kwargs, progress=not s.quiet,
                     on_warning=lambda m: s.info(f"[yellow]warning: {m}[/yellow]"), on_info=s.info)
    report = {"teacher": teacher, **result.to_dict(), "out_sha256": sha256_file(result.path)}
    if as_json:
        print_json(report)
        return
    t, st = result.teacher_stats, result.student_stats
    rows = [
        ["parameters", f"{t.parameters / 1e6:.3f} M", f"{st.parameters / 1e6:.3f} M", f"{st.parameters / t.parameters:.2f}×"],
        ["FP32 size (MB = 10^6 B)", f"{t.fp32_mb:.2f}", f"{st.fp32_mb:.2f}", f"{st.fp32_mb / t.fp32_mb:.2f}×"],
        ["MACs", _g(t.macs), _g(st.macs), f"{st.macs / t.macs:.2f}×" if t.macs and st.macs else "n/a"],
    ]
    s.console.print(make_table(f"distilled {teacher} → {out} ({result.architecture}, input {'×'.join(map(str, t.input_shape))})",
                               ["", "teacher", "student", "student/teacher"], rows))
    bn = (f"; BatchNorm statistics re-estimated over {result.bn_batches} batches ({result.bn_layers} layers)"
          if result.bn_layers else "")
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    s.console.print(f"trained {result.steps} steps in {result.seconds:.1f} s, final loss {loss}{bn}; run log {result.log_path}"
                    + (f"; {len(result.warnings)} gradient-health warning(s)" if result.warnings else ""))
    s.console.print(f"FP32 reference for the gate: {result.lineage['reference']['path']} "
                    f"(sha256 {result.lineage['reference']['sha256'][:12]}…); next: optim quantize {out}")
