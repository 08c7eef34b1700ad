"""The demo's tune step: ``optim tune`` on the demo checkpoint with a small budget (one format,
block-level sensitivity, a few trials) so that it stays within a few minutes on 2 cores.

Writes ``WORKDIR/tune/`` (``tune.json``, ``tune.md``, ``tune.html`` with the Pareto plot,
``chosen/<format>/verify.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the demo's bounds: block-level sensitivity (resnet18: 6 blocks → 13 exports), k = 1, few trials
DEMO_TUNE = {"sensitivity_unit": "block", "fallback_ks": (1,), "max_trials": 5, "time_budget": "4m",
             "calib_size": 100, "runs": 20, "warmup": 3, "trials": 2}


def run_tune_step(workdir: str | Path, checkpoint: Path, golden: Path, *, policy: Path | None = None,
                  formats: tuple[str, ...] | None = None, log: Callable[[str], None] = print, **overrides: Any):
    """Tune ``checkpoint`` against the demo policy (``WORKDIR/optim.toml``, written by the release
    step) on the host, calibrating on ``WORKDIR/train`` (never the golden set), for the first
    default format of the registry unless ``formats`` says otherwise. Returns the
    :class:`optim.tuning.api.TuneResult`."""
    from optim.runtimes.registry import default_formats
    from optim.tuning.api import tune

    workdir = Path(workdir)
    policy = policy or workdir / "optim.toml"
    formats = formats or default_formats()[:1]
    log(f"tuning {checkpoint} for {', '.join(formats)} on the host (small demo budget: {DEMO_TUNE['time_budget']}, "
        f"at most {DEMO_TUNE['max_trials']} trials, block-level sensitivity)")
    return tune(checkpoint, policy=policy, calib=workdir / "train", golden=golden, device="host", formats=list(formats),
                out=workdir / "tune", progress=log, **(DEMO_TUNE | overrides))
