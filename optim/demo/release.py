"""The demo's release half: quantize → verify (host) against a demo policy → publish, plus a
policy variant that a known artifact must fail (exit code 1), all in the demo workdir.

Writes into WORKDIR: ``artifacts/<format>-int8/``, ``optim.toml`` (the demo policy),
``verify/`` (reports), ``registry/`` (releases), ``optim-too-small.toml`` and
``verify-too-small/`` (the failing variant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optim.errors import CheckFailed, InputError

CALIB_SIZE = 200

# Budgets for resnet18 at 1×3×32×32 (≈ 11.3 MB at INT8, ≈ 45 MB at FP32) on a shared 2-core host.
DEMO_POLICY = """\
# Demo release policy (optim demo). Units: MB = 10^6 bytes, ms, accuracy drops in percentage points.
schema_version = 1

[defaults]
required_devices = ["host"]
max_top1_drop_pts = 2.0
max_tail_top1_drop_pts = 5.0
max_class_drop_pts = 15.0
min_class_support = 20
min_top1_agreement = 0.95
tail_max_count = 50
# size and latency apply to every artifact, FP32 ones included: the demo's tune step may pick
# any format × scheme, and an FP32 resnet18 (≈ 45 MB) must not pass a 15 MB budget.
size_mb = 15
p95_ms = { host = 100 }
"""


@dataclass
class ReleaseResult:
    artifacts: list[Path]
    verify_report: dict[str, Any]
    verify_dir: Path
    published: list[dict[str, str]] = field(default_factory=list)
    not_published: list[dict[str, str]] = field(default_factory=list)
    variant: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"artifacts": [str(a) for a in self.artifacts], "verdict": self.verify_report["verdict"],
                "exit_code": self.verify_report["exit_code"], "verify_dir": str(self.verify_dir),
                "published": self.published, "not_published": self.not_published, "variant": self.variant}


def _replay(report: dict[str, Any]):
    """evaluate/bench functions that return the measurements of an earlier verify run, keyed by
    artifact path: the policy variant is judged on exactly the same numbers, without re-running."""
    by_path = {a["path"]: a for a in report["artifacts"]}

    def evaluate_fn(target, *_a, **_k):
        return by_path[target]["eval"]

    def bench_fn(artifact, device, **_k):
        return by_path[artifact]["bench"][device]

    return evaluate_fn, bench_fn


def run_release(workdir: str | Path, checkpoint: Path, golden: Path, *,
                formats: tuple[str, ...] | None = None, runs: int = 50, warmup: int = 5, trials: int = 3,
                log: Callable[[str], None] = print) -> ReleaseResult:
    """Quantize ``checkpoint`` to static INT8 in each of ``formats`` (calibrated on the demo's
    training images, not the golden set), verify on the host against the demo policy, publish
    what passed into ``WORKDIR/registry``, and judge the ONNX INT8 artifact against a policy
    whose size budget is half its size (it must fail: exit code 1, and publish refuses it).

    Raises :class:`optim.errors.ToolError` if every export failed.
    """
    from optim.errors import ToolError
    from optim.gate.policy import Policy
    from optim.gate.publish import publish
    from optim.gate.verify import verify
    from optim.optimize.ptq import quantize

    workdir = Path(workdir)
    calib = workdir / "train"  # calibrate on training images, never on the golden set that judges the result
    if formats is None:  # every built-in format (FormatSpec.default)
        from optim.runtimes.registry import default_formats

        formats = default_formats()
    log(f"quantizing {checkpoint} to INT8: {', '.join(formats)} (calibration: {CALIB_SIZE} images from {calib})")
    q = quantize(checkpoint, formats=list(formats), scheme="int8", calib=calib, calib_size=CALIB_SIZE,
                 out=workdir / "artifacts", on_result=lambda r: log(
                     f"  {r.format}-{r.scheme}: {r.status}" + (f", {r.size_bytes / 1e6:.2f} MB" if r.size_bytes else "")
                     + (f" ({r.error})" if r.error else "") + (f" — {r.message}" if r.message else "")))
    artifacts = [r.artifact_dir for r in q.results if r.ok and r.artifact_dir is not None]
    if not artifacts:
        raise ToolError("every export failed; see the messages above")

    policy_path = workdir / "optim.toml"
    policy_path.write_text(DEMO_POLICY)
    log(f"verifying {len(artifacts)} artifact(s) on the host against {policy_path}")
    res = verify(artifacts, golden, devices=["host"], policy=policy_path, reference=checkpoint,
                 out=workdir / "verify", runs=runs, warmup=warmup, trials=trials, progress=log)
    out = ReleaseResult(artifacts, res.report, workdir / "verify")

    registry = workdir / "registry"
    for a in res.report["artifacts"]:
        if a["verdict"] != "pass":
            out.not_published.append({"artifact": a["name"], "why": "did not pass verify"})
            continue
        try:
            rel = publish(a["path"], registry, results=res.paths["json"], version=f"demo-{a['content_sha256'][:12]}")
            out.published.append({"artifact": a["name"], "release": str(rel.path)})
        except InputError as e:  # e.g. the same bytes were published by an earlier demo run
            out.not_published.append({"artifact": a["name"], "why": str(e)})

    # the gate failing on purpose: a size budget below the ONNX INT8 artifact's size
    known = res.report["artifacts"][0]  # the first format's artifact (ONNX for the built-in list)
    budget = round(known["size_mb"] / 2, 2)
    variant_path = workdir / "optim-too-small.toml"
    variant_path.write_text(DEMO_POLICY.replace("size_mb = 15", f"size_mb = {budget}")
                            .replace("# Demo release policy", f"# Variant: size budget {budget} MB, below the "
                                     f"{known['size_mb']:.2f} MB of {known['name']}: it must fail.\n# Demo release policy"))
    ev, be = _replay(res.report)
    bad = verify([known["path"]], golden, devices=["host"], policy=Policy.load(variant_path), reference=checkpoint,
                 out=workdir / "verify-too-small", evaluate_fn=ev, bench_fn=be)
    refused = None
    try:
        publish(known["path"], registry, results=bad.paths["json"], version="too-small")
    except CheckFailed as e:
        refused = str(e)
    failed = [c for c in bad.report["artifacts"][0]["checks"] if c["status"] == "fail"]
    out.variant = {"policy": str(variant_path), "artifact": known["name"], "size_budget_mb": budget,
                   "exit_code": bad.exit_code, "failed_checks": [f"{c['id']}: {c['reason']}" for c in failed],
                   "publish_refused": refused, "report": str(bad.paths["markdown"])}
    return out
