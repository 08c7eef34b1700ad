"""Knowledge-distillation loss from the FP32 teacher (Hinton, Vinyals & Dean, 2015,
"Distilling the Knowledge in a Neural Network", arXiv:1503.02531).

Multiclass head (student logits s, teacher logits t, both N×K; labels y int64 (N,), −1 = none)::

    L = α · CE(s, y) + (1 − α) · T² · KL(softmax(t/T) ‖ softmax(s/T))

KL is averaged over the batch ("batchmean"); T² keeps the soft term's gradient scale
independent of T (Hinton et al., §2). CE is averaged over labelled rows only.

Multi-label head (N×T logits; targets float 1/0, NaN = missing)::

    L = α · BCE(s, y)[labelled cells] + (1 − α) · T² · BCE(sigmoid(s/T), sigmoid(t/T))

i.e. each tag is a two-class softmax distilled the same way (the binary cross-entropy on the
teacher's sigmoid outputs); both means are over cells.

A head's total is the sum over heads. With ``teacher=None`` (label-only fine-tuning) α = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from optim.errors import InputError
from optim.model_card import ModelCard


@dataclass(frozen=True)
class DistillConfig:
    """α weights the label loss, 1 − α the teacher's soft targets; T is the temperature."""

    alpha: float = 0.5
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha {self.alpha}: must be in [0, 1] (weight of the label loss)")
        if not self.temperature > 0:
            raise InputError(f"temperature {self.temperature}: must be > 0")


def multiclass_kd_loss(student, teacher, labels, alpha: float, temperature: float):
    """Hinton et al. (2015) loss for one multiclass head; returns a scalar tensor.

    Args: student, teacher: float N×K logits; labels: int64 (N,), −1 = unlabelled (teacher
    only); teacher None → label loss only.
    """
    import torch.nn.functional as F

    zero = student.sum() * 0.0
    has = labels >= 0
    ce = F.cross_entropy(student[has], labels[has]) if bool(has.any()) else zero
    if teacher is None:
        return ce
    T = temperature
    kl = F.kl_div(F.log_softmax(student / T, dim=1), F.log_softmax(teacher.detach() / T, dim=1), reduction="batchmean", log_target=True)
    return alpha * ce + (1.0 - alpha) * (T * T) * kl


def multilabel_kd_loss(student, teacher, targets, alpha: float, temperature: float):
    """Distillation for one multi-label head; returns a scalar tensor.

    Args: student, teacher: float N×T logits; targets: float N×T of 1/0, NaN = missing
    (ignored); teacher None → label loss only.
    """
    import torch
    import torch.nn.functional as F

    zero = student.sum() * 0.0
    known = ~torch.isnan(targets)
    bce = F.binary_cross_entropy_with_logits(student[known], targets[known]) if bool(known.any()) else zero
    if teacher is None:
        return bce
    T = temperature
    soft = F.binary_cross_entropy_with_logits(student / T, torch.sigmoid(teacher.detach() / T))
    return alpha * bce + (1.0 - alpha) * (T * T) * soft


def distillation_loss(student_out: dict, teacher_out: dict | None, targets: dict, card: ModelCard, config: DistillConfig):
    """Sum of the per-head losses (see the module docstring).

    Args:
        student_out / teacher_out: ``{head: N×K logits}`` (``optim.heads.outputs_by_head``);
            teacher_out None = label-only.
        targets: ``{head: labels}`` as in :class:`optim.optimize.train_data.TrainSet` (tensors).
    """
    total = None
    for head in card.heads:
        t = None if teacher_out is None else teacher_out[head.name]
        fn = multiclass_kd_loss if head.kind == "multiclass" else multilabel_kd_loss
        loss = fn(student_out[head.name], t, targets[head.name], config.alpha, config.temperature)
        total = loss if total is None else total + loss
    return total
