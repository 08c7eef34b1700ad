"""optim: on-device deployment and model optimization for image classifiers.

Public API (imported lazily, so ``import optim`` stays cheap):

* :func:`optim.load_checkpoint` — checkpoint + model card → eval-mode ``nn.Module``;
* :class:`optim.ModelCard` — the typed model card;
* :func:`optim.open_runtime` — a checkpoint or artifact, ready to predict on the host;
* :func:`optim.quantize` — PTQ + export to ONNX / TFLite / ExecuTorch, checked on host runtimes;
* :class:`optim.Artifact` — an exported artifact directory and its metadata;
* :func:`optim.prune` / :func:`optim.save_pruned` — structured channel pruning, safe pruned checkpoints;
* :func:`optim.finetune` — recovery fine-tuning with distillation and gradient health;
* :func:`optim.distill` — a student of another architecture trained from a teacher, saved with its lineage;
* :func:`optim.quantize_qat` — QAT (PT2E) distilled from the FP32 model, INT8 artifacts;
* :func:`optim.evaluate` — golden-set accuracy, per-class/tail deltas vs FP32 with intervals.
* :func:`optim.bench` — p50/p95/p99 latency and memory on the host or an Android phone.
* :func:`optim.verify` — the release gate (size, accuracy vs FP32, p95 per device → verdicts, reports);
* :func:`optim.compare` — a leaderboard of candidates, each against its own FP32 reference, with a recommendation;
* :func:`optim.publish` — an artifact that passed verify → an atomic, content-addressed release;
* :func:`optim.tune` — per-layer sensitivity, a seeded search (format × scheme × float fallback ×
  pruning) judged by verify's checks, the Pareto front and a verified artifact per format.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("optim")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

# public name → module that defines it (one line per API entry point)
_API = {
    "load_checkpoint": "optim.checkpoint",
    "LoadedModel": "optim.checkpoint",
    "ModelCard": "optim.model_card",
    "open_runtime": "optim.runtimes",
    "quantize": "optim.optimize.ptq",
    "QuantizeResult": "optim.optimize.ptq",
    "Artifact": "optim.runtimes.artifact",
    "evaluate": "optim.golden_sets.evaluate",
    "EvalReport": "optim.golden_sets.report",
    "GoldenSet": "optim.golden_sets.golden_set",
    "build_golden_set_from_images": "optim.golden_sets.build",
    "bench": "optim.device_bench.api",
    "BenchResult": "optim.device_bench.result",
    "verify": "optim.gate.verify",
    "compare": "optim.gate.compare",
    "publish": "optim.gate.publish",
    "prune": "optim.optimize.pruning",
    "save_pruned": "optim.optimize.pruning",
    "finetune": "optim.optimize.finetune",
    "distill": "optim.optimize.distill",
    "DistillResult": "optim.optimize.distill",
    "FinetuneConfig": "optim.optimize.finetune",
    "DistillConfig": "optim.optimize.distillation",
    "distillation_loss": "optim.optimize.distillation",
    "quantize_qat": "optim.optimize.qat",
    "tune": "optim.tune.api",
    "TuneResult": "optim.tune.api",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'optim' has no attribute {name!r}")
