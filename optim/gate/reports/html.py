"""A self-contained HTML page of a verify report: verdict, check tables, plots embedded as
base64 PNG (no external files, scripts or fonts; it opens offline and as a CI artifact)."""

from __future__ import annotations

import base64
import html
from typing import Any

from optim.gate.reports.format import fmt, row

STATUS_WORD = {"pass": "pass", "fail": "FAIL", "error": "ERROR", "skipped": "skipped"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px} h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 12px;font-size:13px} th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{display:inline-block;padding:6px 14px;border-radius:6px;font-weight:600;color:white}
.verdict.pass{background:#2e7d32} .verdict.fail{background:#c62828} .verdict.error{background:#ef6c00}
.st{font-weight:600;white-space:nowrap} .st.pass{color:#2e7d32} .st.fail{color:#c62828} .st.error{color:#ef6c00} .st.skipped{color:#757575}
tr.row-fail td{background:#ffebee} tr.row-error td{background:#fff3e0} tr.row-skipped td{color:#777}
.meta{color:#555;font-size:13px} code{font-size:12px;background:#f5f5f5;padding:1px 3px}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def render_html(report: dict[str, Any]) -> str:
    from optim.gate.reports.plots import all_plots

    g = report.get("golden") or {}
    pol = report.get("policy") or {}
    ref = report.get("reference") or {}
    v = report["verdict"]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>optim verify: {_e(v.upper())}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>optim verify <span class='verdict {_e(v)}'>{_e(v.upper())}</span></h1>",
             "<p class='meta'>"
             f"created {_e(report['created'])} · devices {_e(', '.join(report['devices']))} · "
             f"policy <code>{_e(pol.get('path'))}</code> sha256 <code>{_e((pol.get('sha256') or '—')[:12])}</code> · "
             f"golden set <code>{_e(g.get('name') or g.get('path'))}</code> sha256 <code>{_e((g.get('sha256') or '—')[:12])}</code> "
             f"({'verified' if g.get('verified') is True else '<b>NOT verified</b>'}) · "
             f"FP32 reference <code>{_e(ref.get('path') or 'none')}</code> sha256 <code>{_e((ref.get('sha256') or '—')[:12])}</code>"
             f" ({_e(ref.get('resolved_from') or 'no accuracy deltas')}) · exit code {report['exit_code']}</p>"]
    s = report["summary"]
    parts.append(f"<p>{s['checks']} checks: {s['pass']} passed, {s['fail']} failed, {s['error']} could not be measured, "
                 f"{s['skipped']} skipped.</p>")
    parts.append("<table><tr><th>artifact</th><th>format</th><th>scheme</th><th>content sha256</th><th>size</th><th>verdict</th></tr>")
    for a in report["artifacts"]:
        parts.append(f"<tr class='row-{_e(a['verdict'])}'><td>{_e(a['name'])}</td><td>{_e(a['format'])}</td><td>{_e(a['scheme'])}</td>"
                     f"<td><code>{_e(a['content_sha256'][:16])}…</code></td><td class='num'>{fmt(a['size_mb'], 'MB')}</td>"
                     f"<td class='st {_e(a['verdict'])}'>{_e(STATUS_WORD.get(a['verdict'], a['verdict']))}</td></tr>")
    parts.append("</table>")
    if report.get("input_errors"):
        parts.append("<p><b>Input errors:</b></p><ul>" + "".join(f"<li>{_e(x)}</li>" for x in report["input_errors"]) + "</ul>")
    for a in report["artifacts"]:
        parts.append(f"<h2>{_e(a['name'])} <span class='verdict {_e(a['verdict'])}'>{_e(a['verdict'].upper())}</span></h2>")
        dv = a.get("device_verdicts") or {}
        devices = (" · devices: " + ", ".join(f"{_e(d)} <span class='st {_e(v)}'>{_e(STATUS_WORD.get(v, v))}</span>"
                                             for d, v in dv.items())) if dv else ""
        parts.append(f"<p class='meta'>{_e(a['path'])} · policy sections: {_e(', '.join(a['budget'].get('sections', [])))}"
                     f"{devices}</p>")
        parts.append("<table><tr><th>check</th><th>measured</th><th>threshold</th><th>margin</th><th>95 % interval</th><th>status</th><th>why</th></tr>")
        for c in a["checks"]:
            r = row(c)
            why = r["reason"]
            d = c.get("details") or {}
            if d.get("low_support"):
                why += (" Low-support classes (< " + str(d["min_support"]) + " images; reported, cannot fail alone): "
                        + ", ".join(f"{x['label']} (n={x['support']})" for x in d["low_support"]) + ".")
            if d.get("inconclusive"):
                why += " Beyond budget but not significant: " + ", ".join(str(x["label"]) for x in d["inconclusive"]) + "."
            if d.get("warnings"):
                why += " Benchmark warnings: " + "; ".join(w.rstrip(".") for w in d["warnings"]) + "."
            parts.append(f"<tr class='row-{_e(c['status'])}'><td>{_e(r['check'])}</td><td class='num'>{_e(r['measured'])}</td>"
                         f"<td class='num'>{_e(r['threshold'])}</td><td class='num'>{_e(r['margin'])}</td>"
                         f"<td class='num'>{_e(r['interval'])}</td><td class='st {_e(c['status'])}'>{_e(STATUS_WORD.get(c['status'], c['status']))}</td>"
                         f"<td>{_e(why.strip())}</td></tr>")
        parts.append("</table>")
        if a.get("eval_error"):
            parts.append(f"<p><b>Evaluation error:</b> {_e(a['eval_error'])}</p>")
        for d, err in (a.get("bench_errors") or {}).items():
            parts.append(f"<p><b>Benchmark error on {_e(d)}:</b> {_e(err)}</p>")
    plots = all_plots(report)
    if plots:
        parts.append("<h2>Plots</h2>")
        for title, png in plots:
            parts.append(f"<h3>{_e(title)}</h3><img alt='{_e(title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    parts.append("<p class='meta'>Units: MB = 10^6 bytes; accuracy drops in percentage points versus FP32 (positive = worse); "
                 "intervals are 95 % (paired bootstrap over golden images for accuracy, bootstrap on p95 for latency). "
                 "A single class fails only when the upper end of its delta interval lies below −budget and it has at least "
                 "<code>min_class_support</code> images. " + _e(" ".join(report.get("notes") or [])) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
