"""``optim.optimize.prune_pipeline.prune_checkpoint``: prune → (recovery fine-tune with
distillation) → save, the API behind ``optim prune``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optim.errors import InputError


@dataclass
class PruneRun:
    """What :func:`prune_checkpoint` did.

    Attributes:
        path: the pruned checkpoint written (its card next to it).
        report: JSON-ready record: ``checkpoint``, ``out``, ``pruning`` (ratio, per-layer
            channels, stats before), ``finetune`` (None, or steps, final loss, run log,
            seconds, warnings, config), ``out_sha256``, ``lineage``.
        pruning: the :class:`optim.optimize.pruning.PruneResult` (``before`` stats ...).
        after: :func:`optim.model_stats.model_stats` of the saved model at the card's input shape.
    """

    path: Path
    report: dict[str, Any]
    pruning: Any
    after: Any


def prune_checkpoint(
    checkpoint: str | Path, out: str | Path, *, ratio: float | None = None, target_macs: float | None = None,
    target_size_mb: float | None = None, importance: str = "l1", round_to: int | None = None,
    finetune: bool = False, train: str | Path | None = None, golden: str | Path | None = None,
    epochs: int = 3, batch_size: int = 32, lr: float = 1e-3, alpha: float = 0.5, temperature: float = 4.0,
    distill: bool = True, seed: int = 0, grad_every: int = 10, run_dir: str | Path | None = None,
    resume: bool = True, progress: bool = True, load_kwargs: dict[str, Any] | None = None,
    on_info: Callable[[str], None] | None = None, on_warning: Callable[[str], None] | None = None,
) -> PruneRun:
    """Structured channel pruning of ``checkpoint`` (Torch-Pruning; heads never pruned), then,
    with ``finetune``, recovery fine-tuning on ``train`` distilled from the unpruned model
    (``distill=False``: labels only), then save to ``out`` with its lineage.

    Give one of ``ratio`` (fraction of channels removed, 0–1), ``target_macs`` (MACs at the
    card's input shape) or ``target_size_mb`` (FP32 MB, 10^6 bytes); see
    :func:`optim.optimize.pruning.prune`. ``importance``: ``l1`` | ``l2`` | ``taylor`` (needs
    ``train``). ``run_dir``: run log and resumable state (default ``<out>.run``).

    Raises:
        InputError: ``finetune`` or ``taylor`` without ``train``, training data = ``golden``,
            a bad checkpoint or target, or an architecture the pruned model cannot be saved as.
        optim.optimize.finetune.TrainingDiverged: NaN/inf while fine-tuning.
    """
    import numpy as np
    import torch

    from optim.checkpoint import load_checkpoint, make_lineage
    from optim.files import sha256_file
    from optim.model_stats import model_stats
    from optim.optimize.distillation import DistillConfig
    from optim.optimize.pruning import architecture_ref, prune, save_pruned

    info = on_info or (lambda m: None)
    if finetune and not train:
        raise InputError("--finetune needs --train DATA (a train split in the golden-set format)")
    if importance == "taylor" and not train:
        raise InputError("--importance taylor needs --train DATA (a few batches of images)")
    loaded = load_checkpoint(checkpoint, **(load_kwargs or {}))
    card = loaded.card
    architecture_ref(card)  # fail before the work if the pruned model could not be saved
    data = None
    if train:
        from optim.optimize.train_data import TrainSet, check_not_golden

        check_not_golden(train, golden)
        data = TrainSet.load(train, card)
    batches = None
    if importance == "taylor":
        idx = np.random.default_rng(seed).permutation(len(data))[: min(len(data), 4 * batch_size)]
        batches = [torch.from_numpy(data.images(idx[i:i + batch_size], card)) for i in range(0, len(idx), batch_size)]
    info(f"pruning {checkpoint} ({importance} importance)…")
    result = prune(loaded.model, card, ratio=ratio, target_macs=target_macs, target_size_mb=target_size_mb,
                   importance=importance, taylor_batches=batches, round_to=round_to)
    model = result.model
    report: dict[str, Any] = {"checkpoint": str(loaded.path), "out": str(out), "pruning": result.to_dict(), "finetune": None}
    if finetune:
        from optim.optimize.finetune import FinetuneConfig, finetune as run_finetune

        cfg = FinetuneConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, grad_every=grad_every,
                             distill=DistillConfig(alpha=alpha, temperature=temperature) if distill else None)
        rd = Path(run_dir) if run_dir else Path(str(out) + ".run")
        info(f"fine-tuning on {len(data)} images for {epochs} epoch(s) "
             f"({f'distilled, alpha={alpha}, T={temperature}' if distill else 'label-only'}); run log {rd / 'run_log.jsonl'}")
        ft = run_finetune(model, loaded.model if distill else None, card, data, cfg, rd, resume=resume,
                          progress=progress, on_warning=on_warning)
        model = ft.model
        report["finetune"] = {"steps": ft.steps, "final_loss": ft.final_loss, "run_log": str(ft.log_path),
                              "seconds": round(ft.seconds, 1), "resumed_from_step": ft.resumed_from_step,
                              "warnings": ft.warnings, "config": cfg.to_dict()}
    lineage = make_lineage(loaded, fine_tuned=bool(finetune), epochs=epochs if finetune else 0)
    path = save_pruned(model, card, out, lineage=lineage, extra={
        "source_sha256": loaded.sha256, "pruning": result.to_dict(),
        "finetune": report["finetune"] and {k: v for k, v in report["finetune"].items() if k != "warnings"}})
    report["out_sha256"] = sha256_file(path)
    report["lineage"] = lineage
    return PruneRun(path=Path(path), report=report, pruning=result, after=model_stats(model, card.input.shape))
