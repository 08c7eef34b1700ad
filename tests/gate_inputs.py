"""Hand-made measurement dicts in the exact JSON shapes of EvalReport.to_dict() (issue 4)
and BenchResult.to_dict() (issue 5), for testing the gate's pure verdicts and its reports
without running a model. Numbers are chosen per test; nothing here is a measurement."""

from __future__ import annotations

import copy


def delta(value, half_width=0.01, lo=None, hi=None):
    return {"value": value, "ci_low": value - half_width if lo is None else lo,
            "ci_high": value + half_width if hi is None else hi}


def per_class_row(label, support, value, lo, hi, is_tail=False):
    return {"label": label, "support": support, "value": value, "ci_low": lo, "ci_high": hi,
            "significant": (hi is not None and hi < 0) or (lo is not None and lo > 0), "is_tail": is_tail}


def eval_report(*, top1=-0.005, tail=-0.01, head=-0.003, macro_f1=-0.004, agreement=0.99,
                per_class=None, verified=True, with_delta=True, tail_classes=("8", "9"),
                multilabel=None, target="art", n=1000):
    """An EvalReport dict, one multiclass head 'digit' (10 classes), optional multilabel head 'tags'."""
    if per_class is None:
        per_class = [per_class_row(str(i), 100, -0.01, -0.04, 0.02, str(i) in tail_classes) for i in range(10)]
    rows = [{k: r[k] for k in ("label", "support", "value", "ci_low", "ci_high", "significant")} for r in per_class]
    heads = {"digit": {
        "kind": "multiclass", "n_used": n,
        "metrics": {"top1": 0.9, "top2": 0.95, "top5": 0.99, "macro_f1": 0.88, "ece": 0.03, "head_top1": 0.93,
                    "tail_top1": 0.7 if tail_classes else None},
        "tail_classes": list(tail_classes),
        "per_class": [{"label": r["label"], "support": r["support"], "precision": 0.9, "recall": 0.9, "f1": 0.9,
                       "is_tail": r["label"] in tail_classes} for r in per_class],
        "delta": None if not with_delta else {
            "top1": delta(top1), "head_top1": delta(head),
            "tail_top1": delta(tail, 0.03) if tail is not None else {"value": None, "ci_low": None, "ci_high": None},
            "macro_f1": delta(macro_f1), "per_class": rows, "agreement": agreement, "mcnemar_p": 0.2,
            "significant_drops": [r["label"] for r in rows if r["significant"] and r["value"] < 0]},
    }}
    if multilabel is not None:
        heads["tags"] = {"kind": "multilabel", "n_used": n, "n_ignored": 30, "metrics": {"macro_f1": 0.7},
                         "per_tag": [{"label": "striped", "support": 40, "precision": 0.7, "recall": 0.7, "f1": 0.7, "threshold": 0.5}],
                         "delta": None if not with_delta else {"macro_f1": delta(multilabel), "agreement": 0.97}}
    return {"schema_version": 1, "target": target, "reference": "model.pt" if with_delta else None,
            "golden": {"path": "golden", "name": "mnist-golden", "version": "1", "sha256": "ab" * 32, "verified": verified},
            "n_samples": n, "heads": heads}


def bench_result(p95=10.0, device="host", *, p50=None, unavailable=(), ci=True, warnings=()):
    ref = 10.0 if p95 is None else p95
    p50 = ref * 0.8 if p50 is None else p50
    lat = {"p50": p50, "p90": ref * 0.95, "p95": p95, "p99": ref * 1.1, "mean": p50 * 1.02, "std": ref * 0.05,
           "min": p50 * 0.9, "max": ref * 1.3}
    for k in unavailable:
        lat[k] = None
    return {"schema_version": 1, "artifact": "art", "format": "onnx",
            "device": {"name": device, "kind": "host" if device == "host" else "android", "serial": None},
            "threads": 2, "runs": 100, "warmup": 10, "trials": 3, "latency_ms": lat,
            "p95_ci_ms": [p95 * 0.97, p95 * 1.04] if ci and p95 is not None else None,
            "trials_p95_ms": [p95] * 3 if p95 is not None else [], "trial_spread_pct": 1.5, "peak_memory_mb": 50.0,
            "unavailable": list(unavailable), "percentile_method": "linear", "warnings": list(warnings)}


def copy_of(d):
    return copy.deepcopy(d)
