"""optim.tuning.search.run_search on its sampled (TPE) path, with a fake measurement: the trial
budget buys distinct candidates, a repeated proposal costs nothing, and resume counts what the
journal holds. (tests/test_tune.py covers the exhaustive path end to end.)"""

from __future__ import annotations

from optim.tuning.search import Candidate, SearchSettings, TrialRecord, enumerate_candidates, open_study, run_search


def _space() -> list[Candidate]:
    # 2 baselines + 4 fallback sizes of int8 + fp16: 7 candidates, more than the budgets below
    return enumerate_candidates({"onnx": ("fp32", "fp16", "int8")}, {"onnx": 8}, ks=(1, 2, 4, 8))


def _fake_evaluate(measured: list[str]):
    def evaluate(c: Candidate, number: int) -> TrialRecord:
        measured.append(c.key)
        ok = c.scheme != "int8" or c.k >= 2  # plain INT8 and 1 float unit fail, like a collapse repaired by 2 units
        return TrialRecord(candidate={"key": c.key}, status="pass" if ok else "fail", reasons=[] if ok else ["tail"],
                           size_mb=40.0 if c.scheme == "fp32" else 20.0 if c.scheme == "fp16" else 11.0 + c.k,
                           p95_ms=10.0 if c.scheme == "fp32" else 9.0 if c.scheme == "fp16" else 5.0 + c.k,
                           top1_delta_pts=0.0, tail_top1_delta_pts=0.0 if ok else -5.0, checks_failed=0 if ok else 1)
    return evaluate


def _settings(cands: list[Candidate]) -> SearchSettings:
    return SearchSettings(candidates=[c.key for c in cands], device="host", policy_sha256="0" * 64, golden="g", seed=0)


def test_sampled_search_spends_its_budget_on_distinct_candidates(tmp_path):
    cands = _space()
    assert len(cands) == 7
    measured: list[str] = []
    study, how = open_study(tmp_path, _settings(cands), max_trials=4)  # 7 > 4: the TPE path
    assert how.startswith("TPESampler")
    records, stats = run_search(study, cands, _fake_evaluate(measured), max_trials=4, timeout_s=None)
    assert len(measured) == len(set(measured)) == 4, measured  # nothing measured twice, the whole budget used
    assert {"onnx|fp32|k0|p0", "onnx|int8|k0|p0"} <= set(measured)  # the baselines first
    assert measured[:2] == ["onnx|fp32|k0|p0", "onnx|int8|k0|p0"]
    assert stats["trials_run"] == 4 and stats["stopped_by"] == "trials" and len(records) == 4


def test_resumed_sampled_search_counts_the_journal(tmp_path):
    cands = _space()
    first: list[str] = []
    run_search(open_study(tmp_path, _settings(cands), 3)[0], cands, _fake_evaluate(first), max_trials=3, timeout_s=None)
    again: list[str] = []
    records, stats = run_search(open_study(tmp_path, _settings(cands), 5)[0], cands, _fake_evaluate(again), max_trials=5,
                                timeout_s=None)
    assert len(first) == 3 and len(again) == 2 and not set(first) & set(again)  # 3 + 2 distinct, none re-measured
    assert stats["resumed_records"] == 3 and len(records) == 5


def test_sampled_search_stops_when_the_space_is_exhausted(tmp_path):
    cands = _space()
    measured: list[str] = []
    records, stats = run_search(open_study(tmp_path, _settings(cands), 6)[0], cands, _fake_evaluate(measured), max_trials=6,
                                timeout_s=None)
    assert len(set(measured)) == 6 == len(measured)
    measured2: list[str] = []
    records, stats = run_search(open_study(tmp_path, _settings(cands), 50)[0], cands, _fake_evaluate(measured2),
                                max_trials=50, timeout_s=None)
    assert len(measured2) == 1 and stats["stopped_by"] == "space exhausted" and len(records) == 7
