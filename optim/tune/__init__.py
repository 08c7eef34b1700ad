"""``optim tune``: per-layer quantization sensitivity, a seeded search (Optuna) over format ×
scheme × float-fallback set × pruning ratio judged by the release gate's own checks, the Pareto
front, and one verified artifact per format.

Layer: above :mod:`optim.gate` (it reuses verify's checks, so "passes" means what verify
means), below :mod:`optim.demo` and :mod:`optim.cli`.

* :mod:`optim.tune.sensitivity` — ranking math (pure) and the measuring code (exports, KL on a
  held-out calibration slice, golden-set deltas);
* :mod:`optim.tune.build` — one candidate artifact (export with float fallback layers);
* :mod:`optim.tune.search` — candidates, the Optuna study (journal file under OUT, resumable),
  baselines, the choice per format and its verification;
* :mod:`optim.tune.report` — ``tune.json`` / ``tune.md`` / the Pareto plot in ``tune.html``;
* :mod:`optim.tune.api` — :func:`optim.tune` (the facade entry point).
"""

import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    """``optim.tune`` is both this package and the API function: once the package is imported,
    Python binds the attribute ``optim.tune`` to it, so calling the package calls
    :func:`optim.tune.api.tune` (same arguments, same result)."""

    def __call__(self, *args, **kwargs):
        from optim.tune.api import tune

        return tune(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
