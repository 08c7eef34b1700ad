"""Pure verdicts: each check passes at and fails just past its threshold; fail-closed cases."""

from __future__ import annotations

import pytest

from gate_inputs import bench_result, eval_report, per_class_row
from optim.gate import checks as C
from optim.gate.policy import Policy


def budget(**kw):
    return Policy.from_dict({"defaults": kw}).resolve(["art"])


def by_id(checks):
    return {c.id: c for c in checks}


def run(b, ev=None, bench=None, bench_errors=None, devices=("host",), size_bytes=5_000_000, **m):
    meas = {"size_bytes": size_bytes, "eval": ev if ev is not None else eval_report(), "bench": bench or {},
            "bench_errors": bench_errors or {}, **m}
    return by_id(C.artifact_checks(b, meas, list(devices)))


# ---- size ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size_bytes,status", [(20_000_000, "pass"), (20_000_001, "fail")])
def test_size_at_threshold(size_bytes, status):
    c = run(budget(size_mb=20), size_bytes=size_bytes)["size"]
    assert c.status == status and c.unit == "MB" and c.threshold == 20
    assert c.margin == pytest.approx(20 - size_bytes / 1e6)


# ---- latency ------------------------------------------------------------------------------
@pytest.mark.parametrize("p95,status", [(25.0, "pass"), (25.01, "fail")])
def test_p95_at_threshold(p95, status):
    c = run(budget(p95_ms={"pixel6a": 25}), bench={"pixel6a": bench_result(p95, "pixel6a")},
            devices=["pixel6a"])["p95[pixel6a]"]
    assert c.status == status and c.measured == p95
    assert c.interval == pytest.approx([p95 * 0.97, p95 * 1.04])


def test_required_device_not_measured_fails():
    cs = run(budget(required_devices=["pixel6a"], p95_ms={"pixel6a": 25, "host": 30}),
             bench={"host": bench_result(10)}, devices=["host"])
    assert cs["p95[pixel6a]"].status == "fail" and "--device pixel6a" in cs["p95[pixel6a]"].reason
    assert cs["p95[host]"].status == "pass"
    assert C.verdict(list(cs.values())) == "fail"


def test_budgeted_but_not_required_device_is_skipped_not_passed():
    cs = run(budget(p95_ms={"pixel6a": 25}), bench={"host": bench_result(10)})
    assert cs["p95[pixel6a]"].status == "skipped"


def test_device_error_is_infrastructure_error():
    cs = run(budget(required_devices=["pixel6a"]), bench_errors={"pixel6a": "no device with serial X"},
             devices=["pixel6a"])
    assert cs["p95[pixel6a]"].status == "error"
    assert C.verdict(list(cs.values())) == "error"
    assert C.exit_code_for("error") == 3


def test_p95_null_fails_closed():
    c = run(budget(p95_ms={"host": 30}), bench={"host": bench_result(None, unavailable=("p95", "p99"))})["p95[host]"]
    assert c.status == "fail" and "no per-iteration times" in c.reason


def test_required_device_without_budget_passes_when_measured():
    c = run(budget(required_devices=["host"]), bench={"host": bench_result(10)})["p95[host]"]
    assert c.status == "pass" and c.threshold is None and c.measured == 10


# ---- accuracy aggregates ------------------------------------------------------------------
@pytest.mark.parametrize("delta,status", [(-0.01, "pass"), (-0.0101, "fail")])
def test_top1_drop_at_threshold(delta, status):
    c = run(budget(max_top1_drop_pts=1.0), ev=eval_report(top1=delta))["top1_drop[digit]"]
    assert c.status == status
    assert c.measured == pytest.approx(-100 * delta)
    assert c.interval == pytest.approx([-100 * (delta + 0.01), -100 * (delta - 0.01)])


def test_decide_on_ci_uses_upper_end_of_drop():
    # drop 0.5 ± 1 pt: passes on the estimate, fails when the interval must fit in 1 pt
    ev = eval_report(top1=-0.005)
    assert run(budget(max_top1_drop_pts=1.0), ev=ev)["top1_drop[digit]"].status == "pass"
    c = run(budget(max_top1_drop_pts=1.0, decide_on="ci"), ev=ev)["top1_drop[digit]"]
    assert c.status == "fail" and c.details["decided_on"] == pytest.approx(1.5)


@pytest.mark.parametrize("delta,status", [(-0.03, "pass"), (-0.0301, "fail")])
def test_tail_drop_at_threshold(delta, status):
    assert run(budget(max_tail_top1_drop_pts=3), ev=eval_report(tail=delta))["tail_top1_drop[digit]"].status == status


def test_tail_null_fails_closed_with_reason():
    c = run(budget(max_tail_top1_drop_pts=3), ev=eval_report(tail=None, tail_classes=()))["tail_top1_drop[digit]"]
    assert c.status == "fail" and "no tail classes" in c.reason


@pytest.mark.parametrize("agreement,status", [(0.97, "pass"), (0.9699, "fail")])
def test_agreement_at_threshold(agreement, status):
    c = run(budget(min_top1_agreement=0.97), ev=eval_report(agreement=agreement))["top1_agreement[digit]"]
    assert c.status == status and c.comparison == ">="
    assert c.margin == pytest.approx(agreement - 0.97)


@pytest.mark.parametrize("delta,status", [(-0.02, "pass"), (-0.0201, "fail")])
def test_multilabel_macro_f1_at_threshold(delta, status):
    cs = run(budget(max_multilabel_macro_f1_drop_pts=2), ev=eval_report(multilabel=delta))
    assert cs["multilabel_macro_f1_drop[tags]"].status == status


def test_multilabel_budget_without_multilabel_head_is_skipped():
    assert run(budget(max_multilabel_macro_f1_drop_pts=2))["multilabel_macro_f1_drop"].status == "skipped"


def test_no_reference_fails_every_delta_check():
    cs = run(budget(max_top1_drop_pts=1, max_class_drop_pts=10, min_top1_agreement=0.9),
             ev=eval_report(with_delta=False))
    for k in ("top1_drop[digit]", "class_drop[digit]", "top1_agreement[digit]"):
        assert cs[k].status == "fail" and "reference" in cs[k].reason


def test_null_top1_delta_fails_closed():
    ev = eval_report()
    ev["heads"]["digit"]["delta"]["top1"] = {"value": None, "ci_low": None, "ci_high": None}
    c = run(budget(max_top1_drop_pts=1), ev=ev)["top1_drop[digit]"]
    assert c.status == "fail" and "could not be computed" in c.reason


def test_golden_set_not_verified_fails():
    cs = run(budget(size_mb=100), ev=eval_report(verified=False))
    assert cs["golden_set"].status == "fail" and "does not verify" in cs["golden_set"].reason
    assert C.verdict(list(cs.values())) == "fail"


def test_evaluation_errors():
    b = budget(size_mb=100)
    meas = {"size_bytes": 1, "eval": None, "eval_error": "onnxruntime crashed", "eval_error_kind": "tool"}
    cs = by_id(C.artifact_checks(b, meas, []))
    assert cs["evaluation"].status == "error"
    meas["eval_error_kind"] = "input"
    assert by_id(C.artifact_checks(b, meas, []))["evaluation"].status == "fail"


# ---- single class, judged on the interval --------------------------------------------------
def classes(*rows):
    base = [per_class_row(str(i), 100, 0.0, -0.03, 0.03) for i in range(10)]
    for r in rows:
        base[int(r["label"])] = r
    return base


def class_check(rows, threshold=10, min_support=20):
    return run(budget(max_class_drop_pts=threshold, min_class_support=min_support),
               ev=eval_report(per_class=rows))["class_drop[digit]"]


def test_class_fails_only_when_upper_ci_end_below_minus_threshold():
    # drop 20 pts, interval of delta [-0.30, -0.101]: significant and beyond 10 pts → fail
    c = class_check(classes(per_class_row("3", 100, -0.20, -0.30, -0.101)))
    assert c.status == "fail" and c.details["failing"][0]["label"] == "3"
    assert c.measured == pytest.approx(10.1) and c.interval == pytest.approx([10.1, 30.0])
    # same estimate, ci_high exactly at -threshold → not established beyond the budget → pass
    c = class_check(classes(per_class_row("3", 100, -0.20, -0.30, -0.10)))
    assert c.status == "pass" and c.margin == pytest.approx(0)
    assert [x["label"] for x in c.details["inconclusive"]] == ["3"]


def test_noisy_low_support_class_cannot_fail_alone():
    # 5 images, a 60-point drop with an interval entirely below -10: still cannot fail the release alone
    c = class_check(classes(per_class_row("9", 5, -0.6, -1.0, -0.2)))
    assert c.status == "pass"
    assert c.details["low_support"][0]["label"] == "9" and c.details["low_support"][0]["support"] == 5
    # with min_support lowered to 5 the same class decides
    assert class_check(classes(per_class_row("9", 5, -0.6, -1.0, -0.2)), min_support=5).status == "fail"


def test_no_class_with_enough_support_fails_closed():
    rows = [per_class_row(str(i), 3, 0.0, -0.3, 0.3) for i in range(10)]
    c = class_check(rows)
    assert c.status == "fail" and "cannot decide" in c.reason


def test_class_with_null_interval_fails_closed():
    c = class_check(classes({**per_class_row("2", 100, -0.01, 0, 0), "ci_low": None, "ci_high": None}))
    assert c.status == "fail" and "2" in c.reason


# ---- verdict / exit codes --------------------------------------------------------------------
def test_verdict_precedence_and_exit_codes():
    p, f, e, s = (C.Check("x", "size", st, "") for st in ("pass", "fail", "error", "skipped"))
    assert C.verdict([p, s]) == "pass" and C.exit_code_for("pass") == 0
    assert C.verdict([p, e]) == "error"
    assert C.verdict([p, e, f]) == "fail" and C.exit_code_for("fail") == 1
    assert C.verdict([s]) == "fail"  # nothing verified never passes
    assert C.verdict([]) == "fail"


# ---- absolute floors (issue 11): no reference needed, fail closed -----------------------------
@pytest.mark.parametrize("floor,status", [(0.9, "pass"), (0.9001, "fail")])
def test_min_top1_at_threshold(floor, status):
    c = run(budget(min_top1=floor))["min_top1[digit]"]  # the eval's digit top-1 is 0.9
    assert c.status == status and c.comparison == ">=" and c.unit == "" and c.kind == "accuracy"
    assert c.measured == pytest.approx(0.9) and c.threshold == floor
    assert c.margin == pytest.approx(0.9 - floor)


def test_floors_need_no_reference_and_pass_without_deltas():
    b = budget(min_top1=0.5, min_tail_top1=0.5, min_macro_f1=0.5)
    assert not b.needs_reference and b.has_checks
    cs = run(b, ev=eval_report(with_delta=False))
    assert {k: c.status for k, c in cs.items() if k.startswith("min_")} == {
        "min_top1[digit]": "pass", "min_tail_top1[digit]": "pass", "min_macro_f1[digit]": "pass"}


def test_bad_model_with_bad_reference_fails_on_the_floor():
    # a reference as bad as the model: every delta is 0 and passes; the floor still catches it
    ev = eval_report(top1=0.0, tail=0.0, agreement=1.0)
    ev["heads"]["digit"]["metrics"]["top1"] = 0.10
    cs = run(budget(max_top1_drop_pts=1.0, min_top1_agreement=0.97, min_top1=0.8), ev=ev)
    assert cs["top1_drop[digit]"].status == "pass" and cs["top1_agreement[digit]"].status == "pass"
    assert cs["min_top1[digit]"].status == "fail" and "is 0.1, below the policy's floor min_top1 = 0.8" in cs["min_top1[digit]"].reason
    assert C.verdict(list(cs.values())) == "fail"


def test_floor_per_head_table_and_kinds():
    ev = eval_report(multilabel=-0.01)  # heads: digit (multiclass, macro-F1 0.88), tags (multilabel, 0.7)
    cs = run(budget(min_macro_f1=0.75), ev=ev)
    assert cs["min_macro_f1[digit]"].status == "pass" and cs["min_macro_f1[tags]"].status == "fail"
    # a head's own entry wins over the number for every head
    cs = run(budget(min_macro_f1={"*": 0.75, "tags": 0.6}), ev=ev)
    assert cs["min_macro_f1[tags]"].status == "pass" and cs["min_macro_f1[tags]"].threshold == 0.6
    assert cs["min_macro_f1[digit]"].threshold == 0.75
    # top-1 floors apply to multiclass heads only; a table naming a multilabel head fails closed
    cs = run(budget(min_top1=0.5), ev=ev)
    assert "min_top1[digit]" in cs and "min_top1[tags]" not in cs
    c = run(budget(min_top1={"tags": 0.5}), ev=ev)["min_top1[tags]"]
    assert c.status == "fail" and "multilabel" in c.reason


def test_floor_for_missing_head_fails_closed():
    c = run(budget(min_top1={"digits": 0.5}))["min_top1[digits]"]  # typo: the head is "digit"
    assert c.status == "fail" and "no such head" in c.reason and "digit" in c.reason
    # a number with no head of its kind at all: fails, never silently skipped
    ev = eval_report()
    ev["heads"]["digit"]["kind"] = "multilabel"
    c = run(budget(min_top1=0.5), ev=ev)["min_top1"]
    assert c.status == "fail" and "no multiclass head" in c.reason


@pytest.mark.parametrize("value", [None, float("nan"), "0.95", True])
def test_floor_null_or_garbage_metric_fails_closed(value):
    ev = eval_report()
    ev["heads"]["digit"]["metrics"]["top1"] = value
    c = run(budget(min_top1=0.5), ev=ev)["min_top1[digit]"]
    assert c.status == "fail" and c.measured is None and "cannot be checked" in c.reason


def test_tail_floor_without_tail_classes_fails_closed():
    c = run(budget(min_tail_top1=0.5), ev=eval_report(tail=None, tail_classes=()))["min_tail_top1[digit]"]
    assert c.status == "fail" and "no tail classes" in c.reason


def test_floor_metrics_missing_fails_closed():
    ev = eval_report()
    del ev["heads"]["digit"]["metrics"]
    assert run(budget(min_macro_f1=0.1), ev=ev)["min_macro_f1[digit]"].status == "fail"


# ---- pins (issue 11) ---------------------------------------------------------------------------
GOLDEN = "ab" * 32  # eval_report()'s golden sha256
OTHER = "cd" * 32


def pinned(**pins):
    return Policy.from_dict({**pins, "defaults": {"size_mb": 100}}).resolve(["art"])


def test_golden_pin_matches_the_evaluated_golden_set():
    cs = run(pinned(golden_sha256=GOLDEN.upper()))  # the pin is case-insensitive
    assert cs["golden_pin"].status == "pass" and cs["golden_pin"].kind == "integrity"
    assert "reference_pin" not in cs  # not pinned: no check


def test_golden_pin_mismatch_fails_naming_both_digests():
    cs = run(pinned(golden_sha256=OTHER))
    c = cs["golden_pin"]
    assert c.status == "fail" and GOLDEN in c.reason and OTHER in c.reason
    assert c.details == {"pinned_sha256": OTHER, "measured_sha256": GOLDEN}
    assert C.verdict(list(cs.values())) == "fail" and C.exit_code_for("fail") == 1


def test_golden_pin_without_a_measured_digest_fails_closed():
    meas = {"size_bytes": 1, "eval": None, "eval_error": "boom", "eval_error_kind": "input"}
    assert by_id(C.artifact_checks(pinned(golden_sha256=GOLDEN), meas, []))["golden_pin"].status == "fail"
    # the measured digest and the evaluation's disagree: unknown, fails
    c = run(pinned(golden_sha256=GOLDEN), golden_sha256=OTHER)["golden_pin"]
    assert c.status == "fail"


def test_reference_pin():
    b = pinned(reference_sha256=OTHER)
    assert run(b, reference_sha256=OTHER)["reference_pin"].status == "pass"
    c = run(b, reference_sha256=GOLDEN)["reference_pin"]
    assert c.status == "fail" and OTHER in c.reason and GOLDEN in c.reason
    c = run(b)["reference_pin"]  # no reference used / not measured
    assert c.status == "fail" and "unknown" in c.reason


def test_pin_checks_direct():
    b = pinned(golden_sha256=GOLDEN, reference_sha256=OTHER)
    assert [(c.id, c.status) for c in C.pin_checks(b, GOLDEN, OTHER)] == [("golden_pin", "pass"), ("reference_pin", "pass")]
    assert [c.status for c in C.pin_checks(b, OTHER, GOLDEN)] == ["fail", "fail"]
    assert C.pin_checks(budget(size_mb=1), OTHER, None) == []
