"""Issue 14 on plain arrays: top-k for any k, per-tag F1/AP deltas with intervals, tail-tag
macro-F1, the policy keys that budget them and the checks that judge them. Every expected
number is computed by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from optim.errors import InputError
from optim.gate import checks as C
from optim.gate.policy import Policy
from optim.golden_sets.head_report import multiclass_head_report, multilabel_head_report
from optim.golden_sets.metrics import average_precision, multiclass_metrics, topk_set
from optim.golden_sets.stats import resample_weights, weighted_average_precision, weighted_multilabel_f1
from optim.golden_sets.tail import TailSplit


# ---- metrics ------------------------------------------------------------------------------
def test_topk_set_adds_policy_ks_and_refuses_nonsense():
    assert topk_set(None) == (2, 5) and topk_set([3, 2, 10, 1]) == (2, 3, 5, 10)
    for bad in ([0], [True], [2.5], ["3"]):
        with pytest.raises(ValueError, match="integer"):
            topk_set(bad)
    with pytest.raises(ValueError, match="at most"):
        topk_set(range(3, 40))


def test_top3_hand_computed_and_clipped_to_k():
    # 4 classes; true class ranks 1, 2, 3, 4 in the four rows → top-2 .5, top-3 .75, top-5 (clipped to 4) 1
    logits = np.array([[4, 3, 2, 1], [3, 4, 2, 1], [2, 3, 4, 1], [1, 2, 3, 4]], dtype=float)
    y = np.array([0, 0, 0, 0])
    m = multiclass_metrics(logits, y, ks=[3])
    assert m.topk == {2: 0.5, 3: 0.75, 5: 1.0} and m.top2 == 0.5 and m.top5 == 1.0
    assert list(m.summary())[:4] == ["top1", "top2", "top5", "top3"] and m.summary()["top3"] == 0.75


def test_average_precision_hand_computed_missing_ignored():
    # tag 0: scores .9 .8 .7 .6 with y 1 0 1 0 → AP = ½·1 + ½·⅔ = 5/6; the NaN row is ignored
    # tag 1: no known positive → undefined (NaN, never 0)
    s = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.95, 0.5]])
    y = np.array([[1, 0], [0, 0], [1, 0], [0, np.nan], [np.nan, np.nan]], dtype=float)
    ap = average_precision(s, y)
    assert ap[0] == pytest.approx(5 / 6) and np.isnan(ap[1])
    # ties: all four tag-0 scores equal → one threshold, AP = precision = 2/4
    assert average_precision(np.full((4, 1), 0.3), y[:4, :1])[0] == pytest.approx(0.5)


def test_weighted_ap_and_f1_equal_sklearn_with_sample_weights():
    from sklearn.metrics import average_precision_score, f1_score

    rng = np.random.default_rng(3)
    n, t = 40, 3
    s = np.round(rng.normal(size=(n, t)), 1)  # rounded: many ties
    y = (rng.random((n, t)) < 0.3).astype(float)
    y[rng.random((n, t)) < 0.2] = np.nan
    pred = s > 0
    w = next(resample_weights(n, 25, seed=7))
    ap, f1 = weighted_average_precision(w, s, y), weighted_multilabel_f1(w, y, pred)
    for b in range(len(w)):
        for j in range(t):
            k = ~np.isnan(y[:, j])
            yj, wj = y[k, j].astype(int), w[b, k]
            if (wj * yj).sum() > 0:
                assert ap[b, j] == pytest.approx(average_precision_score(yj, s[k, j], sample_weight=wj))
                assert f1[b, j] == pytest.approx(f1_score(yj, pred[k, j], sample_weight=wj))
            else:
                assert np.isnan(ap[b, j])


# ---- the two-head case: one tag collapses, the macro average barely moves -----------------
N, T = 200, 10
TAGS = [f"t{j}" for j in range(T)]


def _two_head_report():
    """Multi-label head: tag j positive iff (i + 3j) % 5 == 0 → 40 positives each.
    Reference: perfect on t0; on t1…t9 also 8 false positives → F1 = 80/88 = 10/11.
    Target: perfect on t1…t9; t0 never predicted → F1 0. Macro-F1: reference
    (1 + 9·10/11)/10 = 101/110, target 9/10 → delta −1/55 (−1.8 pts).
    Multiclass head (4 classes, y = i % 4): top-1 identical; on the 40 samples i < 40 both
    predict class (y+1)%4, the reference's second choice is y, the target's is last → top-2
    delta −0.2."""
    i = np.arange(N)
    y = np.stack([((i + 3 * j) % 5 == 0) for j in range(T)], axis=1).astype(float)
    ref = np.where(y == 1, 5.0, -5.0)
    tgt = ref.copy()
    for j in range(1, T):
        neg = np.flatnonzero(y[:, j] == 0)[:8]
        ref[neg, j] = 5.0
    tgt[:, 0] = -5.0
    tail = TailSplit(np.array([j < 2 for j in range(T)]), "train_counts")  # t0, t1 are tail tags
    ml = multilabel_head_report(TAGS, tgt, y, np.full(T, 0.5), tail, ref, resamples=400)

    yc = i % 4
    lr = np.zeros((N, 4))
    lr[i, yc] = 2.0
    lt = lr.copy()
    wrong = i < 40
    lr[wrong, (yc[wrong] + 1) % 4] = 3.0  # reference: wrong top-1, true class second
    lt[wrong, (yc[wrong] + 1) % 4] = 3.0
    lt[wrong, yc[wrong]] = -1.0           # target: same wrong top-1, true class last
    mc = multiclass_head_report(["a", "b", "c", "d"], lt, yc, TailSplit(None, "none"), lr, resamples=400, ks=[3])
    return {"schema_version": 1, "golden": {"verified": True, "sha256": "ab" * 32}, "n_samples": N,
            "heads": {"kind_mc": mc, "pattern": ml}}


@pytest.fixture(scope="module")
def two_head():
    return _two_head_report()


def test_per_tag_and_tail_tag_deltas_hand_computed(two_head):
    ml = two_head["heads"]["pattern"]
    assert ml["metrics"]["macro_f1"] == pytest.approx(0.9) and ml["reference_metrics"]["macro_f1"] == pytest.approx(101 / 110)
    d = ml["delta"]
    assert d["macro_f1"]["value"] == pytest.approx(-1 / 55)
    rows = {r["label"]: r for r in d["per_tag"]}
    # t0: F1 1 → 0 on every resample: a zero-width interval at −1
    assert rows["t0"]["f1"] == {"value": pytest.approx(-1.0), "ci_low": pytest.approx(-1.0), "ci_high": pytest.approx(-1.0)}
    assert rows["t0"]["significant"] and d["significant_drops"] == ["t0"] and rows["t0"]["support"] == 40
    # t1…t9: 10/11 → 1
    assert rows["t5"]["f1"]["value"] == pytest.approx(1 / 11) and rows["t5"]["f1"]["ci_low"] > 0
    # AP: t0 target logits all tied at −5 → AP = 40/200; reference perfect → delta −0.8.
    # t5: reference ties 8 negatives with the 40 positives → 40/48; target perfect → +1/6
    assert rows["t0"]["ap"]["value"] == pytest.approx(0.2 - 1.0) and rows["t5"]["ap"]["value"] == pytest.approx(1 - 40 / 48)
    assert ml["per_tag"][0]["ap"] == pytest.approx(0.2)
    # tail tags t0, t1: reference (1 + 10/11)/2, target (0 + 1)/2
    assert ml["metrics"]["tail_macro_f1"] == pytest.approx(0.5)
    assert d["tail_macro_f1"]["value"] == pytest.approx(0.5 - (1 + 10 / 11) / 2)
    assert d["tail_macro_f1"]["ci_low"] <= d["tail_macro_f1"]["value"] <= d["tail_macro_f1"]["ci_high"]
    mc = two_head["heads"]["kind_mc"]
    assert mc["delta"]["top1"]["value"] == 0.0 and mc["delta"]["top2"]["value"] == pytest.approx(-0.2)
    assert mc["metrics"]["top3"] == pytest.approx(0.8) and mc["delta"]["top3"]["value"] == pytest.approx(-0.2)


def _budget(**defaults):
    return Policy.from_dict({"defaults": defaults}, source="t.toml").resolve(["onnx-int8", "onnx"])


def test_tag_check_catches_the_collapse_the_macro_check_misses(two_head):
    b = _budget(max_multilabel_macro_f1_drop_pts=2.0, max_tag_f1_drop_pts=10.0, min_class_support=20,
                max_tail_tag_macro_f1_drop_pts=3.0, max_top1_drop_pts=1.0, max_top2_drop_pts=1.0)
    c = {x.id: x for x in C.accuracy_checks(b, two_head)}
    assert c["multilabel_macro_f1_drop[pattern]"].status == "pass"  # 1.8 pts ≤ 2: the average hides it
    tag = c["tag_f1_drop[pattern]"]
    assert tag.status == "fail" and tag.measured == pytest.approx(100.0) and tag.details["worst_tag"] == "t0"
    assert [f["label"] for f in tag.details["failing"]] == ["t0"] and "t0" in tag.reason
    assert c["tail_tag_macro_f1_drop[pattern]"].status == "fail"
    assert c["tail_tag_macro_f1_drop[pattern]"].measured == pytest.approx(100 * ((1 + 10 / 11) / 2 - 0.5))
    assert c["top1_drop[kind_mc]"].status == "pass"
    assert c["top2_drop[kind_mc]"].status == "fail" and c["top2_drop[kind_mc]"].measured == pytest.approx(20.0)
    assert C.verdict(list(c.values())) == "fail"
    # the tag does not count when the policy demands more positives than it has (40)
    low = {x.id: x for x in C.accuracy_checks(_budget(max_tag_f1_drop_pts=10.0, min_class_support=41), two_head)}
    assert low["tag_f1_drop[pattern]"].status == "fail" and "cannot decide" in low["tag_f1_drop[pattern]"].reason
    assert [r["label"] for r in low["tag_f1_drop[pattern]"].details["low_support"]][0] == "t0"


# ---- checks on edited reports: fail closed -------------------------------------------------
def _ml(per_tag, tail=("rare",), tail_delta=-0.01):
    return {"schema_version": 1, "golden": {"verified": True}, "heads": {"tags": {
        "kind": "multilabel", "metrics": {"macro_f1": 0.7, "tail_macro_f1": 0.6 if tail else None}, "tail_classes": list(tail),
        "per_tag": [], "delta": {"macro_f1": {"value": -0.01, "ci_low": -0.02, "ci_high": 0.0},
                                 "tail_macro_f1": {"value": tail_delta if tail else None, "ci_low": None, "ci_high": None},
                                 "per_tag": per_tag}}}}


def _tag(label, support, value, lo, hi):
    return {"label": label, "support": support, "f1": {"value": value, "ci_low": lo, "ci_high": hi}}


def test_tag_check_rules_inconclusive_low_support_and_nulls():
    b = _budget(max_tag_f1_drop_pts=5.0, min_class_support=20)
    one = lambda rows: C.accuracy_checks(b, _ml(rows))[-1]  # noqa: E731
    # drop 8 pts but the interval reaches −2: inconclusive, passes (worst established drop 2 pts)
    c = one([_tag("a", 50, -0.08, -0.15, -0.02), _tag("b", 50, 0.0, -0.01, 0.01)])
    assert c.status == "pass" and c.measured == pytest.approx(2.0) and c.details["inconclusive"][0]["label"] == "a"
    # established beyond budget → fail; a low-support tag's bigger drop does not decide
    c = one([_tag("a", 50, -0.2, -0.3, -0.1), _tag("b", 3, -0.9, -1.0, -0.5)])
    assert c.status == "fail" and c.details["worst_tag"] == "a" and c.details["low_support"][0]["label"] == "b"
    # null / NaN / missing interval on an eligible tag, missing rows, no delta: never a pass
    for rows in ([_tag("a", 50, None, None, None)], [_tag("a", 50, -0.01, float("nan"), 0.0)], [], None):
        assert one(rows).status == "fail"
    rep = _ml([])
    rep["heads"]["tags"]["delta"] = None
    assert C.accuracy_checks(b, rep)[-1].status == "fail" and "reference" in C.accuracy_checks(b, rep)[-1].reason


def test_tail_tag_check_without_tail_tags_fails_and_says_why():
    b = _budget(max_tail_tag_macro_f1_drop_pts=3.0, tail_max_count=50)
    c = C.accuracy_checks(b, _ml([], tail=()))[-1]
    assert c.id == "tail_tag_macro_f1_drop[tags]" and c.status == "fail" and "no tail tags" in c.reason
    c = C.accuracy_checks(b, _ml([], tail_delta=-0.05))[-1]
    assert c.status == "fail" and c.measured == pytest.approx(5.0)
    # the floor on the artifact's own tail-tag macro-F1 (no reference needed)
    f = {x.id: x for x in C.accuracy_checks(_budget(min_tail_tag_macro_f1=0.65), _ml([]))}
    assert f["min_tail_tag_macro_f1[tags]"].status == "fail" and f["min_tail_tag_macro_f1[tags]"].measured == 0.6


def test_topk_check_fails_closed_when_the_report_lacks_k_and_skips_without_multiclass_head():
    from gate_inputs import eval_report

    rep = eval_report()
    c = {x.id: x for x in C.accuracy_checks(_budget(max_topk_drop_pts={"3": 1.0}), rep)}
    assert c["top3_drop[digit]"].status == "fail" and "top-3" in c["top3_drop[digit]"].reason
    rep["heads"]["digit"]["delta"]["top3"] = {"value": -0.005, "ci_low": -0.02, "ci_high": 0.01}
    c = {x.id: x for x in C.accuracy_checks(_budget(max_topk_drop_pts={"3": 1.0}, decide_on="ci"), rep)}
    assert c["top3_drop[digit]"].status == "fail" and c["top3_drop[digit]"].measured == pytest.approx(0.5)  # CI end 2 pts
    only_tags = _ml([])
    c = {x.id: x for x in C.accuracy_checks(_budget(max_top2_drop_pts=1.0, max_tag_f1_drop_pts=1.0), only_tags)}
    assert c["multiclass_head"].status == "skipped"


def test_labels_for_new_check_ids():
    from optim.gate.reports.format import check_label

    assert check_label("top2_drop[digit]") == "top-2 drop [digit]"
    assert check_label("top10_drop[digit]") == "top-10 drop [digit]"
    assert check_label("tag_f1_drop[pattern]").startswith("worst tag F1 drop")
    assert check_label("tail_tag_macro_f1_drop[pattern]") == "tail-tag macro-F1 drop [pattern]"


# ---- policy keys -----------------------------------------------------------------------------
def test_policy_topk_and_tag_keys_parse_merge_and_need_a_reference():
    p = Policy.from_dict({"defaults": {"max_top2_drop_pts": 1.0, "max_tag_f1_drop_pts": 10},
                          "targets": {"*-int8": {"max_topk_drop_pts": {"5": 0.5}, "max_tail_tag_macro_f1_drop_pts": 3}}},
                         source="p.toml")
    b = p.resolve(["onnx-int8"])
    assert b.max_topk_drop_pts == {2: 1.0, 5: 0.5} and b.topk_ks == (2, 5) and b.max_top2_drop_pts == 1.0
    assert b.max_tag_f1_drop_pts == 10 and b.max_tail_tag_macro_f1_drop_pts == 3 and b.needs_reference
    assert p.resolve(["tflite-fp16"]).topk_ks == (2,)
    assert b.model_dump(mode="json")["max_topk_drop_pts"] == {"2": 1.0, "5": 0.5}
    # a later section overrides one k and keeps the others
    p2 = Policy.from_dict({"defaults": {"max_topk_drop_pts": {"2": 1.0, "5": 0.5}},
                           "targets": {"*": {"max_top2_drop_pts": 3.0}}}, source="p.toml")
    assert p2.resolve(["x"]).max_topk_drop_pts == {2: 3.0, 5: 0.5}
    assert Policy.from_dict({"defaults": {"max_topk_drop_pts": {"3": 1.0}}}).resolve(["x"]).has_checks


@pytest.mark.parametrize("bad, where", [
    ({"max_topk_drop_pts": {"1": 1.0}}, "max_top1_drop_pts"),
    ({"max_topk_drop_pts": {"two": 1.0}}, "defaults.max_topk_drop_pts"),
    ({"max_topk_drop_pts": {"2": "1"}}, "defaults.max_topk_drop_pts.2"),
    ({"max_topk_drop_pts": {"2": 101}}, "defaults.max_topk_drop_pts.2"),
    ({"max_topk_drop_pts": {"2": True}}, "defaults.max_topk_drop_pts.2"),
    ({"max_topk_drop_pts": {"2": 1, "02": 1}}, "twice"),
    ({"max_topk_drop_pts": {str(k): 1 for k in range(2, 12)}}, "at most"),
    ({"max_top2_drop_pts": 1.0, "max_topk_drop_pts": {"2": 2.0}}, "keep one"),
    ({"max_tag_f1_drop_pts": -1}, "defaults.max_tag_f1_drop_pts"),
    ({"max_tail_tag_macro_f1_drop_pts": float("nan")}, "defaults.max_tail_tag_macro_f1_drop_pts"),
    ({"max_top2_drop_pts": True}, "defaults.max_top2_drop_pts"),
    ({"min_tail_tag_macro_f1": 50}, "defaults.min_tail_tag_macro_f1"),
    ({"max_tag_f1_drop": 5}, "defaults.max_tag_f1_drop"),
])
def test_policy_refuses_bad_topk_and_tag_keys(bad, where):
    with pytest.raises(InputError, match="p.toml") as e:
        Policy.from_dict({"defaults": bad}, source="p.toml")
    assert where in str(e.value)


def test_policy_refuses_too_many_ks_after_merging_sections():
    p = Policy.from_dict({"defaults": {"max_topk_drop_pts": {str(k): 1 for k in range(2, 10)}},
                          "targets": {"*": {"max_topk_drop_pts": {"20": 1}}}}, source="p.toml")
    with pytest.raises(InputError, match="at most 8"):
        p.resolve(["x"])
