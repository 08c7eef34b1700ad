"""JUnit XML of a verify report: one <testsuite> per artifact, one <testcase> per check;
failed checks carry <failure>, checks that could not be measured <error>, skipped ones
<skipped>. The format CI systems (GitHub, GitLab, Jenkins) show as test results."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from optim.gate.reports.format import reference_line, row


def render_junit(report: dict[str, Any]) -> bytes:
    suites = ET.Element("testsuites", name="optim verify")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for a in report["artifacts"]:
        checks = a["checks"]
        counts = {"tests": len(checks), "failures": sum(c["status"] == "fail" for c in checks),
                  "errors": sum(c["status"] == "error" for c in checks),
                  "skipped": sum(c["status"] == "skipped" for c in checks)}
        for k in totals:
            totals[k] += counts[k]
        suite = ET.SubElement(suites, "testsuite", name=a["name"], timestamp=report["created"],
                              **{k: str(v) for k, v in counts.items()})
        props = ET.SubElement(suite, "properties")
        for k in ("path", "format", "scheme", "content_sha256", "size_bytes"):
            ET.SubElement(props, "property", name=k, value=str(a[k]))
        for c in checks:
            case = ET.SubElement(suite, "testcase", classname=f"optim.verify.{a['name']}", name=c["id"], time="0")
            r = row(c)
            text = (f"measured {r['measured']}, threshold {r['threshold']}, margin {r['margin']}, "
                    f"95 % interval {r['interval']}. {r['reason']}").strip()
            if c["status"] == "fail":
                ET.SubElement(case, "failure", message=r["reason"] or "check failed", type="budget").text = text
            elif c["status"] == "error":
                ET.SubElement(case, "error", message=r["reason"] or "not measured", type="infrastructure").text = text
            elif c["status"] == "skipped":
                ET.SubElement(case, "skipped", message=r["reason"])
            else:
                ET.SubElement(case, "system-out").text = text
    for k, v in totals.items():
        suites.set(k, str(v))
    suites.set("reference", reference_line(report))
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)
