"""matplotlib figures of a verify report, returned as PNG bytes (Agg backend, no display).

Each function takes the report dict and returns a list of ``(title, png_bytes)``; an empty
list when the report holds nothing to draw (e.g. no deltas because no reference).
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MAX_CLASSES_SHOWN = 40
COLORS = {"fail": "#c62828", "inconclusive": "#ef6c00", "low": "#9e9e9e", "ok": "#1565c0"}
ARTIFACT_COLORS = plt.get_cmap("tab10").colors


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def size_vs_budget(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    arts = report["artifacts"]
    if not arts:
        return []
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(arts)))
    names = [a["name"] for a in arts]
    sizes = [a["size_mb"] for a in arts]
    budgets = [a["budget"].get("size_mb") for a in arts]
    colors = [COLORS["fail"] if b is not None and s > b else COLORS["ok"] for s, b in zip(sizes, budgets)]
    y = range(len(arts))
    ax.barh(y, sizes, color=colors, height=0.6)
    for i, (s, b) in enumerate(zip(sizes, budgets)):
        label = f" {s:.2f} MB" + (f" (budget {b:g})" if b is not None else " (no budget)")
        ax.text(max(s, b or 0), i, label, va="center", fontsize=8)
        if b is not None:
            ax.plot([b, b], [i - 0.4, i + 0.4], color="black", lw=2)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("size (MB = 10^6 bytes, all files of the artifact)")
    ax.set_xlim(0, max([*sizes, *[b for b in budgets if b is not None]]) * 1.45)
    ax.set_title("Artifact size vs budget (black tick = budget; red = over budget)")
    ax.grid(axis="x", alpha=0.3)
    return [("Size vs budget", _png(fig))]


def latency(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Per device: for each artifact the latency distribution as the benchmark summarised it
    (min–max whisker, p50–p95 box, p99 tick, bootstrap interval of p95) and the p95 budget."""
    out = []
    for d in report["devices"]:
        rows = [(a["name"], a["bench"].get(d), a["budget"].get("p95_ms", {}).get(d)) for a in report["artifacts"]]
        rows = [r for r in rows if r[1] and (r[1].get("latency_ms") or {}).get("p50") is not None]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.7 + 0.55 * len(rows)))
        hi = 0.0
        for i, (name, b, budget) in enumerate(rows):
            lat = b["latency_ms"]
            lo_, hi_ = lat.get("min"), lat.get("max")
            if lo_ is not None and hi_ is not None:
                ax.plot([lo_, hi_], [i, i], color="#607d8b", lw=1)
            p50, p95, p99 = lat.get("p50"), lat.get("p95"), lat.get("p99")
            if p95 is not None:
                ax.add_patch(plt.Rectangle((p50, i - 0.22), p95 - p50, 0.44, color=ARTIFACT_COLORS[i % 10], alpha=0.55))
            ax.plot([p50, p50], [i - 0.22, i + 0.22], color="black", lw=1.5)
            if p99 is not None:
                ax.plot([p99, p99], [i - 0.15, i + 0.15], color="black", lw=1, ls=":")
            ci = b.get("p95_ci_ms")
            if ci:
                ax.errorbar([p95], [i + 0.32], xerr=[[p95 - ci[0]], [ci[1] - p95]], fmt="none", ecolor="black", capsize=3, lw=1)
            if budget is not None:
                over = p95 is not None and p95 > budget
                ax.plot([budget, budget], [i - 0.45, i + 0.45], color=COLORS["fail"] if over else "black", lw=2)
            hi = max(hi, *(v for v in (hi_, p99, p95, budget) if v is not None))
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.invert_yaxis()
        lows = [v for _, b, _ in rows for v in (b["latency_ms"].get("min"), b["latency_ms"].get("p50")) if v]
        if lows and hi / min(lows) > 30:  # budget or tail far above the typical latency: log scale keeps both readable
            ax.set_xscale("log")
            ax.set_xlim(min(lows) / 1.5, hi * 1.5)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("latency per inference (ms, log scale)")
        else:
            ax.set_xlim(0, hi * 1.1)
        if ax.get_xscale() != "log":
            ax.set_xlabel("latency per inference (ms)")
        ax.set_title(f"Latency per artifact on {d}")
        ax.legend(handles=[plt.Line2D([], [], color="#607d8b", lw=1, label="min–max"),
                           plt.Rectangle((0, 0), 1, 1, color="#90a4ae", label="p50 (black) – p95 box"),
                           plt.Line2D([], [], color="black", ls=":", lw=1, label="p99"),
                           plt.Line2D([], [], color="black", marker="|", lw=1, label="95 % CI of p95"),
                           plt.Line2D([], [], color="black", lw=2.5, label="p95 budget (red: over)")],
                  fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35 - 0.1 / len(rows)), ncol=5, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        out.append((f"Latency distribution on {d}", _png(fig)))
    return out


def _multiclass(report):
    """{head: [(artifact entry, head dict)]} for heads with deltas."""
    heads: dict[str, list] = {}
    for a in report["artifacts"]:
        for hname, h in ((a.get("eval") or {}).get("heads") or {}).items():
            if h.get("kind") == "multiclass" and h.get("delta"):
                heads.setdefault(hname, []).append((a, h))
    return heads


def head_vs_tail(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    out = []
    for hname, items in _multiclass(report).items():
        metrics = [("top1", "overall"), ("head_top1", "head classes"), ("tail_top1", "tail classes")]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        width = 0.8 / len(items)
        for j, (a, h) in enumerate(items):
            xs, ys, errs = [], [], [[], []]
            for i, (m, _) in enumerate(metrics):
                d = h["delta"].get(m) or {}
                if d.get("value") is None:
                    continue
                v = 100 * d["value"]
                xs.append(i + (j - (len(items) - 1) / 2) * width)
                ys.append(v)
                errs[0].append(v - 100 * d["ci_low"] if d.get("ci_low") is not None else 0)
                errs[1].append(100 * d["ci_high"] - v if d.get("ci_high") is not None else 0)
            ax.bar(xs, ys, width=width * 0.9, color=ARTIFACT_COLORS[j % 10], label=a["name"], yerr=errs, capsize=3)
            for x, y, up in zip(xs, ys, errs[1]):  # value above the upper whisker
                ax.annotate(f"{y:+.1f}".replace("-0.0", "0.0").replace("+0.0", "0.0"), (x, y + up),
                            xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)
        b = items[0][0]["budget"]
        for key, label, ls in (("max_top1_drop_pts", "overall budget", "--"), ("max_tail_top1_drop_pts", "tail budget", ":")):
            if b.get(key) is not None:
                ax.axhline(-b[key], color="black", ls=ls, lw=1, label=f"{label} (−{b[key]:g} pts)")
        ax.axhline(0, color="black", lw=0.6)
        lo_, hi_ = ax.get_ylim()
        ax.set_ylim(lo_, hi_ + 0.12 * (hi_ - lo_))  # room for the value labels
        tail = items[0][1].get("tail_classes") or []
        ax.set_xticks(range(3), ["overall", "head classes", f"tail classes ({len(tail)})"])
        ax.set_ylabel("Δ top-1 vs FP32 (points; negative = worse)")
        ax.set_title(f"Head vs tail classes, head '{hname}' (bars: 95 % paired-bootstrap CI)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(axis="y", alpha=0.3)
        out.append((f"Head vs tail classes [{hname}]", _png(fig)))
    return out


def per_class_delta(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Per-class Δ top-1 (recall) with 95 % intervals, one panel per artifact; when there are
    more than MAX_CLASSES_SHOWN classes, the ones with the lowest upper interval end."""
    out = []
    for hname, items in _multiclass(report).items():
        fig, axes = plt.subplots(len(items), 1, figsize=(9, 2.9 * len(items)), squeeze=False, sharey=True)
        for ax, (a, h) in zip(axes[:, 0], items):
            rows = [r for r in h["delta"].get("per_class") or [] if r.get("value") is not None]
            check = next((c for c in a["checks"] if c["id"] == f"class_drop[{hname}]"), None)
            det = (check or {}).get("details") or {}
            failing = {x["label"] for x in det.get("failing", [])}
            inconcl = {x["label"] for x in det.get("inconclusive", [])}
            min_support = a["budget"].get("min_class_support") or 0
            tail = set(map(str, h.get("tail_classes") or []))
            shown = rows
            if len(rows) > MAX_CLASSES_SHOWN:
                shown = sorted(rows, key=lambda r: r.get("ci_high") if r.get("ci_high") is not None else r["value"])[:MAX_CLASSES_SHOWN]
            for i, r in enumerate(shown):
                lab = str(r["label"])
                kind = ("fail" if lab in failing else "inconclusive" if lab in inconcl
                        else "low" if (r.get("support") or 0) < min_support else "ok")
                v = 100 * r["value"]
                lo = 100 * r["ci_low"] if r.get("ci_low") is not None else v
                hi = 100 * r["ci_high"] if r.get("ci_high") is not None else v
                ax.errorbar([i], [v], yerr=[[v - lo], [hi - v]], fmt="o", color=COLORS[kind], capsize=3,
                            mfc="white" if kind == "low" else COLORS[kind], ms=5)
            ax.axhline(0, color="black", lw=0.6)
            thr = a["budget"].get("max_class_drop_pts")
            if thr is not None:
                ax.axhline(-thr, color=COLORS["fail"], ls="--", lw=1)
            labels = [f"{r['label']}{'*' if str(r['label']) in tail else ''}\nn={r.get('support')}" for r in shown]
            ax.set_xticks(range(len(shown)), labels, fontsize=7, rotation=0 if len(shown) <= 15 else 90)
            ax.set_ylabel("Δ recall (pts)")
            extra = f", {len(shown)} of {len(rows)} classes with the lowest upper CI end" if len(shown) < len(rows) else ""
            ax.set_title(f"{a['name']}: per-class Δ top-1 vs FP32 with 95 % CI{extra}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        handles = [plt.Line2D([], [], marker="o", ls="", color=COLORS[k], mfc="white" if k == "low" else COLORS[k], label=l)
                   for k, l in (("ok", "within budget"), ("fail", "significant drop beyond budget (fails)"),
                                ("inconclusive", "beyond budget, not significant"), ("low", "low support (cannot fail alone)"))]
        handles.append(plt.Line2D([], [], color=COLORS["fail"], ls="--", label="−max_class_drop budget"))
        fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, bbox_to_anchor=(0.5, -0.02 - 0.04 / len(items)))
        fig.suptitle(f"Per-class deltas, head '{hname}' (* = tail class)", fontsize=10)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        out.append((f"Per-class deltas [{hname}]", _png(fig)))
    return out


def multilabel_macro_f1(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Per multi-label head: Δ macro-F1 vs FP32 (points, 95 % CI) per artifact, with the budget."""
    heads: dict[str, list] = {}
    for a in report["artifacts"]:
        for hname, h in ((a.get("eval") or {}).get("heads") or {}).items():
            d = (h.get("delta") or {}).get("macro_f1") or {}
            if h.get("kind") == "multilabel" and d.get("value") is not None:
                heads.setdefault(hname, []).append((a, d))
    out = []
    for hname, items in heads.items():
        fig, ax = plt.subplots(figsize=(7, 0.9 + 0.5 * len(items)))
        for i, (a, d) in enumerate(items):
            v = 100 * d["value"]
            lo = 100 * d["ci_low"] if d.get("ci_low") is not None else v
            hi = 100 * d["ci_high"] if d.get("ci_high") is not None else v
            ax.errorbar([v], [i], xerr=[[v - lo], [hi - v]], fmt="o", color=ARTIFACT_COLORS[i % 10], capsize=4)
            thr = a["budget"].get("max_multilabel_macro_f1_drop_pts")
            if thr is not None:
                ax.plot([-thr, -thr], [i - 0.4, i + 0.4], color=COLORS["fail"], ls="--", lw=1.5)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_yticks(range(len(items)), [a["name"] for a, _ in items])
        ax.set_ylim(len(items) - 0.4, -0.6)
        ax.set_xlabel("Δ macro-F1 vs FP32 (points; negative = worse; dashed = −budget)")
        ax.set_title(f"Multi-label head '{hname}': macro-F1 change with 95 % CI (missing labels ignored)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        out.append((f"Multi-label macro-F1 [{hname}]", _png(fig)))
    return out


def all_plots(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [*per_class_delta(report), *head_vs_tail(report), *multilabel_macro_f1(report), *latency(report),
            *size_vs_budget(report)]
