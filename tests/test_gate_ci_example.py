"""The CI example in docs/ci stays runnable: valid YAML and policy, and every `optim verify`
option it uses exists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from optim.cli.verify_cmd import command as verify_command
from optim.gate.policy import Policy

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ci"


def test_workflow_uses_existing_verify_options():
    wf = yaml.safe_load((DOCS / "github-actions-verify.yml").read_text())
    runs = [s["run"] for job in wf["jobs"].values() for s in job["steps"] if "optim verify" in s.get("run", "")]
    assert runs, "the workflow no longer runs optim verify"
    known = {o for p in verify_command.params for o in getattr(p, "opts", [])}
    for r in runs:
        for opt in re.findall(r"(--[a-z][a-z-]*)", r):
            assert opt in known, f"workflow uses {opt}, which optim verify does not have"
    uploads = [s for job in wf["jobs"].values() for s in job["steps"] if "upload-artifact" in s.get("uses", "")]
    assert all(s.get("if") == "always()" for s in uploads)  # reports are uploaded when the gate fails too


def test_example_policy_is_valid():
    pol = Policy.load(DOCS / "optim.toml")
    b = pol.resolve(["onnx-int8", "onnx-int8", "onnx"])
    assert b.size_mb == 35 and b.p95_ms == {"host": 30, "pixel6a": 45}


def test_workflow_uses_existing_publish_options_and_requires_a_signature():
    from optim.cli.publish_cmd import command as publish_command

    wf = yaml.safe_load((DOCS / "github-actions-verify.yml").read_text())
    runs = [s["run"] for job in wf["jobs"].values() for s in job["steps"] if "optim publish" in s.get("run", "")]
    assert runs, "the workflow no longer shows how to publish"
    known = {o for p in publish_command.params for o in getattr(p, "opts", [])}
    for r in runs:
        assert "--require-signature" in r and "--trusted-key" in r
        for opt in re.findall(r"(--[a-z][a-z-]*)", r):
            assert opt in known, f"workflow uses {opt}, which optim publish does not have"
