"""Normalising a model's forward output into one logits array per head.

A forward may return a tensor (one head), a tuple/list (heads in model-card order) or a
dict keyed by head name. Everything downstream works with ``dict[head name, N×K]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optim.errors import InputError
from optim.model_card import ModelCard


def outputs_by_head(outputs: Any, card: ModelCard) -> dict[str, Any]:
    """Map a forward's output (tensor | tuple | list | dict) to ``{head name: N×K}``.

    Works for torch tensors and numpy arrays alike. Raises :class:`InputError` when the
    number of outputs, their names or their widths do not match the card's heads.
    """
    names = [h.name for h in card.heads]
    if isinstance(outputs, Mapping):
        missing = [n for n in names if n not in outputs]
        if missing:
            raise InputError(f"model output has keys {sorted(outputs)}; model card heads {missing} are missing")
        by_head = {n: outputs[n] for n in names}
    elif isinstance(outputs, Sequence) and not hasattr(outputs, "shape"):
        if len(outputs) != len(names):
            raise InputError(f"model returns {len(outputs)} outputs; the model card declares {len(names)} heads {names}")
        by_head = dict(zip(names, outputs))
    else:
        if len(names) != 1:
            raise InputError(f"model returns one tensor; the model card declares {len(names)} heads {names}")
        by_head = {names[0]: outputs}
    for head in card.heads:
        shape = tuple(by_head[head.name].shape)
        if len(shape) != 2 or shape[1] != head.num_classes:
            raise InputError(
                f"head {head.name!r} outputs shape {shape}; the model card lists {head.num_classes} labels (expected N×{head.num_classes})"
            )
    return by_head
