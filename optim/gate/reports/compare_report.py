"""Renderings of a compare report (the JSON dict of :func:`optim.gate.compare.compare`): the
leaderboard as table cells (shared by the console, Markdown and HTML), Markdown for a pull
request, and the writer of ``compare.json`` / ``compare.md`` / ``compare.html``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPORT_NAMES = {"json": "compare.json", "markdown": "compare.md", "html": "compare.html"}


METRIC_LABEL = {"top1": "top-1", "macro_f1": "macro-F1", "tail_top1": "tail-class top-1", "head_top1": "head-class top-1",
                "tail_macro_f1": "tail-tag macro-F1", "head_macro_f1": "head-tag macro-F1"}
#: multiclass metrics shown in the leaderboard, in this order (top-K for every K the evaluation has)
MULTICLASS_SHOWN = ("top1", "topK", "macro_f1", "tail_top1")
MULTILABEL_SHOWN = ("macro_f1", "tail_macro_f1")
VERDICT_WORD = {"pass": "pass", "fail": "FAIL", "error": "ERROR"}


def metric_label(key: str) -> str:
    m = re.fullmatch(r"top(\d+)", key)
    return f"top-{m.group(1)}" if m else METRIC_LABEL.get(key, key)


def pct_interval(d: dict[str, Any] | None) -> str:
    """``{"value": .912, "ci_low": .88, "ci_high": .94}`` → ``91.2 [88.0, 94.0]`` (percent)."""
    if not d or d.get("value") is None:
        return "—"
    if d.get("ci_low") is None or d.get("ci_high") is None:
        return f"{100 * d['value']:.1f}"
    return f"{100 * d['value']:.1f} [{100 * d['ci_low']:.1f}, {100 * d['ci_high']:.1f}]"


def pts_interval(d: dict[str, Any] | None) -> str:
    """A delta (fraction) in signed percentage points with its interval."""
    if not d or d.get("value") is None:
        return "—"
    v = f"{100 * d['value']:+.1f}".replace("-0.0", "0.0").replace("+0.0", "0.0")
    if d.get("ci_low") is None or d.get("ci_high") is None:
        return v
    return f"{v} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"


def _columns(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(head, metric key, column title) for every metric shown: the rank head's multiclass
    metrics, then every multi-label head's macro-F1 and tail-tag macro-F1, when present."""
    cands = report["candidates"]
    heads: list[tuple[str, str]] = []
    for c in cands:
        for h, v in c["metrics"].items():
            if (h, v.get("kind")) not in heads:
                heads.append((h, v.get("kind")))
    rank_head = report["rank"]["head"]
    heads.sort(key=lambda hk: (hk[0] != rank_head, hk[1] != "multiclass"))
    cols = []
    for h, kind in heads:
        keys = {k for c in cands for k, v in (c["metrics"].get(h) or {}).items() if isinstance(v, dict)
                and v.get("value") is not None}
        wanted = MULTICLASS_SHOWN if kind == "multiclass" else MULTILABEL_SHOWN
        for w in wanted:
            if w == "topK":
                ks = sorted((k for k in keys if re.fullmatch(r"top(\d+)", k) and k != "top1"), key=lambda k: int(k[3:]))
                cols += [(h, k, f"{metric_label(k)} [{h}]" if len(heads) > 1 else metric_label(k)) for k in ks]
            elif w in keys:
                cols.append((h, w, f"{metric_label(w)} [{h}]" if len(heads) > 1 else metric_label(w)))
    return cols


def leaderboard(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Column titles and rows of display strings: name, type, verdict, metrics (percent, 95 %
    interval), Δ of the ranking metric versus the candidate's FP32 reference (points), p50/p95
    per device (ms), size (MB), FP32 reference."""
    cols = _columns(report)
    rank = report["rank"]
    devices = report["devices"]
    titles = ["candidate", "type", "verdict", *[t + " %" for _, _, t in cols],
              f"Δ {metric_label(rank['metric'])} (pts)"]
    for d in devices:
        titles += [f"p50 {d} (ms)", f"p95 {d} (ms)"]
    titles += ["MB", "FP32 reference"]
    rows = []
    for c in report["candidates"]:
        r = [c["name"] + (" ★" if report["recommendation"].get("name") == c["name"] else ""),
             f"{c['format']}-{c['scheme']}" if c["kind"] == "artifact" else "checkpoint",
             VERDICT_WORD.get(c["verdict"], c["verdict"])]
        r += [pct_interval((c["metrics"].get(h) or {}).get(k)) for h, k, _ in cols]
        if c["own_baseline"]:
            r.append("itself")
        else:
            r.append(pts_interval(((c.get("deltas") or {}).get(rank["head"]) or {}).get(rank["metric"])))
        for d in devices:
            lat = c["latency_ms"].get(d)
            if lat:
                r += [_ms(lat.get("p50")), _ms(lat.get("p95"))]
            elif d in c.get("bench_errors", {}):
                r += ["error", "error"]
            else:
                r += ["n/a", "n/a"] if c["kind"] == "checkpoint" else ["—", "—"]
        r.append(f"{c['size_mb']:.2f}")
        ref = c.get("reference") or {}
        r.append("itself" if c["own_baseline"] else (f"{Path(ref['path']).name} ({ref['sha256'][:8]})" if ref.get("path") else "none"))
        rows.append(r)
    return titles, rows


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def pair_rows(report: dict[str, Any]) -> list[list[str]]:
    """Pairs as display strings: a, b, head, top-1 a − b (pts, 95 % CI), McNemar p, images only
    a / only b gets right, significant."""
    out = []
    for p in report["pairs"]:
        if p.get("top1_diff") is None:
            out.append([p["a"], p["b"], p["head"], "—", "—", "—", p.get("note", "")])
            continue
        pv = p["mcnemar_p"]
        out.append([p["a"], p["b"], p["head"], pts_interval(p["top1_diff"]), "—" if pv is None else f"{pv:.3g}",
                    f"{p['a_only']} / {p['b_only']}", "yes" if p.get("significant") else "no"])
    return out


PAIR_TITLES = ["a", "b", "head", "top-1 a − b (pts)", "McNemar p", "only a / only b right", "significant"]


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any]) -> str:
    g = report.get("golden") or {}
    pol = report.get("policy") or {}
    rank = report["rank"]
    titles, rows = leaderboard(report)
    lines = ["## optim compare", "",
             f"Golden set `{g.get('name') or g.get('path')}`" + (f" v{g['version']}" if g.get("version") else "")
             + (f" (sha256 `{g['sha256'][:12]}`, {'verified' if g.get('verified') else '**not verified**'})" if g.get("sha256") else "")
             + f" · policy `{pol.get('path')}`" + (f" (sha256 `{pol['sha256'][:12]}`)" if pol.get("sha256") else "")
             + f" · devices {', '.join(report['devices'])} · ranked on {metric_label(rank['metric'])}"
             + (f" of head `{rank['head']}`" if rank.get("head") else "") + f" vs p95 on {rank['device']}",
             "", f"**{_md_cell(report['recommendation']['text'])}**", "",
             "| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    lines += ["| " + " | ".join(_md_cell(x) for x in r) + " |" for r in rows]
    notes = []
    for c in report["candidates"]:
        for f in c["failed_checks"]:
            notes.append(f"- `{c['name']}` `{f['id']}` ({f['status']}): {_md_cell(f['reason'])}")
        for n in c.get("notes") or []:
            notes.append(f"- `{c['name']}`: {_md_cell(n)}")
    if notes:
        lines += ["", "### Failing checks and notes", "", *notes]
    if report["pairs"]:
        lines += ["", "### Paired differences (same golden images)", "",
                  "| " + " | ".join(PAIR_TITLES) + " |", "|" + "---|" * len(PAIR_TITLES)]
        lines += ["| " + " | ".join(_md_cell(x) for x in r) + " |" for r in pair_rows(report)]
    if report.get("input_errors"):
        lines += ["", "**Input errors:**", *[f"- {_md_cell(e)}" for e in report["input_errors"]]]
    lines += ["", "Units: metrics in percent with 95 % intervals; Δ in percentage points versus each candidate's own FP32 "
              "reference; ms; MB = 10^6 bytes. ★ = recommended. " + " ".join(report.get("notes") or []), ""]
    return "\n".join(lines)
