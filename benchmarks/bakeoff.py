"""A three-candidate backbone bake-off on the demo data, driven through the real CLI (issue 14).

    uv run python benchmarks/bakeoff.py [--quick] [--workdir DIR] [--results DIR]

What it does, as a user would:

1. **Data** (Python, the user's own files): the demo's long-tailed MNIST split
   (:func:`optim.demo.data.long_tail_split`) written as PNGs plus a plain ``labels.csv``
   (``image,digit,loop,straight,curve``; tags loop = 0/6/8/9, straight = 1/4/7, curve = 2/3/5,
   1/0, about 10 % of tag cells left empty = missing labels) for the golden set and for the
   training split. In the training split ``curve`` is annotated on only
   :data:`CURVE_TRAIN_POSITIVES` images (its other cells are empty), so it is a *tail tag*
   (< 50 training positives). ``counts.csv`` (``label,count,head``) holds the training counts
   of both heads (digit images per class, tag positives).
2. **Train** (Python, plain torch): two two-head models from ``benchmarks/bakeoff_models.py``
   (resnet18 and mobilenet_v2 trunks, a 10-way ``digit`` head and a 3-tag ``shape`` head),
   saved as state_dict checkpoints with a model card (``allowed_modules = ["bakeoff_models"]``).
3. **optim** (subprocesses, counted and timed): ``golden build`` ×2, ``prune --finetune``,
   ``quantize`` ×3 (ONNX static INT8, calibrated on the training split), one ``compare`` of
   the three artifacts (leaderboard, Pareto plot, recommendation), ``verify`` of the
   recommended artifact under the policy (exit 0 expected) and under a deliberately too-tight
   policy (budgets below the measured top-2 / tail-tag drop → exit 1 naming those checks).

Writes ``RESULTS/bakeoff.json`` and ``RESULTS/bakeoff.md`` (leaderboard, recommendation, every
command with its exit code and wall time, host load). ``--quick`` uses a smaller golden set and
shorter training (for the slow test). Exits 1 if a command's exit code is not the expected one.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from bakeoff_models import FACTORIES, TAGS  # noqa: E402

SHAPE = {"loop": {0, 6, 8, 9}, "straight": {1, 4, 7}, "curve": {2, 3, 5}}
MISSING_RATE = 0.10  # fraction of tag cells left empty (missing labels)
CURVE_TRAIN_POSITIVES = 30  # curve is annotated on this many training images: a tail tag (< 50)
TAIL_MAX_COUNT = 50
INPUT_HW = {"resnet18": 32, "mobilenet_v2": 64}  # mobilenet_v2's 32× downsampling needs more than 32 px
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
#: library noise the CLI must keep off the console (issue 14: captured to optim-logs/)
NOISE = re.compile(r"Relu partition|absl|CUDA_HOME|WARNING: All log messages|Traceback")

#: min_top1 / min_tail_tag_macro_f1: absolute floors of the policy. Drop budgets compare each
#: candidate with its *own* FP32 reference, so a backbone that never learnt would pass them; the
#: floors keep it off the recommendation (quick runs train 2 epochs, hence lower floors).
FULL = {"golden_per_class": 100, "epochs": 4, "finetune_epochs": 1, "calib_size": 300, "runs": 100, "trials": 3,
        "min_top1": 0.85, "min_tail_tag_macro_f1": 0.3}
QUICK = {"golden_per_class": 20, "epochs": 2, "finetune_epochs": 1, "calib_size": 64, "runs": 10, "trials": 1,
         "min_top1": 0.6, "min_tail_tag_macro_f1": 0.2}
LR = {"resnet18": 2e-3, "mobilenet_v2": 4e-3}  # AdamW peak (one-cycle)


# ---------------------------------------------------------------------------------- data --
def _tag_cells(digit: int, rng: np.random.Generator) -> dict[str, str]:
    return {tag: ("" if rng.random() < MISSING_RATE else ("1" if digit in members else "0"))
            for tag, members in SHAPE.items()}


def write_split(root: Path, images: np.ndarray, labels: np.ndarray, prefix: str, rng: np.random.Generator,
                curve_positives: int | None = None) -> dict[str, int]:
    """PNGs under ``root/images/`` and ``root/labels.csv``; returns labelled tag positives.

    ``curve_positives``: keep only that many labelled ``curve`` positives (the rest empty)."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rows, kept_curve = [], 0
    for i, (img, y) in enumerate(zip(images, labels)):
        name = f"images/{prefix}-{i:05d}.png"
        Image.fromarray(img, mode="L").save(root / name)
        row = {"image": name, "digit": str(int(y)), **_tag_cells(int(y), rng)}
        if curve_positives is not None and row["curve"] == "1":
            if kept_curve >= curve_positives:
                row["curve"] = ""
            else:
                kept_curve += 1
        rows.append(row)
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "digit", *SHAPE])
        w.writeheader()
        w.writerows(rows)
    positives = {tag: sum(r[tag] == "1" for r in rows) for tag in SHAPE}
    missing = sum(r[tag] == "" for r in rows for tag in SHAPE)
    return {**positives, "_missing": missing, "_cells": len(rows) * len(SHAPE)}


def tag_targets(rows_csv: Path) -> np.ndarray:
    """N×3 float32 tag targets from ``labels.csv`` (NaN = missing)."""
    with rows_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([[np.nan if r[t] == "" else float(r[t]) for t in TAGS] for r in rows], dtype=np.float32)


# --------------------------------------------------------------------------------- train --
def card_for(arch: str):
    from optim.model_card import Head, InputSpec, ModelCard, Preprocessing

    hw = INPUT_HW[arch]
    return ModelCard(
        name=f"bakeoff-{arch}", architecture=f"bakeoff_models:{arch}_two_head", allowed_modules=("bakeoff_models",),
        input=InputSpec(shape=(1, 3, hw, hw)),
        preprocessing=Preprocessing(resize=(hw, hw), mean=(MNIST_MEAN,) * 3, std=(MNIST_STD,) * 3),
        heads=(Head(name="digit", kind="multiclass", labels=tuple(str(d) for d in range(10))),
               Head(name="shape", kind="multilabel", labels=TAGS)))


def train_two_head(model, x: np.ndarray, y: np.ndarray, tags: np.ndarray, epochs: int, seed: int = 0,
                   batch_size: int = 64, lr: float = 2e-3) -> list[dict]:
    """Cross-entropy on ``digit`` + BCE on the labelled ``shape`` cells (missing ones masked),
    class-balanced sampling (as the demo), AdamW + one-cycle, small random shifts."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt, tt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(tags)
    weights = (1.0 / torch.bincount(yt).float())[yt]
    steps = max(1, len(yt) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    history = []
    model.train()
    for epoch in range(epochs):
        t0, total = time.perf_counter(), 0.0
        for _ in range(steps):
            idx = torch.multinomial(weights, batch_size, replacement=True, generator=gen)
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            out = model(torch.roll(xt[idx], shifts=(dy, dx), dims=(2, 3)))
            tb = tt[idx]
            known = ~torch.isnan(tb)
            bce = F.binary_cross_entropy_with_logits(out["shape"][known], tb[known]) if known.any() else 0.0
            loss = F.cross_entropy(out["digit"], yt[idx]) + bce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        history.append({"epoch": epoch + 1, "loss": round(total / steps, 4), "seconds": round(time.perf_counter() - t0, 1)})
        print(f"  epoch {epoch + 1}/{epochs} loss {total / steps:.3f} ({history[-1]['seconds']} s)", flush=True)
    model.eval()
    return history


def train_and_save(arch: str, split, train_dir: Path, out: Path, epochs: int) -> dict:
    import torch
    from PIL import Image

    from optim.files import atomic_write_bytes
    from optim.model_card import card_path_for
    from optim.preprocessing import preprocess_pil

    card = card_for(arch)
    x = np.stack([preprocess_pil(Image.fromarray(img, mode="L"), card.preprocessing) for img in split.train_images])
    tags = tag_targets(train_dir / "labels.csv")
    torch.manual_seed(0)
    model = FACTORIES[arch]()
    t0 = time.perf_counter()
    history = train_two_head(model, x, split.train_labels, tags, epochs, lr=LR[arch])
    bn = 0
    if arch == "mobilenet_v2":
        # short schedules leave BatchNorm running statistics behind the weights: re-estimate them
        from optim.optimize.distill import recalibrate_batchnorm
        from optim.optimize.train_data import TrainSet

        bn = recalibrate_batchnorm(model, TrainSet.load(train_dir, card), card)
        model.eval()
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(out, buf.getvalue())
    card.save(card_path_for(out))
    return {"architecture": card.architecture, "input": list(card.input.shape), "epochs": epochs,
            "train_seconds": round(seconds, 1), "history": history, "batchnorm_layers_recalibrated": bn}


# ------------------------------------------------------------------------------ commands --
class Runner:
    """Runs ``optim …`` in a subprocess exactly as typed, records exit code, wall time, output."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        exe = Path(sys.executable).with_name("optim")
        self.optim = str(exe) if exe.is_file() else (shutil.which("optim") or "optim")
        self.env = dict(os.environ)
        # this checkout's optim and the user's model module (bakeoff_models) on the path
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.env.setdefault("OMP_NUM_THREADS", "1")
        self.env["OPTIM_LOG_DIR"] = str(workdir / "optim-logs")
        self.commands: list[dict] = []

    def __call__(self, *args: str, expect: int | tuple[int, ...] = 0, step: str = "") -> dict:
        args = [str(a) for a in args]
        shown = "optim " + shlex.join(args)
        print(f"$ {shown}", flush=True)
        t0 = time.perf_counter()
        p = subprocess.run([self.optim, *args], cwd=self.workdir, env=self.env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        expected = (expect,) if isinstance(expect, int) else expect
        noise = [ln for ln in (p.stdout + "\n" + p.stderr).splitlines() if NOISE.search(ln)]
        rec = {"step": step, "command": shown, "exit_code": p.returncode, "expected_exit": list(expected),
               "ok": p.returncode in expected, "wall_s": round(wall, 1), "noise_lines": noise,
               "stdout": p.stdout, "stderr": p.stderr}
        self.commands.append(rec)
        tail = "\n".join((p.stdout.rstrip().splitlines() or [""])[-6:]) if not args[-1] == "--json" else "(json)"
        print(f"  → exit {p.returncode} in {wall:.1f} s\n{tail}", flush=True)
        if not rec["ok"]:
            print(p.stdout[-4000:], p.stderr[-4000:], sep="\n", file=sys.stderr)
        return rec


def _pts(v) -> str:
    return "—" if v is None else f"{100 * v:+.1f}"


def _frac(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def leaderboard_rows(report: dict) -> list[dict]:
    rows = []
    for c in report["candidates"]:
        dm, sm = c["metrics"].get("digit", {}), c["metrics"].get("shape", {})
        dd, sd = c["deltas"].get("digit", {}), c["deltas"].get("shape", {})
        val = lambda block, k: (block.get(k) or {}).get("value")  # noqa: E731
        lat = c["latency_ms"].get("host") or {}
        rows.append({
            "name": c["name"], "size_mb": c["size_mb"], "p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"),
            "top1": val(dm, "top1"), "top2": val(dm, "top2"), "macro_f1": val(dm, "macro_f1"), "tail_top1": val(dm, "tail_top1"),
            "tag_macro_f1": val(sm, "macro_f1"), "tail_tag_macro_f1": val(sm, "tail_macro_f1"),
            "d_top1": val(dd, "top1"), "d_top2": val(dd, "top2"), "d_tail_tag_macro_f1": val(sd, "tail_macro_f1"),
            "tail_classes": dm.get("tail_classes"), "tail_tags": sm.get("tail_classes"),
            "reference": (c.get("reference") or {}).get("path"), "verdict": c["verdict"],
            "failed_checks": [f["id"] for f in c.get("failed_checks", [])], "pareto_optimal": c.get("pareto_optimal"),
        })
    return rows


def write_policies(work: Path, cfg: dict, size_mb: float = 50.0) -> tuple[Path, str]:
    text = ("# bake-off policy: accuracy budgets vs each candidate's own FP32 reference, plus size and latency\n"
            "[defaults]\nrequired_devices = [\"host\"]\n"
            f"size_mb = {size_mb}\np95_ms = {{ host = 200 }}\n"
            "max_top1_drop_pts = 3.0\nmax_top2_drop_pts = 3.0\nmax_tail_top1_drop_pts = 10.0\n"
            "max_tail_tag_macro_f1_drop_pts = 10.0\ntail_max_count = 50\n"
            f"min_top1 = {{ digit = {cfg['min_top1']} }}\nmin_tail_tag_macro_f1 = {{ shape = {cfg['min_tail_tag_macro_f1']} }}\n")
    (work / "optim.toml").write_text(text)
    return work / "optim.toml", text


def tight_policy(work: Path, top2_pts: float, tail_tag_pts: float) -> tuple[Path, str]:
    text = ("# deliberately too tight: top-2 and tail-tag budgets below the drops compare measured\n"
            "[defaults]\nrequired_devices = [\"host\"]\nsize_mb = 50\np95_ms = { host = 200 }\n"
            f"max_top2_drop_pts = {top2_pts}\nmax_tail_tag_macro_f1_drop_pts = {tail_tag_pts}\ntail_max_count = 50\n")
    (work / "optim-tight.toml").write_text(text)
    return work / "optim-tight.toml", text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller golden set, shorter training (the slow test)")
    ap.add_argument("--workdir", type=Path, help="work directory (default: a new temporary directory, kept)")
    ap.add_argument("--results", type=Path, default=HERE / "results", help="where bakeoff.json/.md go")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    import torch

    torch.set_num_threads(1 if (os.getloadavg()[0] > 1.5 or os.environ.get("OMP_NUM_THREADS") == "1") else 2)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="optim-bakeoff-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    print(f"work directory: {work}  (load {load_start[0]:.1f}, {os.cpu_count()} cores)", flush=True)

    # 1. data ---------------------------------------------------------------------------------
    from optim.demo.data import long_tail_split

    split = long_tail_split(0, golden_per_class=cfg["golden_per_class"])
    for d in ("golden", "train"):
        if (work / d).exists():
            shutil.rmtree(work / d)
    rng = np.random.default_rng(0)
    golden_stats = write_split(work / "golden", split.golden_images, split.golden_labels, "g", rng)
    train_stats = write_split(work / "train", split.train_images, split.train_labels, "t", rng, CURVE_TRAIN_POSITIVES)
    with (work / "counts.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "count", "head"])
        for label, n in split.train_counts().items():
            w.writerow([label, n, "digit"])
        for tag in TAGS:
            w.writerow([tag, train_stats[tag], "shape"])
    run = Runner(work)
    mapping = ["--multilabel-head", "shape=" + ",".join(TAGS)]
    run("golden", "build", "golden/labels.csv", "--head", "digit", *mapping, "--train-counts", "counts.csv", step="golden set")
    run("golden", "build", "train/labels.csv", "--head", "digit", *mapping, "--train-counts", "counts.csv", step="train split")

    # 2. train the two backbones (the user's own training code) -----------------------------
    training = {}
    for arch in ("resnet18", "mobilenet_v2"):
        print(f"training {arch} (two heads, {INPUT_HW[arch]}×{INPUT_HW[arch]}, {cfg['epochs']} epochs)", flush=True)
        training[arch] = train_and_save(arch, split, work / "train", work / arch / "model.pt", cfg["epochs"])

    # 3. the pruned variant -------------------------------------------------------------------
    run("prune", "resnet18/model.pt", "--ratio", "0.3", "--finetune", "--train", "train", "--golden", "golden",
        "--epochs", cfg["finetune_epochs"], "--out", "resnet18-pruned/model.pt", step="prune")

    # 4. quantize, compare, verify --------------------------------------------------------------
    cands = {}
    for name in ("resnet18", "mobilenet_v2", "resnet18-pruned"):
        rec = run("quantize", f"{name}/model.pt", "--format", "onnx", "--scheme", "int8", "--calib", "train",
                  "--calib-size", cfg["calib_size"], "--out", f"{name}/artifacts", step=f"quantize {name}")
        if rec["ok"]:
            cands[name] = f"{name}/artifacts/onnx-int8"
    policy, policy_text = write_policies(work, cfg)
    bench = ["--runs", cfg["runs"], "--warmup", "5", "--trials", cfg["trials"]]
    cmp = run("compare", *[f"{n}={p}" for n, p in cands.items()], "--golden", "golden", "--policy", "optim.toml",
              "--metric", "top1", "--out", "compare", *bench, "--json", expect=(0, 1), step="compare")
    report = json.loads(cmp["stdout"]) if cmp["stdout"].strip().startswith("{") else {"candidates": [], "recommendation": {}}
    rows = leaderboard_rows(report)
    rec = report.get("recommendation") or {}
    verify_tight = None
    tight = None
    if rows:
        chosen = rec.get("name") or rows[0]["name"]
        run("verify", cands[chosen], "--golden", "golden", "--policy", "optim.toml", "--out", "verify-pass",
                          *bench, expect=0 if rec.get("name") else (0, 1), step=f"verify {chosen} (policy)")
        # the too-tight policy: budgets at half the largest measured drops (a drop budget cannot be < 0)
        worst = max(rows, key=lambda r: (-(r["d_top2"] or 0), -(r["d_tail_tag_macro_f1"] or 0)))
        top2_drop, tag_drop = -100 * (worst["d_top2"] or 0), -100 * (worst["d_tail_tag_macro_f1"] or 0)
        tight = {"candidate": worst["name"], "top2_drop_pts": round(top2_drop, 2), "tail_tag_drop_pts": round(tag_drop, 2),
                 "max_top2_drop_pts": round(max(0.0, top2_drop / 2), 2), "max_tail_tag_macro_f1_drop_pts": round(max(0.0, tag_drop / 2), 2)}
        tpath, tight["policy"] = tight_policy(work, tight["max_top2_drop_pts"], tight["max_tail_tag_macro_f1_drop_pts"])
        expect_tight = 1 if (top2_drop > 0 or tag_drop > 0) else (0, 1)
        verify_tight = run("verify", cands[worst["name"]], "--golden", "golden", "--policy", "optim-tight.toml",
                           "--out", "verify-tight", *bench, "--json", expect=expect_tight, step=f"verify {worst['name']} (too tight)")
        try:
            vt = json.loads(verify_tight["stdout"])
            tight["failed_checks"] = [c["id"] for a in vt["artifacts"] for c in a["checks"] if c["status"] == "fail"]
        except (ValueError, KeyError):
            tight["failed_checks"] = None

    wall = time.perf_counter() - t_start
    result = {
        "quick": args.quick, "config": cfg, "workdir": str(work), "host": {"cpus": os.cpu_count(),
        "loadavg_start": [round(v, 2) for v in load_start], "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "torch_threads": torch.get_num_threads()},
        "data": {"train_images": int(len(split.train_labels)), "golden_images": int(len(split.golden_labels)),
                 "train_counts": split.train_counts(), "train_tag_positives": {t: train_stats[t] for t in TAGS},
                 "golden_missing_tag_rate": round(golden_stats["_missing"] / golden_stats["_cells"], 4),
                 "train_missing_tag_rate": round(train_stats["_missing"] / train_stats["_cells"], 4)},
        "training": {a: {**t, "lr": LR[a]} for a, t in training.items()}, "policy": policy_text, "leaderboard": rows, "recommendation": rec,
        "pairs": report.get("pairs", []), "tight_policy": tight,
        "commands": [{k: v for k, v in c.items() if k not in ("stdout", "stderr")} for c in run.commands],
        "optim_commands": len(run.commands), "wall_s": round(wall, 1),
    }
    result["commands_ok"] = all(c["ok"] for c in run.commands)
    # what the capture kept off the console: noise lines that went to the run logs instead
    result["noise_lines_in_logs"] = sum(bool(NOISE.search(ln)) for log in sorted((work / "optim-logs").glob("*.log"))
                                        for ln in log.read_text(errors="replace").splitlines())
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "bakeoff.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / "bakeoff.md").write_text(to_markdown(result, work))
    print(f"\nwrote {args.results / 'bakeoff.json'} and bakeoff.md; {len(run.commands)} optim commands, "
          f"{wall:.0f} s wall; recommendation: {rec.get('text', '—')}")
    return 0 if result["commands_ok"] else 1


def to_markdown(r: dict, work: Path) -> str:
    lines = [f"# Bake-off on the demo data{' (--quick)' if r['quick'] else ''}", "",
             f"Host: {r['host']['cpus']} cores, load average {r['host']['loadavg_start'][0]} at start, "
             f"{r['host']['loadavg_end'][0]} at end; torch threads {r['host']['torch_threads']}; wall {r['wall_s']} s.",
             f"Data: {r['data']['train_images']} training images (long-tailed, digits 0–9), {r['data']['golden_images']} golden images; "
             f"tag positives in training {r['data']['train_tag_positives']}; missing tag labels: golden "
             f"{100 * r['data']['golden_missing_tag_rate']:.1f} %, train {100 * r['data']['train_missing_tag_rate']:.1f} %.", "",
             "## Leaderboard (ONNX static INT8, host)", "",
             "| candidate | size MB | p95 ms | top-1 | top-2 | tail top-1 | tag macro-F1 | tail-tag macro-F1 | Δ top-1 pts | Δ top-2 pts | Δ tail-tag F1 pts | Pareto | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["leaderboard"]:
        verdict = x["verdict"] + (f" ({', '.join(x['failed_checks'])})" if x["failed_checks"] else "")
        lines.append(f"| {x['name']} | {x['size_mb']:.2f} | {x['p95_ms'] if x['p95_ms'] is None else round(x['p95_ms'], 2)} | "
                     f"{_frac(x['top1'])} | {_frac(x['top2'])} | {_frac(x['tail_top1'])} | {_frac(x['tag_macro_f1'])} | "
                     f"{_frac(x['tail_tag_macro_f1'])} | {_pts(x['d_top1'])} | {_pts(x['d_top2'])} | {_pts(x['d_tail_tag_macro_f1'])} | "
                     f"{'yes' if x['pareto_optimal'] else 'no'} | {verdict} |")
    if r["leaderboard"]:
        lines += ["", f"Tail classes (digit): {r['leaderboard'][0]['tail_classes']}; tail tags (shape): {r['leaderboard'][0]['tail_tags']}."]
    lines += ["", f"**Recommendation**: {(r['recommendation'] or {}).get('text', '—')}", ""]
    if r["tight_policy"]:
        t = r["tight_policy"]
        lines += [f"Too-tight policy on {t['candidate']}: max_top2_drop_pts = {t['max_top2_drop_pts']} (measured drop "
                  f"{t['top2_drop_pts']}), max_tail_tag_macro_f1_drop_pts = {t['max_tail_tag_macro_f1_drop_pts']} (measured "
                  f"{t['tail_tag_drop_pts']}); failed checks: {t.get('failed_checks')}.", ""]
    lines += ["## Commands", "", f"{r['optim_commands']} optim commands (plus the user's own data and training code).", "",
              "| step | command | exit | wall s |", "|---|---|---|---|"]
    for c in r["commands"]:
        lines.append(f"| {c['step']} | `{c['command']}` | {c['exit_code']} | {c['wall_s']} |")
    lines += ["", "Training (plain torch, in the script): " + ", ".join(
        f"{a} {t['epochs']} epochs {t['train_seconds']} s" for a, t in r["training"].items()), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
