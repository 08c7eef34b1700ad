"""``optim.compare``: a leaderboard of candidate models on one golden set, each judged under the
policy against its own FP32 reference, with paired significance between candidates, a Pareto
view of accuracy versus p95 latency, and a recommendation.

Candidates are checkpoint files (evaluated in torch eager) or artifact directories (evaluated
on their host runtime, the bytes that ship). A bake-off of different backbones has one FP32
reference per candidate:

* an artifact: :func:`optim.gate.verify.resolve_reference` on that artifact alone (its
  lineage's ``reference``, else its source checkpoint);
* a checkpoint with a lineage (pruned, distilled): the lineage's ``reference``, whose bytes must
  still match the recorded sha256;
* a checkpoint without a lineage: it *is* an FP32 original, its own baseline. It has no deltas;
  the policy's drop budgets (``max_*_drop_pts``, ``min_top1_agreement``) are reported as
  *skipped* for it (a model loses nothing against itself), while absolute floors, size and
  latency still apply.

The verdicts are the release gate's own checks (:func:`optim.gate.checks.artifact_checks` on
the same typed measurement, built by the same steps, as :func:`optim.verify`). A checkpoint is not benchmarked: torch
eager is not a deployable runtime, so its latency is "not measured" (a required device then
fails, as in verify); export it with ``optim quantize --scheme fp32`` to measure it.
``compare`` ranks; it does not release: ``optim publish`` admits only what ``optim verify``
attested.

Statistics (all 95 %, seeded, from :mod:`optim.golden_sets.stats`):

* absolute metrics: percentile bootstrap over golden images (2000 resamples, seed 0), the
  same resamples as the evaluation's delta intervals;
* pairs: for every two candidates and every multiclass head both have (same labels), the
  difference in top-1 (``a − b``, fraction) with a paired bootstrap interval and the exact
  McNemar p-value on per-image top-1 correctness. Correctness comes from each evaluation's
  per-image logits (``EvalReport.logits``/``labels``) through the evaluation's own
  :func:`optim.golden_sets.metrics.multiclass_metrics`. A pair is flagged ``significant`` when
  both agree at 5 %: McNemar p < 0.05 and the interval excludes 0.

Recommendation: among candidates whose verdict is "pass", the Pareto-optimal ones on
(``metric`` higher is better, p95 on the first device lower is better); of those, the one with
the lowest p95, then the smallest size. If none passes, the closest one (fewest failing
checks, then best metric) is named with its failing checks.

Exit codes (:attr:`CompareResult.exit_code`): 0 at least one candidate passes · 1 none passes ·
2 input error · 3 none passes and some could not be measured (tool or device error).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optim.errors import InputError
from optim.files import sha256_file
from optim.gate import checks as C
from optim.gate.measurement import ArtifactMeasurement
from optim.gate.verify import bench_step, evaluate_step, gate_bench, gate_evaluate
from optim.gate.policy import Policy, ResolvedBudget, require_policy

REPORT_SCHEMA_VERSION = 1
#: metrics the recommendation and the Pareto plot may rank on (a key of ``heads[h].metrics``)
RANK_METRICS = ("top1", "top2", "top5", "macro_f1", "tail_top1", "tail_macro_f1")
#: an explicit display name (``NAME=PATH``)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
#: the checks that compare a model with its FP32 reference (skipped for an FP32 baseline itself)
_NO_DELTA_REASON = "no delta versus FP32"
OWN_BASELINE_REASON = ("this candidate is an FP32 checkpoint without lineage, its own baseline: it loses nothing "
                       "against itself, so the drop budgets do not apply (absolute floors, size and latency do)")
CHECKPOINT_LATENCY_NOTE = ("not benchmarked: a checkpoint runs in torch eager, not a deployable runtime; export it "
                           "(optim quantize --scheme fp32) to measure its latency")


# ---- candidates ----------------------------------------------------------------------------
@dataclass
class CandidateSpec:
    """One ``CANDIDATE`` argument: ``path`` and the explicit ``name`` (``NAME=PATH``) or None."""

    path: Path
    name: str | None = None


def parse_candidate(arg: str | Path) -> CandidateSpec:
    """``"NAME=PATH"`` → (PATH, NAME); anything else → (path, None).

    ``NAME=`` is recognised only when the text before the first ``=`` is a valid name
    (:data:`NAME_RE`: letters, digits, ``._+-``, at most 64) and the whole argument is not an
    existing path (a file may have ``=`` in its name). Raises :class:`InputError` for an empty
    path after ``NAME=``."""
    if isinstance(arg, Path):
        return CandidateSpec(arg)
    s = str(arg)
    if "=" in s and not Path(s).exists():
        name, _, path = s.partition("=")
        if NAME_RE.match(name):
            if not path:
                raise InputError(f"candidate {s!r}: no path after {name}=; write NAME=PATH")
            return CandidateSpec(Path(path), name)
    return CandidateSpec(Path(s))


def _derived_names(paths: list[Path], labels: list[str | None]) -> list[str]:
    """Display names from paths. A name is the last path component; where two candidates share
    it (``onnx-int8`` twice), the nearest parent folder that tells them apart is put in front
    (``resnet18/onnx-int8``, ``mobilenet_v2/onnx-int8``); failing that, more parent folders
    until every name is unique. Equal resolved paths keep equal names (the caller refuses them).
    ``labels`` is unused except for documentation of intent (format-scheme folders)."""
    parts = [p.resolve().parts for p in paths]
    names = [pt[-1] for pt in parts]
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(n, []).append(i)
    for base, idx in groups.items():
        if len(idx) < 2:
            continue
        depth = max(len(parts[i]) for i in idx)
        done = False
        for level in range(2, depth + 1):  # one distinguishing ancestor + the base name
            cand = {i: (parts[i][-level] if len(parts[i]) >= level else "") for i in idx}
            if len(set(cand.values())) == len(idx) and all(cand.values()):
                for i in idx:
                    names[i] = f"{cand[i]}/{base}" if level == 2 else f"{cand[i]}/…/{base}"
                done = True
                break
        if not done:
            for level in range(2, depth + 1):
                cand = {i: "/".join(parts[i][-level:]) for i in idx}
                if len(set(cand.values())) == len(idx) or level == depth:
                    for i in idx:
                        names[i] = cand[i]
                    break
    return names


@dataclass
class _Candidate:
    name: str
    path: Path
    kind: str  # "checkpoint" | "artifact"
    fmt: str
    scheme: str
    sha256: str  # checkpoint: sha256 of the file; artifact: content sha256 of all its files
    size_bytes: int
    policy_names: list[str]
    reference: Path | None = None
    reference_info: dict[str, Any] | None = None
    own_baseline: bool = False
    artifact: Any = None
    digests: dict[str, str] | None = None


def _open_candidate(spec: CandidateSpec, load_kwargs: dict[str, Any]) -> _Candidate:
    """Load and identify one candidate; resolve its FP32 reference. Raises :class:`InputError`
    naming the candidate for a missing path, a folder that is not an artifact, a file that is
    not a loadable checkpoint, or a reference that is missing or changed."""
    from optim.runtimes.artifact import Artifact, is_artifact

    p = spec.path
    label = f"candidate {p}"
    if not p.exists() and not p.is_symlink():
        raise InputError(f"{label} does not exist (expected a checkpoint file or an artifact directory)")
    if is_artifact(p):
        a = Artifact.load(p)
        from optim.gate.verify import resolve_reference

        ref, info = resolve_reference([a], None)
        return _Candidate(name="", path=a.dir, kind="artifact", fmt=a.format, scheme=a.scheme,
                          sha256=a.content_sha256(), size_bytes=a.size_bytes,
                          policy_names=list(dict.fromkeys([a.dir.name, f"{a.format}-{a.scheme}", a.format])),
                          reference=ref, reference_info=info, artifact=a, digests=a.digests())
    if p.is_dir():
        raise InputError(f"{label} is a directory but not an artifact (no artifact.json); pass an artifact directory "
                         "written by `optim quantize` or a checkpoint file")
    if not p.is_file():
        raise InputError(f"{label} is neither a checkpoint file nor an artifact directory")
    from optim.checkpoint import load_checkpoint

    try:
        loaded = load_checkpoint(p, **{k: v for k, v in load_kwargs.items() if v not in (None, False)})
    except InputError as e:
        raise InputError(f"{label} is neither an artifact directory nor a loadable checkpoint: {e}") from None
    c = _Candidate(name="", path=p, kind="checkpoint", fmt="torch", scheme="fp32", sha256=loaded.sha256,
                   size_bytes=p.stat().st_size, policy_names=list(dict.fromkeys([p.name, "checkpoint"])))
    lin = loaded.lineage
    if lin is None:
        c.own_baseline = True
        c.reference_info = {"path": str(p), "sha256": loaded.sha256, "resolved_from": "own FP32 baseline"}
        return c
    ref_path, want = Path(lin["reference"]["path"]), lin["reference"]["sha256"]
    if not ref_path.is_file():
        raise InputError(f"{label}: its FP32 reference {ref_path} (named by its lineage) is not on disk; "
                         "restore it to compare this candidate against the model it was made from")
    got = sha256_file(ref_path)
    if got != want:
        raise InputError(f"{label}: its FP32 reference {ref_path} changed since the checkpoint was made (sha256 "
                         f"{got[:12]}… but the lineage records {want[:12]}…); restore the original")
    c.reference = ref_path.resolve()
    c.reference_info = {"path": str(c.reference), "sha256": got, "resolved_from": "lineage"}
    return c


def open_candidates(args: list[str | Path], load_kwargs: dict[str, Any] | None = None) -> list[_Candidate]:
    """Parse, load and name the candidates. Raises :class:`InputError` for no candidates, an
    invalid or duplicate explicit name, the same candidate given twice, or any bad candidate."""
    if not args:
        raise InputError("compare needs at least one candidate (a checkpoint file or an artifact directory; "
                         "NAME=PATH names it)")
    specs = [parse_candidate(a) for a in args]
    for a, s in zip(args, specs):
        if s.name is None and "=" in str(a) and not Path(str(a)).exists():
            head = str(a).split("=", 1)[0]
            raise InputError(f"candidate {str(a)!r}: {head!r} is not a valid name (letters, digits and ._+- , at most "
                             "64 characters) and no such path exists")
    explicit = [s.name for s in specs if s.name]
    dup = sorted({n for n in explicit if explicit.count(n) > 1})
    if dup:
        raise InputError(f"duplicate candidate name(s) {', '.join(dup)}: each NAME=PATH needs its own NAME")
    cands = [_open_candidate(s, dict(load_kwargs or {})) for s in specs]
    seen: dict[Path, str] = {}
    for s, c in zip(specs, cands):
        key = c.path.resolve()
        if key in seen:
            raise InputError(f"candidate {c.path} is given twice (also as {seen[key]}); compare each model once")
        seen[key] = str(s.path)
    derived = _derived_names([c.path for c in cands], [f"{c.fmt}-{c.scheme}" if c.kind == "artifact" else None
                                                        for c in cands])
    for s, c, d in zip(specs, cands, derived):
        c.name = s.name or d
    names = [c.name for c in cands]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"candidate name(s) {', '.join(dup)} would be shown twice (a NAME= equals another "
                         "candidate's derived name); choose another NAME")
    return cands


# ---- statistics (pure) ---------------------------------------------------------------------
def _iv(x) -> dict[str, float | None]:
    return x.to_dict()


def absolute_intervals(metric_fns: dict[str, Callable[[np.ndarray], np.ndarray]], n: int,
                       resamples: int | None = None, seed: int | None = None) -> dict[str, dict[str, float | None]]:
    """95 % percentile bootstrap intervals of absolute metrics.

    ``metric_fns``: name → f(W: B×N weights) → B values (a weighted metric from
    :mod:`optim.golden_sets.stats`). Uses :func:`~optim.golden_sets.stats.paired_bootstrap`
    with a zero reference, so the resamples are the ones the evaluation's deltas use.
    Returns name → ``{"value", "ci_low", "ci_high"}`` (fractions; None where undefined)."""
    from optim.golden_sets.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, paired_bootstrap

    if n == 0 or not metric_fns:
        return {k: {"value": None, "ci_low": None, "ci_high": None} for k in metric_fns}
    zero = lambda w: np.zeros(len(w))  # noqa: E731
    ivs = paired_bootstrap({k: (f, zero) for k, f in metric_fns.items()}, n,
                           resamples=resamples or BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED if seed is None else seed)
    return {k: _iv(v) for k, v in ivs.items()}


def _tail_mask(labels, tail_classes) -> np.ndarray | None:
    if not tail_classes:
        return None
    t = set(map(str, tail_classes))
    return np.array([str(lab) in t for lab in labels], dtype=bool)


def head_samples(report, head: str) -> dict[str, Any] | None:
    """Per-image arrays of one head from an :class:`~optim.golden_sets.report.EvalReport`:
    for a multiclass head ``{"kind", "used" (N bool: labelled), "y" (n int), "logits" (n×K),
    "pred" (n int), "correct" (n bool), "tail" (K bool | None)}``; for a multi-label head
    ``{"kind", "y" (N×T, NaN missing), "pred" (N×T bool), "tail"}``. Predictions come from the
    evaluation's own metric functions on its per-image logits. None if the head was not
    evaluated."""
    from optim.golden_sets.metrics import multiclass_metrics, multilabel_metrics

    h = report.heads.get(head) or {}
    if h.get("evaluated") is False or report.logits is None or head not in report.logits:
        return None
    y = (report.labels or {}).get(head)
    if y is None:
        return None
    card_head = report.card.head(head)
    tail = _tail_mask(card_head.labels, h.get("tail_classes"))
    lg = np.asarray(report.logits[head])
    if h.get("kind") == "multiclass":
        y = np.asarray(y, dtype=int)
        used = y >= 0
        m = multiclass_metrics(lg[used], y[used], tail)
        return {"kind": "multiclass", "used": used, "y": y[used], "logits": lg[used], "pred": m.pred,
                "correct": m.correct, "tail": tail, "k": lg.shape[1]}
    thr = {r["label"]: r["threshold"] for r in h.get("per_tag") or []}
    th = np.array([thr.get(t, 0.5) for t in card_head.labels])
    m = multilabel_metrics(lg, np.asarray(y, dtype=float), th, tail)
    return {"kind": "multilabel", "y": np.asarray(y, dtype=float), "pred": m.pred, "tail": tail}


def head_intervals(samples: dict[str, Any], metric_names: list[str], resamples: int | None = None
                   ) -> dict[str, dict[str, float | None]]:
    """Absolute 95 % intervals for the metrics of one head that optim knows how to resample:
    ``topK`` (any K), ``macro_f1``, ``head_top1``/``tail_top1`` (multiclass);
    ``macro_f1``, ``head_macro_f1``/``tail_macro_f1`` (multi-label). Others are left out."""
    from optim.golden_sets.metrics import topk_correct
    from optim.golden_sets.stats import weighted_accuracy, weighted_macro_f1, weighted_multilabel_macro_f1

    fns: dict[str, Callable] = {}
    if samples["kind"] == "multiclass":
        y, pred, correct, tail = samples["y"], samples["pred"], samples["correct"], samples["tail"]
        is_tail = tail[y] if tail is not None and len(y) else None
        for name in metric_names:
            mk = re.fullmatch(r"top(\d+)", name)
            if mk:
                c = correct if mk.group(1) == "1" else topk_correct(samples["logits"], y, int(mk.group(1)))
                fns[name] = lambda w, c=c: weighted_accuracy(w, c)
            elif name == "macro_f1":
                fns[name] = lambda w: weighted_macro_f1(w, y, pred, samples["k"])
            elif name == "tail_top1" and is_tail is not None:
                fns[name] = lambda w: weighted_accuracy(w, correct, is_tail)
            elif name == "head_top1" and is_tail is not None:
                fns[name] = lambda w: weighted_accuracy(w, correct, ~is_tail)
        n = len(y)
    else:
        y, pred, tail = samples["y"], samples["pred"], samples["tail"]
        for name in metric_names:
            if name == "macro_f1":
                fns[name] = lambda w: weighted_multilabel_macro_f1(w, y, pred)
            elif name in ("tail_macro_f1", "head_macro_f1") and tail is not None:
                keep = tail if name == "tail_macro_f1" else ~tail
                ym = np.where(keep[None, :], y, np.nan)
                fns[name] = lambda w, ym=ym: weighted_multilabel_macro_f1(w, ym, pred)
        n = len(y)
    return absolute_intervals(fns, n, resamples)


def pair_stats(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int | None = None) -> dict[str, Any]:
    """Top-1 of ``a`` minus top-1 of ``b`` on the same images (N bool each, same order):
    ``{"top1_diff": {"value", "ci_low", "ci_high"}, "mcnemar_p", "n", "a_only", "b_only"}``
    (paired percentile bootstrap, 95 %; exact McNemar test; ``a_only`` = images only ``a``
    gets right)."""
    from optim.golden_sets.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, mcnemar_exact_p, paired_bootstrap, weighted_accuracy

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.shape} vs {b.shape}")
    n = len(a)
    if n == 0:
        diff = {"value": None, "ci_low": None, "ci_high": None}
    else:
        iv = paired_bootstrap({"d": (lambda w: weighted_accuracy(w, a), lambda w: weighted_accuracy(w, b))}, n,
                              resamples=resamples or BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)["d"]
        diff = _iv(iv)
    return {"top1_diff": diff, "mcnemar_p": mcnemar_exact_p(b, a) if n else None, "n": n,
            "a_only": int((a & ~b).sum()), "b_only": int((~a & b).sum())}


def pareto_front(points: list[tuple[float | None, float | None]]) -> list[bool]:
    """``points`` = (metric, p95) per candidate, higher metric and lower p95 better. True for
    points no other point dominates (≥ metric and ≤ p95, one strictly); False for a point
    missing either value."""
    out = []
    for i, (m, t) in enumerate(points):
        if m is None or t is None:
            out.append(False)
            continue
        dominated = any(
            j != i and m2 is not None and t2 is not None and m2 >= m and t2 <= t and (m2 > m or t2 < t)
            for j, (m2, t2) in enumerate(points))
        out.append(not dominated)
    return out


def recommend(rows: list[dict[str, Any]], metric: str, device: str) -> dict[str, Any]:
    """The recommendation over leaderboard rows (see the module docstring). Each row needs
    ``name``, ``verdict``, ``rank_metric`` (float|None), ``p95_ms`` (float|None), ``size_mb``,
    ``failed_checks`` (list of ``{id, status, reason}``). Returns ``{"name" (str|None),
    "passing" (names), "pareto" (names), "closest" (str|None), "text"}``."""
    passing = [r for r in rows if r["verdict"] == "pass"]
    if passing:
        front = pareto_front([(r["rank_metric"], r["p95_ms"]) for r in passing])
        pareto = [r for r, f in zip(passing, front) if f]
        pool = pareto or passing  # no latency measured: rank by metric alone
        inf = math.inf
        best = sorted(pool, key=lambda r: (r["p95_ms"] if r["p95_ms"] is not None else inf, r["size_mb"],
                                           -(r["rank_metric"] if r["rank_metric"] is not None else -inf), r["name"]))[0]
        bits = []
        if best["rank_metric"] is not None:
            bits.append(f"{_label(metric)} {100 * best['rank_metric']:.1f} %")
        bits.append(f"p95 {best['p95_ms']:.2f} ms on {device}" if best["p95_ms"] is not None else f"no p95 on {device}")
        bits.append(f"{best['size_mb']:.2f} MB")
        others = len(passing) - 1
        text = (f"Recommended: {best['name']} ({', '.join(bits)}). It passes every check of the policy"
                + (f"; of the {len(passing)} candidates that pass, it is on the {_label(metric)}/p95 Pareto front with the lowest p95"
                   f"{' (then size)' if others else ''}." if others else "; it is the only candidate that passes."))
        return {"name": best["name"], "passing": [r["name"] for r in passing], "pareto": [r["name"] for r in pareto],
                "closest": None, "text": text}
    if not rows:
        return {"name": None, "passing": [], "pareto": [], "closest": None, "text": "No candidates."}
    inf = math.inf
    closest = sorted(rows, key=lambda r: (len(r["failed_checks"]),
                                          -(r["rank_metric"] if r["rank_metric"] is not None else -inf),
                                          r["p95_ms"] if r["p95_ms"] is not None else inf, r["name"]))[0]
    fails = "; ".join(f"{c['id']}: {c['reason'] or c['status']}" for c in closest["failed_checks"]) or "no check passed"
    return {"name": None, "passing": [], "pareto": [], "closest": closest["name"],
            "text": (f"No candidate passes the policy, so none is recommended. Closest: {closest['name']}, which fails "
                     f"{len(closest['failed_checks'])} check(s): {fails}.")}


def _label(metric: str) -> str:
    return {"top1": "top-1", "top2": "top-2", "top5": "top-5", "macro_f1": "macro-F1", "tail_top1": "tail-class top-1",
            "tail_macro_f1": "tail-tag macro-F1"}.get(metric, metric)


# ---- the API -------------------------------------------------------------------------------
@dataclass
class CompareResult:
    """``report`` is the JSON document (``candidates``, ``pairs``, ``recommendation``, …);
    ``paths`` the written reports (``json``, ``markdown``, ``html``)."""

    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return self.report["exit_code"]

    @property
    def recommendation(self) -> dict[str, Any]:
        return self.report["recommendation"]

    def to_dict(self) -> dict[str, Any]:
        return self.report


def _scalar_metrics(h: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in (h.get("metrics") or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _delta_metrics(h: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every delta of the evaluation that is an interval {value, ci_low, ci_high}: what other
    metrics the evaluation adds (per-tag F1, tail-tag macro-F1, top-k) appear without code here."""
    d = h.get("delta") or {}
    return {k: v for k, v in d.items() if isinstance(v, dict) and "value" in v}


def compare(
    candidates: list[str | Path] | tuple[str | Path, ...],
    golden: str | Path,
    *,
    policy: Policy | str | Path | None = None,
    devices: list[str] | tuple[str, ...] = ("host",),
    out: str | Path | None = None,
    metric: str = "top1",
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    trials: int = 3,
    cooldown_s: float | None = None,
    batch_size: int = 32,
    load_kwargs: dict[str, Any] | None = None,
    resamples: int | None = None,
    evaluate_fn: Callable[..., Any] | None = None,
    bench_fn: Callable[..., Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CompareResult:
    """Compare ``candidates`` (checkpoint files or artifact directories, ``NAME=PATH`` to name
    one) on the golden set ``golden`` under ``policy`` (a :class:`Policy`, a path, or None for
    ``./optim.toml``).

    Per candidate: its FP32 reference (module docstring), ``optim.evaluate`` against it, absolute
    metrics with 95 % intervals (fractions), ``optim.bench`` p50/p95 in ms on each of ``devices``
    (artifacts only), size (MB = 10^6 bytes: all files of an artifact, the checkpoint file), and
    the gate's checks → verdict. Across candidates: paired top-1 differences with 95 % intervals
    and McNemar p-values, the Pareto front of ``metric`` (one of :data:`RANK_METRICS`, on the
    first multiclass head that has it, else the first head) versus p95 on ``devices[0]``, and the
    recommendation. ``out``: write ``compare.json``, ``compare.md`` and a self-contained
    ``compare.html`` with the Pareto plot. ``runs``/``warmup``/``trials``/``threads``/
    ``cooldown_s`` go to ``optim.bench``; ``load_kwargs`` (``trust_pickle``, ``allow_modules``)
    to ``optim.load_checkpoint``; ``resamples`` overrides the bootstrap's 2000.

    Raises :class:`InputError` (exit 2), before anything is measured, for no candidates, a
    missing path, a candidate that is neither a checkpoint nor an artifact, a duplicate name
    or path, a missing or invalid policy or golden set, an unknown ``metric``, or a candidate
    whose accuracy budgets need an FP32 reference that is not on disk. Measurement failures are
    recorded per candidate (never a pass). ``evaluate_fn`` returns an ``EvalReport`` (its
    per-image logits give the intervals and pairs; a dict is judged but gets neither);
    ``bench_fn`` a ``BenchResult`` or its dict. Both run through verify's measurement steps
    (:func:`~optim.gate.verify.evaluate_step`, :func:`~optim.gate.verify.bench_step`: devices
    in parallel, parsed once into :class:`~optim.gate.measurement.ArtifactMeasurement`).
    """
    say = progress or (lambda _m: None)
    devices = list(dict.fromkeys(devices))
    if not devices:
        raise InputError("compare needs at least one --device (e.g. host, pixel6a)")
    if metric not in RANK_METRICS:
        raise InputError(f"--metric {metric!r} is not one of {', '.join(RANK_METRICS)}")
    if not candidates:
        raise InputError("compare needs at least one candidate (a checkpoint file or an artifact directory; "
                         "NAME=PATH names it)")
    policy = require_policy(policy, "the verdicts and the recommendation are judged under it")
    golden = Path(golden)
    if not golden.is_dir():
        raise InputError(f"golden set {golden} is not a directory")
    cands = open_candidates(list(candidates), load_kwargs)
    budgets: list[ResolvedBudget | None] = []
    for c in cands:
        b = policy.resolve(c.policy_names, artifact=c.name)
        budgets.append(b if b.has_checks else None)
        if b.has_checks and b.needs_reference and c.reference is None and not c.own_baseline:
            raise InputError(f"candidate {c.name} ({c.path}): the policy has accuracy budgets but its FP32 reference was "
                             "not found (its source checkpoint or lineage reference is not on disk); restore it")
    evaluate_fn = evaluate_fn or gate_evaluate  # the EvalReport: its logits give the intervals and pairs
    bench_fn = bench_fn or gate_bench
    kw_load = {k: v for k, v in (load_kwargs or {}).items() if v not in (None, False, ())}

    rows: list[dict[str, Any]] = []
    evals: list[Any] = []
    input_errors: list[str] = []
    for c, budget in zip(cands, budgets):
        ref_txt = (c.reference_info or {}).get("path")
        say(f"{c.name}: evaluating on {golden} (FP32 reference: {ref_txt or 'none'}"
            f"{', its own baseline' if c.own_baseline else ''})")
        tail_max = budget.tail_max_count if budget is not None else 50
        m = ArtifactMeasurement(size_bytes=c.size_bytes, reference_sha256=(c.reference_info or {}).get("sha256"))
        result, err = evaluate_step(m, evaluate_fn, str(c.path), str(golden),
                                    None if c.reference is None else str(c.reference), tail_max_count=tail_max,
                                    batch_size=batch_size, threads=threads, load_kwargs=kw_load or None)
        if err is not None:
            input_errors.append(f"{c.name}: evaluation: {err}")
        # the EvalReport itself (per-image logits for intervals and pairs), when the evaluation gave one
        report_obj = result if m.eval is not None and hasattr(result, "logits") else None
        notes: list[str] = []
        if c.kind == "artifact":
            for d in devices:
                say(f"{c.name}: benchmarking on {d}")
            bench_kw = {"threads": threads, "runs": runs, "warmup": warmup, "trials": trials,
                        **({} if cooldown_s is None else {"cooldown_s": cooldown_s})}
            for d, err in bench_step(m, bench_fn, str(c.path), devices, **bench_kw).items():
                input_errors.append(f"{c.name}: bench on {d}: {err}")
        else:
            notes.append(CHECKPOINT_LATENCY_NOTE)
        if budget is None:
            checks = [C.Check("policy", "integrity", C.FAIL, "", reason=(
                f"policy {policy.source} sets no budget for this candidate (names tried: {c.policy_names}); add a "
                "[defaults] or a matching [targets.\"PATTERN\"] section"))]
        else:
            checks = C.artifact_checks(budget, m, devices)
        if c.own_baseline:
            for ch in checks:
                if ch.kind == "accuracy" and ch.status == C.FAIL and ch.measured is None and ch.reason.startswith(_NO_DELTA_REASON):
                    ch.status, ch.reason = C.SKIPPED, OWN_BASELINE_REASON
            notes.append("judged as its own FP32 baseline (no lineage): no deltas")
        changed = _changed(c)
        if changed:
            checks.append(C.Check("candidate_bytes", "integrity", C.FAIL, "", reason=changed))
        if c.kind == "checkpoint":
            for ch in checks:
                if ch.kind == "latency" and ch.status == C.FAIL and ch.measured is None:
                    ch.reason += f" ({CHECKPOINT_LATENCY_NOTE})"
        rows.append(_row(c, budget, m, checks, notes, report_obj, devices, resamples))
        evals.append(report_obj)

    _check_same_golden(rows, evals)
    primary_head = _primary_head(rows, metric)
    for r in rows:
        h = (r["metrics"].get(primary_head) or {}) if primary_head else {}
        r["rank_metric"] = (h.get(metric) or {}).get("value")
        lat = r["latency_ms"].get(devices[0]) or {}
        r["p95_ms"] = lat.get("p95")
    front = pareto_front([(r["rank_metric"], r["p95_ms"]) for r in rows])
    for r, f in zip(rows, front):
        r["pareto_optimal"] = f
    pairs = _pairs(rows, evals, resamples)
    rec = recommend(rows, metric, devices[0])
    if input_errors:
        exit_code = 2
    elif rec["name"] is not None:
        exit_code = 0
    elif any(r["verdict"] == C.FAIL for r in rows):
        exit_code = 1
    else:
        exit_code = 3
    golden_info = next((e["eval"]["golden"] for e in rows if e.get("eval")), None) or {"path": str(golden)}
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "optim.compare",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "exit_code": exit_code,
        "devices": devices,
        "policy": {"path": policy.source, "sha256": policy.sha256},
        "golden": {k: golden_info.get(k) for k in ("path", "name", "version", "sha256", "verified") if k in golden_info},
        "rank": {"metric": metric, "head": primary_head, "device": devices[0]},
        "candidates": [{k: v for k, v in r.items() if k != "eval"} for r in rows],
        "pairs": pairs,
        "recommendation": rec,
        "input_errors": input_errors,
        "notes": ["Accuracy of an artifact is measured on its host runtime (the bytes that ship); a checkpoint in "
                  "torch eager. Each candidate is judged against its own FP32 reference.",
                  "Intervals are 95 % percentile bootstrap over golden images (2000 resamples, seed 0); pairs use the "
                  "same images for both candidates (paired) and the exact McNemar test on top-1 correctness.",
                  "compare ranks candidates; it does not release them: run optim verify on the chosen artifact."],
    }
    result = CompareResult(report)
    if out is not None:
        from optim.gate.reports.compare_html import write_compare_reports

        result.paths = write_compare_reports(report, Path(out))
    return result


def _changed(c: _Candidate) -> str:
    """'' if the candidate's bytes are what was loaded, else why not (it changed mid-run)."""
    try:
        if c.kind == "artifact":
            now = c.artifact.digests()
            if now != c.digests:
                return f"the artifact's files changed while it was being compared ({c.path})"
        elif sha256_file(c.path) != c.sha256:
            return f"the checkpoint {c.path} changed while it was being compared"
    except (OSError, InputError) as e:
        return f"the candidate {c.path} could not be re-read after measuring ({e})"
    return ""


def _row(c: _Candidate, budget: ResolvedBudget | None, meas: ArtifactMeasurement, checks: list[C.Check],
         notes: list[str], report_obj, devices: list[str], resamples: int | None) -> dict[str, Any]:
    m = meas.to_dict()
    ev = m["eval"] or {}
    metrics: dict[str, dict[str, Any]] = {}
    deltas: dict[str, dict[str, Any]] = {}
    for head, h in (ev.get("heads") or {}).items():
        if h.get("evaluated") is False:
            continue
        values = _scalar_metrics(h)
        ivs: dict[str, dict] = {}
        samples = head_samples(report_obj, head) if report_obj is not None else None
        if samples is not None:
            ivs = head_intervals(samples, list(values), resamples)
        metrics[head] = {"kind": h.get("kind"), "n_used": h.get("n_used"), "tail_classes": list(h.get("tail_classes") or []),
                         **{k: {"value": v, "ci_low": (ivs.get(k) or {}).get("ci_low"),
                                "ci_high": (ivs.get(k) or {}).get("ci_high")} for k, v in values.items()},
                         **{k: {"value": None, "ci_low": None, "ci_high": None}
                            for k, v in (h.get("metrics") or {}).items() if v is None}}
        if h.get("delta"):
            deltas[head] = _delta_metrics(h)
    latency = {}
    for d in devices:
        b = m["bench"].get(d)
        if b:
            lat = b.get("latency_ms") or {}
            latency[d] = {"p50": lat.get("p50"), "p95": lat.get("p95"), "p99": lat.get("p99"),
                          "p95_ci": b.get("p95_ci_ms"), "warnings": list(b.get("warnings") or [])}
    verdict = C.verdict(checks)
    return {
        "name": c.name, "path": str(c.path), "kind": c.kind, "format": c.fmt, "scheme": c.scheme, "sha256": c.sha256,
        "size_bytes": c.size_bytes, "size_mb": c.size_bytes / 1e6,
        "reference": c.reference_info, "own_baseline": c.own_baseline,
        "policy_sections": list(budget.sections) if budget is not None else [],
        "budget": budget.model_dump(mode="json") if budget is not None else None,
        "verdict": verdict,
        "checks": [ch.to_dict() for ch in checks],
        "failed_checks": [{"id": ch.id, "status": ch.status, "reason": ch.reason} for ch in checks
                          if ch.status in (C.FAIL, C.ERROR)],
        "metrics": metrics, "deltas": deltas,
        "latency_ms": latency, "bench_errors": dict(m["bench_errors"]),
        "latency_note": CHECKPOINT_LATENCY_NOTE if c.kind == "checkpoint" else None,
        "eval_error": m["eval_error"], "golden_sha256": ((ev.get("golden") or {}).get("sha256")),
        "warnings": list(ev.get("warnings") or []),
        "notes": notes,
        "eval": ev,
    }


def _check_same_golden(rows: list[dict[str, Any]], evals: list[Any]) -> None:
    """Every evaluation must have seen the same golden content (digest) in the same order, or
    the pairs would compare different images."""
    seen = {r["golden_sha256"] for r in rows if r["golden_sha256"]}
    if len(seen) > 1:
        raise InputError(f"the golden set changed during the comparison (digests {sorted(s[:12] for s in seen)}); make "
                         "sure nothing writes it and run again")
    ids = {tuple(e.ids) for e in evals if e is not None}
    if len(ids) > 1:
        raise InputError("the evaluations saw the golden images in different orders; run again")


def _primary_head(rows: list[dict[str, Any]], metric: str) -> str | None:
    """The head the ranking uses: the first multiclass head (in the first candidate's order)
    that has ``metric``, else the first head that has it."""
    order: list[tuple[str, str]] = []
    for r in rows:
        for head, h in r["metrics"].items():
            if (head, h.get("kind")) not in order:
                order.append((head, h.get("kind")))
    has = [(hd, k) for hd, k in order if any((r["metrics"].get(hd) or {}).get(metric) for r in rows)]
    for hd, k in has:
        if k == "multiclass":
            return hd
    return has[0][0] if has else None


def _pairs(rows: list[dict[str, Any]], evals: list[Any], resamples: int | None) -> list[dict[str, Any]]:
    out = []
    samples = [{} if e is None else {h: s for h in e.heads if (s := head_samples(e, h)) is not None and
                                     s["kind"] == "multiclass"} for e in evals]
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            for head in samples[i]:
                if head not in samples[j]:
                    continue
                a, b = samples[i][head], samples[j][head]
                la, lb = evals[i].card.head(head).labels, evals[j].card.head(head).labels
                if tuple(la) != tuple(lb) or not np.array_equal(a["used"], b["used"]) or not np.array_equal(a["y"], b["y"]):
                    out.append({"a": rows[i]["name"], "b": rows[j]["name"], "head": head, "top1_diff": None,
                                "mcnemar_p": None, "n": None,
                                "note": "the two candidates' heads have different labels: not comparable image by image"})
                    continue
                st = pair_stats(a["correct"], b["correct"], resamples)
                d = st["top1_diff"]
                sig = d["ci_low"] is not None and (d["ci_low"] > 0 or d["ci_high"] < 0)
                out.append({"a": rows[i]["name"], "b": rows[j]["name"], "head": head, **st,
                            "significant": bool(sig and st["mcnemar_p"] is not None and st["mcnemar_p"] < 0.05)})
    return out
