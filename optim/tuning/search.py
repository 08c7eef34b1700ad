"""The tune search: candidates, the Optuna study, one trial, the choice per format.

**Candidates** = format × scheme × float-fallback set × pruning ratio (:func:`enumerate_candidates`):
formats and schemes come from the registry (``get_format(name).schemes``); the fallback set is
the ``k`` most sensitive units of that format's sensitivity ranking (float schemes take k = 0);
pruning ratios only with training data (0 = not pruned). **Size schemes** (a format's
``FormatSpec.size_schemes``: weight-only INT8/INT4, 4-bit weights with dynamic activations) make
an artifact smaller, not faster — on these runtimes weight-only runs FP32 kernels — so they
are candidates only where the policy sets a size budget (``size_mb``) for them
(:func:`select_schemes`), and only without float fallback (k = 0): the search then weighs them
like any other candidate (pass every check, then p95, then size). Without a size budget they
could at best tie FP32 on p95 and would spend trials for nothing.

**Study** (Optuna): one categorical parameter ``candidate``. When the space fits in the trial
budget it is swept exhaustively (every candidate enqueued in order), otherwise sampled by
the multi-objective :class:`optuna.samplers.TPESampler` with constraints (both seeded). The
objectives are (p95 ms on the target device, size MB), both minimised; the constraint is the
number of the policy's checks the candidate failed (feasible = 0), so "pass every check, then
p95, then size" is what the study optimises. The study lives in a journal file
(:class:`optuna.storages.JournalStorage`, ``OUT/tune.journal``): a second run with the same
``OUT`` resumes, skipping finished trials. FP32 and plain INT8 of every format (baselines) are
enqueued first. The search stops at the trial budget or the time budget (``timeout``: checked
between trials).

**Trial**: export (:mod:`optim.tuning.build`) → :func:`optim.verify` without reports (golden-set
evaluation against the FP32 reference, bench on the device, the same checks verify applies) →
record: verdict, every failed check with its reason, p95, size, top-1 and tail-class deltas.

**Choice** (:func:`choose`, pure): per format, the passing candidate with the lowest p95, then
size; it is then verified again with reports (``verify.json`` + attestation) so that
``optim publish`` admits it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optim.errors import InputError, OptimError

#: the float reference scheme and the plain static INT8 scheme every format is baselined with
#: (scheme names whose first two letters are "fp" are float schemes: no float fallback applies)
FP32_SCHEME = "fp32"
PLAIN_INT8_SCHEME = "int8"
FLOAT_PREFIX = "fp"
STUDY_NAME = "optim-tune"
JOURNAL = "tune.journal"
DEFAULT_KS = (1, 2, 4)
PASS, FAIL, ERROR, REJECTED = "pass", "fail", "error", "rejected"


def is_float_scheme(scheme: str) -> bool:
    """True for float schemes (``fp32``, ``fp16`` …): nothing to keep in float."""
    return scheme.startswith(FLOAT_PREFIX)


def parse_duration(text: str | float | int | None) -> float | None:
    """Seconds from ``"30m"``, ``"90s"``, ``"1h"``, ``"1h30m"`` or a number of seconds; None stays None.
    Raises :class:`InputError` for anything else or a value ≤ 0."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?", s)
        if not s or m is None or not any(m.groups()):
            raise InputError(f"time budget {text!r}: use e.g. 30m, 90s, 1h30m or a number of seconds")
        h, mi, se = (float(g) if g else 0.0 for g in m.groups())
        seconds = 3600 * h + 60 * mi + se
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"time budget must be > 0 seconds, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: ``k`` most sensitive units in float, ``prune`` ratio (0 = none)."""

    format: str
    scheme: str
    k: int = 0
    prune: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.format}|{self.scheme}|k{self.k}|p{self.prune:g}"

    @classmethod
    def from_key(cls, key: str) -> "Candidate":
        fmt, scheme, k, p = key.split("|")
        return cls(fmt, scheme, int(k[1:]), float(p[1:]))

    @property
    def label(self) -> str:
        extra = ([f"{self.k} float unit{'s' if self.k != 1 else ''}"] if self.k else []) + \
                ([f"pruned {self.prune:.0%}"] if self.prune else [])
        return f"{self.format}-{self.scheme}" + (f" ({', '.join(extra)})" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "format": self.format, "scheme": self.scheme, "fallback_units": self.k,
                "prune_ratio": self.prune, "label": self.label}


def baselines(formats: dict[str, Sequence[str]]) -> list[Candidate]:
    """FP32 and plain INT8 of every format that has them, in format order."""
    out = []
    for fmt, schemes in formats.items():
        for s in (FP32_SCHEME, PLAIN_INT8_SCHEME):
            if s in schemes:
                out.append(Candidate(fmt, s))
    return out


def select_schemes(formats: dict[str, Sequence[str]], size_schemes: dict[str, Sequence[str]],
                   size_budget: Callable[[str, str], float | None]) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Drop each format's size schemes that have no size budget (pure).

    ``formats``: format → its schemes; ``size_schemes``: format → its size schemes
    (``FormatSpec.size_schemes``); ``size_budget(format, scheme)``: the policy's ``size_mb``
    for that artifact (``Policy.resolve([f"{format}-{scheme}", format]).size_mb``) or None.
    Returns (format → schemes kept, in order; format → a note on the size schemes, for
    ``tune.json``)."""
    kept: dict[str, tuple[str, ...]] = {}
    notes: dict[str, str] = {}
    for fmt, schemes in formats.items():
        sizes = [s for s in schemes if s in set(size_schemes.get(fmt, ()))]
        budgeted = [s for s in sizes if size_budget(fmt, s) is not None]
        dropped = [s for s in sizes if s not in budgeted]
        kept[fmt] = tuple(s for s in schemes if s not in dropped)
        if budgeted:
            notes[fmt] = f"size schemes {', '.join(budgeted)} tried: the policy sets a size budget for them"
        if dropped:
            notes[fmt] = "; ".join(filter(None, [notes.get(fmt), (
                f"size schemes {', '.join(dropped)} not tried: the policy sets no size_mb for them (they make the "
                "artifact smaller, not faster)")]))
    return kept, notes


def enumerate_candidates(formats: dict[str, Sequence[str]], units_per_format: dict[str, int], ks: Sequence[int] = DEFAULT_KS,
                         prune_ratios: Sequence[float] = (), no_fallback: dict[str, Sequence[str]] | None = None) -> list[Candidate]:
    """Every candidate, baselines first, each once (pure).

    ``formats``: format → its schemes (from the registry); ``units_per_format``: ranked units
    available per format (0 when no ranking: no fallback candidates); ``ks``: fallback sizes
    (clipped to one less than the units available: every unit in float is the FP32 model behind
    a quantized format's overhead, which the FP32/FP16 baselines already cover; duplicates
    dropped); ``prune_ratios``: in (0, 1);
    ``no_fallback``: format → schemes that take no float fallback (size schemes; k = 0 only).
    """
    bad = [r for r in prune_ratios if not 0 < r < 1]
    if bad:
        raise InputError(f"pruning ratios must be within (0, 1), got {bad}")
    out = list(baselines(formats))
    for fmt, schemes in formats.items():
        n = units_per_format.get(fmt, 0)
        kset = [0] + sorted({min(k, n - 1) for k in ks if k > 0 and n > 1})  # all n units in float is no quantization
        for p in (0.0, *prune_ratios):
            for s in schemes:
                plain = is_float_scheme(s) or s in (no_fallback or {}).get(fmt, ())
                for k in ([0] if plain else kset):
                    out.append(Candidate(fmt, s, k, float(p)))
    return list(dict.fromkeys(out))


# ---- records (pure) ----------------------------------------------------------------------------
@dataclass
class TrialRecord:
    """What one candidate measured. ``status``: ``pass`` (every check passed) | ``fail`` (a
    check failed: ``reasons``) | ``error`` (a tool or device broke; never a pass) |
    ``rejected`` (could not be built: export failed, or its FP32 export differs from torch).
    Units: ms, MB (10^6 bytes), percentage points versus FP32 (negative = worse)."""

    candidate: dict[str, Any]
    status: str
    reasons: list[str] = field(default_factory=list)
    artifact: str | None = None
    float_layers: list[str] = field(default_factory=list)
    size_mb: float | None = None
    p95_ms: float | None = None
    top1_delta_pts: float | None = None
    tail_top1_delta_pts: float | None = None
    checks_failed: int = 0
    seconds: float = 0.0
    trial: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialRecord":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _delta_pts(head: dict[str, Any] | None, metric: str) -> float | None:
    d = ((head or {}).get("delta") or {}).get(metric) or {}
    v = d.get("value") if isinstance(d, dict) else None
    return None if v is None else round(100 * v, 4)


def record_from_verify(entry: dict[str, Any], device: str, candidate: Candidate, float_layers: Sequence[str]) -> TrialRecord:
    """A :class:`TrialRecord` from one artifact entry of a verify report (pure)."""
    bad = [c for c in entry["checks"] if c["status"] in (FAIL, ERROR)]
    status = PASS if entry["verdict"] == PASS else (ERROR if entry["verdict"] == ERROR else FAIL)
    lat = ((entry.get("bench") or {}).get(device) or {}).get("latency_ms") or {}
    heads = ((entry.get("eval") or {}).get("heads") or {})
    head = next((h for h in heads.values() if h.get("kind") == "multiclass"), None)
    return TrialRecord(
        candidate=candidate.to_dict(), status=status, reasons=[f"{c['id']}: {c.get('reason') or c['status']}" for c in bad],
        artifact=entry["path"], float_layers=list(float_layers), size_mb=round(entry["size_mb"], 6), p95_ms=lat.get("p95"),
        top1_delta_pts=_delta_pts(head, "top1"), tail_top1_delta_pts=_delta_pts(head, "tail_top1"), checks_failed=len(bad))


def objective_values(r: TrialRecord) -> tuple[float, float]:
    """(p95 ms, size MB) to minimise; +inf where not measured."""
    return (r.p95_ms if r.p95_ms is not None else math.inf, r.size_mb if r.size_mb is not None else math.inf)


def constraint_value(r: TrialRecord) -> float:
    """Optuna's constraint (feasible when ≤ 0): failed checks; 1 + that for error/rejected."""
    return 0.0 if r.passed else float(max(1, r.checks_failed) + (r.status in (ERROR, REJECTED)))


def choose(records: Sequence[TrialRecord], fmt: str) -> list[TrialRecord]:
    """The passing candidates of ``fmt``, best first: lowest p95, then smallest size, then
    fewest float layers, then key (pure; never a failing one)."""
    ok = [r for r in records if r.passed and r.candidate["format"] == fmt]
    return sorted(ok, key=lambda r: (*objective_values(r), len(r.float_layers), r.candidate["key"]))


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Records not dominated on (size, p95, −top-1 delta, −tail top-1 delta), all minimised; a
    record missing any of them is left out (pure)."""
    pts = []
    for r in records:
        vals = (r.size_mb, r.p95_ms, r.top1_delta_pts, r.tail_top1_delta_pts)
        if any(v is None for v in vals):
            continue
        pts.append((r, (r.size_mb, r.p95_ms, -r.top1_delta_pts, -r.tail_top1_delta_pts)))

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [r for r, v in pts if not any(dominates(w, v) for _, w in pts if w is not v)]


# ---- the study ---------------------------------------------------------------------------------
@dataclass
class SearchSettings:
    """What a tune study is (stored in the journal; a resumed run must match it)."""

    candidates: list[str]
    device: str
    policy_sha256: str
    golden: str
    seed: int

    def fingerprint(self) -> dict[str, Any]:
        return asdict(self)


def open_study(out: Path, settings: SearchSettings, max_trials: int):
    """The Optuna study in ``out/tune.journal`` (created, or loaded to resume). Trials a killed
    run left RUNNING are marked FAIL so their candidates are tried again. Raises
    :class:`InputError` when the journal holds a study of another search (other candidates,
    device, policy, golden set or seed)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    keys = settings.candidates
    if len(keys) <= max_trials:  # every candidate is enqueued in order; the sampler never samples
        sampler: Any = optuna.samplers.RandomSampler(seed=settings.seed)
        how = "exhaustive (every candidate enqueued, baselines first)"
    else:
        sampler = optuna.samplers.TPESampler(seed=settings.seed, constraints_func=lambda t: (t.user_attrs.get("constraint", 1.0),),
                                             n_startup_trials=min(10, max(1, max_trials // 3)))
        how = "TPESampler (multi-objective, constrained)"
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=["minimize", "minimize"],
                                sampler=sampler, load_if_exists=True)
    fp = study.user_attrs.get("settings")
    if fp is None:
        study.set_user_attr("settings", settings.fingerprint())
    elif fp != settings.fingerprint():
        changed = [k for k in settings.fingerprint() if fp.get(k) != settings.fingerprint()[k]]
        raise InputError(f"{out / JOURNAL} holds a tune study with other settings ({', '.join(changed)} differ); "
                         "resume with the same arguments, or pass another --out")
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # a killed run's trial: try it again
    return study, how


def finished_records(study) -> dict[str, TrialRecord]:
    """Records of completed trials, by candidate key (the first one of each)."""
    from optuna.trial import TrialState

    out: dict[str, TrialRecord] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rec = t.user_attrs.get("record")
        if rec is not None:
            out.setdefault(rec["candidate"]["key"], TrialRecord.from_dict(rec))
    return out


def run_search(
    study, candidates: Sequence[Candidate], evaluate: Callable[[Candidate, int], TrialRecord], *,
    max_trials: int, timeout_s: float | None, progress: Callable[[str], None] | None = None,
) -> tuple[list[TrialRecord], dict[str, Any]]:
    """Run the study until ``max_trials`` distinct candidates are measured (counting a resumed
    run's), the grid is exhausted, or ``timeout_s`` passed (checked between trials). Baselines (the
    candidates :func:`baselines` returns: FP32 and plain INT8 per format) are enqueued first and
    always measured, even past ``timeout_s``. ``evaluate(candidate, trial_number)``
    measures one candidate; a candidate measured before (the sampler may propose it again) is
    not measured twice and does not use up the budget: after such a repeat the first unmeasured
    candidate in ``candidates`` order is enqueued, so that a small budget is not spent on
    baselines the sampler proposes again. When every candidate fits in ``max_trials`` all are
    enqueued in order (an exhaustive sweep). Returns (every record, stats: trials run now,
    resumed, stopped_by)."""
    from optuna.trial import TrialState

    say = progress or (lambda _m: None)
    keys = {c.key: c for c in candidates}
    exhaustive = len(keys) <= max_trials
    done = finished_records(study)
    resumed = len(done)
    if resumed:
        say(f"resuming: {resumed} candidate(s) already measured in this study")
    base = baselines({c.format: [x.scheme for x in candidates if x.format == c.format] for c in candidates})
    base_keys = {c.key for c in base}
    queue = base + [c for c in candidates if c.key not in base_keys] if exhaustive else base
    waiting = {t.system_attrs.get("fixed_params", {}).get("candidate")
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    for c in queue:
        if c.key not in done and c.key not in waiting:
            study.enqueue_trial({"candidate": c.key})
    left = max(0, max_trials - len(done))
    ran = [0]
    t0 = time.monotonic()

    def objective(trial):
        key = trial.suggest_categorical("candidate", list(keys))
        rec = done.get(key)
        if rec is None:
            ran[0] += 1
            say(f"trial {trial.number}: {keys[key].label}")
            rec = evaluate(keys[key], trial.number)
            rec.trial = trial.number
            done[key] = rec
            say(f"  → {rec.status}" + (f", p95 {rec.p95_ms:.2f} ms" if rec.p95_ms is not None else "")
                + (f", {rec.size_mb:.2f} MB" if rec.size_mb is not None else "")
                + (f"; {rec.reasons[0]}" if rec.reasons else ""))
        trial.set_user_attr("record", rec.to_dict())
        trial.set_user_attr("constraint", constraint_value(rec))
        return objective_values(rec)

    stopped_by = "trials"
    # The baselines (FP32 and plain INT8 per format) are always measured, whatever the time budget:
    # every choice and every "INT8 is slower than FP32" note is judged against them.
    n_base = min(left, sum(1 for k in base_keys if k not in done))
    if n_base > 0:
        study.optimize(objective, n_trials=n_base, timeout=None, catch=())
        left -= n_base
    target = ran[0] + left  # new measurements allowed
    while ran[0] < target and len(done) < len(keys):
        remaining = None if timeout_s is None else timeout_s - (time.monotonic() - t0)
        if remaining is not None and remaining <= 0:
            stopped_by = "time budget"
            break
        before = ran[0]
        study.optimize(objective, n_trials=1, timeout=remaining, catch=())
        if ran[0] == before:  # the sampler proposed a measured candidate: measure the next unmeasured one
            nxt = next(c for c in candidates if c.key not in done)
            study.enqueue_trial({"candidate": nxt.key})
    if len(done) >= len(keys):
        stopped_by = "space exhausted"
    return list(done.values()), {"trials_run": ran[0], "resumed_records": resumed, "stopped_by": stopped_by,
                                 "seconds": round(time.monotonic() - t0, 2)}


def remove_artifact(record: TrialRecord) -> None:
    """Delete a failed candidate's artifact directory (its record stays)."""
    if record.artifact and Path(record.artifact).is_dir():
        shutil.rmtree(Path(record.artifact).parent, ignore_errors=True)
        record.reasons.append("artifact removed (did not pass)")


def trial_dir(out: Path, candidate: Candidate, number: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", candidate.key)
    return out / "trials" / f"{number:04d}-{safe}"


def measured_or_raise(fn: Callable[[], TrialRecord], candidate: Candidate) -> TrialRecord:
    """Run ``fn``; a tool failure (not an input error) becomes an ``error`` record."""
    try:
        return fn()
    except InputError:
        raise
    except OptimError as e:
        return TrialRecord(candidate=candidate.to_dict(), status=ERROR, reasons=[str(e)])


def dump(path: Path, data: Any) -> Path:
    from optim.files import atomic_write_json

    return atomic_write_json(path, json.loads(json.dumps(data, default=str)))
