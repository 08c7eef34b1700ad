"""Shared cell formatting for the Markdown, HTML and console renderings of checks."""

from __future__ import annotations

import re
from typing import Any

CHECK_NAMES = {
    "size": "size",
    "golden_set": "golden set verifies",
    "evaluation": "evaluation ran",
    "artifact_bytes": "artifact unchanged",
    "top1_drop": "top-1 drop",
    "tail_top1_drop": "tail-class top-1 drop",
    "class_drop": "worst class drop, lower 95 % bound",
    "top1_agreement": "top-1 agreement with FP32",
    "multilabel_macro_f1_drop": "multi-label macro-F1 drop",
    "tag_f1_drop": "worst tag F1 drop, lower 95 % bound",
    "tail_tag_macro_f1_drop": "tail-tag macro-F1 drop",
    "min_tail_tag_macro_f1": "tail-tag macro-F1 floor",
    "multiclass_head": "multiclass budgets",
    "p95": "p95 latency",
}
CMP = {"<=": "≤", ">=": "≥"}
STATUS_MARK = {"pass": "✅ pass", "fail": "❌ FAIL", "error": "⚠️ ERROR", "skipped": "➖ skipped"}


def reference_line(report: dict[str, Any]) -> str:
    """``"FP32 reference: model.pt (sha256 0123456789ab, from lineage)"``: every report names
    the model the accuracy deltas were computed against, or says there was none."""
    ref = report.get("reference") or {}
    if not ref.get("path"):
        return "FP32 reference: none (no accuracy deltas were computed)"
    return (f"FP32 reference: {ref['path']} (sha256 {(ref.get('sha256') or '—')[:12]}, "
            f"from {ref.get('resolved_from', '--reference')})")


def check_label(check_id: str) -> str:
    """``top1_drop[digit]`` → ``top-1 drop [digit]``; ``top5_drop[digit]`` → ``top-5 drop [digit]``."""
    base, _, rest = check_id.partition("[")
    topk = re.fullmatch(r"top([0-9]+)_drop", base)
    name = CHECK_NAMES.get(base) or (f"top-{topk.group(1)} drop" if topk else base)
    return f"{name} [{rest}" if rest else name



def fmt(v: float | None, unit: str = "") -> str:
    """Numbers for tables: 2 decimals (3 for fractions below 1 without unit)."""
    if v is None:
        return "—"
    digits = 3 if unit == "" else 2
    if abs(v) < 0.5 * 10**-digits:
        v = 0.0  # no "-0.00"
    s = f"{v:.{digits}f}"
    return f"{s} {unit}".strip()


def row(check: dict[str, Any]) -> dict[str, str]:
    """Display strings for one check: check, measured, threshold, margin, interval, status."""
    unit = check.get("unit") or ""
    cmp_ = check.get("comparison") or ""
    iv = check.get("interval")
    return {
        "check": check_label(check["id"]),
        "measured": fmt(check.get("measured"), unit),
        "threshold": f"{CMP.get(cmp_, cmp_)} {fmt(check.get('threshold'), unit)}" if check.get("threshold") is not None else "—",
        "margin": (("+" if check["margin"] >= 0 else "") + fmt(check["margin"], unit)) if check.get("margin") is not None else "—",
        "interval": f"[{fmt(iv[0], unit).removesuffix(unit).strip()}, {fmt(iv[1], unit)}]" if iv else "—",
        "status": STATUS_MARK.get(check["status"], check["status"]),
        "reason": check.get("reason") or "",
    }
