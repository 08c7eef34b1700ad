"""The tune reports: ``tune.json`` (schema below), ``tune.md``, ``tune.html`` (Pareto plot and
sensitivity plot embedded as PNG, in the style of the verify report), and the sensitivity cache.

``tune.json`` (``schema_version`` 1, ``kind`` ``"optim.tune"``; units: ms, MB = 10^6 bytes,
accuracy deltas in percentage points versus FP32, negative = worse)::

    created, checkpoint {path, sha256}, policy {path, sha256}, golden, device, formats [..],
    calibration {dir, size, available, seed, sha256, holdout}, settings {...}, analyze_only,
    verdict            "pass" (every format has a verified choice) | "fail" | "analyzed"
    exit_code          0 | 1 (some format has no passing candidate)
    sensitivity        {FORMAT: SensitivityResult.to_dict() | {"skipped": why}}
    search             {sampler, candidates, trials_run, resumed_records, stopped_by, seconds, journal}
    baselines          {FORMAT: {fp32_p95_ms, int8_p95_ms, int8_over_fp32, fp32, int8}}   (records or null)
    chosen             {FORMAT: null | {artifact, candidate, scheme, float_layers, p95_ms, size_mb,
                        top1_delta_pts, tail_top1_delta_pts, fp32_p95_ms, int8_p95_ms, verify, attestation,
                        verified_p95_ms, notes [..], collapse_repair}}
    pareto_front       [record]   not dominated on (size, p95, top-1 delta, tail top-1 delta)
    candidates         [record]   every measured candidate
    rejected           [{candidate, status, reasons}]   every candidate that did not pass, with why
    notes              [..]       plain statements (INT8 slower than FP32, FP32 wins, no candidate passed)

A record is :class:`optim.tune.search.TrialRecord` as a dict: candidate {key, format, scheme,
fallback_units, prune_ratio, label}, status (pass | fail | error | rejected), reasons, artifact,
float_layers, size_mb, p95_ms, top1_delta_pts, tail_top1_delta_pts, checks_failed, seconds, trial.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Sequence

from optim.files import atomic_write_bytes, atomic_write_json
from optim.tune import search as S
from optim.tune.sensitivity import Measured, SensitivityResult, plot as sensitivity_plot, to_markdown as sensitivity_md

SENSITIVITY_FILE = "sensitivity.json"
NAMES = {"json": "tune.json", "markdown": "tune.md", "html": "tune.html", "sensitivity_md": "sensitivity.md"}


# ---- sensitivity cache -------------------------------------------------------------------------
def sensitivity_from_dict(d: dict[str, Any]) -> SensitivityResult:
    def m(x):
        return Measured(kl=x["kl"], top1=x["top1"], tail_top1=x["tail_top1"], per_class=x.get("per_class") or {},
                        agreement=x.get("agreement"))

    return SensitivityResult(format=d["format"], scheme=d["scheme"], unit_kind=d["unit_kind"],
                             units={k: tuple(v) for k, v in d["units"].items()}, rows=d["rows"], fp32=m(d["fp32"]),
                             all_quant=m(d["all_quantized"]), collapse=d["collapse"], tail_weight=d["tail_weight"],
                             head=d["head"], holdout_size=d["holdout_size"], seconds=d.get("seconds", 0.0))


def load_sensitivity_cache(out: Path, fingerprint: dict[str, Any]) -> dict[str, SensitivityResult]:
    """Analyses saved by an earlier run into ``out`` with the same fingerprint (checkpoint,
    calibration batch, golden set, unit, weights); {} otherwise."""
    p = Path(out) / SENSITIVITY_FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        return {}
    try:
        return {f: sensitivity_from_dict(d) for f, d in (data.get("results") or {}).items()}
    except (KeyError, TypeError):
        return {}


def save_sensitivity_cache(out: Path, fingerprint: dict[str, Any], results: dict[str, SensitivityResult]) -> Path:
    return atomic_write_json(Path(out) / SENSITIVITY_FILE,
                             {"fingerprint": fingerprint, "results": {f: r.to_dict() for f, r in results.items()}})


# ---- assembling tune.json (pure) ---------------------------------------------------------------
def _rec(records: Sequence[S.TrialRecord], fmt: str, scheme: str) -> S.TrialRecord | None:
    return next((r for r in records if r.candidate["format"] == fmt and r.candidate["scheme"] == scheme
                 and r.candidate["fallback_units"] == 0 and r.candidate["prune_ratio"] == 0), None)


def assemble(base: dict[str, Any], records: list[S.TrialRecord], chosen: dict[str, dict[str, Any] | None],
             sens: dict[str, SensitivityResult], stats: dict[str, Any]) -> dict[str, Any]:
    """The ``tune.json`` document from the run's parts (pure)."""
    notes: list[str] = []
    baselines: dict[str, Any] = {}
    chosen_out: dict[str, Any] = {}
    for fmt in base["formats"]:
        fp, i8 = _rec(records, fmt, S.FP32_SCHEME), _rec(records, fmt, S.PLAIN_INT8_SCHEME)
        fp_p95 = fp.p95_ms if fp else None
        i8_p95 = i8.p95_ms if i8 else None
        ratio = round(i8_p95 / fp_p95, 4) if fp_p95 and i8_p95 else None
        baselines[fmt] = {"fp32_p95_ms": fp_p95, "int8_p95_ms": i8_p95, "int8_over_fp32": ratio,
                          "fp32": fp.to_dict() if fp else None, "int8": i8.to_dict() if i8 else None}
        if ratio is not None and ratio > 1:
            notes.append(f"{fmt}: plain INT8 is slower than FP32 on {base['device']} (p95 {i8_p95:.2f} ms vs "
                         f"{fp_p95:.2f} ms, ×{ratio:.2f}).")
        c = chosen.get(fmt)
        if c is None:
            chosen_out[fmt] = None
            tried = sum(1 for r in records if r.candidate["format"] == fmt)
            notes.append(f"{fmt}: no candidate passed every check of the policy ({tried} measured); see rejected.")
            continue
        r: S.TrialRecord = c["record"]
        cnotes = []
        if S.is_float_scheme(r.candidate["scheme"]):
            cnotes.append(f"{r.candidate['scheme'].upper()} wins on {fmt}: no quantized candidate that passes the policy "
                          f"is faster on {base['device']}.")
        elif fp_p95 is not None and r.p95_ms is not None and r.p95_ms > fp_p95:
            why = "; ".join(fp.reasons) if fp and fp.reasons else "it did not pass"
            cnotes.append(f"the chosen {r.candidate['scheme']} artifact is SLOWER than {fmt}'s FP32 "
                          f"(p95 {r.p95_ms:.2f} ms vs {fp_p95:.2f} ms); FP32 was not chosen because: {why}.")
        repair = None
        s = sens.get(fmt)
        if s is not None and s.collapse["collapsed"]:
            fixed = r.candidate["fallback_units"] > 0 or r.candidate["scheme"] != S.PLAIN_INT8_SCHEME
            repair = {"collapsed": True, "all_quantized_top1_drop_pts": s.collapse["top1_drop_pts"],
                      "repaired_by": r.candidate["label"] if fixed else None}
            cnotes.append(f"plain {S.PLAIN_INT8_SCHEME} collapsed on {fmt} (top-1 Δ {-(s.collapse['top1_drop_pts'] or 0):+.1f} pts, "
                          f"top-1 agreement with FP32 {s.collapse.get('top1_agreement')}); "
                          + (f"repaired by {r.candidate['label']}." if fixed else "not repaired."))
        notes.extend(f"{fmt}: {n}" for n in cnotes)
        chosen_out[fmt] = {"artifact": r.artifact, "candidate": r.candidate, "scheme": r.candidate["scheme"],
                           "float_layers": r.float_layers, "p95_ms": r.p95_ms, "size_mb": r.size_mb,
                           "top1_delta_pts": r.top1_delta_pts, "tail_top1_delta_pts": r.tail_top1_delta_pts,
                           "fp32_p95_ms": fp_p95, "int8_p95_ms": i8_p95, "verify": c["verify"],
                           "attestation": c["attestation"], "verified_p95_ms": c.get("verified_p95_ms"),
                           "notes": cnotes, "collapse_repair": repair}
    ok = all(v is not None for v in chosen_out.values())
    records = sorted(records, key=lambda r: (r.trial if r.trial is not None else 10**9, r.candidate["key"]))
    return base | {
        "verdict": S.PASS if ok else S.FAIL, "exit_code": 0 if ok else 1,
        "search": stats, "baselines": baselines, "chosen": chosen_out,
        "pareto_front": [r.to_dict() for r in S.pareto_front(records)],
        "candidates": [r.to_dict() for r in records],
        "rejected": [{"candidate": r.candidate, "status": r.status, "reasons": r.reasons} for r in records if not r.passed],
        "notes": notes,
    }


# ---- renderers ---------------------------------------------------------------------------------
def _f(x: Any, unit: str = "", digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}{(' ' + unit) if unit else ''}"
    return f"{x}{(' ' + unit) if unit else ''}"


def _d(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    v = report["verdict"]
    out = [f"# optim tune: {v.upper()} (exit code {report['exit_code']})\n",
           f"checkpoint `{report['checkpoint']['path']}` · device **{report['device']}** · policy "
           f"`{report['policy']['path']}` · formats {', '.join(report['formats'])}\n"]
    if report.get("search"):
        s = report["search"]
        out.append(f"Search: {s['candidates']} candidates, {s['sampler']}; {s['trials_run']} trial(s) run now, "
                   f"{s['resumed_records']} resumed; stopped by {s['stopped_by']} after {s['seconds']} s.\n")
    if report.get("chosen"):
        out.append("## Chosen artifact per format\n")
        out.append("| format | artifact | candidate | p95 | size | top-1 Δ | tail Δ | FP32 p95 | INT8 p95 | verify |")
        out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
        for fmt, c in report["chosen"].items():
            b = report["baselines"].get(fmt) or {}
            if c is None:
                out.append(f"| {fmt} | **none passed** | | | | | | {_f(b.get('fp32_p95_ms'), 'ms')} | {_f(b.get('int8_p95_ms'), 'ms')} | |")
                continue
            out.append(f"| {fmt} | `{c['artifact']}` | {c['candidate']['label']} | {_f(c['p95_ms'], 'ms')} | {_f(c['size_mb'], 'MB')} "
                       f"| {_d(c['top1_delta_pts'])} | {_d(c['tail_top1_delta_pts'])} | {_f(c['fp32_p95_ms'], 'ms')} "
                       f"| {_f(c['int8_p95_ms'], 'ms')} | `{c['verify']}` |")
        out.append("")
    if report.get("notes"):
        out.append("## Notes\n")
        out.extend(f"- {n}" for n in report["notes"])
        out.append("")
    if report.get("pareto_front"):
        out.append("## Pareto front (size, p95, top-1 Δ, tail top-1 Δ)\n")
        out.append("| candidate | status | size | p95 | top-1 Δ | tail Δ |")
        out.append("|---|---|---:|---:|---:|---:|")
        for r in report["pareto_front"]:
            out.append(f"| {r['candidate']['label']} | {r['status']} | {_f(r['size_mb'], 'MB')} | {_f(r['p95_ms'], 'ms')} "
                       f"| {_d(r['top1_delta_pts'])} | {_d(r['tail_top1_delta_pts'])} |")
        out.append("")
    if report.get("rejected"):
        out.append("## Rejected candidates\n")
        for r in report["rejected"]:
            out.append(f"- **{r['candidate']['label']}** ({r['status']}): " + ("; ".join(r["reasons"]) or "—"))
        out.append("")
    skipped = {f: s["skipped"] for f, s in (report.get("sensitivity") or {}).items() if "skipped" in s}
    for f, why in skipped.items():
        out.append(f"- sensitivity {f}: {why}")
    return "\n".join(out) + "\n"


def pareto_plot(report: dict[str, Any]) -> bytes | None:
    """p95 (ms) against top-1 delta (pts) of every measured candidate: marker area ∝ size, colour =
    status, marker shape = format, black edge = Pareto-optimal, ★ = chosen. PNG bytes or None."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in report.get("candidates") or [] if r.get("p95_ms") is not None and r.get("top1_delta_pts") is not None]
    if not pts:
        return None
    colors = {"pass": "#2e7d32", "fail": "#c62828", "error": "#ef6c00", "rejected": "#757575"}
    shapes = dict(zip(report["formats"], "os^Dvp*h"))
    front = {r["candidate"]["key"] for r in report.get("pareto_front") or []}
    chosen = {c["candidate"]["key"] for c in (report.get("chosen") or {}).values() if c}
    smax = max((r["size_mb"] or 0) for r in pts) or 1.0
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for r in pts:
        key = r["candidate"]["key"]
        ax.scatter([r["p95_ms"]], [r["top1_delta_pts"]], s=40 + 500 * (r["size_mb"] or 0) / smax, alpha=0.6,
                   color=colors.get(r["status"], "#757575"), marker=shapes.get(r["candidate"]["format"], "o"),
                   edgecolors="black" if key in front else "none", linewidths=1.6)
        if key in chosen or key in front:
            ax.annotate(r["candidate"]["label"] + (" ★" if key in chosen else ""), (r["p95_ms"], r["top1_delta_pts"]),
                        xytext=(6, 5), textcoords="offset points", fontsize=7)
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_xlabel(f"p95 latency on {report['device']} (ms; lower is better)")
    ax.set_ylabel("top-1 delta vs FP32 (percentage points)")
    ax.set_title("Tune candidates (area ∝ size; black edge = Pareto front; ★ = chosen)", fontsize=9)
    ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, alpha=0.6, label=s) for s, c in colors.items()]
    handles += [plt.Line2D([], [], marker=m, ls="", color="#333", label=f) for f, m in shapes.items()]
    ax.legend(handles=handles, fontsize=7, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def render_html(report: dict[str, Any], sens: Sequence[SensitivityResult]) -> str:
    """A self-contained page (the verify report's CSS): the Markdown tables as HTML and both plots."""
    from optim.gate.reports.html import CSS

    e = html.escape
    v = report["verdict"]
    cls = {"pass": "pass", "fail": "fail"}.get(v, "pass")
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>optim tune: {e(v.upper())}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>optim tune <span class='verdict {cls}'>{e(v.upper())}</span></h1>",
             f"<p class='meta'>checkpoint <code>{e(report['checkpoint']['path'])}</code> · device {e(report['device'])} · "
             f"policy <code>{e(str(report['policy']['path']))}</code> · exit code {report['exit_code']}</p>"]
    if report.get("chosen"):
        parts.append("<h2>Chosen artifact per format</h2><table><tr><th>format</th><th>artifact</th><th>candidate</th>"
                     "<th>p95</th><th>size</th><th>top-1 Δ</th><th>tail Δ</th><th>FP32 p95</th><th>INT8 p95</th></tr>")
        for fmt, c in report["chosen"].items():
            b = report["baselines"].get(fmt) or {}
            if c is None:
                parts.append(f"<tr class='row-fail'><td>{e(fmt)}</td><td colspan='6'><b>no candidate passed</b></td>"
                             f"<td class='num'>{_f(b.get('fp32_p95_ms'), 'ms')}</td><td class='num'>{_f(b.get('int8_p95_ms'), 'ms')}</td></tr>")
                continue
            parts.append(f"<tr><td>{e(fmt)}</td><td><code>{e(str(c['artifact']))}</code></td><td>{e(c['candidate']['label'])}</td>"
                         f"<td class='num'>{_f(c['p95_ms'], 'ms')}</td><td class='num'>{_f(c['size_mb'], 'MB')}</td>"
                         f"<td class='num'>{_d(c['top1_delta_pts'])}</td><td class='num'>{_d(c['tail_top1_delta_pts'])}</td>"
                         f"<td class='num'>{_f(c['fp32_p95_ms'], 'ms')}</td><td class='num'>{_f(c['int8_p95_ms'], 'ms')}</td></tr>")
        parts.append("</table>")
    if report.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in report["notes"]) + "</ul>")
    png = pareto_plot(report)
    if png:
        parts.append("<h2>Pareto front</h2>")
        parts.append(f"<img alt='Pareto plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    if report.get("candidates"):
        parts.append("<h2>Candidates</h2><table><tr><th>trial</th><th>candidate</th><th>status</th><th>size</th><th>p95</th>"
                     "<th>top-1 Δ</th><th>tail Δ</th><th>why</th></tr>")
        for r in report["candidates"]:
            st = r["status"]
            parts.append(f"<tr class='row-{e(st if st != 'rejected' else 'skipped')}'><td>{e(str(r.get('trial')))}</td>"
                         f"<td>{e(r['candidate']['label'])}</td><td class='st {e(st)}'>{e(st)}</td>"
                         f"<td class='num'>{_f(r['size_mb'], 'MB')}</td><td class='num'>{_f(r['p95_ms'], 'ms')}</td>"
                         f"<td class='num'>{_d(r['top1_delta_pts'])}</td><td class='num'>{_d(r['tail_top1_delta_pts'])}</td>"
                         f"<td>{e('; '.join(r['reasons']))}</td></tr>")
        parts.append("</table>")
    sp = sensitivity_plot(sens)
    if sp:
        parts.append("<h2>Per-layer sensitivity</h2>")
        parts.append(f"<img alt='sensitivity' src='data:image/png;base64,{base64.b64encode(sp).decode()}'>")
    parts.append("<p class='meta'>Units: MB = 10^6 bytes; ms; deltas in percentage points versus FP32 (negative = worse). "
                 "Every candidate was judged by optim verify's checks against the policy.</p></body></html>")
    return "\n".join(parts)


def write_reports(report: dict[str, Any], out: Path, sens: Sequence[SensitivityResult]) -> dict[str, Path]:
    """Write tune.json, tune.md, tune.html and sensitivity.md into ``out``; returns {kind: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": atomic_write_json(out / NAMES["json"], report)}
    md = render_markdown(report) + ("\n" + sensitivity_md(sens) if sens else "")
    paths["markdown"] = atomic_write_bytes(out / NAMES["markdown"], md.encode())
    paths["html"] = atomic_write_bytes(out / NAMES["html"], render_html(report, sens).encode())
    if sens:
        paths["sensitivity_md"] = atomic_write_bytes(out / NAMES["sensitivity_md"], sensitivity_md(sens).encode())
    return paths
