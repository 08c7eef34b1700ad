"""Checks of an exported artifact against the torch FP32 model: pure computation on arrays.

* FP32 exports must match torch within :data:`FP32_MAX_ABS_TOLERANCE` (1e-4, max-abs over
  all logits) on real inputs — the tolerance the issue sets for a plain export; larger
  differences mean the exporter changed the computation.
* Quantized exports (every scheme but fp32) report top-1 agreement with the FP32 model and
  the max-abs logit error (the accuracy gate judges them on the golden set), and one thing is
  judged here: a **collapse**. Quantization broke the model when its top-1 agreement with FP32
  on the check images is below :data:`COLLAPSE_MIN_TOP1_AGREEMENT` (0.90) *and* the upper end
  of the 95 % Wilson score interval of that agreement is below it too (``scipy.stats.binomtest
  (...).proportion_ci(method="wilson")``): on 300 calibration images 0.42 is a collapse; 7 of 8
  is not evidence of one. A collapsed artifact fails the check (``passed`` False).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optim.model_card import ModelCard

FP32_MAX_ABS_TOLERANCE = 1e-4
#: a quantized artifact whose top-1 agreement with FP32 is (significantly) below this has collapsed
COLLAPSE_MIN_TOP1_AGREEMENT = 0.90
#: confidence level of the Wilson interval that decides "significantly"
COLLAPSE_CONFIDENCE = 0.95
COLLAPSE_HINT = "keep the sensitive layers in float (--float-layers) or search a mixed-precision recipe (`optim tune`)"


def collapse_verdict(agreement: float, n: int, threshold: float = COLLAPSE_MIN_TOP1_AGREEMENT,
                     confidence: float = COLLAPSE_CONFIDENCE) -> dict[str, Any]:
    """Did quantization break the model? ``agreement``: top-1 agreement with FP32 (fraction) on
    ``n`` decisions (images; image × tag for multi-label heads).

    Returns ``{"collapsed", "threshold", "confidence", "upper_bound", "n"}``; ``collapsed`` is
    True iff ``agreement < threshold`` and the upper end of the two-sided ``confidence`` Wilson
    score interval (E. B. Wilson, 1927) of ``agreement`` on ``n`` is below ``threshold``.
    """
    from scipy.stats import binomtest

    if n < 1:
        return {"collapsed": False, "threshold": threshold, "confidence": confidence, "upper_bound": None, "n": n}
    k = int(round(agreement * n))
    upper = float(binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson").high)
    return {"collapsed": bool(agreement < threshold and upper < threshold), "threshold": threshold,
            "confidence": confidence, "upper_bound": round(upper, 4), "n": n}


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], card: ModelCard) -> dict[str, dict[str, float]]:
    """Per head: ``top1_agreement`` (multiclass: fraction of rows with the same argmax;
    multilabel: fraction of (row, tag) decisions ``logit > 0`` that agree), ``max_abs_error``
    and ``mean_abs_error`` of the logits, and ``max_abs_reference`` (the largest |FP32 logit|,
    to read the error against: random-weight models can have logits near 1e-9, where every
    error is tiny and argmax agreement is noise). Inputs are ``{head: N×K}`` float arrays."""
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
        out[head.name] = {"top1_agreement": agree, "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
                          "max_abs_reference": float(np.abs(ref).max()),
                          "n_decisions": int(ref.shape[0] if head.kind == "multiclass" else ref.size)}
    return out


def summarize_check(per_head: dict[str, dict[str, float]], scheme: str, n_inputs: int, inputs_desc: str) -> dict[str, Any]:
    """The ``checks`` record of ``artifact.json``: worst agreement and max-abs error over
    heads; for ``fp32`` whether max-abs ≤ :data:`FP32_MAX_ABS_TOLERANCE` (``passed``); for
    every other scheme the collapse verdict of the worst head (:func:`collapse_verdict`:
    ``collapse``, and ``collapsed`` True → ``passed`` False and a ``message``; otherwise
    ``passed`` None: reported, not judged)."""
    agreement = min(v["top1_agreement"] for v in per_head.values())
    max_abs = max(v["max_abs_error"] for v in per_head.values())
    passed = bool(max_abs <= FP32_MAX_ABS_TOLERANCE) if scheme == "fp32" else None
    extra: dict[str, Any] = {}
    if scheme != "fp32":
        worst = min(per_head, key=lambda h: per_head[h]["top1_agreement"])
        verdict = collapse_verdict(per_head[worst]["top1_agreement"], per_head[worst].get("n_decisions", n_inputs))
        extra = {"collapsed": verdict["collapsed"], "collapse": {**verdict, "head": worst}}
        if verdict["collapsed"]:
            passed = False
            extra["message"] = (f"collapsed: top-1 agreement {agreement:.2f} with FP32 on {inputs_desc} "
                                f"(head {worst}: below {verdict['threshold']:.2f}, {verdict['confidence']:.0%} upper bound "
                                f"{verdict['upper_bound']:.2f}); {COLLAPSE_HINT}")
    return {
        "reference": "torch eager FP32",
        "inputs": inputs_desc,
        "n_inputs": n_inputs,
        "top1_agreement": agreement,
        "max_abs_error": max_abs,
        "max_abs_reference": max(v["max_abs_reference"] for v in per_head.values()),
        "tolerance": FP32_MAX_ABS_TOLERANCE if scheme == "fp32" else None,
        "passed": passed,
        **extra,
        "heads": per_head,
    }
