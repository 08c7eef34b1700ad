"""``optim tune``: per-layer quantization sensitivity, a seeded search (Optuna) over format ×
scheme × float-fallback set × pruning ratio judged by the release gate's own checks, the Pareto
front, and one verified artifact per format.

Layer: above :mod:`optim.gate` (it reuses verify's checks, so "passes" means what verify
means), below :mod:`optim.demo` and :mod:`optim.cli`.

* :mod:`optim.tuning.sensitivity` — ranking math (pure) and the measuring code (exports, KL on a
  held-out calibration slice, golden-set deltas);
* :mod:`optim.tuning.build` — one candidate artifact (export with float fallback layers);
* :mod:`optim.tuning.search` — candidates, the Optuna study (journal file under OUT, resumable),
  baselines, the choice per format and its verification;
* :mod:`optim.tuning.report` — ``tune.json`` / ``tune.md`` / the Pareto plot in ``tune.html``;
* :mod:`optim.tuning.api` — :func:`optim.tune` (the facade entry point).
"""
