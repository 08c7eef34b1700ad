"""Tune's hard case: plain INT8 PTQ breaks a tail-class budget on real images; tune vs NNCF vs AIMET.

The case (issue 13): a compact torchvision architecture (``--arch``, default mobilenet_v3_small)
trained on the demo's long-tailed MNIST split (:func:`optim.demo.data.long_tail_split`, per-class
training counts 400 → 12, classes with < 50 training images are *tail classes*) at a larger input
(``--hw``, default 96×96) with the demo's recipe (:func:`optim.demo.train.train_classifier`:
class-balanced sampling, AdamW, one-cycle; ``--epochs``). The golden set is the demo's balanced,
disjoint 100 digits a class; calibration images are the training images (real, long-tailed).

Steps, all in one process (so the timings are side by side):

1. **FP32 and plain INT8** per format (:func:`optim.quantize`, ``fp32,int8``), evaluated on the
   golden set: the case is *hard* when plain INT8's tail-class top-1 drop exceeds the budget
   (``--max-tail-drop``, 2 pts) in at least one format;
2. **tune** (:func:`optim.tune`, all formats, device host) with a policy of ``max_tail_top1_drop_pts``
   and ``max_top1_drop_pts`` = the budget, size ≤ the FP32 size, a generous p95 budget;
3. **NNCF** ``nncf.quantize_with_accuracy_control`` on the FP32 ONNX model of step 1, same
   calibration images (``subset_size`` = ``--calib-size``), validation set = the golden set's
   tail-class images, metric = tail-class top-1 (a fraction, so ``max_drop`` = budget / 100,
   ``DropType.ABSOLUTE``; per-image 0/1 correctness returned for its ranking);
4. **AIMET** AutoQuant: only when ``aimet_torch`` imports beside the locked torch (``--aimet-site``
   adds a directory holding it to ``sys.path``); otherwise the reason is recorded;
5. every artifact evaluated on the same golden set (top-1, tail top-1, deltas vs FP32 in pts) and
   timed **interleaved** (``--rounds`` × ``--runs`` single-image calls each, after ``--warmup``):
   p95 and median ms, with ``os.getloadavg()`` before and after.

Usage: ``python benchmarks/tune_hard_case.py [--arch mobilenet_v3_small --hw 96 --epochs 8]``.
The trained checkpoint and data are kept in ``--workdir`` and reused on a rerun with the same recipe.
Results: ``benchmarks/results/tune_hard_case.json`` and ``tune_hard_case.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_quantize import time_alternating  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TAIL_MAX_COUNT = 50
POLICY = """\
schema_version = 1
[defaults]
required_devices = ["host"]
max_top1_drop_pts = {drop}
max_tail_top1_drop_pts = {drop}
size_mb = {size_mb}
p95_ms = {{ host = {p95} }}
tail_max_count = {tail}
"""


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def say(m: str) -> None:
    print(m, file=sys.stderr, flush=True)


def card_for(arch: str, hw: int):
    from optim.demo.data import CLASS_NAMES
    from optim.demo.run import MNIST_MEAN, MNIST_STD
    from optim.model_card import Head, InputSpec, ModelCard, Preprocessing

    return ModelCard(name=f"mnist-longtail-{arch}-{hw}", architecture=f"torchvision:{arch}",
                     architecture_kwargs={"num_classes": len(CLASS_NAMES)}, input=InputSpec(shape=(1, 3, hw, hw)),
                     preprocessing=Preprocessing(resize=(hw, hw), mean=(MNIST_MEAN,) * 3, std=(MNIST_STD,) * 3),
                     heads=(Head(name="digit", kind="multiclass", labels=CLASS_NAMES),))


def golden_counts(tail_per_class: int) -> tuple[int, ...]:
    """Golden images per class: the demo's 100 a class, and ``tail_per_class`` for each tail class
    (< ``TAIL_MAX_COUNT`` training images), so that a 2-point tail-class delta is several images."""
    from optim.demo.data import GOLDEN_PER_CLASS, TRAIN_COUNTS

    return tuple(max(GOLDEN_PER_CLASS, tail_per_class) if c < TAIL_MAX_COUNT else GOLDEN_PER_CLASS for c in TRAIN_COUNTS)


def data_dirs(workdir: Path, seed: int, tail_per_class: int) -> tuple[Path, Path]:
    """(golden, train) image folders for this split (they depend on the seed and golden counts)."""
    return workdir / f"golden-s{seed}-t{tail_per_class}", workdir / f"train-s{seed}"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion k/n (Wilson 1927), as fractions."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (float(c - h), float(c + h))


def prepare(workdir: Path, arch: str, hw: int, epochs: int, seed: int, tail_per_class: int = 100) -> dict:
    """Data (golden + train folders) and the trained checkpoint, reused when the recipe matches."""
    import torch
    import torchvision
    from PIL import Image

    from optim.demo.data import long_tail_split, write_image_folder
    from optim.demo.train import TrainConfig, train_classifier
    from optim.golden_sets.build import build_from_image_folder
    from optim.model_card import card_path_for
    from optim.preprocessing import preprocess_pil

    workdir.mkdir(parents=True, exist_ok=True)
    recipe = {"arch": arch, "hw": hw, "epochs": epochs, "seed": seed}
    ckpt = workdir / f"{arch}-{hw}-e{epochs}-s{seed}.pt"
    meta = workdir / (ckpt.name + ".json")
    split = long_tail_split(seed, golden_per_class=golden_counts(tail_per_class))
    card = card_for(arch, hw)
    golden_dir, train_dir = data_dirs(workdir, seed, tail_per_class)
    for d, name, images, labels in ((golden_dir, "golden", split.golden_images, split.golden_labels),
                                    (train_dir, "train", split.train_images, split.train_labels)):
        if not (d / "golden.json").is_file():
            shutil.rmtree(d, ignore_errors=True)
            write_image_folder(d, images, labels, prefix=name)
            build_from_image_folder(d, head="digit", name=f"mnist-longtail-{name}",
                                    train_counts=split.train_counts())
    x = np.stack([preprocess_pil(Image.fromarray(im, mode="L"), card.preprocessing) for im in split.train_images])
    if meta.is_file() and ckpt.is_file() and json.loads(meta.read_text()).get("recipe") == recipe:
        info = json.loads(meta.read_text())
        if not info.get("bn_recalibrated"):
            model = torchvision.models.get_model(arch, weights=None, num_classes=10)
            model.load_state_dict(torch.load(ckpt, map_location="cpu"))
            recalibrate_bn(model, x)
            torch.save(model.state_dict(), ckpt)
            info["bn_recalibrated"] = True
            meta.write_text(json.dumps(info, indent=2))
        say(f"reusing {ckpt}")
        return info
    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, weights=None, num_classes=10)
    t0 = time.perf_counter()
    train_classifier(model, x, split.train_labels, TrainConfig(epochs=epochs, seed=seed),
                     progress=lambda e, loss: say(f"  epoch {e}/{epochs} loss {loss:.3f}  load {load()[0]}"))
    recalibrate_bn(model, x)
    torch.save(model.state_dict(), ckpt)
    card.save(card_path_for(ckpt))
    info = {"recipe": recipe, "train_seconds": round(time.perf_counter() - t0, 1), "train_counts": split.train_counts(),
            "bn_recalibrated": True}
    meta.write_text(json.dumps(info, indent=2))
    return info


def previous_attempts(out_path: Path) -> list[dict]:
    """The attempt log kept in an earlier results file (every recipe tried, hard or not)."""
    try:
        return list(json.loads(out_path.read_text()).get("attempts") or [])
    except (OSError, ValueError):
        return []


def previous_step1(out_path: Path, recipe: dict, work: Path, formats: list[str]):
    """Step 1 of an earlier run of the same recipe (artifacts still in ``work/plain``, metrics in
    ``out_path``): (artifacts, fp32, int8, quantize_errors), or None when anything is missing."""
    try:
        old = json.loads(out_path.read_text())
    except (OSError, ValueError):
        return None
    if (old.get("training") or {}).get("recipe") != recipe:
        return None
    arts = {(f, s): work / "plain" / f"{f}-{s}" for f in formats for s in ("fp32", "int8")}
    if not all((d / "artifact.json").is_file() for d in arts.values()) or not all(
            f in old.get("fp32", {}) and f in old.get("int8", {}) for f in formats):
        return None
    return (arts, {f: old["fp32"][f] for f in formats}, {f: old["int8"][f] for f in formats},
            old.get("quantize_errors") or {})


def recalibrate_bn(model, x: np.ndarray, batch: int = 64) -> None:
    """Recompute BatchNorm running statistics as the exact average over the training images
    (float32 N×C×H×W ``x``), no gradient step. Needed for torchvision MobileNetV3, whose BN
    momentum is 0.01: after a short training run its running statistics still sit near their
    initial values (mean 0, var 1) and eval-mode predictions collapse to one class."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            model(torch.from_numpy(x[i: i + batch]))
    model.eval()


def head_metrics(runtime, golden: Path) -> dict:
    from optim.golden_sets.evaluate import evaluate

    rep = evaluate(runtime, golden, tail_max_count=TAIL_MAX_COUNT, cache_dir=False)
    h = rep.heads["digit"]
    return {"top1": h["metrics"]["top1"], "tail_top1": h["metrics"]["tail_top1"], "head_top1": h["metrics"]["head_top1"],
            "tail_classes": list(h["tail_classes"])}


class OrtModel:
    """A bare ONNX model (NNCF's output) on ONNX Runtime CPU with the settings of optim's ONNX
    runtime (inter-op 1, intra-op ``threads``), exposed as an optim Runtime for evaluate()."""

    def __new__(cls, path: Path, card, threads: int | None):
        import onnxruntime as ort

        from optim.runtimes.base import Runtime

        class _R(Runtime):
            def __init__(self):
                super().__init__(card, threads)
                opts = ort.SessionOptions()
                opts.inter_op_num_threads = 1
                if threads:
                    opts.intra_op_num_threads = threads
                opts.log_severity_level = 3
                self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
                self.input_name = self.session.get_inputs()[0].name
                b = self.session.get_inputs()[0].shape[0]
                self.max_batch = b if isinstance(b, int) and b > 0 else None

            def _predict_batch(self, batch):
                n = len(batch)
                if self.max_batch and n < self.max_batch:
                    batch = np.concatenate([batch, np.zeros((self.max_batch - n, *batch.shape[1:]), batch.dtype)])
                out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})[0]
                return {card.heads[0].name: np.asarray(out[:n], dtype=np.float32)}

        return _R()


def golden_arrays(golden: Path, card, only: set[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The golden set's images (float32 N×C×H×W, preprocessed per ``card``) and int64 labels."""
    from PIL import Image

    from optim.preprocessing import preprocess_pil

    labels = list(card.heads[0].labels)
    xs, ys = [], []
    for lab in labels:
        if only is not None and lab not in only:
            continue
        for p in sorted((golden / lab).glob("*.png")):
            xs.append(preprocess_pil(Image.open(p), card.preprocessing))
            ys.append(labels.index(lab))
    return np.stack(xs).astype(np.float32), np.asarray(ys, np.int64)


def run_nncf(fp32_onnx: Path, out: Path, calib_batch: np.ndarray, golden: Path, card, tail: list[str], max_drop_pts: float,
             threads: int | None, max_iters: int | None = None) -> dict:
    """``nncf.quantize_with_accuracy_control`` on ONNX: metric = tail-class top-1 (0–1)."""
    import nncf
    import onnx
    import onnxruntime as ort

    xv, yv = golden_arrays(golden, card, set(tail))
    model = onnx.load(str(fp32_onnx))
    in_name = model.graph.input[0].name
    fixed_batch = card.input.shape[0]

    def validate(m, items) -> tuple[float, list[float]]:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        s = ort.InferenceSession(m.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
        per = []
        for x, y in items:
            logits = s.run(None, {in_name: x})[0]
            per.append(float(int(np.argmax(logits[0])) == int(y)))
        return float(np.mean(per)), per

    # the ONNX backend takes {input name: array} per item; validate() gets the raw (x, y) items
    calib = nncf.Dataset([calib_batch[i: i + fixed_batch] for i in range(0, len(calib_batch) - fixed_batch + 1, fixed_batch)],
                         lambda x: {in_name: x})
    val = nncf.Dataset([(xv[i: i + 1], yv[i]) for i in range(len(yv))], lambda item: {in_name: item[0]})
    t0 = time.perf_counter()
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    restorer = AdvancedAccuracyRestorerParameters() if max_iters is None else AdvancedAccuracyRestorerParameters(
        max_num_iterations=max_iters)
    q = nncf.quantize_with_accuracy_control(model, calib, val, validate, max_drop=max_drop_pts / 100.0,
                                            drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calib_batch),
                                            advanced_accuracy_restorer_parameters=restorer)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "nncf_aac.onnx"
    onnx.save(q, str(path))
    return {"path": str(path), "seconds": round(time.perf_counter() - t0, 1), "nncf_version": nncf.__version__,
            "max_drop": max_drop_pts / 100.0, "drop_type": "ABSOLUTE", "metric": "tail-class top-1 (fraction)",
            "validation_images": int(len(yv)), "calibration_images": int(len(calib_batch)),
            "max_num_iterations": max_iters}


def aimet_status(site: str | None) -> dict:
    """Whether AIMET's AutoQuant imports beside the locked torch (``aimet_torch`` from ``site``
    if given, e.g. a ``uv pip install --target DIR --no-deps`` copy), and exactly why not."""
    if site:
        sys.path.insert(0, site)
    try:
        import aimet_torch
    except Exception as e:  # record exactly why, never fail the benchmark for it
        return {"available": False, "summary": f"aimet_torch does not import: {type(e).__name__}: {str(e)[:300]}"}
    import importlib

    tried = []
    for mod in ("aimet_torch.auto_quant", "aimet_torch.v2.auto_quant", "aimet_torch.common.auto_quant"):
        try:
            if hasattr(importlib.import_module(mod), "AutoQuant"):
                return {"available": True, "module": mod, "summary": f"AutoQuant found in {mod}"}
            tried.append(f"{mod}: imports, no AutoQuant class")
        except Exception as e:
            tried.append(f"{mod}: {type(e).__name__}: {str(e)[:200]}")
    ver = getattr(aimet_torch, "__version__", "?")
    return {"available": False, "aimet_torch_version": ver, "tried": tried,
            "summary": f"aimet_torch {ver} installs and imports beside torch, but ships no AutoQuant class ({'; '.join(tried)})"}


def time_interleaved(runtimes: dict, x: np.ndarray, warmup: int, runs: int, rounds: int) -> dict[str, dict]:
    """p95 / median (ms) and call count per runtime, from :func:`bench_quantize.time_alternating`."""
    times = time_alternating(runtimes, x, warmup, runs, rounds)
    return {k: {"p95_ms": float(np.percentile(v, 95)), "median_ms": statistics.median(v), "n": len(v)} for k, v in times.items()}


def to_markdown(r: dict) -> str:
    s = r["settings"]
    lines = [
        "## Tune's hard case: plain INT8 breaks the tail-class budget (issue 13)",
        "",
        "<!-- README section draft: the integrator moves this header and the tables into README.md -->",
        "A release gate must catch the case where plain INT8 post-training quantization (PTQ) keeps overall top-1 but "
        "loses the rare classes. This benchmark looks for such a case on real images: compact torchvision models "
        "trained on the demo's long-tailed MNIST split (400 → 12 training images a class), exported FP32 and plain INT8 "
        "in each host format, judged on a golden set with extra tail-class images. When plain INT8 breaks the "
        "2-point tail-class budget, `optim tune` must find an artifact that passes in every format at p95 ≤ that "
        "runtime's FP32, and is compared side by side with NNCF's `quantize_with_accuracy_control` on ONNX. "
        "Reproduce: `python benchmarks/tune_hard_case.py --arch ARCH --hw 128 --epochs 3` (`--find-only` for step 1).",
        "",
        f"`benchmarks/tune_hard_case.py` on {r['host']['platform']}, {r['host']['cpus']} CPUs. Model: torchvision "
        f"{s['arch']} trained {s['epochs']} epochs on the demo's long-tailed MNIST split at {s['hw']}×{s['hw']} "
        f"(FP32 top-1 {_p(r.get('fp32', {}).get('onnx', {}).get('top1'))}, tail top-1 "
        f"{_p(r.get('fp32', {}).get('onnx', {}).get('tail_top1'))}). Golden set: {sum((r.get('golden_per_class') or {}).values()):,} real digits "
        f"(per class {'/'.join(str(v) for v in (r.get('golden_per_class') or {}).values())}), "
        f"{r.get('tail_golden_images', '—')} of them in the tail classes {', '.join(r.get('tail_classes') or [])} "
        f"(< {TAIL_MAX_COUNT} training images). Budget: tail-class and overall top-1 "
        f"drop ≤ {s['max_tail_drop']} pts vs FP32. Hard case: {'YES' if r.get('hard') else 'no'} — plain INT8 breaks it "
        f"in {', '.join(r.get('int8_breaks') or []) or 'no format'}. Timing interleaved in one process "
        f"({s['rounds']} rounds × {s['runs']} single-image calls, {s['threads']} thread(s)); load = os.getloadavg() 1-min "
        f"before/after: {r.get('load_before_timing', ['—'])[0]}/{r.get('load_after_timing', ['—'])[0]}.",
        "",
        "| format | artifact | top-1 | Δ top-1 pts | tail top-1 | Δ tail pts | within budget | p95 ms | median ms | size MB |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in r.get("rows", []):
        t = row.get("timing") or {}
        lines.append(f"| {row['format']} | {row['label']} | {_p(row.get('top1'))} | {_f(row.get('top1_delta_pts'), 1)} | "
                     f"{_p(row.get('tail_top1'))} | {_f(row.get('tail_delta_pts'), 1)} | "
                     f"{'yes' if row.get('within_budget') else 'NO'} | {_f(t.get('p95_ms'))} | {_f(t.get('median_ms'))} | "
                     f"{_f(row.get('size_mb'))} |")
    lines += ["", "AIMET AutoQuant: " + (r.get("aimet") or {}).get("summary", "not run"), ""]
    if r.get("attempts"):
        lines += ["### Every attempt to find the hard case (plain INT8 = each format's default static INT8 scheme)", "",
                  "| arch | input | epochs | seed | train s | tail golden images | format | FP32 top-1 | FP32 tail top-1 "
                  "| INT8 top-1 | INT8 tail top-1 | INT8 Δ tail pts | breaks 2-pt budget | load (1-min) |",
                  "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|"]
        for a in r["attempts"]:
            rc = a["recipe"]
            for fmt, m in a.get("per_format", {}).items():
                lines.append(f"| {rc['arch']} | {rc['hw']}×{rc['hw']} | {rc['epochs']} | {rc['seed']} | "
                             f"{_f(a.get('train_seconds'), 0)} | {a.get('golden_tail_images', '—')} | {fmt} | "
                             f"{_p(m['fp32_top1'])} | {_p(m['fp32_tail_top1'])} | {_p(m['int8_top1'])} | "
                             f"{_p(m['int8_tail_top1'])} | {m['int8_tail_delta_pts']:+.1f} | "
                             f"{'YES' if -m['int8_tail_delta_pts'] > s['max_tail_drop'] else 'no'} | "
                             f"{(a.get('load_average') or ['—'])[0]} |")
            if not a.get("per_format"):
                lines.append(f"| {rc['arch']} | {rc['hw']}×{rc['hw']} | {rc['epochs']} | {rc['seed']} | "
                             f"{_f(a.get('train_seconds'), 0)} | — | — | — | — | — | — | — | {a.get('note', 'not finished')} | — |")
        lines.append("")
        lines.append("A 2-point tail delta is the difference of two proportions on the same tail images; the Wilson 95% "
                     "interval of each tail top-1 is in the JSON (`tail_top1_wilson95`).")
        lines.append("")
    for v in r.get("verdicts", []):
        lines.append(f"- {v}")
    if r.get("findings"):
        lines += ["", "### Findings", ""] + [f"- {f}" for f in r["findings"]]
    if r.get("status"):
        lines += ["", f"Status: {r['status']}"]
    lines.append("")
    return "\n".join(lines)


def _f(x, d=2):
    return "—" if x is None else f"{x:.{d}f}"


def _p(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mobilenet_v3_small")
    ap.add_argument("--hw", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default="onnx,tflite,pte")
    ap.add_argument("--max-tail-drop", type=float, default=2.0)
    ap.add_argument("--p95-budget-ms", type=float, default=5000.0)
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--max-trials", type=int, default=12)
    ap.add_argument("--fallback-ks", default="1,2,4")
    ap.add_argument("--sensitivity-unit", default="auto")
    ap.add_argument("--max-units", type=int, default=30, help="tune's sensitivity units at most (cost: 2 exports + 2 golden runs each)")
    ap.add_argument("--tune-formats", default=None, help="formats tune searches (default: --formats)")
    ap.add_argument("--nncf-max-iters", type=int, default=None,
                    help="NNCF AdvancedAccuracyRestorerParameters.max_num_iterations (layers reverted at most; default: no limit)")
    ap.add_argument("--tune-runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--golden-tail", type=int, default=300,
                    help="golden images per tail class (the other classes keep the demo's 100)")
    ap.add_argument("--reuse-step1", action="store_true",
                    help="reuse step 1 of an earlier run of the same recipe (artifacts in WORKDIR/plain, metrics in --out)")
    ap.add_argument("--skip-tune", action="store_true", help="skip step 2 (e.g. NNCF alone on a slow host)")
    ap.add_argument("--find-only", action="store_true", help="stop after step 1 (is plain INT8 breaking the budget?)")
    ap.add_argument("--skip-nncf", action="store_true")
    ap.add_argument("--aimet-site", default=None, help="a directory holding aimet_torch (installed with --target), tried on sys.path")
    ap.add_argument("--workdir", default="optim-hard-case")
    ap.add_argument("--out", default=str(RESULTS / "tune_hard_case.json"))
    args = ap.parse_args(argv)

    import optim
    from optim.checkpoint import load_checkpoint
    from optim.model_stats import model_stats
    from optim.optimize.calibration import load_calibration_set
    from optim.runtimes import open_runtime
    from optim.runtimes.artifact import library_versions

    formats = [f for f in args.formats.split(",") if f]
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir)
    r: dict = {"schema_version": 1, "what": __doc__.splitlines()[0],
               "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_start": load()},
               "settings": {k: v for k, v in vars(args).items() if k not in ("out", "workdir", "aimet_site")},
               "versions": library_versions("torch", "onnxruntime", "nncf", "litert-torch", "ai-edge-litert", "executorch", "optuna")}

    def save():
        r["host"]["load_average_end"] = load()
        out_path.write_text(json.dumps(r, indent=2, default=str) + "\n")
        out_path.with_suffix(".md").write_text(to_markdown(r))

    r["training"] = prepare(work, args.arch, args.hw, args.epochs, args.seed, args.golden_tail)
    ckpt = work / f"{args.arch}-{args.hw}-e{args.epochs}-s{args.seed}.pt"
    golden, train = data_dirs(work, args.seed, args.golden_tail)
    r["golden_per_class"] = dict(zip([str(i) for i in range(10)], golden_counts(args.golden_tail)))
    r["attempts"] = previous_attempts(out_path)
    loaded = load_checkpoint(ckpt)
    card = loaded.card
    stats = model_stats(loaded.model, card.input.shape)
    r["parameters"] = stats.parameters

    # 1. FP32 and plain INT8 per format
    say(f"step 1: fp32 + int8 × {formats}  load {load()}")
    prev = previous_step1(out_path, r["training"]["recipe"], work, formats) if args.reuse_step1 else None
    if prev is not None:
        say(f"  reusing step 1 (artifacts in {work / 'plain'}, metrics from {out_path})")
        arts, r["fp32"], r["int8"], r["quantize_errors"] = prev
        r["step1_reused"] = True
    else:
        q = optim.quantize(ckpt, formats=formats, scheme="fp32,int8", calib=train, calib_size=args.calib_size,
                           out=work / "plain", threads=args.threads)
        arts = {(x.format, x.scheme): x.artifact_dir for x in q.results if x.artifact_dir}
        r["quantize_errors"] = {f"{x.format}-{x.scheme}": x.error for x in q.results if x.error}
        r["fp32"], r["int8"] = {}, {}
        for (fmt, scheme), d in arts.items():
            r["fp32" if scheme == "fp32" else "int8"][fmt] = head_metrics(open_runtime(d, threads=args.threads), golden)
    r["tail_classes"] = next(iter(r["fp32"].values()))["tail_classes"] if r["fp32"] else []
    r["int8_breaks"] = []
    for fmt in formats:
        fp, i8 = r["fp32"].get(fmt), r["int8"].get(fmt)
        if fp and i8:
            i8["tail_delta_pts"] = 100 * (i8["tail_top1"] - fp["tail_top1"])
            i8["top1_delta_pts"] = 100 * (i8["top1"] - fp["top1"])
            if -i8["tail_delta_pts"] > args.max_tail_drop:
                r["int8_breaks"].append(fmt)
    r["hard"] = bool(r["int8_breaks"])
    n_tail = sum(golden_counts(args.golden_tail)[int(c)] for c in r["tail_classes"])
    r["tail_golden_images"] = n_tail
    for group in ("fp32", "int8"):
        for m in r[group].values():
            m["tail_top1_wilson95"] = wilson(round(m["tail_top1"] * n_tail), n_tail)
    r["attempts"] = [a for a in r["attempts"] if a.get("recipe") != r["training"]["recipe"]] + [{
        "recipe": r["training"]["recipe"], "train_seconds": r["training"].get("train_seconds"),
        "golden_tail_images": n_tail, "load_average": load(), "hard": r["hard"], "int8_breaks": r["int8_breaks"],
        "per_format": {f: {"fp32_top1": r["fp32"][f]["top1"], "fp32_tail_top1": r["fp32"][f]["tail_top1"],
                           "int8_top1": r["int8"][f]["top1"], "int8_tail_top1": r["int8"][f]["tail_top1"],
                           "int8_tail_delta_pts": r["int8"][f]["tail_delta_pts"]}
                       for f in formats if f in r["fp32"] and f in r["int8"]}}]
    say(f"  fp32 {json.dumps(r['fp32'])}\n  int8 {json.dumps(r['int8'])}\n  breaks: {r['int8_breaks']}")
    save()
    if args.find_only:
        return 0

    # 2. tune
    r["tune"] = {"skipped": True, "chosen": {}}
    if not args.skip_tune:
        policy = work / "hard_case.toml"
        policy.write_text(POLICY.format(drop=args.max_tail_drop, size_mb=round(stats.fp32_mb * 1.05 + 0.5, 2),
                                        p95=args.p95_budget_ms, tail=TAIL_MAX_COUNT))
        say(f"step 2: tune  load {load()}")
        t0 = time.perf_counter()
        tune_formats = [f for f in (args.tune_formats or args.formats).split(",") if f]
        res = optim.tune(ckpt, policy=policy, calib=train, golden=golden, formats=tune_formats, device="host",
                         max_units=args.max_units,
                         out=work / "tune", max_trials=args.max_trials,
                         fallback_ks=tuple(int(k) for k in args.fallback_ks.split(",")), sensitivity_unit=args.sensitivity_unit,
                         calib_size=args.calib_size, seed=args.seed, threads=args.threads, runs=args.tune_runs, warmup=2,
                         trials=1, progress=lambda m: say(f"  tune: {m}"))
        r["tune"] = {"seconds": round(time.perf_counter() - t0, 1), "verdict": res.report["verdict"],
                     "search": res.report.get("search"), "notes": res.report.get("notes"),
                     "chosen": {f: (None if c is None else {k: c[k] for k in ("artifact", "scheme", "float_layers", "p95_ms",
                                                                              "size_mb", "top1_delta_pts", "tail_top1_delta_pts")}
                                    | {"label": c["candidate"]["label"]}) for f, c in res.chosen.items()}}
        save()

    # 3. NNCF accuracy-aware PTQ on ONNX
    calib_set = load_calibration_set(train, card.preprocessing, args.calib_size, seed=args.seed, input_shape=card.input.shape)
    nncf_path = None
    if not args.skip_nncf and ("onnx", "fp32") in arts:
        say(f"step 3: nncf quantize_with_accuracy_control  load {load()}")
        try:
            r["nncf"] = run_nncf(arts[("onnx", "fp32")] / "model.onnx", work / "nncf", calib_set.batch, golden, card,
                                 r["tail_classes"], args.max_tail_drop, args.threads, args.nncf_max_iters)
            nncf_path = Path(r["nncf"]["path"])
        except Exception as e:
            r["nncf"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:400] if str(e) else ''}"}
        save()

    # 4. AIMET
    r["aimet"] = aimet_status(args.aimet_site)
    save()

    # 5. evaluate + time everything side by side
    rows, rts = [], {}
    for fmt in formats:
        for label, d in ((f"{fmt} FP32", arts.get((fmt, "fp32"))), (f"{fmt} plain INT8", arts.get((fmt, "int8"))),
                         (f"{fmt} tune: {((r['tune']['chosen'].get(fmt) or {}).get('label'))}",
                          (r["tune"]["chosen"].get(fmt) or {}).get("artifact"))):
            if d:
                rows.append({"format": fmt, "label": label, "path": str(d),
                             "size_mb": sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file()) / 1e6})
                rts[label] = open_runtime(Path(d), threads=args.threads)
        if fmt == "onnx" and nncf_path is not None:
            rows.append({"format": fmt, "label": "onnx NNCF quantize_with_accuracy_control", "path": str(nncf_path),
                         "size_mb": nncf_path.stat().st_size / 1e6})
            rts[rows[-1]["label"]] = OrtModel(nncf_path, card, args.threads)
    for row in rows:
        m = head_metrics(rts[row["label"]], golden)
        fp = r["fp32"][row["format"]]
        row |= {"top1": m["top1"], "tail_top1": m["tail_top1"], "top1_delta_pts": 100 * (m["top1"] - fp["top1"]),
                "tail_delta_pts": 100 * (m["tail_top1"] - fp["tail_top1"])}
        row["within_budget"] = -row["tail_delta_pts"] <= args.max_tail_drop and -row["top1_delta_pts"] <= args.max_tail_drop
    x = np.random.default_rng(0).standard_normal(card.input.shape).astype(np.float32)
    r["load_before_timing"] = load()
    timing = time_interleaved(rts, x, args.warmup, args.runs, args.rounds)
    r["load_after_timing"] = load()
    for row in rows:
        row["timing"] = timing[row["label"]]
    r["rows"] = rows
    r["verdicts"] = verdicts(r, rows, formats, args.max_tail_drop)
    save()
    print(to_markdown(r))
    return 0


def verdicts(r: dict, rows: list[dict], formats: list[str], budget: float) -> list[str]:
    out = []
    by = {(row["format"], row["label"].split(":")[0].replace(f"{row['format']} ", "")): row for row in rows}
    for fmt in formats:
        t, fp = by.get((fmt, "tune")), by.get((fmt, "FP32"))
        if t is None:
            searched = (r.get("settings") or {}).get("tune_formats") or (r.get("settings") or {}).get("formats") or ""
            out.append(f"{fmt}: tune was not run (--skip-tune): no verdict." if (r.get("tune") or {}).get("skipped")
                       else f"{fmt}: not searched by tune in this run (--tune-formats {searched}): no verdict."
                       if fmt not in searched.split(",") else f"{fmt}: tune chose no artifact (FAIL).")
            continue
        ok = t["within_budget"] and fp is not None and t["timing"]["p95_ms"] <= fp["timing"]["p95_ms"]
        out.append(f"{fmt}: tune's choice tail Δ {t['tail_delta_pts']:+.1f} pts (budget −{budget}), p95 "
                   f"{t['timing']['p95_ms']:.2f} ms vs FP32 {fp['timing']['p95_ms'] if fp else float('nan'):.2f} ms → "
                   f"{'meets' if ok else 'does NOT meet'} the bar.")
    n = next((row for row in rows if "NNCF" in row["label"]), None)
    fp = by.get(("onnx", "FP32"))
    if n and fp:
        out.append(f"onnx NNCF quantize_with_accuracy_control: tail Δ {n['tail_delta_pts']:+.1f} pts, top-1 Δ "
                   f"{n['top1_delta_pts']:+.1f} pts (budget −{budget} each) → {'within' if n['within_budget'] else 'OUTSIDE'} "
                   f"budget; p95 {n['timing']['p95_ms']:.2f} ms vs FP32 {fp['timing']['p95_ms']:.2f} ms.")
    t = by.get(("onnx", "tune"))
    if n and t:
        ok = t["tail_delta_pts"] >= n["tail_delta_pts"] and t["timing"]["p95_ms"] <= n["timing"]["p95_ms"]
        out.append(f"onnx vs NNCF: tune tail Δ {t['tail_delta_pts']:+.1f} pts at p95 {t['timing']['p95_ms']:.2f} ms; NNCF "
                   f"{n['tail_delta_pts']:+.1f} pts at {n['timing']['p95_ms']:.2f} ms → tune {'≤' if ok else 'NOT ≤'} NNCF "
                   "on both.")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
