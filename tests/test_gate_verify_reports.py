"""optim.verify orchestration and its four reports, with measurements from hand-made dicts.

The artifact here is ``ArtifactTestDouble`` (a directory of bytes with the Artifact
interface of issue 3) and evaluate/bench are replaced by functions returning hand-made
EvalReport/BenchResult dicts: this tests the gate's wiring and reports, not the runtimes
(tests/test_gate_end_to_end.py runs the real ones)."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from gate_inputs import bench_result, eval_report, per_class_row
from optim.errors import InputError, ToolError
from optim.gate import verify as V
from optim.gate.policy import Policy

SCHEMA = json.loads(files("optim.gate").joinpath("schemas/verify-report.v1.schema.json").read_text())


class ArtifactTestDouble:
    """Test double of optim.runtimes.artifact.Artifact: real files, real hashes, no model."""

    def __init__(self, path: Path):
        self.dir = Path(path)
        self.format, self.scheme = self.dir.name.split("-", 1)
        self.metadata = {}

    @property
    def files(self):
        return sorted(p.name for p in self.dir.iterdir() if p.name != "artifact.json")

    @property
    def size_bytes(self):
        return sum((self.dir / f).stat().st_size for f in self.files)

    def digests(self):
        return {f: hashlib.sha256((self.dir / f).read_bytes()).hexdigest() for f in self.files}

    def content_sha256(self):
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.encode() + b"\0" + (self.dir / f).read_bytes())
        return h.hexdigest()


@pytest.fixture
def arts(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "_load_artifact", ArtifactTestDouble)
    out = []
    for name, size in (("onnx-int8", 3_000_000), ("tflite-fp32", 11_000_000)):
        d = tmp_path / name
        d.mkdir()
        (d / "model.bin").write_bytes(b"\1" * size)
        out.append(d)
    (tmp_path / "golden").mkdir()
    (tmp_path / "model.pt").write_bytes(b"reference")
    return tmp_path, out


POLICY = {"defaults": {"required_devices": ["host"], "max_top1_drop_pts": 1.0, "max_tail_top1_drop_pts": 3.0,
                       "max_class_drop_pts": 10.0, "min_class_support": 20, "min_top1_agreement": 0.97},
          "targets": {"*-int8": {"size_mb": 5, "p95_ms": {"host": 12}}, "*-fp32": {"size_mb": 10, "p95_ms": {"host": 40}}}}


def fake_eval(per_artifact):
    def evaluate_fn(target, golden, reference, **kw):
        assert reference is not None and kw["tail_max_count"] == 50
        return per_artifact[Path(target).name]
    return evaluate_fn


def fake_bench(per_artifact):
    def bench_fn(artifact, device, **kw):
        r = per_artifact[(Path(artifact).name, device)]
        if isinstance(r, Exception):
            raise r
        return r
    return bench_fn


def int8_eval():
    rows = [per_class_row(str(i), 100 if i < 8 else 12, -0.01 * i, -0.01 * i - 0.04, -0.01 * i + 0.04, i >= 8)
            for i in range(10)]
    rows[9] = per_class_row("9", 12, -0.25, -0.5, -0.02, True)  # big, noisy, low support
    return eval_report(top1=-0.008, tail=-0.06, per_class=rows, agreement=0.975)


def run(tmp, arts, evals=None, benches=None, **kw):
    evals = evals or {"onnx-int8": int8_eval(), "tflite-fp32": eval_report(top1=0.0, tail=0.0)}
    benches = benches or {("onnx-int8", "host"): bench_result(9.0), ("tflite-fp32", "host"): bench_result(31.0)}
    return V.verify(arts, tmp / "golden", devices=kw.pop("devices", ["host"]), policy=Policy.from_dict(POLICY, "test.toml"),
                    reference=tmp / "model.pt", out=tmp / "reports", evaluate_fn=fake_eval(evals),
                    bench_fn=fake_bench(benches), **kw)


def test_failing_artifact_gives_exit_1_and_all_reports(arts):
    tmp, a = arts
    res = run(tmp, a)
    rep = res.report
    jsonschema.validate(rep, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert res.verdict == "fail" and res.exit_code == 1
    onnx, tfl = rep["artifacts"]
    assert onnx["verdict"] == "fail" and tfl["verdict"] == "fail"
    ids = {c["id"]: c for c in onnx["checks"]}
    assert ids["tail_top1_drop[digit]"]["status"] == "fail"   # 6 pts > 3
    assert ids["top1_drop[digit]"]["status"] == "pass"
    assert ids["size"]["status"] == "pass" and ids["p95[host]"]["status"] == "pass"
    assert ids["class_drop[digit]"]["details"]["low_support"][0]["label"] == "9"
    assert {c["id"]: c for c in tfl["checks"]}["size"]["status"] == "fail"  # 11 MB > 10
    assert onnx["content_sha256"] == ArtifactTestDouble(a[0]).content_sha256()
    assert rep["reference"]["sha256"] == hashlib.sha256(b"reference").hexdigest()
    on_disk = json.loads((tmp / "reports" / "verify.json").read_text())
    assert on_disk == json.loads(json.dumps(rep))
    # JUnit: one testcase per check, failures where checks failed
    root = ET.parse(tmp / "reports" / "verify.junit.xml").getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["onnx-int8", "tflite-fp32"]
    for s, art in zip(suites, rep["artifacts"]):
        cases = s.findall("testcase")
        assert [c.get("name") for c in cases] == [c["id"] for c in art["checks"]]
        assert int(s.get("tests")) == len(cases)
        failed = {c.get("name") for c in cases if c.find("failure") is not None}
        assert failed == {c["id"] for c in art["checks"] if c["status"] == "fail"}
        assert int(s.get("failures")) == len(failed)
    assert int(root.get("failures")) == rep["summary"]["fail"]
    md = (tmp / "reports" / "verify.md").read_text()
    assert "❌ FAIL" in md and "tail-class top-1 drop [digit]" in md and "low-support" in md
    html = (tmp / "reports" / "verify.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # per-class, head/tail, latency, size
    assert "src='http" not in html and "<script" not in html  # self-contained


def test_all_pass_exit_0(arts):
    tmp, a = arts
    evals = {"onnx-int8": eval_report(top1=-0.002, tail=-0.01, multilabel=-0.01),
             "tflite-fp32": eval_report(top1=0.0, tail=0.0, multilabel=0.0)}
    (a[1] / "model.bin").write_bytes(b"\1" * 9_000_000)
    res = run(tmp, a, evals=evals)
    assert res.verdict == "pass" and res.exit_code == 0
    jsonschema.validate(res.report, SCHEMA)
    assert ET.parse(tmp / "reports" / "verify.junit.xml").getroot().get("failures") == "0"
    # a two-head model: the multi-label head gets its own figure
    assert (tmp / "reports" / "verify.html").read_text().count("data:image/png;base64,") == 5


def test_device_error_gives_exit_3_and_error_in_junit(arts):
    tmp, a = arts
    evals = {"onnx-int8": eval_report(top1=-0.002, tail=-0.01), "tflite-fp32": eval_report(top1=0.0, tail=0.0)}
    (a[1] / "model.bin").write_bytes(b"\1" * 9_000_000)
    benches = {("onnx-int8", "host"): bench_result(9.0), ("tflite-fp32", "host"): bench_result(30.0),
               ("onnx-int8", "pixel6a"): ToolError("no device matches profile pixel6a (adb devices -l lists none)"),
               ("tflite-fp32", "pixel6a"): ToolError("no device matches profile pixel6a (adb devices -l lists none)")}
    pol = {**POLICY, "defaults": {**POLICY["defaults"], "required_devices": ["host", "pixel6a"]}}
    res = V.verify(a, tmp / "golden", devices=["host", "pixel6a"], policy=Policy.from_dict(pol), reference=tmp / "model.pt",
                   out=tmp / "r", evaluate_fn=fake_eval(evals), bench_fn=fake_bench(benches))
    assert res.verdict == "error" and res.exit_code == 3
    jsonschema.validate(res.report, SCHEMA)
    errs = ET.parse(tmp / "r" / "verify.junit.xml").getroot().findall(".//testcase/error")
    assert len(errs) == 2 and "pixel6a" in errs[0].get("message")


def test_required_device_missing_from_run_fails(arts):
    tmp, a = arts
    pol = {**POLICY, "defaults": {**POLICY["defaults"], "required_devices": ["pixel6a"]}}
    evals = {"onnx-int8": eval_report(top1=-0.002, tail=-0.01), "tflite-fp32": eval_report()}
    res = V.verify(a[:1], tmp / "golden", devices=["host"], policy=Policy.from_dict(pol), reference=tmp / "model.pt",
                   evaluate_fn=fake_eval(evals), bench_fn=fake_bench({("onnx-int8", "host"): bench_result(9.0)}))
    assert res.exit_code == 1
    c = {c["id"]: c for c in res.report["artifacts"][0]["checks"]}["p95[pixel6a]"]
    assert c["status"] == "fail" and "not measured" in c["reason"]


def test_golden_set_that_does_not_verify_fails(arts):
    tmp, a = arts
    evals = {"onnx-int8": eval_report(top1=-0.002, tail=-0.01, verified=False)}
    res = run(tmp, a[:1], evals=evals)
    assert res.exit_code == 1
    assert {c["id"]: c for c in res.report["artifacts"][0]["checks"]}["golden_set"]["status"] == "fail"


def test_evaluation_input_error_exit_2_and_still_reported(arts):
    tmp, a = arts

    def evaluate_fn(*_a, **_k):
        raise InputError("golden set golden: golden.json sha256 does not match the files")

    res = V.verify(a[:1], tmp / "golden", policy=Policy.from_dict(POLICY), reference=tmp / "model.pt", out=tmp / "r",
                   evaluate_fn=evaluate_fn, bench_fn=fake_bench({("onnx-int8", "host"): bench_result(9.0)}))
    assert res.exit_code == 2 and res.verdict == "fail"
    assert "sha256 does not match" in res.report["input_errors"][0]
    jsonschema.validate(res.report, SCHEMA)


@pytest.mark.parametrize("change,match", [
    ({"policy": None}, "no policy"),
    ({"reference": None}, "no FP32 reference"),
    ({"golden": "missing"}, "not a directory"),
    ({"devices": []}, "at least one --device"),
])
def test_input_errors_before_measuring(arts, change, match, monkeypatch):
    tmp, a = arts
    monkeypatch.chdir(tmp)
    kw = {"golden": tmp / "golden", "policy": Policy.from_dict(POLICY), "reference": tmp / "model.pt", "devices": ["host"]}
    kw.update(change)

    def never(*_a, **_k):
        raise AssertionError("measured despite bad input")

    with pytest.raises(InputError, match=match):
        V.verify(a, kw.pop("golden"), evaluate_fn=never, bench_fn=never, **kw)


def test_policy_without_matching_budget_is_input_error(arts):
    tmp, a = arts
    with pytest.raises(InputError, match="sets no budget for artifact"):
        V.verify(a, tmp / "golden", policy=Policy.from_dict({"targets": {"pte-*": {"size_mb": 1}}}))


def test_committed_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_schema_rejects_a_broken_report(arts):
    tmp, a = arts
    rep = json.loads(json.dumps(run(tmp, a[:1]).report))
    rep["artifacts"][0]["checks"][0]["status"] = "ok"  # not a status
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rep, SCHEMA)
    rep = json.loads(json.dumps(run(tmp, a[:1]).report))
    failing = next(c for c in rep["artifacts"][0]["checks"] if c["status"] == "fail")
    failing["reason"] = ""  # a failure must say why
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rep, SCHEMA)
