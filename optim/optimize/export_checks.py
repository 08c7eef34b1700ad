"""Checks of an exported artifact against the torch FP32 model: pure computation on arrays.

* FP32 exports must match torch within :data:`FP32_MAX_ABS_TOLERANCE` (1e-4, max-abs over
  all logits) on real inputs — the tolerance the issue sets for a plain export; larger
  differences mean the exporter changed the computation.
* Quantized exports (fp16, int8, int8-dynamic) are reported, not judged here: top-1
  agreement with the FP32 model and the max-abs logit error (the accuracy gate judges them
  on the golden set).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optim.model_card import ModelCard

FP32_MAX_ABS_TOLERANCE = 1e-4


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], card: ModelCard) -> dict[str, dict[str, float]]:
    """Per head: ``top1_agreement`` (multiclass: fraction of rows with the same argmax;
    multilabel: fraction of (row, tag) decisions ``logit > 0`` that agree), ``max_abs_error``
    and ``mean_abs_error`` of the logits. Inputs are ``{head: N×K}`` float arrays."""
    out = {}
    for head in card.heads:
        ref = np.asarray(reference[head.name], dtype=np.float64)
        cand = np.asarray(candidate[head.name], dtype=np.float64)
        if ref.shape != cand.shape:
            raise ValueError(f"head {head.name!r}: reference shape {ref.shape} != candidate shape {cand.shape}")
        if head.kind == "multiclass":
            agree = float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))
        else:
            agree = float(np.mean((ref > 0) == (cand > 0)))
        err = np.abs(ref - cand)
        out[head.name] = {"top1_agreement": agree, "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean())}
    return out


def summarize_check(per_head: dict[str, dict[str, float]], scheme: str, n_inputs: int, inputs_desc: str) -> dict[str, Any]:
    """The ``checks`` record of ``artifact.json``: worst agreement and max-abs error over
    heads, and for ``fp32`` whether max-abs ≤ :data:`FP32_MAX_ABS_TOLERANCE` (``passed``;
    None for other schemes, which are reported, not judged)."""
    agreement = min(v["top1_agreement"] for v in per_head.values())
    max_abs = max(v["max_abs_error"] for v in per_head.values())
    passed = bool(max_abs <= FP32_MAX_ABS_TOLERANCE) if scheme == "fp32" else None
    return {
        "reference": "torch eager FP32",
        "inputs": inputs_desc,
        "n_inputs": n_inputs,
        "top1_agreement": agreement,
        "max_abs_error": max_abs,
        "tolerance": FP32_MAX_ABS_TOLERANCE if scheme == "fp32" else None,
        "passed": passed,
        "heads": per_head,
    }
