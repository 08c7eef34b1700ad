"""The gate's typed inputs (optim/gate/measurement.py): parsed once, fail closed on malformed
reports, the same checks as the dict form; verify's parallel bench step keeps each device's
outcome its own. Measurements are hand-made dicts (tests/gate_inputs.py) and test doubles of
evaluate/bench; nothing here runs a model."""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from gate_inputs import bench_result, eval_report
from optim.device_bench.result import BenchResult
from optim.errors import InputError, ToolError
from optim.gate import checks as C
from optim.gate import verify as V
from optim.gate.measurement import ArtifactMeasurement, BenchView, EvalView, MalformedMeasurement
from optim.gate.policy import Policy
from optim.golden_sets.report import EvalReport

SCHEMA = json.loads(files("optim.gate").joinpath("schemas/verify-report.v1.schema.json").read_text())

#: every budget the checks know, so every check runs
EVERYTHING = {"size_mb": 10, "p95_ms": {"host": 12, "pixel6a": 30}, "required_devices": ["host"],
              "max_top1_drop_pts": 1.0, "max_top2_drop_pts": 2.0, "max_tail_top1_drop_pts": 3.0,
              "max_class_drop_pts": 10.0, "min_class_support": 20, "min_top1_agreement": 0.97,
              "max_multilabel_macro_f1_drop_pts": 2.0, "max_tag_f1_drop_pts": 10.0,
              "max_tail_tag_macro_f1_drop_pts": 5.0, "min_top1": 0.5, "min_macro_f1": 0.5}


def budget(**kw):
    return Policy.from_dict({"defaults": kw or EVERYTHING}).resolve(["art"])


def full_eval():
    ev = eval_report(multilabel=-0.01)
    ev["heads"]["digit"]["delta"]["top2"] = {"value": -0.004, "ci_low": -0.01, "ci_high": 0.002}
    ev["heads"]["tags"]["delta"]["per_tag"] = [{"label": "striped", "support": 40,
                                                "f1": {"value": -0.02, "ci_low": -0.05, "ci_high": 0.01}}]
    return ev


def measurement(ev=None, bench=None, **kw):
    return {"size_bytes": 3_000_000, "eval": full_eval() if ev is None else ev,
            "bench": {"host": bench_result(9.0)} if bench is None else bench, "bench_errors": {},
            "reference_sha256": "cd" * 32, **kw}


def as_dicts(checks):
    return [c.to_dict() for c in checks]


# ---- a typed input and its dict form give identical checks ---------------------------------
def test_typed_measurement_and_its_dict_give_identical_checks():
    b = budget()
    ev = full_eval()
    report = EvalReport(target=ev["target"], reference=ev["reference"], golden=ev["golden"], n_samples=ev["n_samples"],
                        heads=ev["heads"])  # the typed result of optim.evaluate
    benches = {"host": BenchResult.from_dict(bench_result(9.0)),  # typed results of optim.bench
               "pixel6a": BenchResult.from_dict(bench_result(31.0, "pixel6a"))}
    m = measurement(ev=report.to_dict(), bench={d: r.to_dict() for d, r in benches.items()})
    from_dicts = C.artifact_checks(b, copy.deepcopy(m), ["host", "pixel6a"])
    typed = ArtifactMeasurement(size_bytes=m["size_bytes"], reference_sha256=m["reference_sha256"])
    typed.set_eval(report)
    for d, r in benches.items():
        typed.set_bench(d, r)
    from_typed = C.artifact_checks(b, typed, ["host", "pixel6a"])
    assert as_dicts(from_typed) == as_dicts(from_dicts)
    assert len(from_dicts) >= 15 and {c.status for c in from_dicts} >= {"pass", "fail"}
    # and through the round trip of the dict form
    assert as_dicts(C.artifact_checks(b, ArtifactMeasurement.from_dict(typed.to_dict()), ["host", "pixel6a"])) == \
        as_dicts(from_dicts)


def test_views_read_what_the_checks_need():
    ev = EvalView.from_dict(full_eval())
    assert ev.golden.verified is True and ev.golden.sha256 == "ab" * 32
    digit = ev.heads["digit"]
    assert digit.kind == "multiclass" and digit.n_classes == 10 and digit.tail_classes == ("8", "9")
    assert digit.delta.interval("top1").value == pytest.approx(-0.005) and digit.delta.agreement == 0.99
    assert len(digit.delta.per_class) == 10 and digit.delta.per_class[3].support == 100
    assert ev.heads["tags"].delta.per_tag[0].label == "striped" and ev.heads["tags"].delta.per_tag[0].ci_high == 0.01
    bv = BenchView.from_dict(bench_result(9.0))
    assert bv.p95 == 9.0 and bv.p95_ci == pytest.approx((9.0 * 0.97, 9.0 * 1.04)) and bv.device["name"] == "host"


# ---- malformed inputs fail closed ----------------------------------------------------------
def _set(path, value):
    """An edit of full_eval(): set the dotted ``path`` (ints index lists) to ``value``."""
    def edit(ev):
        keys = path.split(".")
        node = ev
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return ev
    return edit


EVAL_GARBLES = [
    ("not-an-object", lambda ev: "all good", ""),
    ("heads-a-list", _set("heads", [{"kind": "multiclass"}]), "heads"),
    ("head-a-string", _set("heads.digit", "multiclass"), "heads.digit"),
    ("delta-a-string", _set("heads.digit.delta", "fine"), "heads.digit.delta"),
    ("top1-a-number", _set("heads.digit.delta.top1", 0.01), "heads.digit.delta.top1"),
    ("top1-value-a-string", _set("heads.digit.delta.top1.value", "-0.001"), "heads.digit.delta.top1.value"),
    ("top1-value-a-bool", _set("heads.digit.delta.top1.value", True), "heads.digit.delta.top1.value"),  # True*-100 = a 100-pt gain
    ("agreement-a-bool", _set("heads.digit.delta.agreement", True), "heads.digit.delta.agreement"),
    ("class-ci-a-string", _set("heads.digit.delta.per_class.3.ci_high", "0"), "heads.digit.delta.per_class[3].ci_high"),
    ("class-row-a-string", _set("heads.digit.delta.per_class.3", "ok"), "heads.digit.delta.per_class[3]"),
    ("per-class-an-object", _set("heads.digit.delta.per_class", {"3": {}}), "heads.digit.delta.per_class"),
    ("tag-f1-a-string", _set("heads.tags.delta.per_tag.0.f1", "good"), "heads.tags.delta.per_tag[0].f1"),
    ("metrics-a-list", _set("heads.digit.metrics", [0.9]), "heads.digit.metrics"),
    ("golden-a-string", _set("golden", "verified"), "golden"),
    ("golden-sha-a-number", _set("golden.sha256", 12), "golden.sha256"),
    ("tail-classes-a-string", _set("heads.digit.tail_classes", "89"), "heads.digit.tail_classes"),
]


@pytest.mark.parametrize("garble,path", [(g, p) for _, g, p in EVAL_GARBLES], ids=[i for i, _, _ in EVAL_GARBLES])
def test_malformed_evaluation_report_never_passes(garble, path):
    ev = garble(full_eval())
    with pytest.raises(MalformedMeasurement) as e:
        EvalView.from_dict(ev)
    assert e.value.path == path
    checks = {c.id: c for c in C.artifact_checks(budget(), measurement(ev=ev), ["host"])}
    c = checks["evaluation"]
    assert c.status == "error" and "malformed evaluation report" in c.reason and (path or "<root>") in c.reason
    assert not any(k.startswith(("top1_drop", "class_drop", "min_top1")) for k in checks)  # nothing judged on it
    assert C.verdict(list(checks.values())) != "pass"


BENCH_GARBLES = [
    ("not-an-object", lambda b: [9.0], ""),
    ("p95-a-string", lambda b: b["latency_ms"].update(p95="9") or b, "latency_ms.p95"),
    ("p95-a-bool", lambda b: b["latency_ms"].update(p95=True) or b, "latency_ms.p95"),
    ("p95-negative", lambda b: b["latency_ms"].update(p95=-1.0) or b, "latency_ms.p95"),
    ("latency-a-string", lambda b: b.update(latency_ms="fast") or b, "latency_ms"),
    ("ci-one-number", lambda b: b.update(p95_ci_ms=[9.0]) or b, "p95_ci_ms"),
    ("ci-strings", lambda b: b.update(p95_ci_ms=["a", "b"]) or b, "p95_ci_ms[0]"),
    ("warnings-a-string", lambda b: b.update(warnings="hot") or b, "warnings"),
    ("device-a-string", lambda b: b.update(device="host") or b, "device"),
]


@pytest.mark.parametrize("garble,path", [(g, p) for _, g, p in BENCH_GARBLES], ids=[i for i, _, _ in BENCH_GARBLES])
def test_malformed_bench_result_is_an_error_on_that_device_only(garble, path):
    bad = garble(bench_result(9.0))
    with pytest.raises(MalformedMeasurement) as e:
        BenchView.from_dict(bad)
    assert e.value.path == path
    b = budget(p95_ms={"host": 12, "pixel6a": 30}, required_devices=["host", "pixel6a"])
    checks = {c.id: c for c in C.artifact_checks(b, measurement(bench={"host": bad, "pixel6a": bench_result(20.0, "pixel6a")}),
                                                 ["host", "pixel6a"])}
    assert checks["p95[host]"].status == "error" and "malformed benchmark result" in checks["p95[host]"].reason
    assert checks["p95[pixel6a]"].status == "pass" and checks["p95[pixel6a]"].measured == 20.0
    assert C.verdict(list(checks.values())) == "error"


def test_nan_and_nulls_stay_as_today():
    # NaN is a number: kept, and it compares false, so the check fails (as on the dicts)
    ev = full_eval()
    ev["heads"]["digit"]["delta"]["top1"] = {"value": float("nan"), "ci_low": None, "ci_high": None}
    c = {c.id: c for c in C.artifact_checks(budget(max_top1_drop_pts=1.0), measurement(ev=ev), ["host"])}["top1_drop[digit]"]
    assert c.status == "fail"
    b = bench_result(None, unavailable=("p95", "p99"))
    c = C.latency_checks(budget(p95_ms={"host": 12}), {"host": BenchView.from_dict(b)}, {}, ["host"])[0]
    assert c.status == "fail" and "(unavailable: ['p95', 'p99'])" in c.reason


def test_measurement_level_type_errors_raise():
    with pytest.raises(MalformedMeasurement, match="size_bytes"):
        ArtifactMeasurement.from_dict({"size_bytes": "3 MB"})
    with pytest.raises(MalformedMeasurement, match="eval_error_kind"):
        ArtifactMeasurement.from_dict({"eval_error_kind": "oops"})


def test_device_verdicts_rules():
    b = budget(p95_ms={"host": 12, "pixel6a": 30, "pixel8": 20}, required_devices=["host"])
    m = measurement(bench={"host": bench_result(9.0), "emulator": bench_result(99.0, "emulator")},
                    bench_errors={"pixel6a": "device lost mid-run"})
    checks = C.artifact_checks(b, m, ["host", "pixel6a", "emulator"])
    assert C.device_verdicts(checks, m, ["host", "pixel6a", "emulator"]) == {
        "host": "pass", "pixel6a": "error", "emulator": "skipped", "pixel8": "skipped"}
    m["bench"]["host"] = bench_result(13.0)
    checks = C.artifact_checks(b, m, ["host", "pixel6a"])
    assert C.device_verdicts(checks, m, ["host", "pixel6a"])["host"] == "fail"


# ---- verify: the parallel bench step --------------------------------------------------------
class ArtifactTestDouble:
    """Test double of optim.runtimes.artifact.Artifact: real files and hashes, no model."""

    def __init__(self, path: Path):
        self.dir = Path(path)
        self.format, self.scheme = self.dir.name.split("-", 1)
        self.metadata = {}

    @property
    def files(self):
        return sorted(p.name for p in self.dir.iterdir())

    @property
    def size_bytes(self):
        return sum((self.dir / f).stat().st_size for f in self.files)

    def digests(self):
        return {f: hashlib.sha256((self.dir / f).read_bytes()).hexdigest() for f in self.files}

    def content_sha256(self):
        return hashlib.sha256(json.dumps(self.digests(), sort_keys=True).encode()).hexdigest()


@pytest.fixture
def art(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "_load_artifact", ArtifactTestDouble)
    d = tmp_path / "onnx-int8"
    d.mkdir()
    (d / "model.bin").write_bytes(b"\1" * 1000)
    (tmp_path / "golden").mkdir()
    (tmp_path / "model.pt").write_bytes(b"reference")
    return tmp_path, d


POLICY = {"defaults": {"required_devices": ["host", "pixel6a"], "p95_ms": {"host": 12, "pixel6a": 30},
                       "max_top1_drop_pts": 1.0}}


def two_device_bench(pixel6a_outcome):
    """bench_fn double for devices host and pixel6a that only returns once both have started (a
    barrier: run one after the other, the first times out and the test fails), then pixel6a,
    after a delay, raises or returns ``pixel6a_outcome``."""
    barrier = threading.Barrier(2, timeout=10)
    threads = {}

    def bench_fn(artifact, device, **kw):
        threads[device] = threading.current_thread().name
        barrier.wait()
        if device == "pixel6a":
            threading.Event().wait(0.2)  # lost mid-run, after a while
            if isinstance(pixel6a_outcome, Exception):
                raise pixel6a_outcome
            return pixel6a_outcome
        return bench_result(9.0)
    return bench_fn, threads


def run_verify(tmp, d, bench_fn, evaluate_fn=None, out=None):
    return V.verify([d], tmp / "golden", devices=["host", "pixel6a"], policy=Policy.from_dict(POLICY),
                    reference=tmp / "model.pt", out=out, evaluate_fn=evaluate_fn or (lambda *a, **k: eval_report()),
                    bench_fn=bench_fn)


def test_device_lost_mid_run_fails_its_own_checks_only(art):
    tmp, d = art
    bench_fn, threads = two_device_bench(ToolError("adb: device 1A2B3C lost during trial 2 of 3"))
    res = run_verify(tmp, d, bench_fn, out=tmp / "r")
    a = res.report["artifacts"][0]
    checks = {c["id"]: c for c in a["checks"]}
    assert checks["p95[host]"]["status"] == "pass" and checks["p95[host]"]["measured"] == 9.0
    assert checks["p95[pixel6a]"]["status"] == "error" and "lost during trial 2" in checks["p95[pixel6a]"]["reason"]
    assert a["device_verdicts"] == {"host": "pass", "pixel6a": "error"}
    assert a["bench_errors"] == {"pixel6a": "adb: device 1A2B3C lost during trial 2 of 3"} and list(a["bench"]) == ["host"]
    assert res.verdict == "error" and res.exit_code == 3 and not res.report["input_errors"]
    assert threads["host"] != threads["pixel6a"]  # one worker per device
    jsonschema.validate(res.report, SCHEMA, format_checker=jsonschema.FormatChecker())
    md = (tmp / "r" / "verify.md").read_text()
    assert "Devices: `host` ✅ pass · `pixel6a` ⚠️ ERROR" in md
    assert "pixel6a <span class='st error'>ERROR</span>" in (tmp / "r" / "verify.html").read_text()


def test_bench_input_error_on_one_device_is_exit_2_and_the_other_is_judged(art):
    tmp, d = art
    bench_fn, _ = two_device_bench(InputError("artifact onnx-int8 has no model for the arm64 runner"))
    res = run_verify(tmp, d, bench_fn)
    a = res.report["artifacts"][0]
    assert res.exit_code == 2 and res.report["input_errors"] == [
        "onnx-int8: bench on pixel6a: artifact onnx-int8 has no model for the arm64 runner"]
    assert a["device_verdicts"] == {"host": "pass", "pixel6a": "error"}


def test_a_library_bug_on_one_device_is_named_with_its_type(art):
    tmp, d = art
    bench_fn, _ = two_device_bench(ZeroDivisionError("division by zero"))
    a = run_verify(tmp, d, bench_fn).report["artifacts"][0]
    assert a["bench_errors"]["pixel6a"] == "ZeroDivisionError: division by zero"


def test_typed_results_from_the_hooks_give_the_dict_report(art):
    tmp, d = art
    ev = eval_report()
    typed = EvalReport(target=ev["target"], reference=ev["reference"], golden=ev["golden"], n_samples=ev["n_samples"],
                       heads=ev["heads"])
    dict_fn, _ = two_device_bench(bench_result(25.0, "pixel6a"))

    def typed_bench(artifact, device, **kw):  # BenchResult objects, as optim.bench returns
        return BenchResult.from_dict(dict_fn(artifact, device, **kw))

    from_typed = run_verify(tmp, d, typed_bench, evaluate_fn=lambda *a, **k: typed).report["artifacts"][0]
    dict_fn, _ = two_device_bench(bench_result(25.0, "pixel6a"))
    from_dicts = run_verify(tmp, d, lambda *a, **k: typed_bench(*a, **k).to_dict(),
                            evaluate_fn=lambda *a, **k: typed.to_dict()).report["artifacts"][0]
    assert from_typed["checks"] == from_dicts["checks"] and from_typed["device_verdicts"] == {"host": "pass", "pixel6a": "pass"}
    assert from_typed["eval"] == from_dicts["eval"] == typed.to_dict()
    assert from_typed["bench"] == from_dicts["bench"]
    assert from_typed["bench"]["pixel6a"] == BenchResult.from_dict(bench_result(25.0, "pixel6a")).to_dict()


def test_malformed_report_from_evaluate_fn_is_recorded_not_raised(art):
    tmp, d = art
    bench_fn, _ = two_device_bench(bench_result(25.0, "pixel6a"))
    forged = eval_report()
    forged["heads"]["digit"]["delta"]["top1"]["value"] = True
    res = run_verify(tmp, d, bench_fn, evaluate_fn=lambda *a, **k: forged, out=tmp / "r")
    a = res.report["artifacts"][0]
    assert res.verdict == "error" and a["eval"] is None and "heads.digit.delta.top1.value" in a["eval_error"]
    jsonschema.validate(res.report, SCHEMA)
