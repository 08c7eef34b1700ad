"""A self-contained HTML page of a compare report: recommendation, leaderboard, failing
checks, paired differences and the Pareto plot embedded as a base64 PNG (no external files,
scripts or fonts). Every text from the report is HTML-escaped (names and paths are user input)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from optim.files import atomic_write_bytes, atomic_write_json
from optim.gate.reports.compare_plots import pareto_plot
from optim.gate.reports.compare_report import (
    PAIR_TITLES,
    REPORT_NAMES,
    leaderboard,
    metric_label,
    pair_rows,
    render_markdown,
)
from optim.gate.reports.html import CSS


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(titles: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(t)}</th>" for t in titles) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f" class='{_e(row_classes[i])}'" if row_classes else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_e(x)}</td>" for x in r) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(report: dict[str, Any]) -> str:
    g = report.get("golden") or {}
    pol = report.get("policy") or {}
    rank = report["rank"]
    rec = report["recommendation"]
    titles, rows = leaderboard(report)
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>optim compare</title>",
             f"<style>{CSS}</style></head><body>", "<h1>optim compare</h1>",
             "<p class='meta'>"
             f"created {_e(report['created'])} · devices {_e(', '.join(report['devices']))} · "
             f"policy <code>{_e(pol.get('path'))}</code> sha256 <code>{_e((pol.get('sha256') or '—')[:12])}</code> · "
             f"golden set <code>{_e(g.get('name') or g.get('path'))}</code> sha256 <code>{_e((g.get('sha256') or '—')[:12])}</code>"
             f" ({'verified' if g.get('verified') is True else '<b>NOT verified</b>'}) · ranked on "
             f"{_e(metric_label(rank['metric']))} of head <code>{_e(rank.get('head'))}</code> vs p95 on {_e(rank['device'])} · "
             f"exit code {_e(report['exit_code'])}</p>",
             f"<p><span class='verdict {'pass' if rec.get('name') else 'fail'}'>{_e('Recommended: ' + rec['name'] if rec.get('name') else 'No recommendation')}</span></p>",
             f"<p>{_e(rec['text'])}</p>", "<h2>Leaderboard</h2>",
             _table(titles, rows, [f"row-{c['verdict']}" for c in report["candidates"]])]
    fails = [[c["name"], f["id"], f["status"], f["reason"]] for c in report["candidates"] for f in c["failed_checks"]]
    if fails:
        parts += ["<h2>Failing checks</h2>", _table(["candidate", "check", "status", "why"], fails)]
    notes = [[c["name"], n] for c in report["candidates"] for n in c.get("notes") or []]
    if notes:
        parts += ["<h2>Notes</h2>", _table(["candidate", "note"], notes)]
    if report["pairs"]:
        parts += ["<h2>Paired differences (same golden images)</h2>", _table(PAIR_TITLES, pair_rows(report))]
    plots = pareto_plot(report)
    if plots:
        parts.append("<h2>Pareto plot</h2>")
        for title, png in plots:
            parts.append(f"<h3>{_e(title)}</h3><img alt='{_e(title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    else:
        parts.append("<p class='meta'>No Pareto plot: no candidate has both the ranking metric and a p95 latency.</p>")
    missing = [c["name"] for c in report["candidates"] if not (c["latency_ms"].get(rank["device"]) or {}).get("p95")]
    if plots and missing:
        parts.append(f"<p class='meta'>Not in the plot (no p95 on {_e(rank['device'])}): {_e(', '.join(missing))}.</p>")
    if report.get("input_errors"):
        parts.append("<p><b>Input errors:</b></p><ul>" + "".join(f"<li>{_e(x)}</li>" for x in report["input_errors"]) + "</ul>")
    parts.append("<p class='meta'>Units: metrics in percent with 95 % intervals; Δ in percentage points versus each "
                 "candidate's own FP32 reference; ms; MB = 10^6 bytes; ★ = recommended. "
                 + _e(" ".join(report.get("notes") or [])) + "</p></body></html>")
    return "\n".join(parts)


def write_compare_reports(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write compare.json, compare.md and compare.html (self-contained, with the Pareto plot)
    into ``out``, each atomically; returns {kind: path}."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": atomic_write_json(out / REPORT_NAMES["json"], report)}
    paths["markdown"] = atomic_write_bytes(out / REPORT_NAMES["markdown"], render_markdown(report).encode())
    paths["html"] = atomic_write_bytes(out / REPORT_NAMES["html"], render_html(report).encode())
    return paths
