"""Pure verdict computation: a typed measurement + a resolved budget → checks.

No I/O here. Inputs are the typed views of :mod:`optim.gate.measurement`
(:class:`~optim.gate.measurement.ArtifactMeasurement`: ``eval`` an
:class:`~optim.gate.measurement.EvalView` of ``EvalReport.to_dict()``, deltas are fractions,
target − reference, with 95 % paired-bootstrap intervals; ``bench[device]`` a
:class:`~optim.gate.measurement.BenchView` of ``BenchResult.to_dict()``, ms). The public
functions also accept those JSON dicts and parse them once on entry.

Every check carries the measured value, the threshold, the margin (positive = headroom,
negative = over budget, in the check's unit), pass/fail, and for accuracy checks the
interval. Accuracy drops are reported in percentage points, positive = worse than FP32
(drop = −100 × delta), so an interval ``[lo, hi]`` of a drop is ``[−100·ci_high, −100·ci_low]``.

Fail closed: a missing measurement, a null metric, an unverified golden set or a required
device that was not measured never passes; the check says why.

Budgets versus FP32 (ids): ``top1_drop[h]``, ``top{k}_drop[h]`` (every k of
``max_topk_drop_pts``), ``tail_top1_drop[h]``, ``class_drop[h]``, ``top1_agreement[h]``
(multiclass heads); ``multilabel_macro_f1_drop[h]``, ``tag_f1_drop[h]`` (worst single tag, on
its interval, like ``class_drop``) and ``tail_tag_macro_f1_drop[h]`` (multi-label heads).

Besides the budgets versus FP32, two kinds of check need no reference at all: the policy's
pins (``golden_pin``, ``reference_pin``: the digests this run used must be the pinned ones)
and its absolute floors (``min_top1[head]``, ``min_tail_top1[head]``, ``min_macro_f1[head]``,
``min_tail_tag_macro_f1[head]``:
the artifact's own metric must reach the floor), so a wrong or weak reference cannot make a
bad model pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

from optim.gate.measurement import ArtifactMeasurement, BenchView, DeltaRow, DeltaView, EvalView, HeadView, Interval
from optim.gate.policy import ALL_HEADS, FLOORS, ResolvedBudget

Status = Literal["pass", "fail", "error", "skipped"]
PASS, FAIL, ERROR, SKIPPED = "pass", "fail", "error", "skipped"


@dataclass
class Check:
    """One verdict. ``comparison`` is how ``measured`` is held against ``threshold``:
    ``"<="`` (a budget: size, latency, drop) or ``">="`` (a floor: agreement)."""

    id: str  # stable, e.g. "top1_drop[digit]", "p95[pixel6a]"
    kind: Literal["size", "latency", "accuracy", "integrity"]
    status: Status
    unit: str
    comparison: Literal["<=", ">="] | None = None
    measured: float | None = None
    threshold: float | None = None
    margin: float | None = None
    interval: list[float] | None = None  # 95 % interval of ``measured`` where one exists
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pts(x: float) -> str:
    """One decimal, never "-0.0"."""
    s = f"{x:.1f}"
    return "0.0" if s == "-0.0" else s


def _margin(measured: float, threshold: float, comparison: str) -> float:
    return threshold - measured if comparison == "<=" else measured - threshold


def _budget_check(
    id: str, kind: str, unit: str, measured: float | None, threshold: float, comparison: str = "<=",
    *, decide: float | None = None, interval: list[float] | None = None, missing_reason: str = "", details=None,
) -> Check:
    """Compare ``decide`` (default: ``measured``) with ``threshold``; None → fail closed."""
    details = details or {}
    if measured is None:
        return Check(id, kind, FAIL, unit, comparison, None, threshold, None, interval,
                     missing_reason or "not measured", details)
    value = measured if decide is None else decide
    ok = value <= threshold if comparison == "<=" else value >= threshold
    margin = _margin(value, threshold, comparison)
    reason = "" if ok else f"{value:.4g} {unit} {'>' if comparison == '<=' else '<'} {threshold:.4g} {unit}"
    if decide is not None and decide != measured:
        details = {**details, "decided_on": decide}
        if not ok:
            reason += " (upper end of the 95 % interval)"
    return Check(id, kind, PASS if ok else FAIL, unit, comparison, measured, threshold, margin, interval, reason, details)


def _drop(delta: Interval | None) -> tuple[float | None, list[float] | None]:
    """Delta {value, ci_low, ci_high} (fractions) → (drop in points, drop interval)."""
    if delta is None or delta.value is None:
        return None, None
    drop = -100.0 * delta.value
    lo, hi = delta.ci_low, delta.ci_high
    interval = [-100.0 * hi, -100.0 * lo] if lo is not None and hi is not None else None
    return drop, interval


def _delta_view(delta_block: DeltaView | dict | None) -> DeltaView | None:
    return delta_block if delta_block is None or isinstance(delta_block, DeltaView) else DeltaView.from_dict(delta_block, "delta")


def _drop_check(id: str, delta_block: DeltaView | None, metric: str, threshold: float, decide_on: str, what: str) -> Check:
    if delta_block is None:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold, None, None,
                     "no delta versus FP32: the reference was not evaluated (pass --reference)")
    drop, interval = _drop(delta_block.interval(metric))
    if drop is None:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold, None, None,
                     f"{what} delta could not be computed (null in the evaluation report)")
    decide = None
    if decide_on == "ci":
        if interval is None:
            return Check(id, "accuracy", FAIL, "pts", "<=", drop, threshold, None, None,
                         f"{what}: policy decides on the interval but the report has none")
        decide = interval[1]
    return _budget_check(id, "accuracy", "pts", drop, threshold, decide=decide, interval=interval)


def class_drop_check(head: str, delta_block: DeltaView | dict | None, threshold_pts: float, min_support: int) -> Check:
    """The single-class check (see :mod:`optim.gate.policy` for the rule).

    A class with support ≥ ``min_support`` fails iff the upper end of its delta interval is
    below −threshold (``ci_high < −threshold_pts/100``). ``measured`` is the largest drop that
    is established at 95 % (max over eligible classes of −100·ci_high, i.e. the lower end of
    the drop interval); ``interval`` is that class's drop interval.
    """
    id = f"class_drop[{head}]"
    delta_block = _delta_view(delta_block)
    if delta_block is None:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold_pts, None, None,
                     "no delta versus FP32: the reference was not evaluated (pass --reference)")
    rows = delta_block.per_class
    if not rows:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold_pts, None, None,
                     "per-class deltas missing from the evaluation report")
    return _worst_row_check(id, rows, threshold_pts, min_support, "class", "golden images")


def tag_f1_drop_check(head: str, delta_block: DeltaView | dict | None, threshold_pts: float, min_support: int) -> Check:
    """The single-tag check of a multi-label head: the class rule (:func:`class_drop_check`)
    on each tag's F1 delta (``delta["per_tag"][i]["f1"]``, fractions with a 95 % paired
    bootstrap interval). A tag with at least ``min_support`` known positive golden labels
    (``support``) fails iff ``ci_high < −threshold_pts/100``; tags with fewer are listed as
    low support and cannot fail alone. Fails closed on a missing delta, missing per-tag rows,
    or an eligible tag whose F1 delta or interval is null.
    """
    id = f"tag_f1_drop[{head}]"
    delta_block = _delta_view(delta_block)
    if delta_block is None:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold_pts, None, None,
                     "no delta versus FP32: the reference was not evaluated (pass --reference)")
    if not delta_block.per_tag:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold_pts, None, None,
                     "per-tag F1 deltas missing from the evaluation report")
    return _worst_row_check(id, delta_block.per_tag, threshold_pts, min_support, "tag", "known positive labels", metric="F1")


def _worst_row_check(id: str, rows: tuple[DeltaRow, ...], threshold_pts: float, min_support: int, noun: str,
                     support_of: str, metric: str = "top-1") -> Check:
    """Shared rule of the per-class and per-tag checks on rows (label, support, value,
    ci_low, ci_high; fractions): see :func:`class_drop_check`."""
    failing, inconclusive, low_support, uncomputable = [], [], [], []
    worst: tuple[float, DeltaRow] | None = None
    for r in rows:
        label, support = str(r.label), r.support
        support = support if _finite(support) else 0
        value, lo, hi = r.value, r.ci_low, r.ci_high
        if support < min_support:
            if _finite(value) and -100.0 * value > threshold_pts:
                low_support.append({"label": label, "support": support, "drop_pts": -100.0 * value})
            elif value is None:
                low_support.append({"label": label, "support": support, "drop_pts": None})
            continue
        if not (_finite(value) and _finite(hi) and _finite(lo)):
            uncomputable.append(label)
            continue
        established = -100.0 * hi  # the smallest drop consistent with the data at 95 %
        if worst is None or (established, -value) > (worst[0], -worst[1].value):  # ties: larger estimate
            worst = (established, r)
        if established > threshold_pts:
            failing.append({"label": label, "support": support, "drop_pts": -100.0 * value,
                            "interval_pts": [-100.0 * hi, -100.0 * lo]})
        elif -100.0 * value > threshold_pts:
            inconclusive.append({"label": label, "support": support, "drop_pts": -100.0 * value,
                                 "interval_pts": [-100.0 * hi, -100.0 * lo]})
    details = {"min_support": min_support, "failing": failing, "inconclusive": inconclusive,
               "low_support": low_support, "uncomputable": uncomputable, "metric": metric,
               "rule": "fail iff support >= min_support and upper end of the 95 % CI of the delta < -threshold"}
    if uncomputable:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold_pts, None, None,
                     f"per-{noun} {metric} delta not computable for {uncomputable}", details)
    if worst is None:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold_pts, None, None,
                     f"no {noun} has at least {min_support} {support_of}: the {noun} check cannot decide", details)
    established, r = worst
    details[f"worst_{noun}"] = str(r.label)
    interval = [-100.0 * r.ci_high, -100.0 * r.ci_low]
    c = _budget_check(id, "accuracy", "pts", established, threshold_pts, interval=interval, details=details)
    c.reason = (f"worst {noun} {r.label} (n={r.support}): {metric} drop {_pts(-100.0 * r.value)} pts, "
                f"95 % CI of the drop [{_pts(interval[0])}, {_pts(interval[1])}]")
    if failing:
        c.reason = f"significant {metric} drop beyond budget in {noun}(s) " + ", ".join(
            f"{f['label']} ({_pts(f['drop_pts'])} pts, 95 % CI [{_pts(f['interval_pts'][0])}, {_pts(f['interval_pts'][1])}])"
            for f in failing)
    return c


def topk_drop_check(head: str, h: HeadView | dict[str, Any], k: int, threshold_pts: float, decide_on: str) -> Check:
    """Top-k accuracy drop of one multiclass head (``delta["top{k}"]``), like the top-1 check.

    Fails closed when the report lacks ``top{k}`` (the evaluation was not asked for that k).
    ``details``: ``k`` and ``num_classes``; when k ≥ the number of classes, top-k is 1.0 for
    target and reference alike, so the budget cannot fail: the check passes and says so.
    """
    id = f"top{k}_drop[{head}]"
    h = h if isinstance(h, HeadView) else HeadView.from_dict(h, head)
    delta = h.delta
    if delta is not None and f"top{k}" not in delta.intervals:
        return Check(id, "accuracy", FAIL, "pts", "<=", None, threshold_pts, None, None,
                     f"the evaluation report has no top-{k} delta (it was not asked to compute top-{k}; "
                     f"optim verify passes the policy's ks to the evaluation)", {"k": k})
    c = _drop_check(id, delta, f"top{k}", threshold_pts, decide_on, f"top-{k}")
    n_classes = h.n_classes
    c.details.update({"k": k, "num_classes": n_classes or None})
    if n_classes and k >= n_classes:
        c.details["clipped_to"] = n_classes
        if c.status == PASS:
            c.reason = f"head {head!r} has {n_classes} classes ≤ k = {k}: top-{k} is always 1.0, this budget cannot fail"
    return c


def accuracy_checks(budget: ResolvedBudget, eval_report: EvalView | dict[str, Any]) -> list[Check]:
    """Golden-set integrity plus the accuracy budgets, one check per head they apply to.
    ``eval_report``: an :class:`EvalView` or ``EvalReport.to_dict()`` (parsed here; raises
    :class:`~optim.gate.measurement.MalformedMeasurement` when malformed)."""
    ev = EvalView.of(eval_report)
    checks: list[Check] = []
    golden = ev.golden
    verified = golden.verified
    checks.append(Check("golden_set", "integrity", PASS if verified is True else FAIL, "", None,
                        reason="" if verified is True else
                        f"golden set {golden.path} does not verify (its content changed since golden.json "
                        "was written, or no hash was recorded): the gate refuses it",
                        details={"sha256": golden.sha256, "name": golden.name, "version": golden.version}))
    heads = ev.heads
    multiclass = {h: v for h, v in heads.items() if v.kind == "multiclass"}
    multilabel = {h: v for h, v in heads.items() if v.kind == "multilabel"}
    mc_budgets = [budget.max_top1_drop_pts, budget.max_tail_top1_drop_pts, budget.max_class_drop_pts,
                  budget.min_top1_agreement, *budget.max_topk_drop_pts.values()]
    if any(x is not None for x in mc_budgets) and not multiclass:
        checks.append(Check("multiclass_head", "accuracy", SKIPPED, "", reason="the policy sets multiclass budgets but the model has no multiclass head"))
    for head, h in multiclass.items():
        delta = h.delta
        if budget.max_top1_drop_pts is not None:
            checks.append(_drop_check(f"top1_drop[{head}]", delta, "top1", budget.max_top1_drop_pts, budget.decide_on, "top-1"))
        for k, thr in sorted(budget.max_topk_drop_pts.items()):
            checks.append(topk_drop_check(head, h, k, thr, budget.decide_on))
        if budget.max_tail_top1_drop_pts is not None:
            c = _drop_check(f"tail_top1_drop[{head}]", delta, "tail_top1", budget.max_tail_top1_drop_pts, budget.decide_on, "tail-class top-1")
            c.details["tail_classes"] = list(h.tail_classes)
            if c.measured is None and delta is not None and not h.tail_classes:
                c.reason = "no tail classes in this golden set (no class below tail_max_count training images, or no class counts): tail top-1 cannot be judged"
            checks.append(c)
        if budget.max_class_drop_pts is not None:
            checks.append(class_drop_check(head, delta, budget.max_class_drop_pts, budget.min_class_support))
        if budget.min_top1_agreement is not None:
            agreement = None if delta is None else delta.agreement
            reason = ("no delta versus FP32: the reference was not evaluated (pass --reference)" if delta is None
                      else "top-1 agreement could not be computed (null in the evaluation report)")
            checks.append(_budget_check(f"top1_agreement[{head}]", "accuracy", "", agreement, budget.min_top1_agreement,
                                        ">=", missing_reason=reason))
    if budget.max_multilabel_macro_f1_drop_pts is not None:
        if not multilabel:
            checks.append(Check("multilabel_macro_f1_drop", "accuracy", SKIPPED, "pts",
                                reason="the policy sets a multi-label budget but the model has no multi-label head"))
        for head, h in multilabel.items():
            checks.append(_drop_check(f"multilabel_macro_f1_drop[{head}]", h.delta, "macro_f1",
                                      budget.max_multilabel_macro_f1_drop_pts, budget.decide_on, "multi-label macro-F1"))
    if budget.max_tag_f1_drop_pts is not None:
        if not multilabel:
            checks.append(Check("tag_f1_drop", "accuracy", SKIPPED, "pts",
                                reason="the policy sets a per-tag budget but the model has no multi-label head"))
        for head, h in multilabel.items():
            checks.append(tag_f1_drop_check(head, h.delta, budget.max_tag_f1_drop_pts, budget.min_class_support))
    if budget.max_tail_tag_macro_f1_drop_pts is not None:
        if not multilabel:
            checks.append(Check("tail_tag_macro_f1_drop", "accuracy", SKIPPED, "pts",
                                reason="the policy sets a tail-tag budget but the model has no multi-label head"))
        for head, h in multilabel.items():
            delta = h.delta
            c = _drop_check(f"tail_tag_macro_f1_drop[{head}]", delta, "tail_macro_f1",
                            budget.max_tail_tag_macro_f1_drop_pts, budget.decide_on, "tail-tag macro-F1")
            c.details["tail_tags"] = list(h.tail_classes)
            c.details["tail_max_count"] = budget.tail_max_count
            if c.measured is None and delta is not None and not h.tail_classes:
                c.reason = (f"no tail tags in this golden set (no tag below tail_max_count = {budget.tail_max_count} training "
                            "positives, or no training counts for this head): tail-tag macro-F1 cannot be judged")
            checks.append(c)
    checks += floor_checks(budget, heads)
    return checks

#: floor key → (metric in ``heads[h].metrics``, words for messages)
FLOOR_METRICS = {"min_top1": ("top1", "top-1"), "min_tail_top1": ("tail_top1", "tail-class top-1"),
                 "min_macro_f1": ("macro_f1", "macro-F1"), "min_tail_tag_macro_f1": ("tail_macro_f1", "tail-tag macro-F1")}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def floor_checks(budget: ResolvedBudget, heads: Mapping[str, HeadView] | dict[str, Any]) -> list[Check]:
    """Absolute floors: the artifact's own metric (``heads[h].metrics[metric]``, a fraction)
    must be ≥ the policy's ``min_top1`` / ``min_tail_top1`` / ``min_macro_f1``.

    ``heads``: :attr:`EvalView.heads`, or ``EvalReport.to_dict()["heads"]`` (entries that are
    not objects count as missing heads). A floor under ``"*"`` applies to every head
    of the kinds in :data:`optim.gate.policy.FLOORS` (top-1 and tail top-1: multiclass;
    macro-F1: multiclass and multilabel); a head's own entry wins over ``"*"``. One check per
    (floor, head), id ``"{key}[{head}]"``, kind "accuracy", unit "" (fraction), comparison
    ">=", decided on the point estimate. Fail closed: a head named by the policy that the
    evaluation lacks or that is of another kind, a null or non-finite metric, and a floor that
    applies to no head at all (id ``key``) fail; none of these ever passes.
    """
    heads = heads if isinstance(heads, Mapping) else {}
    heads = {k: v if isinstance(v, HeadView) else HeadView.from_dict(v, f"heads.{k}")
             for k, v in heads.items() if isinstance(v, (HeadView, dict))}
    checks: list[Check] = []
    for key, kinds in FLOORS.items():
        table: dict[str, float] = getattr(budget, key)
        if not table:
            continue
        metric, what = FLOOR_METRICS[key]
        default = table.get(ALL_HEADS)
        named = [h for h in table if h != ALL_HEADS]
        of_kind = [h for h, v in heads.items() if v.kind in kinds]
        targets = list(dict.fromkeys([*(of_kind if default is not None else []), *named]))
        if not targets:
            checks.append(Check(key, "accuracy", FAIL, "", ">=", None, default, None, None,
                                f"the policy sets {key} = {default:g} but the evaluation has no {' or '.join(kinds)} "
                                f"head to apply it to (heads: {sorted(heads)}): the floor cannot be checked",
                                {"kinds": list(kinds)}))
            continue
        for head in targets:
            threshold = table.get(head, default)
            id = f"{key}[{head}]"
            details = {"head": head, "metric": metric, "floor_from": head if head in table else ALL_HEADS}
            h = heads.get(head)
            if h is None:
                checks.append(Check(id, "accuracy", FAIL, "", ">=", None, threshold, None, None,
                                    f"the policy sets {key} for head {head!r} but the evaluation has no such head "
                                    f"(heads: {sorted(heads)}); fix the head name in the policy", details))
                continue
            if h.kind not in kinds:
                checks.append(Check(id, "accuracy", FAIL, "", ">=", None, threshold, None, None,
                                    f"head {head!r} is {h.kind!r}; {key} applies to {' and '.join(kinds)} heads "
                                    f"only; fix the policy", details))
                continue
            value = h.metrics.get(metric)
            if not _finite(value):
                why = (f"no tail {'tags' if metric == 'tail_macro_f1' else 'classes'} in this golden set, so {what} of "
                       f"head {head!r} cannot be computed"
                       if metric in ("tail_top1", "tail_macro_f1") and not h.tail_classes else
                       f"{what} of head {head!r} is {'missing' if value is None else repr(value)} in the evaluation report")
                checks.append(Check(id, "accuracy", FAIL, "", ">=", None, threshold, None, None,
                                    f"{why}: the floor cannot be checked", details))
                continue
            c = _budget_check(id, "accuracy", "", float(value), threshold, ">=", details=details)
            if c.status == FAIL:
                c.reason = (f"{what} of head {head!r} is {float(value):.4g}, below the policy's floor {key} = "
                            f"{threshold:g} (decided on the point estimate; no reference involved)")
            checks.append(c)
    return checks


def pin_checks(budget: ResolvedBudget, golden_sha256: str | None, reference_sha256: str | None) -> list[Check]:
    """The policy's pins against the digests this run used.

    ``budget.golden_sha256`` / ``budget.reference_sha256`` (64 hex, from the policy's top level;
    None = not pinned, no check) are compared with ``golden_sha256`` (the golden set's content
    digest as measured, i.e. ``eval["golden"]["sha256"]``) and ``reference_sha256`` (sha256 of
    the reference checkpoint's bytes; None if no reference was used). Checks ``golden_pin`` and
    ``reference_pin``, kind "integrity": pass iff equal (case-insensitive); a mismatch fails
    naming both digests; an unknown digest fails (fail closed).
    """
    checks = []
    for id, pin, measured, what in (("golden_pin", budget.golden_sha256, golden_sha256, "golden set"),
                                    ("reference_pin", budget.reference_sha256, reference_sha256, "reference checkpoint")):
        if pin is None:
            continue
        details = {"pinned_sha256": pin, "measured_sha256": measured}
        key = id.replace("_pin", "_sha256")
        if not isinstance(measured, str) or not measured:
            status, reason = FAIL, (f"the policy pins the {what} ({key} = {pin}) but this run's {what} digest is "
                                    f"unknown (no {what} was used, it was not measured, or two measurements disagree)")
        elif measured.strip().lower() != pin.strip().lower():
            status, reason = FAIL, (f"{what} sha256 {measured} is not the one the policy pins ({key} = {pin}): "
                                    f"this run used a different {what}")
        else:
            status, reason = PASS, f"{what} sha256 {measured} matches the policy's pin"
        checks.append(Check(id, "integrity", status, "", None, reason=reason, details=details))
    return checks


def latency_checks(budget: ResolvedBudget, bench: Mapping[str, BenchView | dict], bench_errors: Mapping[str, str],
                   devices_run: list[str] | tuple[str, ...]) -> list[Check]:
    """One ``p95[device]`` check per device that has a p95 budget or is required.
    ``bench[device]``: a :class:`BenchView` or ``BenchResult.to_dict()`` (ms).

    Budgeted but not required and not run → skipped. Required and not run → fail.
    Bench raised a device/tool error → error (exit 3). p95 null (tool gave no per-iteration
    times) → fail; p95 is never estimated from a mean.
    """
    checks = []
    devices = list(dict.fromkeys([*budget.required_devices, *budget.p95_ms, *devices_run]))
    for d in devices:
        threshold = budget.p95_ms.get(d)
        required = d in budget.required_devices
        if threshold is None and not required:
            continue  # measured, reported, but nothing to judge
        id = f"p95[{d}]"
        if d in bench_errors:
            checks.append(Check(id, "latency", ERROR, "ms", "<=", None, threshold, None, None,
                                f"benchmark on {d} failed: {bench_errors[d]}", {"required": required}))
            continue
        if d not in bench:
            if required:
                checks.append(Check(id, "latency", FAIL, "ms", "<=", None, threshold, None, None,
                                    f"required device {d} was not measured in this run (run with --device {d})",
                                    {"required": True}))
            else:
                checks.append(Check(id, "latency", SKIPPED, "ms", "<=", None, threshold, None, None,
                                    f"device {d} has a budget but was not measured and is not required",
                                    {"required": False}))
            continue
        b = BenchView.of(bench[d])
        p95, ci = b.p95, b.p95_ci
        details = {"required": required, "device": b.device, "warnings": list(b.warnings),
                   "trial_spread_pct": b.trial_spread_pct}
        if p95 is None:
            unavailable = None if b.unavailable is None else list(b.unavailable)
            checks.append(Check(id, "latency", FAIL, "ms", "<=", None, threshold, None, None,
                                f"p95 unavailable on {d}: the benchmark tool gave no per-iteration times "
                                f"(unavailable: {unavailable})", details))
        elif threshold is None:
            checks.append(Check(id, "latency", PASS, "ms", None, p95, None, None, list(ci) if ci else None,
                                f"required device measured; no p95 budget for {d}", details))
        else:
            checks.append(_budget_check(id, "latency", "ms", p95, threshold, interval=list(ci) if ci else None, details=details))
    return checks


def size_check(budget: ResolvedBudget, size_bytes: int | None) -> list[Check]:
    """Artifact size (sum of all its files, MB = 10^6 bytes) against ``size_mb``."""
    if budget.size_mb is None:
        return []
    measured = None if size_bytes is None else size_bytes / 1e6
    return [_budget_check("size", "size", "MB", measured, budget.size_mb, missing_reason="artifact size unknown")]


def artifact_checks(budget: ResolvedBudget, measurement: ArtifactMeasurement | dict[str, Any],
                    devices_run: list[str] | tuple[str, ...]) -> list[Check]:
    """All checks for one artifact, from an :class:`~optim.gate.measurement.ArtifactMeasurement`
    or its dict form (:meth:`~optim.gate.measurement.ArtifactMeasurement.from_dict`: ``{"size_bytes",
    "eval" (EvalReport dict|None), "eval_error", "eval_error_kind" ("input"|"tool"|None), "bench"
    {dev: BenchResult dict}, "bench_errors" {dev: str}, "reference_sha256", "golden_sha256"}``;
    a malformed eval or bench dict becomes an evaluation or benchmark error, never a pass).
    The policy's pins (:func:`pin_checks`) are judged here."""
    m = ArtifactMeasurement.of(measurement)
    checks = size_check(budget, m.size_bytes)
    if m.eval is not None:
        checks += accuracy_checks(budget, m.eval)
    else:
        err = m.eval_error or "evaluation did not run"
        status = ERROR if m.eval_error_kind == "tool" else FAIL
        checks.append(Check("evaluation", "accuracy", status, "", reason=f"evaluation failed: {err}"))
    checks += pin_checks(budget, m.golden_digest, m.reference_sha256)
    checks += latency_checks(budget, m.bench, m.bench_errors, devices_run)
    return checks


def device_verdicts(checks: list[Check], measurement: ArtifactMeasurement | dict[str, Any],
                    devices_run: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Each device's own verdict over its latency checks (``p95[device]``), so a device that was
    lost mid-run fails its own entry and not the others'.

    Keys: the devices of this run, then any other device a latency check names (a required
    device that was not run). Values: :func:`verdict` of that device's checks; "error" for a
    device whose benchmark raised but that no check judges (no budget, not required);
    "skipped" for a device that no check judges (measured without a budget, or budgeted but
    neither run nor required)."""
    m = ArtifactMeasurement.of(measurement)
    per: dict[str, list[Check]] = {d: [] for d in devices_run}
    for c in checks:
        if c.kind == "latency" and c.id.startswith("p95[") and c.id.endswith("]"):
            per.setdefault(c.id[4:-1], []).append(c)
    return {d: verdict(cs) if any(c.status != SKIPPED for c in cs) else ERROR if d in m.bench_errors else SKIPPED
            for d, cs in per.items()}


def verdict(checks: list[Check] | list[dict]) -> str:
    """"fail" if any check failed, else "error" if any could not run, else "pass".
    A list with no check at all is "fail" (nothing was verified)."""
    statuses = [c.status if isinstance(c, Check) else c["status"] for c in checks]
    if FAIL in statuses:
        return FAIL
    if ERROR in statuses:
        return ERROR
    return PASS if PASS in statuses else FAIL


def exit_code_for(verdict_: str) -> int:
    """pass → 0, fail → 1, error (infrastructure) → 3. A failed check wins over an
    infrastructure error: the release is blocked either way, and re-running cannot fix it."""
    return {"pass": 0, "fail": 1, "error": 3}[verdict_]
