"""Markdown summary of a verify report, short enough for a pull-request comment."""

from __future__ import annotations

from typing import Any

from optim.gate.reports.format import STATUS_MARK, fmt, reference_line, row

VERDICT_TITLE = {"pass": "✅ PASS", "fail": "❌ FAIL", "error": "⚠️ ERROR (not measured)"}


def render_markdown(report: dict[str, Any]) -> str:
    g = report.get("golden") or {}
    pol = report.get("policy") or {}
    lines = [
        f"## optim verify: {VERDICT_TITLE.get(report['verdict'], report['verdict'])}",
        "",
        f"Devices: {', '.join(report['devices'])} · policy `{pol.get('path')}`"
        + (f" (sha256 `{pol['sha256'][:12]}`)" if pol.get("sha256") else "")
        + f" · golden set `{g.get('name') or g.get('path')}`"
        + (f" v{g['version']}" if g.get("version") else "")
        + (" (verified)" if g.get("verified") is True else " (**not verified**)" if "verified" in g else ""),
        "",
        reference_line(report),
        "",
        "| artifact | sha256 | size | verdict | failed / errored checks |",
        "|---|---|---|---|---|",
    ]
    for a in report["artifacts"]:
        bad = [c["id"] for c in a["checks"] if c["status"] in ("fail", "error")]
        lines.append(f"| `{a['name']}` | `{a['content_sha256'][:12]}` | {fmt(a['size_mb'], 'MB')} | "
                     f"{STATUS_MARK.get(a['verdict'], a['verdict'])} | {', '.join(f'`{b}`' for b in bad) or '—'} |")
    for a in report["artifacts"]:
        lines += ["", f"### `{a['name']}` ({a['format']}, {a['scheme']}): {STATUS_MARK.get(a['verdict'], a['verdict'])}", ""]
        if a.get("device_verdicts"):
            lines += ["Devices: " + " · ".join(f"`{d}` {STATUS_MARK.get(v, v)}" for d, v in a["device_verdicts"].items()), ""]
        lines += ["| check | measured | threshold | margin | 95 % interval | status |", "|---|---|---|---|---|---|"]
        notes = []
        for c in a["checks"]:
            r = row(c)
            lines.append(f"| {r['check']} | {r['measured']} | {r['threshold']} | {r['margin']} | {r['interval']} | {r['status']} |")
            if r["reason"] and c["status"] != "pass":
                notes.append(f"- `{c['id']}`: {r['reason']}")
            d = c.get("details") or {}
            if d.get("low_support"):
                notes.append(f"- `{c['id']}`: low-support classes (< {d['min_support']} images, reported, cannot fail alone): "
                             + ", ".join(f"{x['label']} (n={x['support']}, {fmt(x['drop_pts'], 'pts')} drop)" for x in d["low_support"]))
            if d.get("inconclusive"):
                notes.append(f"- `{c['id']}`: drop beyond budget but not significant (interval reaches the budget): "
                             + ", ".join(f"{x['label']} (n={x['support']}, {fmt(x['drop_pts'], 'pts')})" for x in d["inconclusive"]))
            for w in d.get("warnings") or []:
                notes.append(f"- `{c['id']}`: {w}")
        lines += [""] + notes if notes else []
    if report.get("input_errors"):
        lines += ["", "**Input errors:**"] + [f"- {e}" for e in report["input_errors"]]
    lines += ["", "Units: MB = 10^6 bytes; drops in percentage points vs FP32 (positive = worse); "
              "intervals are 95 % (paired bootstrap for accuracy, bootstrap on p95 for latency). "
              + " ".join(report.get("notes") or []), ""]
    return "\n".join(lines)
