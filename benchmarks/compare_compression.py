"""PTQ vs QAT vs pruned(30 %)+QAT INT8 on the demo, and distilled vs label-only recovery
fine-tuning of the same pruned student. Run by hand (CPU minutes, not a test):

    uv run python benchmarks/compare_compression.py [--workdir optim-demo] [--formats onnx,tflite,pte]

Everything is measured in one run on this machine, side by side:

* the demo checkpoint (``optim demo``: resnet18, long-tailed MNIST 32×32) is the FP32 teacher
  and the reference of every delta;
* PTQ: ``optim.quantize(scheme="int8")`` calibrated on 300 training images (never the golden set);
* QAT: ``optim.optimize.qat.quantize_qat`` distilled from the teacher (α = 0.5, T = 4);
* pruned(30 %)+QAT: ``optim.prune(ratio=0.3)`` → distilled recovery fine-tuning → QAT with the
  unpruned teacher;
* distilled vs label-only: the same pruned student (same pruning, same seed, same epochs)
  fine-tuned with the distillation loss or with cross-entropy on the labels alone.

Accuracy comes from ``optim.evaluate`` on the demo golden set (top-1, tail top-1, deltas vs
FP32 with 95 % paired-bootstrap intervals); latency from ``optim.bench`` on the host (p50/p95
ms, single image) when that API is available in this build — otherwise the table says so.
Results: ``benchmarks/results/compression.json`` and ``compression.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _eval(target, golden, reference) -> dict:
    from optim.golden_sets.evaluate import evaluate

    rep = evaluate(str(target), str(golden), None if reference is None else str(reference)).to_dict()
    (head,) = rep["heads"].values()
    m, d = head["metrics"], head["delta"]
    return {"top1": m["top1"], "tail_top1": m["tail_top1"], "head_top1": m["head_top1"], "macro_f1": m["macro_f1"],
            "delta_top1": d and d["top1"], "delta_tail_top1": d and d["tail_top1"],
            "significant_drops": d and d["significant_drops"], "n": rep["n_samples"]}


def _bench(target) -> dict:
    try:
        import optim

        bench = optim.bench
    except AttributeError:
        return {"p50_ms": None, "p95_ms": None, "note": "optim.bench not in this build (issue 5 not merged): latency not measured"}
    r = bench(str(target), "host", threads=2, runs=100, warmup=10, trials=3).to_dict()
    return {"p50_ms": r["latency_ms"]["p50"], "p95_ms": r["latency_ms"]["p95"], "p95_ci_ms": r.get("p95_ci_ms")}


def _size_mb(path: Path) -> float:
    from optim.runtimes.artifact import Artifact, is_artifact

    if is_artifact(path):
        return Artifact.load(path).size_mb
    return path.stat().st_size / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="optim-demo")
    ap.add_argument("--formats", default="onnx,tflite,pte")
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="ptq,qat,pruned", help="Which comparisons to run: ptq, qat, pruned (comma-separated).")
    ap.add_argument("--combine", nargs="+", metavar="JSON",
                    help="Merge the rows of several result files (runs of different --parts on the same demo) into compression.json/.md.")
    ap.add_argument("--bench-only", action="store_true",
                    help="Re-measure host latency of every row in results/compression.json (all in this one run) and rewrite the results.")
    args = ap.parse_args()
    if args.combine:
        parts = [json.loads(Path(p).read_text()) for p in args.combine]
        out = {**parts[0], "rows": [], "timings_s": {}, "combined_from": args.combine}
        seen = set()
        for part in parts:
            for k, v in part.items():
                if k not in ("rows", "timings_s") and out.get(k) is None:
                    out[k] = v
            out["timings_s"].update(part.get("timings_s", {}))
            for row in part["rows"]:
                key = (row["method"], row["format"])
                if key not in seen:
                    seen.add(key)
                    out["rows"].append(row)
        distilled = Path(out["demo"]["checkpoint"]).parent / "cmp-pruned30-distilled.pt"
        label_only = distilled.with_name("cmp-pruned30-label-only.pt")
        if distilled.is_file() and label_only.is_file():  # the paired comparison of the two students
            from optim.golden_sets.evaluate import evaluate

            rep = evaluate(str(distilled), out["demo"]["golden"], str(label_only)).to_dict()
            (head,) = rep["heads"].values()
            out["distilled_vs_label_only"] = {k: head["delta"][k] for k in ("top1", "tail_top1", "head_top1", "macro_f1", "mcnemar_p")}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "compression.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
        (RESULTS / "compression.md").write_text(to_markdown(out))
        print(to_markdown(out))
        return
    if args.bench_only:
        out = json.loads((RESULTS / "compression.json").read_text())
        for row in out["rows"]:
            if row.get("target") and row.get("top1") is not None:
                for k in ("p50_ms", "p95_ms", "p95_ci_ms", "note"):
                    row.pop(k, None)
                row.update(_bench(Path(row["target"])))
                print(row["method"], row["format"], row.get("p50_ms"), row.get("p95_ms"))
        (RESULTS / "compression.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
        (RESULTS / "compression.md").write_text(to_markdown(out))
        print(to_markdown(out))
        return

    from optim.demo.run import run_demo
    from optim.optimize.distillation import DistillConfig
    from optim.optimize.finetune import FinetuneConfig
    from optim.optimize.ptq import quantize
    from optim.optimize.qat import quantize_qat

    wd = Path(args.workdir)
    t_start = time.perf_counter()
    demo = run_demo(wd, log=print)
    ckpt, golden, train_dir = Path(demo.checkpoint), Path(demo.golden_dir), Path(demo.train_dir)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    timings: dict[str, float] = {}
    rows: list[dict] = []

    def add(method: str, fmt: str, target: Path | None, status: str = "ok", error: str | None = None) -> None:
        row = {"method": method, "format": fmt, "target": str(target) if target else None, "status": status, "error": error}
        if target is not None and status == "ok":
            row["size_mb"] = _size_mb(target)
            try:
                row.update(_eval(target, golden, ckpt if method != "FP32" else None))
                row.update(_bench(target))
            except Exception as e:  # e.g. no host runtime for this format in this build: say so, keep going
                row["status"] = "not measured"
                row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        print(json.dumps(row, default=str))

    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    add("FP32", "torch", ckpt)
    qat_cfg = FinetuneConfig(epochs=args.qat_epochs, batch_size=32, lr=1e-4, seed=args.seed, distill=DistillConfig(0.5, 4.0))
    pr = None

    # PTQ
    if "ptq" in parts:
        t = time.perf_counter()
        ptq = quantize(ckpt, formats=formats, scheme="int8", calib=train_dir, calib_size=300, out=wd / "cmp-ptq")
        timings["ptq_s"] = time.perf_counter() - t
        for r in ptq.results:
            add("PTQ INT8", r.format, r.artifact_dir, r.status, r.error)

    # QAT
    if "qat" in parts:
        t = time.perf_counter()
        qat = quantize_qat(ckpt, train=train_dir, golden=golden, formats=formats, config=qat_cfg, out=wd / "cmp-qat", progress=False, on_info=print)
        timings["qat_s"] = time.perf_counter() - t
        for r in qat.results:
            add("QAT INT8", r.format, r.artifact_dir, r.status, r.error)
    if "pruned" in parts:
        pr = _pruned_part(args, wd, ckpt, golden, train_dir, formats, qat_cfg, timings, add)
    if "pruned-qat" in parts:  # QAT of a distilled pruned student written by an earlier --parts pruned run
        t = time.perf_counter()
        pq = quantize_qat(wd / "cmp-pruned30-distilled.pt", teacher=ckpt, train=train_dir, golden=golden, formats=formats,
                          config=qat_cfg, out=wd / "cmp-pruned30-qat-b", progress=False, on_info=print)
        timings["pruned_qat_s"] = time.perf_counter() - t
        for r in pq.results:
            add("pruned 30 % + QAT INT8", r.format, r.artifact_dir, r.status, r.error)
    _write(args, parts, demo, ckpt, golden, train_dir, pr, qat_cfg, timings, rows, t_start)


def _pruned_part(args, wd, ckpt, golden, train_dir, formats, qat_cfg, timings, add):
    import torch

    from optim.checkpoint import load_checkpoint, make_lineage
    from optim.optimize.distillation import DistillConfig
    from optim.optimize.finetune import FinetuneConfig, finetune
    from optim.optimize.pruning import prune, save_pruned
    from optim.optimize.qat import quantize_qat
    from optim.optimize.train_data import TrainSet

    # pruned(30 %) students: distilled vs label-only, same pruning and seed
    loaded = load_checkpoint(ckpt)
    card, teacher = loaded.card, loaded.model
    data = TrainSet.load(train_dir, card)
    pr = prune(teacher, card, ratio=0.3)
    students = {}
    for name, distill in (("distilled", DistillConfig(0.5, 4.0)), ("label-only", None)):
        cfg = FinetuneConfig(epochs=args.finetune_epochs, batch_size=32, lr=1e-3, seed=args.seed, distill=distill)
        t = time.perf_counter()
        ft = finetune(copy.deepcopy(pr.model), teacher if distill else None, card, data, cfg, wd / f"cmp-pruned30-{name}.run", resume=False, progress=False)
        timings[f"finetune_{name}_s"] = time.perf_counter() - t
        students[name] = save_pruned(ft.model, card, wd / f"cmp-pruned30-{name}.pt",
                                       lineage=make_lineage(loaded, fine_tuned=True, epochs=args.finetune_epochs))
    add("pruned 30 % FP32, distilled fine-tune", "torch", students["distilled"])
    add("pruned 30 % FP32, label-only fine-tune", "torch", students["label-only"])
    with torch.no_grad():
        add("pruned 30 % FP32, no fine-tune", "torch", save_pruned(pr.model, card, wd / "cmp-pruned30-raw.pt",
                                                                   lineage=make_lineage(loaded, fine_tuned=False, epochs=0)))

    t = time.perf_counter()
    pq = quantize_qat(students["distilled"], teacher=ckpt, train=train_dir, golden=golden, formats=formats, config=qat_cfg,
                      out=wd / "cmp-pruned30-qat", progress=False, on_info=print)
    timings["pruned_qat_s"] = time.perf_counter() - t
    for r in pq.results:
        add("pruned 30 % + QAT INT8", r.format, r.artifact_dir, r.status, r.error)
    return pr


def _write(args, parts, demo, ckpt, golden, train_dir, pr, qat_cfg, timings, rows, t_start) -> None:
    out = {
        "schema_version": 1, "host": platform.platform(), "processor": platform.processor(), "threads": 2,
        "demo": {"checkpoint": str(ckpt), "golden": str(golden), "train": str(train_dir), "fp32_top1": demo.top1},
        "parts": sorted(parts), "pruning": pr.to_dict() if pr is not None else None, "qat_config": qat_cfg.to_dict(), "finetune_epochs": args.finetune_epochs,
        "timings_s": timings, "total_s": time.perf_counter() - t_start, "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "compression" if parts == {"ptq", "qat", "pruned"} else "compression-" + "-".join(sorted(parts))
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(to_markdown(out))
    print(to_markdown(out))


def _pp(d) -> str:
    if not d or d.get("value") is None:
        return "—"
    return f"{100 * d['value']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"


def _f(v, spec=".3f") -> str:
    return "—" if v is None else format(v, spec)


def to_markdown(out: dict) -> str:
    lines = [f"Demo: resnet18 on long-tailed MNIST 32×32 (FP32 top-1 {out['demo']['fp32_top1']:.3f}); host {out['host']}, 2 threads. "
             "Δ = target − FP32 in points with 95 % paired-bootstrap CI; latency single image, ms.", "",
             "| method | format | size MB | top-1 | tail top-1 | Δ top-1 pp | Δ tail top-1 pp | p50 ms | p95 ms | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        lines.append(f"| {r['method']} | {r['format']} | {_f(r.get('size_mb'), '.2f')} | {_f(r.get('top1'))} | {_f(r.get('tail_top1'))} | "
                     f"{_pp(r.get('delta_top1'))} | {_pp(r.get('delta_tail_top1'))} | {_f(r.get('p50_ms'), '.2f')} | {_f(r.get('p95_ms'), '.2f')} | "
                     f"{r['status']}{' — ' + r['error'][:80] if r.get('error') else ''} |")
    p = out.get("pruning")
    if p:
        lines += ["", f"Pruning: ratio 0.3 (L1), parameters {p['before']['parameters']:,} → {p['after']['parameters']:,}, "
                  f"MACs {p['before']['macs']:,} → {p['after']['macs']:,}. Timings (s): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in out["timings_s"].items()) + "."]
    d = out.get("distilled_vs_label_only")
    if d:
        lines += ["", "Distilled vs label-only fine-tuning of the same pruned student (same pruning, seed, epochs), paired on the "
                      f"golden set: Δ top-1 {_pp(d['top1'])} pp, Δ tail top-1 {_pp(d['tail_top1'])} pp, "
                      f"Δ macro-F1 {_pp(d['macro_f1'])} pp, McNemar p = {d['mcnemar_p']:.3g}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
