"""Per-layer (or per-block) quantization sensitivity: which layers hurt when quantized.

For every *unit* (a quantizable layer, or a top-level block of them when there are more than
:data:`DEFAULT_MAX_UNITS` layers, to bound the cost on a small host) two artifacts are exported
with the format's own quantizer: **it alone** quantized (every other layer kept in float) and
**all but it** quantized (it kept in float). Each is compared with the FP32 model on

* a held-out slice of the calibration images: KL(FP32 ‖ quantized) of the output
  distributions, in nats, averaged over images (softmax per multiclass head; per-tag
  Bernoulli for multi-label heads; summed over heads);
* the golden set (:func:`optim.evaluate`): top-1, tail-class top-1 (tail classes from the
  golden set's ``train_counts.json``) and per-class top-1 deltas, in percentage points.

The ranking math (:func:`group_units`, :func:`kl_divergence`, :func:`rank_units`) is pure and
tested with plain arrays; :func:`measure_sensitivity` is the measuring code (exports,
runtimes, files) and takes the quantizer as a function, so a test can hand it a clearly named
double.

**Score** (higher = more sensitive; tail-weighted by default, ``tail_weight`` = w)::

    acc(x)   = (1 − w)·top1(x) + w·tail_top1(x)            (w = 0 when no tail is defined)
    damage   = acc(FP32) − acc(it alone)                    (fractions)
    recovery = acc(all but it) − acc(all quantized)
    kl_part  = KL(it alone) + max(0, KL(all quantized) − KL(all but it))
    score    = damage + recovery + kl_part

A unit that breaks the model when quantized alone, or whose float fallback repairs the fully
quantized model, ranks first. A **collapse** is a fully quantized model whose top-1 (or
tail-class top-1) drops by more than :data:`COLLAPSE_DROP_PTS` points, or whose top-1 agrees
with FP32's on fewer than :data:`COLLAPSE_MIN_AGREEMENT` of the golden images; the search then tries
float fallbacks of the top-ranked units and the format's other schemes to repair it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optim.errors import InputError

DEFAULT_MAX_UNITS = 30
DEFAULT_TAIL_WEIGHT = 0.5
COLLAPSE_DROP_PTS = 10.0
COLLAPSE_MIN_AGREEMENT = 0.8
UNIT_KINDS = ("auto", "layer", "block")
MODES = ("alone", "all_but")


# ---- pure --------------------------------------------------------------------------------------
def group_units(layers: Sequence[str], unit: str = "auto", max_units: int = DEFAULT_MAX_UNITS) -> dict[str, tuple[str, ...]]:
    """Units of the sensitivity analysis → the qualified layer names each stands for.

    ``unit``: ``"layer"`` (one unit per layer), ``"block"`` (layers grouped by their top-level
    module: ``layer1.0.conv1`` → ``layer1``) or ``"auto"`` (layers when there are at most
    ``max_units``, else blocks). Order follows ``layers``. Raises :class:`InputError` for an
    unknown ``unit`` or no layers.
    """
    if unit not in UNIT_KINDS:
        raise InputError(f"unknown sensitivity unit {unit!r}; choose from {', '.join(UNIT_KINDS)}")
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise InputError("the model has no quantizable layer; nothing to analyse")
    if unit == "layer" or (unit == "auto" and len(layers) <= max_units):
        return {name: (name,) for name in layers}
    out: dict[str, list[str]] = {}
    for name in layers:
        out.setdefault(name.split(".", 1)[0], []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    from scipy.special import log_softmax

    return log_softmax(np.asarray(x, dtype=np.float64), axis=1)


def kl_divergence(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean over N images of KL(P ‖ Q) = Σ_k p_k (log p_k − log q_k), in nats, where P and Q are
    the softmax of N×K logits ``p_logits`` (the FP32 reference) and ``q_logits``. Raises
    :class:`InputError` for mismatched shapes."""
    p_logits, q_logits = np.asarray(p_logits), np.asarray(q_logits)
    if p_logits.shape != q_logits.shape or p_logits.ndim != 2:
        raise InputError(f"KL needs two N×K arrays of one shape, got {p_logits.shape} and {q_logits.shape}")
    lp, lq = _log_softmax(p_logits), _log_softmax(q_logits)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


def bernoulli_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean over N×T of the Bernoulli KL(σ(p) ‖ σ(q)) (multi-label heads), in nats."""
    from scipy.special import log_expit

    p = np.asarray(p_logits, dtype=np.float64)
    q = np.asarray(q_logits, dtype=np.float64)
    if p.shape != q.shape:
        raise InputError(f"KL needs two arrays of one shape, got {p.shape} and {q.shape}")
    lp1, lp0, lq1, lq0 = log_expit(p), log_expit(-p), log_expit(q), log_expit(-q)
    return float(np.mean(np.exp(lp1) * (lp1 - lq1) + np.exp(lp0) * (lp0 - lq0)))


@dataclass
class Measured:
    """One model's measurements: ``kl`` (nats, vs FP32 on the held-out slice; 0 for FP32),
    ``top1`` / ``tail_top1`` (fractions; None when not computable), ``per_class`` {label: top-1},
    ``agreement``: fraction of golden images whose top-1 equals FP32's (None for FP32 itself)."""

    kl: float
    top1: float | None
    tail_top1: float | None
    per_class: dict[str, float | None] = field(default_factory=dict)
    agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kl": self.kl, "top1": self.top1, "tail_top1": self.tail_top1, "per_class": dict(self.per_class),
                "agreement": self.agreement}


def _acc(m: Measured, w: float) -> float | None:
    if m.top1 is None:
        return None
    if m.tail_top1 is None or w == 0:
        return m.top1
    return (1 - w) * m.top1 + w * m.tail_top1


def _pts(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(100 * (a - b), 4)


def rank_units(fp32: Measured, all_quant: Measured, alone: dict[str, Measured], all_but: dict[str, Measured],
               units: dict[str, tuple[str, ...]], tail_weight: float = DEFAULT_TAIL_WEIGHT) -> list[dict[str, Any]]:
    """The ranked table: one row per unit, most sensitive first (score in the module docstring;
    ties broken by unit order). Deltas are percentage points versus FP32 (negative = worse);
    ``recovery_*_pts`` are gains of "all but it" over "all quantized". Raises
    :class:`InputError` for a unit without both measurements or a weight outside 0–1.
    """
    if not 0 <= tail_weight <= 1:
        raise InputError(f"tail_weight must be within 0-1, got {tail_weight}")
    w = tail_weight if fp32.tail_top1 is not None else 0.0
    rows = []
    for i, (u, layers) in enumerate(units.items()):
        if u not in alone or u not in all_but:
            raise InputError(f"unit {u!r} lacks a measurement (alone and all-but are both needed)")
        a, b = alone[u], all_but[u]
        acc_fp, acc_a, acc_b, acc_q = _acc(fp32, w), _acc(a, w), _acc(b, w), _acc(all_quant, w)
        damage = 0.0 if acc_fp is None or acc_a is None else acc_fp - acc_a
        recovery = 0.0 if acc_b is None or acc_q is None else acc_b - acc_q
        kl_part = a.kl + max(0.0, all_quant.kl - b.kl)
        score = damage + recovery + kl_part
        deltas = {lab: _pts(v, fp32.per_class.get(lab)) for lab, v in a.per_class.items()}
        known = {k: v for k, v in deltas.items() if v is not None}
        worst = min(known.items(), key=lambda kv: kv[1]) if known else (None, None)
        rows.append({
            "unit": u, "layers": list(layers), "order": i, "score": round(float(score), 6),
            "alone": {"kl": round(a.kl, 6), "agreement": a.agreement, "top1_delta_pts": _pts(a.top1, fp32.top1),
                      "tail_top1_delta_pts": _pts(a.tail_top1, fp32.tail_top1),
                      "worst_class": worst[0], "worst_class_delta_pts": worst[1], "per_class_delta_pts": deltas},
            "all_but": {"kl": round(b.kl, 6), "agreement": b.agreement, "top1_delta_pts": _pts(b.top1, fp32.top1),
                        "tail_top1_delta_pts": _pts(b.tail_top1, fp32.tail_top1),
                        "recovery_top1_pts": _pts(b.top1, all_quant.top1),
                        "recovery_tail_top1_pts": _pts(b.tail_top1, all_quant.tail_top1)},
        })
    rows.sort(key=lambda r: (-r["score"], r["order"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
        del r["order"]
    return rows


def collapse_of(fp32: Measured, all_quant: Measured, threshold_pts: float = COLLAPSE_DROP_PTS,
                min_agreement: float = COLLAPSE_MIN_AGREEMENT) -> dict[str, Any]:
    """``{"collapsed", "top1_drop_pts", "tail_top1_drop_pts", "threshold_pts"}``: the fully
    quantized model collapsed when top-1 or tail-class top-1 dropped by more than
    ``threshold_pts`` percentage points versus FP32."""
    d1 = _pts(fp32.top1, all_quant.top1)
    dt = _pts(fp32.tail_top1, all_quant.tail_top1)
    collapsed = any(d is not None and d > threshold_pts for d in (d1, dt))
    return {"collapsed": collapsed, "top1_drop_pts": d1, "tail_top1_drop_pts": dt, "threshold_pts": threshold_pts}


# ---- result ------------------------------------------------------------------------------------
@dataclass
class SensitivityResult:
    """The sensitivity analysis of one format × scheme.

    Attributes:
        format / scheme: what was exported; ``unit_kind``: ``layer`` | ``block``.
        units: unit → layer names; ``rows``: :func:`rank_units` (most sensitive first).
        fp32 / all_quant: the FP32 model and the fully quantized one (:class:`Measured`).
        collapse: :func:`collapse_of`; ``seconds``: wall time; ``holdout_size``: images in the KL slice.
    """

    format: str
    scheme: str
    unit_kind: str
    units: dict[str, tuple[str, ...]]
    rows: list[dict[str, Any]]
    fp32: Measured
    all_quant: Measured
    collapse: dict[str, Any]
    tail_weight: float
    head: str
    holdout_size: int
    seconds: float = 0.0

    def top_units(self, k: int) -> list[str]:
        """The ``k`` most sensitive units."""
        return [r["unit"] for r in self.rows[:k]]

    def top_layers(self, k: int) -> list[str]:
        """Qualified layer names of the ``k`` most sensitive units (the float-fallback set)."""
        out: list[str] = []
        for r in self.rows[:k]:
            out.extend(r["layers"])
        return list(dict.fromkeys(out))

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "scheme": self.scheme, "unit_kind": self.unit_kind, "head": self.head,
                "ranking": "tail-weighted" if self.tail_weight > 0 else "top-1", "tail_weight": self.tail_weight,
                "holdout_size": self.holdout_size, "seconds": round(self.seconds, 2),
                "fp32": self.fp32.to_dict(), "all_quantized": self.all_quant.to_dict(), "collapse": self.collapse,
                "units": {k: list(v) for k, v in self.units.items()}, "rows": self.rows}


def to_markdown(results: Sequence[SensitivityResult]) -> str:
    """Ranked tables, one per format × scheme."""
    out = []
    for r in results:
        c = r.collapse
        out.append(f"### Sensitivity: {r.format}-{r.scheme} ({len(r.units)} {r.unit_kind}s, "
                   f"{'tail-weighted' if r.tail_weight > 0 else 'top-1'} ranking, head {r.head})\n")
        out.append(f"All quantized: top-1 Δ {_fmt(-c['top1_drop_pts'] if c['top1_drop_pts'] is not None else None)} pts, "
                   f"tail top-1 Δ {_fmt(-c['tail_top1_drop_pts'] if c['tail_top1_drop_pts'] is not None else None)} pts, "
                   f"KL {r.all_quant.kl:.4f} nats" + (" — **collapse**" if c["collapsed"] else "") + "\n")
        out.append("| rank | unit | layers | score | KL alone | top-1 Δ alone | tail Δ alone | worst class (Δ) "
                   "| KL all-but | recovery top-1 | recovery tail |")
        out.append("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        for row in r.rows:
            a, b = row["alone"], row["all_but"]
            worst = f"{a['worst_class']} ({_fmt(a['worst_class_delta_pts'])})" if a["worst_class"] is not None else "—"
            out.append(f"| {row['rank']} | `{row['unit']}` | {len(row['layers'])} | {row['score']:.4f} | {a['kl']:.4f} "
                       f"| {_fmt(a['top1_delta_pts'])} | {_fmt(a['tail_top1_delta_pts'])} | {worst} | {b['kl']:.4f} "
                       f"| {_fmt(b['recovery_top1_pts'])} | {_fmt(b['recovery_tail_top1_pts'])} |")
        out.append("")
    out.append("Deltas in percentage points versus FP32 (negative = worse); KL(FP32 ‖ quantized) in nats on a held-out "
               "slice of the calibration images; recovery = all-but-it minus all-quantized.")
    return "\n".join(out) + "\n"


def _fmt(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.2f}"


def plot(results: Sequence[SensitivityResult], top: int = 20) -> bytes | None:
    """A horizontal bar chart of the scores (most sensitive on top), one panel per format ×
    scheme; PNG bytes (matplotlib, Agg), or None when there is nothing to plot."""
    results = [r for r in results if r.rows]
    if not results:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    height = max(2.5, 0.28 * min(top, max(len(r.rows) for r in results)) + 1.2)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, height), squeeze=False)
    for ax, r in zip(axes[0], results):
        rows = r.rows[:top][::-1]
        ax.barh([row["unit"] for row in rows], [row["score"] for row in rows],
                color=["#c62828" if row["rank"] <= 3 else "#607d8b" for row in rows])
        ax.set_title(f"{r.format}-{r.scheme}" + (" (collapse)" if r.collapse["collapsed"] else ""), fontsize=9)
        ax.set_xlabel("sensitivity score (higher = keep in float first)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


# ---- measuring (I/O) ---------------------------------------------------------------------------
def head_outputs_kl(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], kinds: dict[str, str]) -> float:
    """KL summed over heads: softmax KL for multiclass heads, Bernoulli KL for multi-label ones."""
    total = 0.0
    for head, kind in kinds.items():
        total += (kl_divergence if kind == "multiclass" else bernoulli_kl)(reference[head], candidate[head])
    return total


def _measure(runtime, holdout: np.ndarray, ref_holdout: dict[str, np.ndarray] | None, golden, card, head: str,
             batch_size: int, ref_pred: np.ndarray | None = None) -> tuple[Measured, dict[str, np.ndarray], np.ndarray]:
    from optim.golden_sets.evaluate import PROCESS_TENSORS, evaluate, predict_all

    kinds = {h.name: h.kind for h in card.heads}
    out = predict_all(runtime, holdout, batch_size)
    kl = 0.0 if ref_holdout is None else head_outputs_kl(ref_holdout, out, kinds)
    ev = evaluate(runtime, golden, cache_dir=False, memo=PROCESS_TENSORS, batch_size=batch_size)
    pred = np.argmax(ev.logits[head], axis=1)
    agreement = None if ref_pred is None else float(np.mean(pred == ref_pred))
    h = ev.to_dict()["heads"][head]
    metrics = h.get("metrics") or {}
    per_class = {row["label"]: row.get("recall") for row in h.get("per_class") or []}
    return Measured(kl=kl, top1=metrics.get("top1"), tail_top1=metrics.get("tail_top1"), per_class=per_class,
                    agreement=agreement), out, pred


def measure_sensitivity(
    model, card, *, layers: Sequence[str], quantized_runtime: Callable[[tuple[str, ...]], Any], holdout: np.ndarray,
    golden, fmt: str, scheme: str, unit: str = "auto", max_units: int = DEFAULT_MAX_UNITS,
    tail_weight: float = DEFAULT_TAIL_WEIGHT, head: str | None = None, batch_size: int = 64,
    progress: Callable[[str], None] | None = None,
) -> SensitivityResult:
    """Measure and rank the sensitivity of ``model``'s quantizable ``layers`` for one format × scheme.

    Args:
        model: the FP32 eval-mode ``nn.Module``; ``card`` its model card.
        layers: qualified names of the quantizable layers (grouped by :func:`group_units`).
        quantized_runtime: ``float_layers -> Runtime``: the model quantized with the format's
            quantizer, the named layers kept in float (``()`` = all quantized); the production
            one is :func:`optim.tune.build.quantized_runtime_factory`.
        holdout: float32 N×C×H×W held-out calibration images (not used to calibrate) for KL.
        golden: golden set directory (tail classes from its ``train_counts.json``).
        head: the multiclass head whose accuracy ranks (default: the card's first multiclass head).

    Cost: 2 × units + 1 quantized exports. Raises :class:`InputError` (no multiclass head, no
    layers, bad arguments); exporter failures propagate as :class:`optim.errors.ToolError`.
    """
    from optim.runtimes.base import TorchRuntime

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    multiclass = [h.name for h in card.heads if h.kind == "multiclass"]
    if head is None:
        if not multiclass:
            raise InputError(f"model card {card.name!r} has no multiclass head; sensitivity ranks by top-1")
        head = multiclass[0]
    elif head not in multiclass:
        raise InputError(f"head {head!r} is not a multiclass head of model card {card.name!r} ({multiclass})")
    if len(holdout) == 0:
        raise InputError("the held-out calibration slice is empty; give more calibration images")
    units = group_units(layers, unit, max_units)
    all_layers = tuple(dict.fromkeys(n for ls in units.values() for n in ls))
    fp32, ref_out, ref_pred = _measure(TorchRuntime(model, card), holdout, None, golden, card, head, batch_size)
    say(f"sensitivity {fmt}-{scheme}: FP32 top-1 {fp32.top1}; {len(units)} units, {2 * len(units) + 1} exports")

    def run(float_layers: tuple[str, ...]) -> Measured:
        rt = quantized_runtime(float_layers)
        try:
            return _measure(rt, holdout, ref_out, golden, card, head, batch_size, ref_pred)[0]
        finally:
            close = getattr(rt, "close", None)
            if close:
                close()

    all_quant = run(())
    alone: dict[str, Measured] = {}
    all_but: dict[str, Measured] = {}
    for i, (u, ls) in enumerate(units.items(), 1):
        inside = set(ls)
        alone[u] = run(tuple(n for n in all_layers if n not in inside))
        all_but[u] = run(tuple(ls))
        say(f"  [{i}/{len(units)}] {u}: alone KL {alone[u].kl:.4f} top-1 {alone[u].top1}; "
            f"all-but KL {all_but[u].kl:.4f} top-1 {all_but[u].top1}")
    rows = rank_units(fp32, all_quant, alone, all_but, units, tail_weight)
    kind = "layer" if all(len(v) == 1 and k == v[0] for k, v in units.items()) else "block"
    return SensitivityResult(format=fmt, scheme=scheme, unit_kind=kind, units=units, rows=rows, fp32=fp32,
                             all_quant=all_quant, collapse=collapse_of(fp32, all_quant), tail_weight=tail_weight,
                             head=head, holdout_size=len(holdout), seconds=time.perf_counter() - t0)
