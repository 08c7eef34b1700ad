"""`optim compare` (issue 14): a bake-off of two architectures and a pruned variant in one call.

Real parts: random-weight torchvision resnet18 (the session checkpoint) and mobilenet_v2 at
32×32, resnet18 pruned with `optim prune --ratio 0.3`, each exported to ONNX FP32, the fuzz
world's golden set of 60 real MNIST digits; plus the mobilenet_v2 checkpoint itself as a fourth
candidate (a checkpoint row: no latency, its own FP32 baseline). The pure parts (Pareto front,
recommendation, paired statistics, name derivation) are tested on plain arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optim.cli.main import cli

RUN = ["--runs", "3", "--warmup", "1", "--trials", "1"]


@pytest.fixture(scope="module")
def bakeoff(fuzz_world, tmp_path_factory):
    import torch
    import torchvision

    from conftest import small_card
    from optim import quantize
    from optim.model_card import card_path_for

    tmp = tmp_path_factory.mktemp("bakeoff")
    torch.manual_seed(1)
    mnv2 = tmp / "mobilenet_v2" / "model.pt"
    mnv2.parent.mkdir()
    torch.save({"state_dict": torchvision.models.mobilenet_v2(num_classes=10).eval().state_dict()}, mnv2)
    small_card(arch="torchvision:mobilenet_v2").save(card_path_for(mnv2))
    pruned = tmp / "resnet18-pruned" / "model.pt"
    r = CliRunner().invoke(cli, ["prune", str(fuzz_world.ckpt), "--ratio", "0.3", "--out", str(pruned)])
    assert r.exit_code == 0, r.output
    arts = {}
    for name, ckpt in (("mobilenet_v2", mnv2), ("pruned", pruned)):
        q = quantize(ckpt, formats=["onnx"], scheme="fp32", out=ckpt.parent / "artifacts")
        assert q.ok, q.to_dict()
        arts[name] = Path(q.results[0].artifact_dir)
    arts["resnet18"] = Path(fuzz_world.artifact)
    policy = tmp / "optim.toml"
    policy.write_text('[defaults]\nrequired_devices = ["host"]\nmax_top1_drop_pts = 50.0\nsize_mb = 100\n'
                      'p95_ms = { host = 5000 }\n')
    out = tmp / "cmp"
    args = ["compare", arts["resnet18"], arts["mobilenet_v2"], arts["pruned"], f"mnv2-ckpt={mnv2}",
            "--golden", fuzz_world.golden, "--policy", policy, "--out", out, "--json", *RUN]
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    return {"tmp": tmp, "arts": arts, "mnv2": mnv2, "pruned": pruned, "policy": policy, "out": out, "report": report,
            "rows": {c["path"]: c for c in report["candidates"]}}


def test_leaderboard_rows_names_and_own_references(bakeoff, fuzz_world):
    from optim.files import sha256_file

    rep, arts = bakeoff["report"], bakeoff["arts"]
    assert set(rep) >= {"candidates", "pairs", "recommendation"}
    assert len(rep["candidates"]) == 4
    names = [c["name"] for c in rep["candidates"]]
    assert len(set(names)) == 4, names
    # two folders called onnx-fp32 never collide: the parent folder that tells them apart is in the name
    assert all(arts[a].name == "onnx-fp32" for a in ("mobilenet_v2", "pruned"))
    row = lambda p: bakeoff["rows"][str(p)]  # noqa: E731
    assert row(arts["mobilenet_v2"])["name"] != row(arts["pruned"])["name"]
    assert all(row(arts[a])["name"].endswith("onnx-fp32") for a in ("mobilenet_v2", "pruned", "resnet18"))
    ckpt = row(bakeoff["mnv2"])
    assert ckpt["name"] == "mnv2-ckpt" and ckpt["kind"] == "checkpoint"
    # each candidate against its own FP32 reference: one per backbone, the pruned one via its lineage
    r18, mn, pr = row(arts["resnet18"]), row(arts["mobilenet_v2"]), row(arts["pruned"])
    assert r18["reference"]["sha256"] == sha256_file(fuzz_world.ckpt) == pr["reference"]["sha256"]
    assert pr["reference"]["resolved_from"] == "lineage" and r18["reference"]["resolved_from"] == "source checkpoint"
    assert mn["reference"]["sha256"] == sha256_file(bakeoff["mnv2"]) != r18["reference"]["sha256"]
    assert ckpt["own_baseline"] is True and ckpt["reference"]["resolved_from"] == "own FP32 baseline"
    # absolute metrics with 95 % intervals on the golden set (60 images)
    for c in rep["candidates"]:
        m = c["metrics"]["class"]
        assert m["n_used"] == 60
        for k in ("top1", "top2", "top5", "macro_f1", "tail_top1"):
            v = m[k]
            assert v["ci_low"] <= v["value"] <= v["ci_high"], (c["name"], k, v)
            assert 0 <= v["ci_low"] and v["ci_high"] <= 1
        assert abs(m["top1"]["value"] * 60 - round(m["top1"]["value"] * 60)) < 1e-9
        assert m["top1"]["value"] <= m["top2"]["value"] <= m["top5"]["value"]
        assert m["tail_classes"] == ["7", "8", "9"]  # fewer than 50 training images (the world's counts)
    # deltas versus FP32: a model exported at FP32 equals its reference; the pruned one is compared with resnet18
    assert r18["deltas"]["class"]["top1"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert pr["deltas"]["class"]["top1"]["value"] is not None and ckpt["deltas"] == {}
    # sizes (MB = 10^6 bytes) and latency: artifacts are benchmarked, the checkpoint is not (and says so)
    for a in (r18, mn, pr):
        lat = a["latency_ms"]["host"]
        assert 0 < lat["p50"] <= lat["p95"]
        assert a["size_mb"] == pytest.approx(a["size_bytes"] / 1e6)
    assert mn["size_mb"] < pr["size_mb"] < r18["size_mb"]
    assert ckpt["latency_ms"] == {} and "not benchmarked" in ckpt["latency_note"]


def test_verdicts_reuse_the_gate_checks(bakeoff):
    rows, arts = bakeoff["rows"], bakeoff["arts"]
    for a in arts.values():
        r = rows[str(a)]
        ids = {c["id"] for c in r["checks"]}
        assert {"size", "golden_set", "top1_drop[class]", "p95[host]"} <= ids
        assert r["verdict"] == "pass", r["failed_checks"]
    ck = rows[str(bakeoff["mnv2"])]
    assert ck["verdict"] == "fail"
    failed = {f["id"]: f["reason"] for f in ck["failed_checks"]}
    assert set(failed) == {"p95[host]"} and "not measured" in failed["p95[host]"]
    # its drop budget does not apply to the FP32 original itself: skipped, and said why, never passed
    drop = next(c for c in ck["checks"] if c["id"] == "top1_drop[class]")
    assert drop["status"] == "skipped" and "its own baseline" in drop["reason"]


def test_pairs_are_paired_on_the_same_images(bakeoff):
    rep = bakeoff["report"]
    by_name = {c["name"]: c for c in rep["candidates"]}
    assert len(rep["pairs"]) == 6  # 4 candidates, one multiclass head
    for p in rep["pairs"]:
        a, b = by_name[p["a"]]["metrics"]["class"]["top1"]["value"], by_name[p["b"]]["metrics"]["class"]["top1"]["value"]
        d = p["top1_diff"]
        assert d["value"] == pytest.approx(a - b)
        assert (p["a_only"] - p["b_only"]) == round(d["value"] * p["n"])
        assert d["ci_low"] <= d["value"] <= d["ci_high"]
        assert 0 < p["mcnemar_p"] <= 1 and p["n"] == 60
    mn_name = bakeoff["rows"][str(bakeoff["arts"]["mobilenet_v2"])]["name"]
    same = next(p for p in rep["pairs"] if {p["a"], p["b"]} == {mn_name, "mnv2-ckpt"})
    # the ONNX FP32 export predicts like its torch checkpoint: no discordant image, p = 1, zero-width interval
    assert same["a_only"] == same["b_only"] == 0 and same["mcnemar_p"] == 1.0
    assert same["top1_diff"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0} and same["significant"] is False


def test_recommendation_and_reports(bakeoff):
    rep, out = bakeoff["report"], bakeoff["out"]
    rec = rep["recommendation"]
    passing = [c for c in rep["candidates"] if c["verdict"] == "pass"]
    assert sorted(rec["passing"]) == sorted(c["name"] for c in passing) and len(passing) == 3
    best = next(c for c in passing if c["name"] == rec["name"])
    assert best["pareto_optimal"] and all(best["p95_ms"] <= c["p95_ms"] for c in passing if c["pareto_optimal"])
    assert rec["text"].startswith(f"Recommended: {rec['name']}")
    assert json.loads((out / "compare.json").read_text())["recommendation"] == rec
    md = (out / "compare.md").read_text()
    assert rec["name"] in md and "McNemar p" in md and "| mnv2-ckpt |" in md
    html = (out / "compare.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html and "Pareto" in html
    assert "mnv2-ckpt" in html and "not benchmarked" in html


def test_console_leaderboard_and_no_pass_exit_1(bakeoff, fuzz_world):
    """One candidate under a policy it cannot meet: exit 1, no recommendation, the closest one
    named with its failing check; the console shows the leaderboard."""
    pol = bakeoff["tmp"] / "tight.toml"
    pol.write_text('[defaults]\nsize_mb = 1\nmax_top1_drop_pts = 1.0\n')
    r = CliRunner().invoke(cli, ["compare", f"mobile={bakeoff['arts']['mobilenet_v2']}", "--golden", str(fuzz_world.golden),
                                 "--policy", str(pol), *RUN])
    assert r.exit_code == 1, r.output
    assert "leaderboard" in r.output and "mobile" in r.output
    assert "No candidate passes the policy" in r.output and "Closest: mobile" in r.output and "size" in r.output
    assert "Traceback" not in r.output


# ---- pure parts ------------------------------------------------------------------------------
def test_pareto_front_and_recommendation_rules():
    from optim.gate.compare import pareto_front, recommend

    pts = [(0.9, 10.0), (0.8, 5.0), (0.85, 12.0), (0.9, 10.0), (None, 1.0), (0.7, None)]
    assert pareto_front(pts) == [True, True, False, True, False, False]

    def row(name, verdict, metric, p95, size, fails=()):
        return {"name": name, "verdict": verdict, "rank_metric": metric, "p95_ms": p95, "size_mb": size,
                "failed_checks": [{"id": f, "status": "fail", "reason": f"{f} over"} for f in fails]}

    rows = [row("big", "pass", 0.92, 20.0, 40), row("fast", "pass", 0.90, 8.0, 12), row("faster-bad", "fail", 0.5, 2.0, 3, ["top1_drop"]),
            row("tie", "pass", 0.90, 8.0, 10), row("dominated", "pass", 0.85, 30.0, 5)]
    rec = recommend(rows, "top1", "host")
    assert rec["name"] == "tie"  # lowest p95 among passing Pareto-optimal; equal p95 → smaller size
    assert set(rec["pareto"]) == {"big", "fast", "tie"} and "faster-bad" not in rec["passing"]
    none = recommend([row("a", "fail", 0.9, 5, 1, ["size", "p95[host]"]), row("b", "fail", 0.8, 9, 1, ["size"]),
                      row("c", "error", None, None, 1, ["evaluation"])], "top1", "host")
    assert none["name"] is None and none["closest"] == "b"
    assert "No candidate passes" in none["text"] and "size: size over" in none["text"]


def test_pair_stats_against_scipy_and_an_identity():
    from scipy.stats import binomtest

    from optim.gate.compare import pair_stats

    rng = np.random.default_rng(3)
    a = rng.random(200) < 0.8
    b = a.copy()
    b[:30] = ~b[:30]
    st = pair_stats(a, b, resamples=500)
    n_a, n_b = int((a & ~b).sum()), int((~a & b).sum())
    assert (st["a_only"], st["b_only"]) == (n_a, n_b)
    assert st["mcnemar_p"] == pytest.approx(binomtest(n_b, n_a + n_b, 0.5).pvalue)
    assert st["top1_diff"]["value"] == pytest.approx(a.mean() - b.mean())
    assert st["top1_diff"]["ci_low"] <= st["top1_diff"]["value"] <= st["top1_diff"]["ci_high"]
    same = pair_stats(a, a, resamples=200)
    assert same["mcnemar_p"] == 1.0 and same["top1_diff"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    with pytest.raises(ValueError):
        pair_stats(a, a[:-1])


def test_absolute_interval_covers_a_known_accuracy():
    from optim.gate.compare import absolute_intervals
    from optim.golden_sets.stats import weighted_accuracy

    correct = np.array([True] * 70 + [False] * 30)
    iv = absolute_intervals({"top1": lambda w: weighted_accuracy(w, correct)}, 100)["top1"]
    assert iv["value"] == pytest.approx(0.7)
    # binomial standard error √(.7·.3/100) ≈ 0.046: the 95 % interval is about ±9 points
    assert 0.58 < iv["ci_low"] < 0.65 and 0.75 < iv["ci_high"] < 0.82


def test_names_from_paths_and_name_syntax(tmp_path):
    from optim.gate.compare import parse_candidate
    from optim.gate.compare import _derived_names as derived  # module-internal helper under test

    assert parse_candidate("fast=runs/a/onnx-int8").name == "fast"
    assert parse_candidate("runs/a/onnx-int8").name is None
    eq = tmp_path / "a=b"
    eq.mkdir()
    assert parse_candidate(str(eq)).name is None  # an existing path with "=" is a path
    paths = [tmp_path / "runs" / "resnet18" / "onnx-int8", tmp_path / "runs" / "mobilenet" / "onnx-int8",
             tmp_path / "x" / "model.pt"]
    assert derived(paths, [None] * 3) == ["resnet18/onnx-int8", "mobilenet/onnx-int8", "model.pt"]
    deep = [tmp_path / "a" / "same" / "onnx-int8", tmp_path / "b" / "same" / "onnx-int8"]
    assert derived(deep, [None] * 2) == ["a/…/onnx-int8", "b/…/onnx-int8"]


def test_html_escapes_candidate_names():
    from optim.gate.reports.compare_html import render_html

    c = {"name": "<script>x</script>", "path": "/p", "kind": "artifact", "format": "onnx", "scheme": "int8",
         "verdict": "fail", "metrics": {}, "deltas": {}, "latency_ms": {}, "bench_errors": {}, "size_mb": 1.0,
         "own_baseline": False, "reference": None, "failed_checks": [{"id": "size", "status": "fail", "reason": "<i>over</i>"}],
         "notes": []}
    rep = {"created": "t", "devices": ["host"], "policy": {"path": "p"}, "golden": {}, "exit_code": 1,
           "rank": {"metric": "top1", "head": None, "device": "host"}, "candidates": [c], "pairs": [],
           "recommendation": {"name": None, "text": "No candidate passes <the policy>"}, "notes": []}
    html = render_html(rep)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<i>" not in html and "&lt;i&gt;over" in html and "&lt;the policy&gt;" in html


def test_head_intervals_match_the_evaluation_metrics():
    """The leaderboard's intervals are centred on the evaluation's own numbers (same metric
    functions, same images): multiclass top-k, macro-F1, tail top-1; multi-label macro-F1 and
    tail-tag macro-F1."""
    from optim.gate.compare import head_intervals
    from optim.golden_sets.metrics import multiclass_metrics, multilabel_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 300)
    logits = rng.normal(size=(300, 6)) + 2.0 * np.eye(6)[y] * (rng.random(300) < 0.6)[:, None]
    tail = np.array([False, False, False, False, True, True])
    m = multiclass_metrics(logits, y, tail)
    ivs = head_intervals({"kind": "multiclass", "y": y, "logits": logits, "pred": m.pred, "correct": m.correct,
                          "tail": tail, "k": 6}, ["top1", "top2", "top5", "macro_f1", "tail_top1", "ece"], resamples=300)
    assert "ece" not in ivs
    for k in ("top1", "top2", "top5", "macro_f1", "tail_top1"):
        assert ivs[k]["value"] == pytest.approx(getattr(m, k)), k
        assert ivs[k]["ci_low"] < ivs[k]["value"] < ivs[k]["ci_high"], k
    yl = (rng.random((300, 4)) < 0.4).astype(float)
    yl[rng.random((300, 4)) < 0.15] = np.nan  # missing labels
    ll = rng.normal(size=(300, 4)) + 1.5 * np.nan_to_num(yl)
    ttail = np.array([False, False, True, True])
    ml = multilabel_metrics(ll, yl, np.full(4, 0.5), ttail)
    ivl = head_intervals({"kind": "multilabel", "y": yl, "pred": ml.pred, "tail": ttail}, ["macro_f1", "tail_macro_f1"],
                         resamples=300)
    assert ivl["macro_f1"]["value"] == pytest.approx(ml.macro_f1)
    assert ivl["tail_macro_f1"]["value"] == pytest.approx(ml.tail_macro_f1)
    assert ivl["tail_macro_f1"]["ci_low"] < ivl["tail_macro_f1"]["value"] < ivl["tail_macro_f1"]["ci_high"]
