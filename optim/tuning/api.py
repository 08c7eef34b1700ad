"""``optim.tune``: sensitivity → search → chosen artifact per format, verified and publishable."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import EXIT_OK, InputError
from optim.tuning import search as S
from optim.tuning.sensitivity import DEFAULT_MAX_UNITS, DEFAULT_TAIL_WEIGHT, SensitivityResult

DEFAULT_MAX_TRIALS = 40
DEFAULT_CALIB_SIZE = 200
DEFAULT_HOLDOUT_FRACTION = 0.25
DEFAULT_PRUNE_RATIOS = (0.3,)
TUNE_SCHEMA_VERSION = 1


@dataclass
class TuneResult:
    """A tune run: ``report`` is the ``tune.json`` document (schema in :mod:`optim.tuning.report`);
    ``paths`` the files written; ``sensitivity`` the per-format analyses."""

    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    sensitivity: dict[str, SensitivityResult] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return self.report["exit_code"]

    @property
    def chosen(self) -> dict[str, Any]:
        return self.report.get("chosen") or {}

    def to_dict(self) -> dict[str, Any]:
        return self.report


def split_holdout(calib, fraction: float):
    """(calibration set without the hold-out, float32 N×C×H×W hold-out batch): the last
    ``fraction`` of the seeded draw (at least 1 image each). Raises :class:`InputError` for
    fewer than 2 images or a fraction outside (0, 1)."""
    from optim.optimize.calibration import CalibrationSet

    if not 0 < fraction < 1:
        raise InputError(f"holdout fraction must be within (0, 1), got {fraction}")
    n = calib.size
    if n < 2:
        raise InputError(f"tune needs at least 2 calibration images (one to calibrate, one held out for KL); {calib.root} gave {n}")
    n_hold = min(n - 1, max(1, round(fraction * n)))
    kept = CalibrationSet(batch=calib.batch[: n - n_hold], paths=calib.paths[: n - n_hold], root=calib.root,
                          available=calib.available, seed=calib.seed)
    return kept, calib.batch[n - n_hold:]


def _torch_outputs(model, card, batch: np.ndarray) -> dict[str, np.ndarray]:
    from optim.runtimes.base import TorchRuntime

    try:
        return TorchRuntime(model, card).predict(batch)
    except (RuntimeError, AssertionError):
        return TorchRuntime(model, card, max_batch=card.input.shape[0]).predict(batch)


def _resolve_formats(formats: str | Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    from optim.runtimes.registry import default_formats, format_names, get_format

    names = default_formats() if formats is None else (
        [f.strip() for f in formats.split(",")] if isinstance(formats, str) else [str(f).strip() for f in formats])
    names = [n for n in dict.fromkeys(names) if n]
    if not names:
        raise InputError(f"no format given; choose from {', '.join(format_names())}")
    return {n: tuple(get_format(n).schemes) for n in names}


def tune(
    checkpoint: str | Path,
    *,
    policy: str | Path | Any | None = None,
    calib: str | Path,
    golden: str | Path,
    train: str | Path | None = None,
    device: str = "host",
    formats: str | Sequence[str] | None = None,
    time_budget: str | float | None = None,
    out: str | Path = "optim-tune",
    analyze_only: bool = False,
    max_trials: int = DEFAULT_MAX_TRIALS,
    fallback_ks: Sequence[int] = S.DEFAULT_KS,
    prune_ratios: Sequence[float] = DEFAULT_PRUNE_RATIOS,
    prune_epochs: int = 1,
    sensitivity_unit: str = "auto",
    max_units: int = DEFAULT_MAX_UNITS,
    tail_weight: float = DEFAULT_TAIL_WEIGHT,
    calib_size: int = DEFAULT_CALIB_SIZE,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int = 0,
    threads: int | None = None,
    runs: int = 50,
    warmup: int = 5,
    trials: int = 3,
    evaluate_fn: Callable[..., dict] | None = None,
    bench_fn: Callable[..., dict] | None = None,
    quantized_runtime: Callable[..., Callable[[tuple[str, ...]], Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Find, per format, the fastest artifact of ``checkpoint`` that passes every check of ``policy``.

    1. **Sensitivity** (:mod:`optim.tuning.sensitivity`) per format, with its plain static INT8
       scheme: every quantizable layer (or top-level block when there are more than
       ``max_units``) quantized alone and kept in float alone; KL on a held-out slice
       (``holdout_fraction``) of the ``calib_size`` calibration images from ``calib``, top-1,
       tail-class top-1 and per-class deltas on the ``golden`` set; ranked tail-weighted
       (``tail_weight``, 0 = top-1 only). ``analyze_only`` stops here.
    2. **Search** (:mod:`optim.tuning.search`): format × scheme (the registry's schemes) × the
       ``k`` most sensitive units in float (``fallback_ks``) × (with ``train``: a split in the
       golden-set format) pruning ratio (``prune_ratios``, with ``prune_epochs`` of distilled
       recovery fine-tuning, :func:`optim.optimize.prune_pipeline.prune_checkpoint`). Each
       trial exports, then runs :func:`optim.verify` on ``device`` (``runs``/``warmup``/
       ``trials`` per benchmark). At most ``max_trials`` distinct candidates measured and ``time_budget``
       (``"30m"``, seconds; sensitivity counts against it; at least one trial runs). Seeded by
       ``seed``; resumable from ``OUT/tune.journal``.
    3. **Choice**: per format the passing candidate with the lowest p95, then size, verified
       again by :func:`optim.verify` with reports in ``OUT/chosen/<format>/`` (``verify.json``
       + attestation: ready for ``optim publish ARTIFACT --results OUT/chosen/<format>/verify.json``).

    Writes ``OUT/tune.json``, ``tune.md``, ``tune.html`` (Pareto and sensitivity plots),
    ``sensitivity.json``. ``evaluate_fn``/``bench_fn`` go to verify (tests, or a device
    measured elsewhere); ``quantized_runtime(loaded, spec, scheme, calib, check_batch,
    reference)`` replaces the sensitivity exporter (tests).

    Returns :class:`TuneResult`; ``exit_code`` 1 when some format has no passing (verified)
    candidate, else 0. Raises :class:`InputError` (exit 2: no policy, bad checkpoint, golden
    set, calibration directory, format, budget, a journal of another search in ``OUT``) and
    :class:`optim.errors.ToolError` (exit 3) when a tool breaks outside a trial.
    """
    from optim.checkpoint import load_checkpoint
    from optim.gate.policy import require_policy
    from optim.optimize.calibration import load_calibration_set
    from optim.runtimes.artifact import artifact_dir_name
    from optim.runtimes.registry import get_format
    from optim.tuning import build as B
    from optim.tuning.report import write_reports

    say = progress or (lambda _m: None)
    t_start = time.monotonic()
    budget_s = S.parse_duration(time_budget)
    if max_trials < 1:
        raise InputError(f"max_trials must be ≥ 1, got {max_trials}")
    out = Path(out)
    golden = Path(golden)
    if not golden.is_dir():
        raise InputError(f"golden set {golden} is not a directory")
    if Path(calib).resolve() == golden.resolve():
        raise InputError(f"--calib {calib} is the golden set: tune would calibrate (and measure KL) on the images that "
                         "judge the result; pass a training or calibration split")
    policy = require_policy(policy, "tune searches for artifacts that pass it")
    fmt_schemes = _resolve_formats(formats)
    size_schemes = {f: tuple(get_format(f).size_schemes) for f in fmt_schemes}
    fmt_schemes, size_notes = S.select_schemes(
        fmt_schemes, size_schemes, lambda f, s: policy.resolve([artifact_dir_name(f, s), f]).size_mb)
    loaded = load_checkpoint(checkpoint)
    card = loaded.card
    calib_all = load_calibration_set(calib, card.preprocessing, calib_size, seed=seed, input_shape=card.input.shape)
    calib_set, holdout = split_holdout(calib_all, holdout_fraction)
    check_batch = calib_set.batch
    reference = _torch_outputs(loaded.model, card, check_batch)
    layers = B.quantizable_layers(loaded.model, card.input.shape)
    out.mkdir(parents=True, exist_ok=True)

    # 1. sensitivity, per format (cached in OUT/sensitivity.json for a resumed run)
    from optim.tuning.report import load_sensitivity_cache, save_sensitivity_cache
    from optim.tuning.sensitivity import measure_sensitivity

    fingerprint = {"checkpoint_sha256": loaded.sha256, "calib_sha256": calib_set.sha256, "holdout": int(len(holdout)),
                   "golden": str(golden.resolve()), "unit": sensitivity_unit, "max_units": max_units,
                   "tail_weight": tail_weight}
    cache = load_sensitivity_cache(out, fingerprint)
    sens: dict[str, SensitivityResult] = {}
    sens_notes: dict[str, str] = {}
    factory = quantized_runtime or B.quantized_runtime_factory
    for fmt, schemes in fmt_schemes.items():
        spec = get_format(fmt)
        if S.PLAIN_INT8_SCHEME not in schemes:
            sens_notes[fmt] = f"format {fmt} has no {S.PLAIN_INT8_SCHEME} scheme; no sensitivity analysis"
            continue
        if quantized_runtime is None and not B.supports_float_layers(spec):
            sens_notes[fmt] = (f"format {fmt}'s exporter takes no float_layers (mixed precision); no sensitivity "
                               "analysis and no float-fallback candidates")
            continue
        if fmt in cache:
            sens[fmt] = cache[fmt]
            say(f"sensitivity {fmt}: reused from {out / 'sensitivity.json'}")
            continue
        try:
            sens[fmt] = measure_sensitivity(
                loaded.model, card, layers=layers,
                quantized_runtime=factory(loaded, spec, S.PLAIN_INT8_SCHEME, calib_set, check_batch, reference),
                holdout=holdout, golden=golden, fmt=fmt, scheme=S.PLAIN_INT8_SCHEME, unit=sensitivity_unit,
                max_units=max_units, tail_weight=tail_weight, progress=say)
        except InputError:
            raise
        except Exception as e:  # an exporter broke: that format gets no fallback candidates, the others go on
            sens_notes[fmt] = f"sensitivity analysis of {fmt} failed: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            say(sens_notes[fmt])
            continue
        save_sensitivity_cache(out, fingerprint, sens)

    base = {"schema_version": TUNE_SCHEMA_VERSION, "kind": "optim.tune",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": {"path": str(loaded.path), "sha256": loaded.sha256},
            "policy": {"path": policy.source, "sha256": policy.sha256},
            "golden": str(golden), "calibration": calib_set.to_metadata() | {"holdout": int(len(holdout))},
            "device": device, "formats": list(fmt_schemes), "analyze_only": analyze_only,
            "schemes": {f: list(v) for f, v in fmt_schemes.items()}, "size_schemes": size_notes,
            "settings": {"max_trials": max_trials, "time_budget_s": budget_s, "fallback_ks": list(fallback_ks),
                         "prune_ratios": list(prune_ratios) if train else [], "seed": seed, "tail_weight": tail_weight,
                         "sensitivity_unit": sensitivity_unit, "max_units": max_units, "runs": runs, "warmup": warmup,
                         "trials": trials, "threads": threads},
            "sensitivity": {f: s.to_dict() for f, s in sens.items()} | {f: {"skipped": n} for f, n in sens_notes.items()}}
    if analyze_only:
        report = base | {"verdict": "analyzed", "exit_code": EXIT_OK, "chosen": {}, "candidates": [], "pareto_front": [],
                         "rejected": [], "baselines": {}, "notes": []}
        return TuneResult(report, write_reports(report, out, list(sens.values())), sens)

    # 2. search
    ratios = [float(r) for r in prune_ratios] if train else []
    cands = S.enumerate_candidates(fmt_schemes, {f: len(s.rows) for f, s in sens.items()}, fallback_ks, ratios,
                                   no_fallback=size_schemes)
    settings = S.SearchSettings(candidates=[c.key for c in cands], device=device, policy_sha256=policy.sha256 or "",
                                golden=str(golden.resolve()), seed=seed)
    study, how = S.open_study(out, settings, max_trials)
    say(f"search: {len(cands)} candidates, {how}, at most {max_trials} trials"
        + (f", time budget {budget_s:.0f} s" if budget_s else ""))
    models: dict[float, Any] = {0.0: (loaded, check_batch, reference)}

    def model_for(ratio: float):
        if ratio not in models:
            from optim.optimize.prune_pipeline import prune_checkpoint

            path = out / "pruned" / f"ratio-{ratio:g}.pt"
            if not path.is_file():
                say(f"pruning {ratio:.0%} of channels with {prune_epochs} epoch(s) of recovery fine-tuning")
                prune_checkpoint(loaded.path, path, ratio=ratio, finetune=prune_epochs > 0, train=train, golden=golden,
                                 epochs=max(prune_epochs, 1), seed=seed, progress=False, on_info=say)
            pl = load_checkpoint(path)
            models[ratio] = (pl, check_batch, _torch_outputs(pl.model, pl.card, check_batch))
        return models[ratio]

    def evaluate(c: S.Candidate, number: int) -> S.TrialRecord:
        from optim.gate.verify import verify

        t0 = time.monotonic()
        m, cb, ref_out = model_for(c.prune)
        names = {n for n, _ in m.model.named_modules()}
        float_layers = [n for n in sens[c.format].top_layers(c.k) if n in names] if c.k else []
        r = B.build_artifact(m, get_format(c.format), c.scheme, S.trial_dir(out, c, number), calib=calib_set,
                             check_batch=cb, reference=ref_out, float_layers=float_layers, threads=threads)
        collapsed = bool(getattr(r, "collapsed", False)) and r.artifact_dir is not None
        if r.artifact_dir is None or not (r.ok or collapsed):
            why = r.error or (f"{r.status}: its {c.scheme} export differs from torch on the check inputs "
                              f"(top-1 agreement {(r.check or {}).get('top1_agreement')})")
            rec = S.TrialRecord(candidate=c.to_dict(), status=S.REJECTED, reasons=[f"export: {why}"],
                                float_layers=float_layers, size_mb=r.size_mb)
            if r.artifact_dir is not None:
                rec.artifact = str(r.artifact_dir)
                S.remove_artifact(rec)
            rec.seconds = round(time.monotonic() - t0, 2)
            return rec
        v = verify([r.artifact_dir], golden, devices=[device], policy=policy, reference=loaded.path, threads=threads,
                   runs=runs, warmup=warmup, trials=trials, evaluate_fn=evaluate_fn, bench_fn=bench_fn)
        if v.report["input_errors"]:
            raise InputError(v.report["input_errors"][0])
        rec = S.record_from_verify(v.report["artifacts"][0], device, c, float_layers)
        if collapsed:  # the quantizer flagged a collapse on the check images: measured, never chosen (fail closed)
            rec.status = S.FAIL if rec.status == S.PASS else rec.status
            rec.checks_failed = max(rec.checks_failed, 1)
            rec.reasons.insert(0, f"quantize: {r.message or 'collapsed (top-1 agreement with FP32 far below 0.90)'}")
        if not rec.passed:
            S.remove_artifact(rec)
        rec.seconds = round(time.monotonic() - t0, 2)
        return rec

    timeout = None if budget_s is None else max(1.0, budget_s - (time.monotonic() - t_start))
    records, stats = S.run_search(study, cands, lambda c, n: S.measured_or_raise(lambda: evaluate(c, n), c),
                                  max_trials=max_trials, timeout_s=timeout, progress=say)
    stats |= {"sampler": how, "candidates": len(cands), "journal": str(out / S.JOURNAL)}

    # 3. choice per format, verified with reports
    from optim.tuning.report import assemble

    chosen = choose_and_verify(records, fmt_schemes, out=out, golden=golden, device=device, policy=policy,
                               reference=loaded.path, threads=threads, runs=runs, warmup=warmup, trials=trials,
                               evaluate_fn=evaluate_fn, bench_fn=bench_fn, progress=say)
    report = assemble(base, records, chosen, sens, stats)
    return TuneResult(report, write_reports(report, out, list(sens.values())), sens)


def choose_and_verify(records: list[S.TrialRecord], fmt_schemes: dict[str, Sequence[str]], *, out: Path, golden: Path,
                      device: str, policy, reference: Path, threads, runs: int, warmup: int, trials: int,
                      evaluate_fn, bench_fn, progress: Callable[[str], None], tries: int = 3) -> dict[str, dict[str, Any] | None]:
    """Per format: the best passing candidate (:func:`optim.tuning.search.choose`) verified again
    with reports into ``out/chosen/<format>/``; when that verification fails the next one is
    tried (at most ``tries``). None for a format with no verified candidate."""
    from optim.gate.verify import verify

    chosen: dict[str, dict[str, Any] | None] = {}
    for fmt in fmt_schemes:
        chosen[fmt] = None
        for rec in S.choose(records, fmt)[:tries]:
            vdir = out / "chosen" / fmt
            progress(f"verifying the chosen {fmt} artifact {rec.artifact}")
            v = verify([rec.artifact], golden, devices=[device], policy=policy, reference=reference, out=vdir,
                       threads=threads, runs=runs, warmup=warmup, trials=trials, evaluate_fn=evaluate_fn, bench_fn=bench_fn)
            entry = v.report["artifacts"][0]
            if v.verdict == S.PASS:
                again = S.record_from_verify(entry, device, S.Candidate.from_key(rec.candidate["key"]), rec.float_layers)
                chosen[fmt] = {"record": rec, "verify": str(v.paths["json"]), "attestation": str(v.paths["attestation"]),
                               "verified_p95_ms": again.p95_ms, "verdict": v.verdict}
                break
            rec.status = S.FAIL
            rec.reasons.append(f"chosen, but its verification with reports failed ({v.verdict}): "
                               + "; ".join(f"{c['id']}: {c.get('reason')}" for c in entry["checks"] if c["status"] != S.PASS))
    return chosen
