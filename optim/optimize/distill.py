"""Knowledge distillation into a student of another architecture (``optim distill``).

The brief: a 250-class teacher too large for the phone, a student ≤ 20 MB at ≥ 95 % of the
teacher's top-1. :func:`distill` builds the student from an architecture reference (random
weights, e.g. ``torchvision:mobilenet_v3_large(num_classes=250)``), checks with one forward
pass that it has the teacher's heads and classes, and trains it with the recovery fine-tune of
:mod:`optim.optimize.finetune` — the same Hinton loss (:mod:`optim.optimize.distillation`:
KL with T² for multiclass heads, BCE on the teacher's sigmoids for multi-label heads), run log
``run_log.jsonl``, gradient-health records and bit-identical resume.

After training, BatchNorm running statistics are re-estimated (:func:`recalibrate_batchnorm`,
on by default): compact torchvision models (mobilenet_v3, efficientnet) use BN momentum 0.01,
so after a short schedule their running statistics lag far behind the weights (measured on the
demo data: mobilenet_v3_small 0.83 top-1 in train mode, 0.10 in eval mode; 0.936 after
re-estimating over ~50 balanced batches — DESIGN.md, "Facts measured on main").

The student is written like a pruned checkpoint (a ``weights_only`` dict: state_dict, the
architecture, channel spec and lineage; see :mod:`optim.optimize.channel_spec`) with the
teacher's card (heads, labels, preprocessing, input) carrying the student's architecture,
and the lineage ``{"kind": "distilled", "parent": teacher, "reference": the teacher's FP32
reference, "fine_tuned": true, "epochs": N}``, so ``optim quantize`` → ``optim verify`` judges
the student against the teacher (or the teacher's own FP32 original) without ``--reference``.

The gate's golden set is never used here: training on it is refused (:func:`check_not_golden`),
and nothing is evaluated on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optim.checkpoint import LoadedModel
from optim.errors import InputError
from optim.model_card import ModelCard, card_path_for
from optim.model_stats import ModelStats

#: Architecture keyword arguments that would load pretrained weights (a download): refused,
#: the student starts from random weights.
PRETRAINED_KWARGS = ("weights", "pretrained", "pretrained_cfg", "checkpoint_path", "pretrained_cfg_overlay")

#: Default number of batches for BatchNorm re-estimation (DESIGN.md: ~50 balanced batches).
BN_BATCHES = 50


@dataclass
class DistillResult:
    """What :func:`distill` returns.

    Attributes:
        model: the trained student (``nn.Module``, eval mode, BN statistics re-estimated).
        path: the student checkpoint written; its card is ``card_path``.
        card: the student's card (the teacher's heads/labels/preprocessing, student architecture).
        architecture: the student's architecture reference, kwargs merged.
        lineage: as stored in the checkpoint (see :class:`optim.checkpoint.Lineage`).
        teacher_stats / student_stats: parameters, FP32 bytes (MB = 10^6 bytes), MACs at the
            card's input shape.
        steps, final_loss, seconds, resumed_from_step, warnings, log_path: from the fine-tune run.
        bn_batches: batches used to re-estimate BatchNorm statistics (0 = not done).
        bn_layers: BatchNorm layers whose statistics were re-estimated.
    """

    model: Any
    path: Path
    card_path: Path
    card: ModelCard
    architecture: str
    lineage: dict[str, Any]
    teacher_stats: ModelStats
    student_stats: ModelStats
    steps: int
    final_loss: float | None
    seconds: float
    resumed_from_step: int | None
    log_path: Path
    bn_batches: int
    bn_layers: int
    config: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def stats(s: ModelStats) -> dict[str, Any]:
            return {"parameters": s.parameters, "fp32_mb": round(s.fp32_mb, 4), "macs": s.macs}

        return {
            "out": str(self.path), "card": str(self.card_path), "architecture": self.architecture, "lineage": self.lineage,
            "teacher": stats(self.teacher_stats), "student": stats(self.student_stats),
            "parameters_ratio": self.student_stats.parameters / self.teacher_stats.parameters if self.teacher_stats.parameters else None,
            "fp32_size_ratio": self.student_stats.fp32_bytes / self.teacher_stats.fp32_bytes if self.teacher_stats.fp32_bytes else None,
            "input_shape": list(self.student_stats.input_shape),
            "steps": self.steps, "final_loss": self.final_loss, "seconds": round(self.seconds, 1),
            "resumed_from_step": self.resumed_from_step, "run_log": str(self.log_path), "warnings": self.warnings,
            "bn_recalibration": {"batches": self.bn_batches, "layers": self.bn_layers}, "config": self.config,
        }


# ---- the student ----------------------------------------------------------------------------
def student_architecture(ref: str) -> str:
    """Canonical form of a student architecture reference (``module:factory(k=v, ...)``).

    Raises:
        InputError: a malformed reference, or one asking for pretrained weights (``weights=``,
            ``pretrained=True``…: that would download; the student starts from random weights).
    """
    from optim.checkpoint import parse_arch_ref

    module, factory, kw = parse_arch_ref(ref)
    asked = [k for k in PRETRAINED_KWARGS if kw.get(k) not in (None, False)]
    if asked:
        raise InputError(f"student {ref!r}: {', '.join(f'{k}={kw[k]!r}' for k in asked)} would download pretrained weights; "
                         "optim never downloads weights and the student starts from random weights: drop "
                         f"{', '.join(asked)} from --student")
    return f"{module}:{factory}(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")"


def _describe_heads(card: ModelCard) -> str:
    return ", ".join(f"{h.name!r} ({h.kind}, {h.num_classes} classes)" for h in card.heads)


def student_card(teacher_card: ModelCard, architecture: str) -> ModelCard:
    """The teacher's card (name, input, preprocessing, heads and labels) with the student's
    ``architecture``; ``architecture_kwargs`` are cleared (the reference carries them) and
    ``allowed_modules`` holds only the student's own module when it is not a registry
    (torchvision/timm), so the student's card grants no import the student does not need."""
    from optim.checkpoint import ARCH_REGISTRIES, parse_arch_ref

    module = parse_arch_ref(architecture)[0]
    data = teacher_card.to_dict()
    data.update(architecture=architecture, architecture_kwargs={})
    data["allowed_modules"] = [] if module in ARCH_REGISTRIES else [module]
    return ModelCard.from_dict(data, source=f"student card for {architecture}")


def build_student(architecture: str, teacher_card: ModelCard, *, teacher_name: str = "the teacher",
                  allow_modules: tuple[str, ...] = (), seed: int = 0):
    """Instantiate the student (random weights, seeded) and check it has the teacher's heads.

    Args:
        architecture: reference such as ``torchvision:mobilenet_v3_large(num_classes=250)``
            (see :func:`optim.checkpoint.build_architecture`; other modules need ``allow_modules``).
        teacher_card: the teacher's card; one forward pass on zeros of ``card.input.shape``
            (N×C×H×W float32) must give one N×K output per head with the teacher's K.
        teacher_name: how messages name the teacher (its path).

    Returns the student ``nn.Module`` in eval mode.

    Raises:
        InputError: unknown or refused architecture, pretrained weights asked for, or a student
            whose outputs differ from the teacher's heads (the message names both).
    """
    import torch

    from optim.checkpoint import build_architecture, check_card_fits

    ref = student_architecture(architecture)
    torch.manual_seed(seed)
    model = build_architecture(ref, allow_modules=allow_modules, source="--student")
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"student {ref!r} returned a {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    try:
        check_card_fits(model, teacher_card, f"student {ref}")
    except InputError as e:
        raise InputError(f"{e}. The student must have the heads of teacher {teacher_name}: {_describe_heads(teacher_card)}; "
                         "build it with the same classes (e.g. num_classes=…)") from None
    return model


# ---- BatchNorm re-estimation ---------------------------------------------------------------
def balanced_indices(train, card: ModelCard, n: int, seed: int) -> np.ndarray:
    """``n`` sample indices drawn with replacement, each with probability ∝ 1 / (its class's
    count) in the card's first multiclass head (class-balanced sampling; unlabelled samples
    are not drawn unless nothing is labelled). Uniform when the card has no multiclass head.
    Seeded: the same inputs give the same indices."""
    rng = np.random.default_rng([seed, 0xB4])
    heads = [h for h in card.heads if h.kind == "multiclass"]
    w = np.ones(len(train))
    if heads:
        y = train.targets[heads[0].name]
        labelled = y >= 0
        if labelled.any():
            counts = np.bincount(y[labelled], minlength=heads[0].num_classes)
            w = np.where(labelled, 1.0 / np.maximum(counts[np.where(labelled, y, 0)], 1), 0.0)
    return rng.choice(len(train), size=n, replace=True, p=w / w.sum())


def recalibrate_batchnorm(model, train, card: ModelCard, *, batches: int = BN_BATCHES, batch_size: int = 32, seed: int = 0) -> int:
    """Re-estimate every BatchNorm layer's running mean/variance from training images.

    Resets the statistics and averages them (cumulative, ``momentum=None``) over ``batches``
    class-balanced batches (:func:`balanced_indices`) of ``batch_size`` images, preprocessed
    as ``card`` says, with :func:`torch.optim.swa_utils.update_bn` (train-mode forward under
    ``no_grad``; weights are not changed; momentum and train/eval mode are restored).

    Returns the number of BatchNorm layers updated (0: nothing to do).

    Raises:
        InputError: ``batches`` or ``batch_size`` below 1 (or a batch of 1 image, which BN cannot use).
    """
    import torch
    from torch.optim.swa_utils import update_bn

    if batches < 1 or batch_size < 2:
        raise InputError(f"BatchNorm re-estimation needs ≥ 1 batch of ≥ 2 images (got {batches} × {batch_size})")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    idx = balanced_indices(train, card, batches * batch_size, seed).reshape(batches, batch_size)
    update_bn((torch.from_numpy(train.images(i, card)) for i in idx), model)
    return len(bns)


# ---- the run -------------------------------------------------------------------------------
def _check_out(out: Path, teacher: LoadedModel) -> None:
    """Refuse an output that would overwrite the teacher, its FP32 reference or their cards."""
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as student.pt")
    protected = {Path(teacher.path).resolve(): f"the teacher {teacher.path}"}
    if teacher.lineage:
        protected[Path(teacher.lineage["reference"]["path"]).resolve()] = f"the FP32 reference {teacher.lineage['reference']['path']}"
    if teacher.card_path is not None:
        protected[Path(teacher.card_path).resolve()] = f"the teacher's card {teacher.card_path}"
    for target in (out, card_path_for(out)):
        what = protected.get(target.resolve())
        if what:
            raise InputError(f"--out {out} would overwrite {what}: the gate compares the student with it; choose another file")


def distill(
    teacher: str | Path | LoadedModel,
    student: str,
    train: str | Path,
    out: str | Path,
    *,
    golden: str | Path | None = None,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 1e-3,
    alpha: float = 0.5,
    temperature: float = 4.0,
    seed: int = 0,
    grad_every: int = 10,
    run_dir: str | Path | None = None,
    resume: bool = True,
    bn_batches: int = BN_BATCHES,
    allow_modules: tuple[str, ...] | list[str] = (),
    load_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    on_warning: Callable[[str], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    on_info: Callable[[str], None] | None = None,
) -> DistillResult:
    """Train a student of another architecture from ``teacher`` and save it with its lineage.

    Args:
        teacher: checkpoint path (loaded with :func:`optim.load_checkpoint` and
            ``load_kwargs``) or an already loaded :class:`LoadedModel`.
        student: architecture reference, e.g. ``torchvision:mobilenet_v3_large(num_classes=250)``
            (random weights; ``allow_modules`` lets it import a user module).
        train: train split in the golden-set format (manifest.csv + images, or class folders).
        out: student checkpoint to write; its card goes to ``<out>.optim.toml``.
        golden: the gate's golden set, refused as training data (never evaluated on).
        epochs, batch_size, lr (AdamW, cosine decay), alpha (weight of the label loss),
            temperature (T), seed, grad_every: see :class:`optim.optimize.finetune.FinetuneConfig`.
        run_dir: run log + resumable state (default ``<out>.run/``); ``resume`` continues an
            interrupted run with the same teacher, student, config and data.
        bn_batches: class-balanced batches for BatchNorm re-estimation after training
            (default 50, DESIGN.md; 0 = off).
        on_info: called with one-line progress messages (default: none).

    Returns a :class:`DistillResult`.

    Raises:
        InputError: missing/unsafe teacher; unknown, refused or pretrained student
            architecture; a student whose heads or classes differ from the teacher's; train
            data that is the golden set or does not match the teacher's card; an ``out`` that
            would overwrite the teacher or its reference; a run directory from another run;
            bad hyper-parameters.
        TrainingDiverged: NaN/inf loss or gradient (see the run log).
    """
    from optim.checkpoint import load_checkpoint, make_lineage
    from optim.model_stats import model_stats
    from optim.optimize.distillation import DistillConfig
    from optim.optimize.finetune import FinetuneConfig, finetune
    from optim.optimize.pruning import save_pruned
    from optim.optimize.train_data import TrainSet, check_not_golden

    info = on_info or (lambda _m: None)
    out = Path(out)
    if bn_batches < 0:
        raise InputError(f"bn_batches {bn_batches}: must be ≥ 0 (0 = no BatchNorm re-estimation)")
    cfg = FinetuneConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, grad_every=grad_every,
                         distill=DistillConfig(alpha=alpha, temperature=temperature))
    if batch_size < 2:
        raise InputError(f"batch_size {batch_size}: distillation needs ≥ 2 images a batch (BatchNorm)")
    check_not_golden(train, golden)
    loaded = teacher if isinstance(teacher, LoadedModel) else load_checkpoint(teacher, **(load_kwargs or {}))
    _check_out(out, loaded)
    arch = student_architecture(student)
    allowed = tuple(allow_modules) + tuple((load_kwargs or {}).get("allow_modules", ()))
    model = build_student(arch, loaded.card, teacher_name=str(loaded.path), allow_modules=allowed, seed=seed)
    card = student_card(loaded.card, arch)
    data = TrainSet.load(train, loaded.card)
    if len(data) < batch_size:
        raise InputError(f"training data {train}: {len(data)} images, fewer than one batch of {batch_size}; lower --batch-size")
    shape = tuple(loaded.card.input.shape)
    t_stats, s_stats = model_stats(loaded.model, shape), model_stats(model, shape)
    rd = Path(run_dir) if run_dir is not None else Path(str(out) + ".run")
    info(f"distilling {loaded.path} ({t_stats.parameters / 1e6:.2f} M parameters) into {arch} "
         f"({s_stats.parameters / 1e6:.2f} M) on {len(data)} images, {epochs} epoch(s), alpha={alpha}, T={temperature}; "
         f"run log {rd / 'run_log.jsonl'}")
    ft = finetune(model, loaded.model, loaded.card, data, cfg, rd, resume=resume, progress=progress,
                  on_warning=on_warning, on_step=on_step, desc="distill",
                  run_key={"teacher_sha256": loaded.sha256, "student": arch})
    model = ft.model
    bn_layers = 0
    if bn_batches:
        info(f"re-estimating BatchNorm statistics over {bn_batches} class-balanced batches of {batch_size}")
        bn_layers = recalibrate_batchnorm(model, data, loaded.card, batches=bn_batches, batch_size=batch_size, seed=seed)
    model.eval()
    lineage = make_lineage(loaded, fine_tuned=True, epochs=epochs, kind="distilled")
    config = {**cfg.to_dict(), "bn_batches": bn_batches}
    extra = {"distill": {"teacher_sha256": loaded.sha256, "student": arch, "steps": ft.steps, "final_loss": ft.final_loss,
                         "run_log": str(ft.log_path), "bn_layers": bn_layers, "config": config}}
    save_pruned(model, card, out, lineage=lineage, extra=extra)
    return DistillResult(model=model, path=out, card_path=card_path_for(out), card=card, architecture=arch, lineage=lineage,
                         teacher_stats=t_stats, student_stats=model_stats(model, shape), steps=ft.steps,
                         final_loss=ft.final_loss, seconds=ft.seconds, resumed_from_step=ft.resumed_from_step,
                         log_path=ft.log_path, bn_batches=bn_batches if bn_layers else 0, bn_layers=bn_layers,
                         config=config, warnings=ft.warnings)
