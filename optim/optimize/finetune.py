"""Recovery fine-tuning (after pruning, and the QAT loop) with distillation from the FP32
teacher, gradient-health monitoring, atomic checkpoints and resume.

Run directory (``run_dir``):

* ``run_log.jsonl`` — one JSON object per line: ``start`` / ``resume`` (config, data),
  ``loss`` (every ``log_every`` steps), ``grad_health`` (every ``grad_every`` steps: per-layer
  gradient L2 norms, the first/last ratio, warnings), ``checkpoint``, ``epoch``, ``done``,
  ``error``;
* ``train_state.pt`` — model, optimizer, LR scheduler, RNG state and position (epoch, batch),
  written atomically (:func:`optim.files.atomic_write_bytes`) every ``checkpoint_every`` steps
  and at each epoch end; read back with ``torch.load(weights_only=True)``.

Resume: a run started again with the same ``run_dir`` and the same config/data continues from
``train_state.pt``; batches are drawn from a per-epoch permutation seeded by
``seed + epoch``, so an interrupted-and-resumed run ends with the same weights as an
uninterrupted one (tested).

Gradient health (every ``grad_every`` steps): per-layer gradient L2 norm (a layer = a module
with a ``weight`` parameter; its weight and bias gradients together), and
``ratio = mean(first n_edge_layers norms) / mean(last n_edge_layers norms)``. Gradients that
shrink by orders of magnitude toward the input are the vanishing-gradient symptom (Glorot &
Bengio, 2010; Hochreiter, 1991); a ratio below ``vanishing_ratio`` (default 1e-3, a heuristic:
three orders of magnitude) is reported as a warning in the log and to ``on_warning``. A NaN or
infinite norm or loss stops the run with :class:`TrainingDiverged`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError, ToolError
from optim.files import atomic_write_bytes
from optim.model_card import ModelCard
from optim.optimize.distillation import DistillConfig, distillation_loss
from optim.optimize.train_data import TrainSet, describe

STATE_FILE = "train_state.pt"
LOG_FILE = "run_log.jsonl"


class TrainingDiverged(ToolError):
    """A gradient norm or the loss became NaN or infinite: the run was stopped."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Recovery fine-tuning settings.

    Attributes:
        epochs, batch_size, lr (AdamW, cosine decay to 0 over the run), weight_decay, seed.
        distill: α and T of the distillation loss; None = label-only fine-tuning.
        grad_every: gradient-health record every N optimizer steps.
        vanishing_ratio: warn when first/last gradient-norm ratio falls below this.
        n_edge_layers: layers averaged at each end for that ratio.
        log_every: loss record every N steps.
        checkpoint_every: train_state.pt every N steps (and at each epoch end).
        max_steps: stop after this many steps in total (None = all epochs).
    """

    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    distill: DistillConfig | None = field(default_factory=DistillConfig)
    grad_every: int = 10
    vanishing_ratio: float = 1e-3
    n_edge_layers: int = 3
    log_every: int = 10
    checkpoint_every: int = 50
    max_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_every", "n_edge_layers", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"fine-tuning {name} must be ≥ 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"fine-tuning lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the trained student (eval mode) and run figures."""

    model: Any
    steps: int
    final_loss: float | None
    run_dir: Path
    log_path: Path
    warnings: list[str]
    resumed_from_step: int | None
    seconds: float


# ---- pure helpers (tested on plain tensors) -----------------------------------------------
def layer_grad_norms(model) -> dict[str, float]:
    """L2 norm of each layer's gradient (weight and bias together), in parameter order.

    A layer is a module that owns a ``weight`` parameter with a gradient.
    """
    import torch

    norms: dict[str, float] = {}
    for name, module in model.named_modules():
        w = getattr(module, "_parameters", {}).get("weight")
        if w is None or w.grad is None:
            continue
        grads = [p.grad.detach().flatten() for p in module.parameters(recurse=False) if p.grad is not None]
        norms[name] = float(torch.linalg.vector_norm(torch.cat(grads)))
    return norms


def gradient_health(norms: dict[str, float], n_edge: int, vanishing_ratio: float) -> dict[str, Any]:
    """First/last layer gradient-norm ratio and warnings for one step.

    Returns ``{"ratio": float|None, "first": [names], "last": [names], "nonfinite": [names],
    "warnings": [str]}``; ``ratio`` is None with fewer than two layers or a zero last-layer norm.
    """
    names = list(norms)
    nonfinite = [n for n in names if not math.isfinite(norms[n])]
    k = max(1, min(n_edge, len(names) // 2))
    first, last = names[:k], names[-k:]
    ratio = None
    out_warn: list[str] = []
    if len(names) >= 2 and not nonfinite:
        f = float(np.mean([norms[n] for n in first]))
        la = float(np.mean([norms[n] for n in last]))
        ratio = f / la if la > 0 else None
        if ratio is not None and ratio < vanishing_ratio:
            out_warn.append(
                f"vanishing gradients: first-layers/last-layers gradient norm ratio {ratio:.2e} < {vanishing_ratio:g} "
                f"({', '.join(first)} vs {', '.join(last)})"
            )
    return {"ratio": ratio, "first": first, "last": last, "nonfinite": nonfinite, "warnings": out_warn}


def set_train_mode(model, train: bool):
    """``model.train(train)``, also for torch.export graph modules (PT2E QAT), which refuse
    ``.train()``: there torchao's ``move_exported_model_to_train/eval`` switch dropout and BN."""
    try:
        model.train(train)
    except (NotImplementedError, RuntimeError):
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

        (move_exported_model_to_train if train else move_exported_model_to_eval)(model)
    return model


def _batches_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)  # drop the last partial batch (batch-norm needs > 1 sample)


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def _fingerprint(config: FinetuneConfig, data: dict[str, Any], model, run_key: dict[str, Any] | None = None) -> str:
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    fields: dict[str, Any] = {"config": config.to_dict(), "data": data.get("manifest_sha256"), "n": data.get("n_samples"), "shapes": shapes}
    if run_key is not None:  # absent key: the same fingerprint as before run_key existed (old run dirs still resume)
        fields["run_key"] = run_key
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class _RunLog:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> None:
        rec = {"event": event, "time": time.time(), **fields}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str, allow_nan=True) + "\n")


# ---- the loop -----------------------------------------------------------------------------
def finetune(
    student,
    teacher,
    card: ModelCard,
    train: TrainSet,
    config: FinetuneConfig,
    run_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_warning: Callable[[str], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    desc: str = "fine-tune",
    run_key: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Train ``student`` on ``train`` with the distillation loss from ``teacher``.

    Args:
        student: ``nn.Module`` (e.g. a pruned model or a PT2E QAT-prepared graph), trained in place.
        teacher: FP32 ``nn.Module`` (eval, frozen), or None for label-only training
            (then ``config.distill`` is ignored).
        card: heads and preprocessing (images are read as the card says).
        train: the labelled split (never the gate's golden set: see ``check_not_golden``).
        run_dir: where the run log and resumable state live.
        resume: continue from ``run_dir/train_state.pt`` when it exists and matches.
        on_warning: called with each gradient-health warning (default ``warnings.warn``).
        on_step: called with the step number after each completed optimizer step.
        run_key: JSON-like facts that must also match for a resume (e.g. the teacher's
            sha256 and the student architecture in ``optim distill``); None = config, data
            and model shapes only.

    Raises:
        InputError: ``run_dir`` holds a state from a different config, data, model or
            ``run_key``, or a ``train_state.pt`` that is not a readable weights-only state.
        TrainingDiverged: NaN/inf loss or gradient norm (the run log names the layers).
    """
    import torch

    from optim.heads import outputs_by_head

    run_dir = Path(run_dir)
    log = _RunLog(run_dir / LOG_FILE)
    state_path = run_dir / STATE_FILE
    warn = on_warning or (lambda m: warnings.warn(m, RuntimeWarning, stacklevel=3))
    data_info = describe(train)
    fingerprint = _fingerprint(config, data_info, student, run_key)
    distill = config.distill if teacher is not None else None
    if teacher is not None:
        set_train_mode(teacher, False)  # its forward runs under no_grad; its parameters are left as they are

    n = len(train)
    per_epoch = _batches_per_epoch(n, config.batch_size)
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
    step = 0
    resumed_from = None
    torch.manual_seed(config.seed)
    if resume and state_path.is_file():
        try:
            st = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, corrupt, or a pickle that needs code: never unpickled
            raise InputError(f"{state_path} is not a readable training state ({type(e).__name__}); delete it, "
                             "use another run directory or start fresh (resume=False / --no-resume)") from None
        if not isinstance(st, dict) or st.get("fingerprint") != fingerprint:
            raise InputError(
                f"{state_path} belongs to a different run (config, training data or model differ); "
                "use another run directory or start fresh (resume=False / --no-resume)"
            )
        try:
            student.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            torch.set_rng_state(st["rng"])
            step = int(st["step"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # edited after the fact
            raise InputError(f"{state_path} is a damaged training state ({type(e).__name__}: {str(e)[:200]}); delete it, "
                             "use another run directory or start fresh (resume=False / --no-resume)") from None
        if not 0 <= step <= total:
            raise InputError(f"{state_path} records step {step}, outside this run's 0…{total}; delete it or use --no-resume")
        resumed_from = step
        log.write("resume", step=step, total_steps=total)
    else:
        log.write("start", config=config.to_dict(), data=data_info, total_steps=total, teacher=teacher is not None,
                  distill=None if distill is None else asdict(distill))

    def save_state() -> None:
        payload = {"fingerprint": fingerprint, "step": step, "model": student.state_dict(), "optimizer": opt.state_dict(),
                   "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write_bytes(state_path, buf.getvalue())
        log.write("checkpoint", step=step, path=str(state_path))

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc=desc, disable=not (progress and sys.stderr.isatty()), leave=False)
    warns: list[str] = []
    last_loss: float | None = None
    t0 = time.perf_counter()
    set_train_mode(student, True)
    try:
        while step < total:
            epoch, pos = divmod(step, per_epoch)
            order = _epoch_order(n, config.seed, epoch)
            idx = order[pos * config.batch_size:(pos + 1) * config.batch_size] if n >= config.batch_size else order
            x = torch.from_numpy(train.images(idx, card))
            targets = {h: torch.from_numpy(v) for h, v in train.batch_targets(idx).items()}
            with torch.no_grad():
                t_out = outputs_by_head(teacher(x), card) if teacher is not None else None
            s_out = outputs_by_head(student(x), card)
            loss = distillation_loss(s_out, t_out, targets, card, distill or DistillConfig(alpha=1.0))
            if not torch.isfinite(loss):
                log.write("error", step=step + 1, error="non-finite loss", loss=float(loss))
                raise TrainingDiverged(f"loss became {float(loss)} at step {step + 1}; lower the learning rate ({config.lr}) — see {log.path}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            step += 1
            if step % config.grad_every == 0 or step == 1:
                norms = layer_grad_norms(student)
                health = gradient_health(norms, config.n_edge_layers, config.vanishing_ratio)
                log.write("grad_health", step=step, norms=norms, ratio=health["ratio"], first=health["first"], last=health["last"],
                          nonfinite=health["nonfinite"], warnings=health["warnings"])
                if health["nonfinite"]:
                    raise TrainingDiverged(
                        f"non-finite gradient norm at step {step} in {', '.join(health['nonfinite'][:5])}; "
                        f"lower the learning rate ({config.lr}) or check the data — see {log.path}"
                    )
                for w in health["warnings"]:
                    warns.append(f"step {step}: {w}")
                    warn(f"step {step}: {w}")
            opt.step()
            sched.step()
            last_loss = float(loss.detach())
            if step % config.log_every == 0 or step == total:
                log.write("loss", step=step, epoch=epoch, loss=last_loss, lr=sched.get_last_lr()[0], elapsed_s=time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}", epoch=epoch)
            if step % config.checkpoint_every == 0 or step % per_epoch == 0 or step == total:
                save_state()
                if step % per_epoch == 0:
                    log.write("epoch", epoch=epoch, step=step, loss=last_loss)
            if on_step is not None:
                on_step(step)
    except KeyboardInterrupt:
        log.write("interrupted", step=step, resume_from=str(state_path) if state_path.is_file() else None)
        raise
    finally:
        bar.close()
    set_train_mode(student, False)
    seconds = time.perf_counter() - t0
    log.write("done", step=step, loss=last_loss, seconds=seconds, warnings=len(warns))
    return FinetuneResult(model=student, steps=step, final_loss=last_loss, run_dir=run_dir, log_path=log.path,
                          warnings=warns, resumed_from_step=resumed_from, seconds=seconds)
