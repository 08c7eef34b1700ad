"""Structured (channel) pruning with Torch-Pruning's dependency graph.

Torch-Pruning (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023) groups
every layer whose channels are coupled (a conv, its batch-norm, the next conv's inputs, the
residual additions, depthwise convolutions whose groups follow their input) and removes whole
channel groups, so the pruned model is a smaller dense model that every runtime speeds up.
NNCF 3.x keeps only unstructured magnitude pruning, which shrinks nothing on a phone.

* Importance: ``"l1"`` / ``"l2"`` group magnitude (Li et al., 2017), ``"taylor"`` first-order
  Taylor expansion of the loss (Molchanov et al., CVPR 2019; needs a few batches of images).
* Classifier heads are never pruned: the last Linear/Conv layer(s) that produce each head's
  logits are found by walking the autograd graph back from each output
  (:func:`find_head_layers`) and passed to Torch-Pruning as ``ignored_layers``.
* Depthwise and grouped convolutions (MobileNet, EfficientNet) are handled by the dependency
  graph: their in/out channels and ``groups`` shrink together.
* The pruned model is saved as a pruned checkpoint (see :mod:`optim.optimize.channel_spec`)
  that :func:`optim.load_checkpoint` reloads without unpickling code.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from optim.errors import InputError, ToolError
from optim.model_card import ModelCard, card_path_for
from optim.model_stats import ModelStats, model_stats

Importance = Literal["l1", "l2", "taylor"]
IMPORTANCES = ("l1", "l2", "taylor")


@dataclass
class PruneResult:
    """What :func:`prune` returns.

    Attributes:
        model: the pruned ``nn.Module`` (a copy; the input model is untouched), eval mode.
        before / after: parameters, FP32 bytes and MACs at the card's input shape.
        channel_ratio: fraction of prunable channels removed per layer (Torch-Pruning's
            ``pruning_ratio``) at the end.
        importance: the criterion used.
        ignored_layers: module names of the head layers that were kept whole.
        steps: pruning steps taken (1 for ``ratio``; more when aiming at a MACs/size target).
    """

    model: Any
    before: ModelStats
    after: ModelStats
    channel_ratio: float
    importance: str
    ignored_layers: list[str]
    steps: int
    target: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def stats(s: ModelStats) -> dict[str, Any]:
            return {"parameters": s.parameters, "fp32_mb": round(s.fp32_mb, 4), "macs": s.macs}

        return {
            "before": stats(self.before),
            "after": stats(self.after),
            "parameters_ratio": self.after.parameters / self.before.parameters,
            "macs_ratio": (self.after.macs / self.before.macs) if self.before.macs and self.after.macs else None,
            "channel_ratio": self.channel_ratio,
            "importance": self.importance,
            "ignored_layers": self.ignored_layers,
            "steps": self.steps,
            "target": self.target,
            "input_shape": list(self.before.input_shape),
        }


# ---- head layers --------------------------------------------------------------------------
def find_head_layers(model, card: ModelCard, example_input) -> list[str]:
    """Names of the Linear/Conv modules whose outputs become the heads' logits.

    Walks the autograd graph backwards from each head output (``optim.heads.outputs_by_head``)
    and stops at the first node fed by a Linear or Conv weight: those modules are the final
    layer(s) of the head (a head that sums two projections gives both). Works for tensor,
    tuple and dict outputs, whatever the modules are called.

    Raises:
        InputError: a head with no Linear/Conv layer behind it.
    """
    import torch

    from optim.heads import outputs_by_head

    by_param: dict[int, str] = {}
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)):
            for p in m.parameters(recurse=False):
                by_param[id(p)] = name
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        x = example_input.detach().clone().requires_grad_(False)
        outputs = outputs_by_head(model(x), card)
    model.train(was_training)
    found: list[str] = []
    for head, out in outputs.items():
        names: set[str] = set()
        seen: set[int] = set()
        frontier = [out.grad_fn] if out.grad_fn is not None else []
        while frontier:
            node = frontier.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            nexts = [n for n, _ in node.next_functions if n is not None]
            hits = [h for h in (_param_module(n, by_param) for n in nexts) if h is not None]
            if hits:
                names.update(hits)
                continue
            frontier.extend(nexts)
        if not names:
            raise InputError(f"head {head!r}: no Linear or Conv layer produces its logits; cannot protect it from pruning")
        found.extend(sorted(n for n in names if n not in found))
    return found


_WEIGHT_VIEWS = ("TBackward0", "TransposeBackward0", "PermuteBackward0", "ViewBackward0", "ReshapeAliasBackward0", "ExpandBackward0")


def _param_module(node, by_param: dict[int, str]) -> str | None:
    """The Linear/Conv module whose parameter feeds ``node`` directly or through a transpose/view."""
    for _ in range(3):
        if hasattr(node, "variable"):
            return by_param.get(id(node.variable))
        if type(node).__name__ not in _WEIGHT_VIEWS or len(node.next_functions) != 1:
            return None
        node = node.next_functions[0][0]
        if node is None:
            return None
    return None


# ---- pruning ------------------------------------------------------------------------------
def _importance(kind: str):
    import torch_pruning as tp

    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance()
    raise InputError(f"importance {kind!r}: choose one of {', '.join(IMPORTANCES)}")


def _taylor_gradients(model, card: ModelCard, teacher, batches: list) -> None:
    """Accumulate gradients of a self-distillation loss for Taylor importance.

    The loss is the distillation loss with the unpruned teacher's hard predictions as labels
    (multiclass: CE against the teacher's argmax; multilabel: BCE against its sigmoid), so
    Taylor importance needs images only, no labels.
    """
    import torch
    import torch.nn.functional as F

    from optim.heads import outputs_by_head

    model.zero_grad(set_to_none=True)
    model.eval()  # BN statistics stay fixed; gradients still flow
    for x in batches:
        with torch.no_grad():
            t_out = outputs_by_head(teacher(x), card)
        s_out = outputs_by_head(model(x), card)
        loss = 0.0
        for head in card.heads:
            if head.kind == "multiclass":
                loss = loss + F.cross_entropy(s_out[head.name], t_out[head.name].argmax(1))
            else:
                loss = loss + F.binary_cross_entropy_with_logits(s_out[head.name], torch.sigmoid(t_out[head.name]))
        loss.backward()


def prune(
    model,
    card: ModelCard,
    *,
    ratio: float | None = None,
    target_macs: float | None = None,
    target_size_mb: float | None = None,
    importance: Importance = "l1",
    example_input=None,
    taylor_batches: Iterable | None = None,
    round_to: int | None = None,
    max_ratio: float = 0.9,
    max_steps: int = 40,
) -> PruneResult:
    """Remove whole channels from ``model`` (a copy) and return the smaller model.

    Give exactly one of:
        ratio: fraction of channels removed in every prunable layer, 0 < ratio < 1
            (Torch-Pruning's ``pruning_ratio``; parameters fall roughly by 1 − (1 − ratio)²).
        target_macs: prune step by step until MACs at the card's input shape ≤ this number.
        target_size_mb: prune step by step until the FP32 size (parameters and buffers × 4
            bytes) ≤ this many MB (10^6 bytes).

    Args:
        model: eval-mode ``nn.Module`` (not modified).
        card: its model card (heads are protected; ``card.input.shape`` for MACs).
        importance: ``"l1"``, ``"l2"`` (group magnitude) or ``"taylor"`` (needs
            ``taylor_batches``: float32 N×C×H×W tensors, preprocessed like the card says).
        example_input: float32 N×C×H×W tensor to trace the dependency graph (default zeros of
            the card's input shape).
        round_to: keep channel counts multiples of this (e.g. 8 for SIMD-friendly widths).
        max_ratio / max_steps: ceiling and resolution of the step-wise search for a target.

    Raises:
        InputError: not exactly one target, a target out of range or already met, an unknown
            importance, Taylor without batches, or a target that cannot be reached at
            ``max_ratio``.
        ToolError: Torch-Pruning failed on this architecture.
    """
    import torch
    import torch_pruning as tp

    given = {k: v for k, v in {"ratio": ratio, "target_macs": target_macs, "target_size_mb": target_size_mb}.items() if v is not None}
    if len(given) != 1:
        raise InputError(f"give exactly one of ratio, target_macs, target_size_mb (got {sorted(given) or 'none'})")
    if ratio is not None and not 0.0 < ratio < 1.0:
        raise InputError(f"ratio {ratio}: must be between 0 and 1 (fraction of channels removed)")
    if importance not in IMPORTANCES:
        raise InputError(f"importance {importance!r}: choose one of {', '.join(IMPORTANCES)}")
    batches = [b for b in (taylor_batches or [])]
    if importance == "taylor" and not batches:
        raise InputError("importance 'taylor' needs a few batches of training images (taylor_batches / --train)")
    input_shape = tuple(card.input.shape)
    if example_input is None:
        example_input = torch.zeros(input_shape)
    teacher = model
    teacher.eval()
    student = copy.deepcopy(model).eval()
    before = model_stats(student, input_shape)

    if target_macs is not None:
        if before.macs is None:
            raise InputError("target_macs: MACs of this model cannot be counted; use ratio or target_size_mb")
        if not 0 < target_macs < before.macs:
            raise InputError(f"target_macs {target_macs:.4g}: must be below the current {before.macs:.4g} MACs at input {list(input_shape)}")
    if target_size_mb is not None and not 0 < target_size_mb < before.fp32_mb:
        raise InputError(f"target_size_mb {target_size_mb}: must be below the current FP32 size {before.fp32_mb:.3f} MB")

    ignored_names = find_head_layers(student, card, example_input)
    modules = dict(student.named_modules())
    stepwise = ratio is None
    try:
        pruner = tp.pruner.BasePruner(
            student,
            example_input,
            importance=_importance(importance),
            pruning_ratio=ratio if ratio is not None else max_ratio,
            iterative_steps=max_steps if stepwise else 1,
            ignored_layers=[modules[n] for n in ignored_names],
            round_to=round_to,
        )
    except Exception as e:  # dependency-graph tracing failed for this architecture
        raise ToolError(f"Torch-Pruning could not trace this model ({type(e).__name__}: {e})") from e

    def met(stats: ModelStats) -> bool:
        if target_macs is not None:
            return stats.macs is not None and stats.macs <= target_macs
        return stats.fp32_mb <= target_size_mb  # type: ignore[operator]

    steps = 0
    after = before
    for _ in range(max_steps if stepwise else 1):
        if importance == "taylor":
            _taylor_gradients(student, card, teacher, batches)
        try:
            pruner.step()
        except Exception as e:
            raise ToolError(f"Torch-Pruning failed at step {steps + 1} ({type(e).__name__}: {e})") from e
        steps += 1
        if stepwise:
            after = model_stats(student, input_shape)
            if met(after):
                break
    student.zero_grad(set_to_none=True)
    after = model_stats(student, input_shape)
    if stepwise and not met(after):
        what = f"{target_macs:.4g} MACs" if target_macs is not None else f"{target_size_mb} MB"
        raise InputError(
            f"cannot reach {what} by channel pruning up to ratio {max_ratio} "
            f"(reached {after.macs} MACs, {after.fp32_mb:.3f} MB); raise the target or use --ratio"
        )
    reached = ratio if ratio is not None else max_ratio * steps / max_steps
    target = {k: float(v) for k, v in given.items()}
    return PruneResult(
        model=student.eval(), before=before, after=after, channel_ratio=float(reached),
        importance=importance, ignored_layers=ignored_names, steps=steps, target=target,
    )


# ---- saving -------------------------------------------------------------------------------
def architecture_ref(card: ModelCard) -> str:
    """The card's architecture with its kwargs merged: ``torchvision:resnet18(num_classes=10)``.

    Raises:
        InputError: the card has no architecture (pruned checkpoints need one to rebuild).
    """
    from optim.checkpoint import parse_arch_ref

    if not card.architecture:
        raise InputError(
            "the model card has no `architecture`; a pruned checkpoint is rebuilt from it. "
            "Load the model from a state_dict with --arch (or set architecture in the card)"
        )
    module, factory, kw = parse_arch_ref(card.architecture)
    merged = {**card.architecture_kwargs, **kw}
    return f"{module}:{factory}(" + ", ".join(f"{k}={v!r}" for k, v in merged.items()) + ")"


def save_pruned(model, card: ModelCard, path: str | Path, *, lineage: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a pruned checkpoint (state_dict + channel spec, see
    :mod:`optim.optimize.channel_spec`) and its card beside it (``<path>.optim.toml``), both
    atomically. ``extra`` (JSON-like: str/int/float/list/dict) is stored under ``"optim_info"``.

    ``lineage`` names the parent checkpoint and the FP32 reference (build it with
    :func:`optim.checkpoint.make_lineage`; shape in :class:`optim.checkpoint.Lineage`); it is
    required so that the gate always compares a pruned model with its FP32 original.

    Returns the checkpoint path. Reload with :func:`optim.load_checkpoint`.

    Raises:
        InputError: a malformed lineage, or a card without ``architecture``.
    """
    import torch

    from optim.checkpoint import validate_lineage
    from optim.files import atomic_write_bytes
    from optim.channel_spec import FORMAT_KEY, FORMAT_VERSION, channel_spec

    path = Path(path)
    payload = {
        FORMAT_KEY: FORMAT_VERSION,
        "architecture": architecture_ref(card),
        "state_dict": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
        "channel_spec": channel_spec(model),
        "lineage": validate_lineage(lineage, f"lineage for {path}"),
        "optim_info": extra or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    import tomli_w

    atomic_write_bytes(card_path_for(path), tomli_w.dumps(card.to_dict()).encode("utf-8"))
    return path
