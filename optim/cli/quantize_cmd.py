"""``optim quantize CKPT``: PTQ and export to ONNX, TFLite/LiteRT and ExecuTorch, each checked
on its host runtime (see :func:`optim.optimize.ptq.quantize`)."""

from __future__ import annotations

import click

from optim.cli.checkpoint_options import checkpoint_options
from optim.cli.output import json_option, make_table, print_json, state


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


@click.command("quantize")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--format", "formats", default=None,
              help="Comma-separated formats (default: every built-in format; third-party formats register through "
                   "the optim.formats entry-point group). An unknown name lists the known ones.")
@click.option("--scheme", default="int8", show_default=True,
              help="Comma-separated schemes: int8 (static, per-channel weights, per-tensor activations; needs --calib), "
                   "int8-dynamic, fp16, fp32, and the extra schemes a format lists (FormatSpec.schemes): "
                   "int8-weight (ONNX, TFLite: weight-only INT8, float compute, no calibration), "
                   "int4-weight (ONNX: block-wise INT4 MatMul/Gemm weights, INT8 conv weights; TFLite: INT4 "
                   "fully-connected weights, INT8 elsewhere; weight-only), "
                   "int4-dynamic (ExecuTorch: 4-bit Linear weights, 8-bit dynamic activations), "
                   "int16x8 (TFLite: INT16 activations, needs --calib). Weight-only schemes shrink the file, "
                   "not the latency.")
@click.option("--calib", type=click.Path(file_okay=False), default=None,
              help="Directory of calibration images (searched recursively; a golden set works), read with the card's preprocessing.")
@click.option("--calib-size", type=int, default=300, show_default=True, help="Images drawn (seeded) from --calib.")
@click.option("--out", default="artifacts", show_default=True, type=click.Path(file_okay=False),
              help="Output directory; artifacts go to OUT/<format>-<scheme>/.")
@click.option("--threads", type=int, default=None, help="CPU threads for the host-runtime checks.")
@click.option("--float-layers", default=None,
              help="Mixed precision: comma-separated module names (as in model.named_modules(), e.g. features.16.0,classifier.3) "
                   "kept in float by the quantized schemes. An unknown name lists close matches.")
@click.option("--method", type=click.Choice(["ptq", "qat"]), default="ptq", show_default=True,
              help="ptq: calibrate and convert. qat: quantization-aware training distilled from the FP32 checkpoint (needs --train), INT8 only.")
@click.option("--train", "train_dir", type=click.Path(), help="QAT: train split (golden-set format or class folders); never the gate's golden set.")
@click.option("--golden", type=click.Path(), help="QAT: the gate's golden set; training on it is refused.")
@click.option("--teacher", type=click.Path(dir_okay=False), help="QAT: FP32 teacher checkpoint (default: CHECKPOINT itself; for a pruned model, the unpruned original).")
@click.option("--epochs", type=int, default=1, show_default=True, help="QAT epochs.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="QAT batch size.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="QAT AdamW learning rate (cosine decay).")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="QAT: weight of the label loss (1 − alpha: teacher's soft targets).")
@click.option("--temperature", type=float, default=4.0, show_default=True, help="QAT distillation temperature T.")
@click.option("--seed", type=int, default=0, show_default=True, help="QAT seed (batch order).")
@click.option("--resume/--no-resume", default=True, show_default=True, help="QAT: continue an interrupted run from OUT/qat-<backend>.run/.")
@checkpoint_options
@json_option
def command(checkpoint: str, formats: str | None, scheme: str, calib: str | None, calib_size: int, out: str,
            threads: int | None, float_layers: str | None, method: str, train_dir: str | None, golden: str | None, teacher: str | None, epochs: int, batch_size: int,
            lr: float, alpha: float, temperature: float, seed: int, resume: bool, load_kwargs: dict, as_json: bool) -> None:
    """Quantize CHECKPOINT and export it to each format; check every artifact on its host
    runtime against torch FP32 (FP32 exports must match within 1e-4 max-abs; quantized ones
    report top-1 agreement and max-abs logit error on the calibration images).

    Prints a table: format, scheme, size (MB = 10^6 bytes), agreement with FP32, max-abs
    error, export seconds, status. A quantized artifact whose top-1 agreement with FP32 is
    significantly below 0.90 is flagged ``collapsed`` (quantization broke the model; try
    --float-layers). Exits 3 if any export failed (the others still complete), 1 if an FP32
    export does not match torch or an artifact collapsed, 2 on bad input.
    """
    from optim.optimize.ptq import quantize

    s = state()

    def report(r) -> None:
        if r.ok:
            s.info(f"{r.format}-{r.scheme}: ok, {r.size_mb:.2f} MB in {r.export_seconds:.1f} s")
        elif r.collapsed:
            s.info(f"[bold red]{r.format}-{r.scheme}: COLLAPSED[/bold red] [red]{r.message}[/red]")
        else:
            s.info(f"[red]{r.format}-{r.scheme}: {r.status}[/red] {r.error or ''}")

    # library output (exporters' prints, native logs) goes to the run's log: CliState.captured
    if method == "qat":
        from optim.errors import InputError
        from optim.optimize.distillation import DistillConfig
        from optim.optimize.finetune import FinetuneConfig
        from optim.optimize.qat import quantize_qat

        if not train_dir:
            raise InputError("--method qat needs --train DATA (a train split in the golden-set format or class folders)")
        if scheme != "int8":
            raise InputError(f"--method qat produces static INT8 only; drop --scheme {scheme}")
        if float_layers:
            raise InputError("--float-layers applies to --method ptq only (QAT quantizes every layer)")
        cfg = FinetuneConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, distill=DistillConfig(alpha=alpha, temperature=temperature))
        result = quantize_qat(checkpoint, train=train_dir, formats=formats, golden=golden, teacher=teacher, config=cfg, out=out, threads=threads,
                              load_kwargs=load_kwargs, resume=resume, progress=not s.quiet, on_result=report, on_info=s.info,
                              on_warning=lambda m: s.info(f"[yellow]warning: {m}[/yellow]"))
    else:
        result = quantize(checkpoint, formats=formats, scheme=scheme, calib=calib, calib_size=calib_size, out=out,
                          threads=threads, load_kwargs=load_kwargs, on_result=report, float_layers=float_layers)
    if as_json:
        print_json(result.to_dict())
    else:
        rows = []
        for r in result.results:
            agree = r.check.get("top1_agreement") if r.check else None
            status = r.status + (f" ({r.operator})" if r.operator else "")
            rows.append([r.format, r.scheme, _fmt(r.size_mb, ".2f"), _fmt(agree, ".3f"),
                         _fmt(r.check.get("max_abs_error") if r.check else None, ".2e"), _fmt(r.export_seconds, ".1f"), status])
        cal = result.calibration
        title = f"artifacts in {result.out_dir}" + (f" — calibrated on {cal['size']} images from {cal['dir']}" if cal else "")
        if method == "qat":
            title = f"QAT artifacts in {result.out_dir} (checked on training images)"
            for backend, t in result.training.items():
                s.console.print(f"QAT {backend}: {t['steps']} steps in {t['seconds']} s, final loss {t['final_loss']:.4f}; run log {t['run_log']}")
        s.console.print(make_table(title, ["format", "scheme", "size MB", "top-1 agreement vs FP32", "max-abs error",
                                           "export s", "status"], rows))
        for r in result.results:
            if r.error:
                s.console.print(f"[red]{r.format}-{r.scheme}[/red]: {r.error}")
            if r.collapsed:
                s.console.print(f"[bold red]{r.format}-{r.scheme}: quantization broke the model[/bold red] — {r.message} "
                                f"(artifact kept in {r.artifact_dir} for inspection)")
    if result.exit_code:
        click.get_current_context().exit(result.exit_code)
