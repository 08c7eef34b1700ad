"""Renderers of a verify report (the JSON dict of :func:`optim.gate.verify.verify`):
JSON for machines, Markdown for a PR comment, JUnit XML for CI test views, and a
self-contained HTML page with plots for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optim.files import atomic_write_bytes, atomic_write_json

#: file names of the four reports (re-exported by optim.gate.verify)
REPORT_NAMES = {"json": "verify.json", "markdown": "verify.md", "junit": "verify.junit.xml", "html": "verify.html"}


def write_reports(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write verify.json, verify.md, verify.junit.xml and verify.html into ``out``;
    returns {kind: path}. Each file is written atomically."""
    from optim.gate.reports.html import render_html
    from optim.gate.reports.junit import render_junit
    from optim.gate.reports.markdown import render_markdown

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": atomic_write_json(out / REPORT_NAMES["json"], report)}
    paths["markdown"] = atomic_write_bytes(out / REPORT_NAMES["markdown"], render_markdown(report).encode())
    paths["junit"] = atomic_write_bytes(out / REPORT_NAMES["junit"], render_junit(report))
    paths["html"] = atomic_write_bytes(out / REPORT_NAMES["html"], render_html(report).encode())
    return paths
