"""The evaluation report: JSON (for machines and the gate), Markdown (for people), and
per-sample predictions as Parquet (for audit).

JSON schema (version 1) — the contract with the gate; fields may be added, never renamed::

    {"schema_version": 1, "target": str, "reference": str|null,
     "golden": {"path", "name", "version", "sha256", "verified": bool, ...},
     "n_samples": int,
     "heads": {HEAD: {"kind": "multiclass", "n_used", "metrics": {"top1", "top2", "top5", "top{k}"…, "macro_f1",
                      "ece", "head_top1", "tail_top1"}, "tail_classes", "per_class": [...],
                      "delta": null | {"top1"|"top2"|"top5"|"top{k}"|"head_top1"|"tail_top1"|"macro_f1": {"value", "ci_low", "ci_high"},
                                       "per_class": [...], "agreement", "mcnemar_p", "significant_drops"}},
               HEAD2: {"kind": "multilabel", "n_used", "n_ignored",
                       "metrics": {"macro_f1", "head_macro_f1", "tail_macro_f1", "macro_ap"},
                       "per_tag": [{"label", "support", "precision", "recall", "f1", "ap", "threshold", ...}],
                       "delta": null | {"macro_f1"|"head_macro_f1"|"tail_macro_f1"|"macro_ap": {...},
                                        "per_tag": [{"label", "support", "n_known", "is_tail",
                                                     "f1": {...}, "ap": {...}, "significant"}],
                                        "significant_drops", "agreement"}}},
     "warnings": [...], "settings": {"topk": [2, 5, …], "tail_max_count", ...}, "timings_s": {...}}

Values are fractions; deltas are target − reference; a metric that cannot be computed is null.
``top{k}`` is reported for k = 2, 5 and every k in ``settings.topk`` (k clipped to the head's
number of classes); tail tags/classes are those with fewer than ``settings.tail_max_count``
training images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optim.files import atomic_write_bytes, atomic_write_json
from optim.golden_sets.metrics import sigmoid, softmax

SCHEMA_VERSION = 1
EVAL_JSON = "eval.json"
EVAL_MD = "eval.md"
PREDICTIONS_PARQUET = "predictions.parquet"


@dataclass
class EvalReport:
    """Result of :func:`optim.evaluate`. ``to_dict()`` is the JSON contract; the arrays
    (``ids``, ``logits``, …) back the per-sample Parquet file."""

    target: str
    reference: str | None
    golden: dict[str, Any]
    n_samples: int
    heads: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    card: Any = None
    logits: dict[str, np.ndarray] | None = None
    ref_logits: dict[str, np.ndarray] | None = None
    labels: dict[str, np.ndarray | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "target": self.target, "reference": self.reference, "golden": self.golden,
                "n_samples": self.n_samples, "heads": self.heads, "warnings": list(self.warnings), "settings": self.settings,
                "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()}}

    # ---- Markdown -----------------------------------------------------------------------
    def to_markdown(self) -> str:
        """A Markdown summary: per head a metric table (target, reference, delta [95 % CI] in
        percentage points) and a per-class table."""
        g = self.golden
        lines = [f"# Evaluation of `{self.target}`", "",
                 f"- golden set: **{g['name']}** v{g['version']} ({self.n_samples} samples), sha256 `{g['sha256'][:16]}…`, "
                 f"{'verified' if g['verified'] else '**NOT verified**'}",
                 f"- reference: `{self.reference}`" if self.reference else "- reference: none (no deltas)",
                 f"- intervals: 95 % {self.settings.get('bootstrap', {}).get('method', 'paired bootstrap')}, "
                 f"{self.settings.get('bootstrap', {}).get('resamples')} resamples", ""]
        for name, h in self.heads.items():
            lines += [f"## Head `{name}` ({h['kind']}, {h['n_used']} samples used)", ""]
            lines += ["| metric | target | reference | delta (pp) [95 % CI] |", "|---|---|---|---|"]
            lines += [f"| {m} | {t} | {r} | {d} |" for m, t, r, d in summary_rows(h)]
            lines.append("")
            if h.get("delta") and h["kind"] == "multiclass":
                d = h["delta"]
                lines += [f"Top-1 agreement with the reference: {format_percent(d['agreement'])}; exact McNemar p = {format_number(d['mcnemar_p'])}; "
                          f"significant per-class drops: {', '.join(d['significant_drops']) or 'none'}.", ""]
            if h["kind"] == "multiclass" and h["per_class"]:
                deltas = {r["label"]: r for r in (h.get("delta") or {}).get("per_class", [])}
                lines += ["| class | tail | support | precision | recall | F1 | Δ top-1 (pp) [95 % CI] |", "|---|---|---|---|---|---|---|"]
                for r in h["per_class"]:
                    dr = deltas.get(r["label"])
                    lines.append(f"| {r['label']} | {'yes' if r['is_tail'] else ('no' if r['is_tail'] is not None else '?')} | {r['support']} | "
                                 f"{format_number(r['precision'])} | {format_number(r['recall'])} | {format_number(r['f1'])} | "
                                 f"{format_interval(dr) if dr else '—'}{' **drop**' if dr and dr['significant'] else ''} |")
                lines.append("")
            if h.get("delta") and h["kind"] == "multilabel":
                d = h["delta"]
                lines += [f"Tag-set agreement with the reference: {format_percent(d.get('agreement'))}; "
                          f"tags whose F1 dropped significantly: {', '.join(d.get('significant_drops') or []) or 'none'}.", ""]
            if h["kind"] == "multilabel" and h["per_tag"]:
                deltas = {r["label"]: r for r in (h.get("delta") or {}).get("per_tag", [])}
                lines += ["| tag | tail | positives | known | missing | threshold | precision | recall | F1 | AP "
                          "| Δ F1 (pp) [95 % CI] | Δ AP (pp) [95 % CI] |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
                for r in h["per_tag"]:
                    dr = deltas.get(r["label"])
                    lines.append(f"| {r['label']} | {'yes' if r['is_tail'] else ('no' if r['is_tail'] is not None else '?')} | {r['support']} | "
                                 f"{r['n_known']} | {r['n_missing']} | {r['threshold']:g} | {format_number(r['precision'])} | {format_number(r['recall'])} | "
                                 f"{format_number(r['f1'])} | {format_number(r.get('ap'))} | {format_interval(dr['f1']) if dr else '—'}"
                                 f"{' **drop**' if dr and dr['significant'] else ''} | {format_interval(dr['ap']) if dr else '—'} |")
                lines.append("")
        if self.warnings:
            lines += ["## Warnings", ""] + [f"- {w}" for w in self.warnings] + [""]
        return "\n".join(lines)

    # ---- Parquet ------------------------------------------------------------------------
    def predictions_table(self, k: int = 5):
        """A pyarrow Table, one row per golden sample: ``id``; per multiclass head ``H:label``
        (true label or null), ``H:topk_classes`` / ``H:topk_scores`` (softmax probabilities,
        best first, k = min(5, K)), ``H:correct``, and ``H:reference_top1`` when a reference
        was evaluated; per multi-label head ``H:tags`` (predicted tags) and ``H:scores``
        (sigmoid probability per card tag, card order)."""
        import pyarrow as pa

        cols: dict[str, Any] = {"id": pa.array(self.ids, pa.string())}
        if self.card is None or self.logits is None:
            return pa.table(cols)
        for head in self.card.heads:
            lg = self.logits[head.name]
            y = (self.labels or {}).get(head.name)
            labels = np.array(head.labels, dtype=object)
            if head.kind == "multiclass":
                kk = min(k, len(head.labels))
                prob = softmax(lg)
                part = np.argpartition(-prob, kk - 1, axis=1)[:, :kk] if kk < prob.shape[1] else np.tile(np.arange(kk), (len(prob), 1))
                order = np.take_along_axis(part, np.argsort(-np.take_along_axis(prob, part, 1), axis=1, kind="stable"), 1)
                cols[f"{head.name}:label"] = pa.array([None if y is None or y[i] < 0 else head.labels[y[i]] for i in range(len(lg))], pa.string())
                cols[f"{head.name}:topk_classes"] = pa.array(labels[order].tolist(), pa.list_(pa.string()))
                cols[f"{head.name}:topk_scores"] = pa.array(np.take_along_axis(prob, order, 1).astype(np.float32).tolist(), pa.list_(pa.float32()))
                cols[f"{head.name}:correct"] = pa.array([None if y is None or y[i] < 0 else bool(order[i, 0] == y[i]) for i in range(len(lg))], pa.bool_())
                if self.ref_logits is not None:
                    cols[f"{head.name}:reference_top1"] = pa.array(labels[np.argmax(self.ref_logits[head.name], axis=1)].tolist(), pa.string())
            else:
                prob = sigmoid(lg)
                thr = {r["label"]: r["threshold"] for r in self.heads[head.name].get("per_tag", [])}
                th = np.array([thr.get(t, 0.5) for t in head.labels])
                cols[f"{head.name}:tags"] = pa.array([labels[row >= th].tolist() for row in prob], pa.list_(pa.string()))
                cols[f"{head.name}:scores"] = pa.array(prob.astype(np.float32).tolist(), pa.list_(pa.float32()))
        return pa.table(cols)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``eval.json``, ``eval.md`` and ``predictions.parquet`` into ``out_dir``."""
        import io

        import pyarrow.parquet as pq

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": atomic_write_json(out / EVAL_JSON, self.to_dict()),
                 "markdown": atomic_write_bytes(out / EVAL_MD, self.to_markdown().encode("utf-8"))}
        buf = io.BytesIO()
        pq.write_table(self.predictions_table(), buf)
        paths["predictions"] = atomic_write_bytes(out / PREDICTIONS_PARQUET, buf.getvalue())
        return paths


# ---- formatting helpers -----------------------------------------------------------------------
def format_number(v: float | None, digits: int = 3) -> str:
    """``0.9123`` → ``"0.912"``; None → ``"—"``."""
    return "—" if v is None else f"{v:.{digits}f}"


def format_percent(v: float | None) -> str:
    """A fraction as a percentage: ``0.9123`` → ``"91.2 %"``; None → ``"—"``."""
    return "—" if v is None else f"{100 * v:.1f} %"


def format_interval(d: dict | None) -> str:
    """``{"value": -0.012, "ci_low": -0.02, "ci_high": -0.004}`` → ``-1.2 [-2.0, -0.4]`` (pp)."""
    if not d or d.get("value") is None:
        return "—"
    if d.get("ci_low") is None:
        return f"{100 * d['value']:+.1f} [—]"
    return f"{100 * d['value']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"


def summary_rows(head: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, target, reference, delta) display rows of one head section."""
    met, ref, d = head["metrics"], head.get("reference_metrics") or {}, head.get("delta") or {}
    if head["kind"] == "multiclass":
        ks = sorted(int(n[3:]) for n in met if n.startswith("top") and n[3:].isdigit() and n != "top1")
        names = ["top1", *(f"top{k}" for k in ks), "macro_f1", "head_top1", "tail_top1", "ece"]
        label = {"top1": "top-1", **{f"top{k}": f"top-{k}" for k in ks}, "macro_f1": "macro-F1",
                 "head_top1": "head-class top-1", "tail_top1": "tail-class top-1", "ece": "ECE (15 bins)"}
    else:
        names = ["macro_f1", "head_macro_f1", "tail_macro_f1", "macro_ap"]
        label = {"macro_f1": "macro-F1", "head_macro_f1": "head-tag macro-F1", "tail_macro_f1": "tail-tag macro-F1",
                 "macro_ap": "macro-AP"}
    return [(label[n], format_number(met.get(n)), format_number(ref.get(n)) if ref else "—", format_interval(d.get(n)) if d else "—") for n in names]
