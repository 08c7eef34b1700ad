"""The Pareto plot of a compare report: the ranking metric (percent, 95 % interval as an
error bar) against p95 latency (ms) on the ranking device; marker area proportional to size
(MB), colour = verdict, the Pareto front drawn as a step line. PNG bytes (Agg backend)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VERDICT_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "error": "#ef6c00"}


def pareto_plot(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    """``[(title, png)]``, or ``[]`` when fewer than one candidate has both the metric and a p95."""
    import io

    from optim.gate.reports.compare_report import metric_label

    rank = report["rank"]
    pts = []
    for c in report["candidates"]:
        m = ((c["metrics"].get(rank["head"]) or {}).get(rank["metric"]) or {}) if rank.get("head") else {}
        p95 = (c["latency_ms"].get(rank["device"]) or {}).get("p95")
        if m.get("value") is None or p95 is None:
            continue
        pts.append((c, 100 * m["value"], m.get("ci_low"), m.get("ci_high"), p95))
    if not pts:
        return []
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sizes = [c["size_mb"] for c, *_ in pts]
    smax = max(sizes) or 1.0
    for c, y, lo, hi, x in pts:
        area = 60 + 900 * c["size_mb"] / smax
        color = VERDICT_COLORS.get(c["verdict"], "#757575")
        if lo is not None and hi is not None:
            ax.errorbar([x], [y], yerr=[[y - 100 * lo], [100 * hi - y]], fmt="none", ecolor="#555", capsize=3, lw=1, zorder=1)
        ax.scatter([x], [y], s=area, color=color, alpha=0.55, edgecolors="black" if c.get("pareto_optimal") else color,
                   linewidths=1.8 if c.get("pareto_optimal") else 0.5, zorder=2)
        star = " ★" if report["recommendation"].get("name") == c["name"] else ""
        ax.annotate(f"{c['name']}{star}\n{c['size_mb']:.1f} MB", (x, y), xytext=(8, 6), textcoords="offset points", fontsize=7)
    front = sorted(((x, y) for c, y, _, _, x in pts if c.get("pareto_optimal")))
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", lw=1, ls="--", zorder=0)
    ax.set_xlabel(f"p95 latency on {rank['device']} (ms; lower is better)")
    ax.set_ylabel(f"{metric_label(rank['metric'])} [{rank['head']}] (%; 95 % CI)")
    ax.set_title("Accuracy vs latency (marker area ∝ size; black edge = Pareto-optimal; ★ = recommended)", fontsize=9)
    ax.margins(x=0.25, y=0.2)
    ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=col, alpha=0.6, label=v) for v, col in VERDICT_COLORS.items()]
    handles.append(plt.Line2D([], [], color="black", ls="--", lw=1, label="Pareto front"))
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [(f"{metric_label(rank['metric'])} vs p95 on {rank['device']}", buf.getvalue())]
