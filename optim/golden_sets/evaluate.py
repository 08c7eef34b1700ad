"""``optim.evaluate``: run a checkpoint or artifact over a golden set and compare it with FP32.

Flow: load + hash the golden set → open the runtime(s) → match the manifest's columns and
labels to the model card's heads → preprocess every image once per (golden content hash,
preprocessing, input size), cached on disk as one float32 N×C×H×W ``.npy`` → predict in
batches → per-head metrics and deltas (:mod:`optim.golden_sets.head_report`) → an
:class:`~optim.golden_sets.report.EvalReport`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optim.errors import InputError
from optim.golden_sets.golden_set import GoldenSet
from optim.golden_sets.head_report import multiclass_head_report, multilabel_head_report
from optim.golden_sets.metrics import thresholds_for
from optim.golden_sets.report import EvalReport
from optim.golden_sets.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE
from optim.golden_sets.tail import DEFAULT_TAIL_MAX_COUNT, split_head_tail
from optim.model_card import ModelCard

PREPROCESS_CACHE_VERSION = 1


# ---- labels ↔ model card (pure) ---------------------------------------------------------------
@dataclass
class MatchedLabels:
    """Golden labels in the card's label order: multiclass → N int (−1 = no label);
    multi-label → N×T float (NaN = missing). ``present`` is False for a card head the golden
    set has no column for (not evaluated)."""

    head: str
    kind: str
    labels: tuple[str, ...]
    y: np.ndarray | None


def match_labels(gs: GoldenSet, card: ModelCard) -> tuple[dict[str, MatchedLabels], list[str]]:
    """Map the golden set's head columns onto ``card``'s heads.

    Raises :class:`InputError` for a manifest column that matches no head (or a head of the
    other kind), a multiclass label that is not one of the head's labels (naming the row, the
    column and the value), or a multi-label tag column the head does not have. Card heads
    without labels in the manifest and tags without a column are reported as warnings.
    """
    warnings: list[str] = []
    src = str(gs.root / gs.manifest_name)
    card_heads = {h.name: h for h in card.heads}
    for name, hl in gs.heads.items():
        if name not in card_heads:
            cols = hl.columns if hl.kind == "multiclass" else hl.columns[:3]
            raise InputError(f"{src}: column(s) {list(cols)} name head {name!r}, which the model card {card.name!r} does not have; "
                             f"its heads are {list(card_heads)} (multi-label columns are 'HEAD:TAG')")
        if card_heads[name].kind != hl.kind:
            raise InputError(f"{src}: head {name!r} is {card_heads[name].kind} in the model card but its manifest column(s) "
                             f"{list(hl.columns[:3])} are {hl.kind} ({'one class-name column' if card_heads[name].kind == 'multiclass' else f'{name}:TAG 0/1 columns'} expected)")
    out: dict[str, MatchedLabels] = {}
    for head in card.heads:
        hl = gs.heads.get(head.name)
        if hl is None:
            warnings.append(f"head {head.name!r} has no labels in the golden set (no column {head.name!r}"
                            f"{'' if head.kind == 'multiclass' else ':TAG'}); it is not evaluated")
            out[head.name] = MatchedLabels(head.name, head.kind, head.labels, None)
            continue
        if head.kind == "multiclass":
            index = {lab: i for i, lab in enumerate(head.labels)}
            y = np.full(len(gs), -1, dtype=int)
            for i, v in enumerate(hl.values):  # type: ignore[arg-type]
                if v is None:
                    continue
                if v not in index:
                    shown = ", ".join(head.labels[:12]) + (" …" if len(head.labels) > 12 else "")
                    raise InputError(f"{src}: {gs.row_name(i)} column {head.name!r} holds label {v!r}, which is not one of the "
                                     f"model card's {len(head.labels)} labels for head {head.name!r} ({shown})")
                y[i] = index[v]
            n_missing = int((y < 0).sum())
            if n_missing:
                warnings.append(f"head {head.name!r}: {n_missing} of {len(gs)} samples have no label and are left out of it")
            support = np.bincount(y[y >= 0], minlength=len(head.labels))
            empty = [lab for lab, s in zip(head.labels, support) if s == 0]
            if empty:
                warnings.append(f"head {head.name!r}: {len(empty)} of {len(head.labels)} classes have no golden sample "
                                f"(their recall and deltas are null): {empty[:10]}{' …' if len(empty) > 10 else ''}")
        else:
            unknown = [c for t, c in zip(hl.labels, hl.columns) if t not in head.labels]
            if unknown:
                raise InputError(f"{src}: column(s) {unknown} name tags that head {head.name!r} does not have; its tags are {list(head.labels)}")
            col_of = {t: j for j, t in enumerate(hl.labels)}
            y = np.full((len(gs), len(head.labels)), np.nan)
            for j, t in enumerate(head.labels):
                if t in col_of:
                    y[:, j] = np.asarray(hl.values)[:, col_of[t]]
            absent = [t for t in head.labels if t not in col_of]
            if absent:
                warnings.append(f"head {head.name!r}: {len(absent)} tag(s) have no column and are all missing: {absent[:10]}")
            miss = int(np.isnan(y).sum())
            if miss:
                warnings.append(f"head {head.name!r}: {miss} of {y.size} labels are missing and ignored")
        out[head.name] = MatchedLabels(head.name, head.kind, head.labels, y)
    return out, warnings


def check_same_heads(target: ModelCard, reference: ModelCard) -> None:
    """Raise :class:`InputError` unless both cards have the same heads, kinds and labels in order."""
    a = [(h.name, h.kind, h.labels) for h in target.heads]
    b = [(h.name, h.kind, h.labels) for h in reference.heads]
    if a != b:
        raise InputError(f"target and reference model cards differ in their heads: target {[(n, k, len(l)) for n, k, l in a]}, "
                         f"reference {[(n, k, len(l)) for n, k, l in b]}; compare an artifact with the FP32 checkpoint it was made from")


# ---- preprocessing cache ------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$OPTIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/optim``, else ``~/.cache/optim``."""
    if os.environ.get("OPTIM_CACHE_DIR"):
        return Path(os.environ["OPTIM_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "optim"


def preprocess_cache_key(golden_sha256: str, card: ModelCard) -> str:
    """Hex key of (golden content hash, preprocessing settings, input C×H×W)."""
    blob = json.dumps({"v": PREPROCESS_CACHE_VERSION, "golden": golden_sha256, "prep": card.preprocessing.model_dump(mode="json"),
                       "chw": list(card.input.shape[1:])}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def preprocess_golden(gs: GoldenSet, card: ModelCard, golden_sha256: str, cache_dir: str | Path | None = None,
                      on_image: Callable[[int], None] | None = None) -> tuple[np.ndarray, Path | None, bool]:
    """Every golden image preprocessed per ``card`` → float32 N×C×H×W (manifest row order).

    Cached as ``<cache_dir>/golden-preprocessed/<key>.npy`` (see :func:`preprocess_cache_key`);
    ``cache_dir=False`` disables the cache. Returns (array — memory-mapped when cached —,
    cache file or None, cache hit). Raises :class:`InputError` naming the row of an image that
    is missing or cannot be decoded, or whose size does not match the card's input.
    """
    from optim.files import atomic_write_bytes
    from optim.preprocessing import load_image

    path = None
    if cache_dir is not False:
        d = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = d / "golden-preprocessed" / f"{preprocess_cache_key(golden_sha256, card)[:40]}.npy"
        if path.is_file():
            try:
                arr = np.load(path, mmap_mode="r")
                if arr.shape == (len(gs), *card.input.shape[1:]) and arr.dtype == np.float32:
                    return arr, path, True
            except (OSError, ValueError):
                pass  # a corrupt cache entry is rebuilt below
    chw = tuple(card.input.shape[1:])
    arr = np.empty((len(gs), *chw), dtype=np.float32)
    for i in range(len(gs)):
        try:
            x = load_image(gs.image_path(i), card.preprocessing)
        except InputError as e:
            raise InputError(f"golden set {gs.root}: {gs.row_name(i)}: {e}") from None
        if x.shape != chw:
            raise InputError(f"golden set {gs.root}: {gs.row_name(i)}: image {gs.paths[i]} preprocesses to "
                             f"{'×'.join(map(str, x.shape))} but the model card expects {'×'.join(map(str, chw))}; "
                             "set preprocessing.resize/center_crop in the card")
        arr[i] = x
        if on_image:
            on_image(i)
    if path is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(path, buf.getvalue())
    return arr, path, False


def predict_all(runtime, x: np.ndarray, batch_size: int = 32, on_batch: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Run ``runtime.predict`` over float32 N×C×H×W ``x`` in batches of ``batch_size`` →
    ``{head: float32 N×K}``."""
    if batch_size < 1:
        raise InputError(f"batch_size must be ≥ 1, got {batch_size}")
    parts: list[dict[str, np.ndarray]] = []
    for i in range(0, len(x), batch_size):
        batch = np.array(x[i : i + batch_size], dtype=np.float32, copy=True)
        parts.append(runtime.predict(batch))
        if on_batch:
            on_batch(len(batch))
    return {h: np.concatenate([p[h] for p in parts]) for h in parts[0]}


def _open(target, threads: int | None, load_kwargs: Mapping | None):
    """A path → runtime via :func:`optim.runtimes.open_runtime`; a Runtime passes through."""
    from optim.runtimes import Runtime, open_runtime

    if isinstance(target, Runtime):
        return target, getattr(target, "name", None) or f"<{type(target).__name__}>"
    path = Path(target)
    if not path.exists():
        raise InputError(f"{path} does not exist (expected a checkpoint file or an artifact directory)")
    kwargs = dict(load_kwargs or {}) if path.is_file() else {}
    kwargs = {k: v for k, v in kwargs.items() if v not in (None, False)}
    return open_runtime(path, threads=threads, **kwargs), str(path)


def evaluate(
    target,
    golden: str | Path | GoldenSet,
    reference=None,
    *,
    tail_max_count: int = DEFAULT_TAIL_MAX_COUNT,
    thresholds: Mapping[str, float] | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    tail_classes: Mapping[str, Sequence[str]] | None = None,
    load_kwargs: Mapping | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalReport:
    """Evaluate ``target`` on a golden set, and compare it with ``reference`` if given.

    Args:
        target: checkpoint file or artifact directory (opened with
            :func:`optim.open_runtime`), or an already open :class:`~optim.runtimes.Runtime`.
        golden: golden set directory (or a loaded :class:`GoldenSet`).
        reference: the FP32 checkpoint (or artifact / Runtime) to compare with; None = no deltas.
        tail_max_count: a class is tail when it had fewer than this many training images
            (from the golden set's ``train_counts.json``).
        thresholds: multi-label probability thresholds, ``{"TAG": 0.3}`` or ``{"HEAD:TAG": 0.3}``
            (default 0.5 per tag).
        batch_size: images per ``Runtime.predict`` call.
        threads: CPU threads for the runtime(s).
        cache_dir: where preprocessed tensors are cached (default :func:`default_cache_dir`;
            ``False`` disables caching).
        tail_classes: explicit tail classes per head; overrides training counts.
        load_kwargs: ``load_checkpoint`` options (arch, card, trust_pickle, input_shape) for
            checkpoint files.
        resamples, seed: paired bootstrap settings (default 2000 resamples, seed 0).
        progress: optional callback ``(stage, done, total)``.

    Returns an :class:`EvalReport` (``.to_dict()`` is the EvalReport JSON, schema version 1).

    Raises:
        InputError: bad golden set (row/column named), labels the card does not know, missing
            or undecodable images, target/reference with different heads, bad thresholds.
        ToolError: a runtime failed.
    """
    t0 = time.perf_counter()
    gs = golden if isinstance(golden, GoldenSet) else GoldenSet.load(golden)
    verify = gs.verify()
    warnings: list[str] = [] if verify.ok else [verify.describe()]
    rt, target_name = _open(target, threads, load_kwargs)
    card = rt.card
    ref_rt = ref_name = None
    if reference is not None:
        ref_rt, ref_name = _open(reference, threads, load_kwargs)
        check_same_heads(card, ref_rt.card)
    matched, w = match_labels(gs, card)
    warnings += w

    def _prog(stage: str, total: int):
        done = [0]

        def step(n: int = 1):
            done[0] += n if isinstance(n, int) and stage == "predict" else 1
            if progress:
                progress(stage, done[0], total)
        return step

    t_prep = time.perf_counter()
    x, cache_path, hit = preprocess_golden(gs, card, verify.actual_sha256, cache_dir, _prog("preprocess", len(gs)))
    xr = x
    ref_cache = None
    if ref_rt is not None and (ref_rt.card.preprocessing != card.preprocessing or ref_rt.card.input.shape[1:] != card.input.shape[1:]):
        warnings.append("target and reference model cards declare different preprocessing/input; each is evaluated with its own")
        xr, ref_cache, _ = preprocess_golden(gs, ref_rt.card, verify.actual_sha256, cache_dir)
    t_pred = time.perf_counter()
    logits = predict_all(rt, x, batch_size, _prog("predict", len(gs)))
    t_pred_end = time.perf_counter()
    ref_logits = predict_all(ref_rt, xr, batch_size) if ref_rt is not None else None
    t_metrics = time.perf_counter()

    thresholds = dict(thresholds or {})
    heads: dict[str, dict] = {}
    used_thresholds: set[str] = set()
    counts_all = gs.train_counts or {}
    explicit_all = {**(gs.tail_classes or {}), **_resolve_tail_heads(tail_classes, card)}
    for head in card.heads:
        ml = matched[head.name]
        if ml.y is None:
            heads[head.name] = _not_evaluated(head.kind, head.labels)
            continue
        split = split_head_tail(head.name, head.labels, counts_all.get(head.name), tail_max_count, explicit_all.get(head.name))
        warnings += list(split.warnings)
        ref = ref_logits[head.name] if ref_logits is not None else None
        if head.kind == "multiclass":
            heads[head.name] = multiclass_head_report(head.labels, logits[head.name], ml.y, split, ref, resamples=resamples, seed=seed)
        else:
            over = {}
            for key, val in thresholds.items():
                tag = key.split(":", 1)[1] if key.startswith(f"{head.name}:") else key
                if tag in head.labels:
                    over[tag] = val
                    used_thresholds.add(key)
            try:
                th = thresholds_for(head.labels, over)
            except ValueError as e:
                raise InputError(f"thresholds for head {head.name!r}: {e}") from None
            heads[head.name] = multilabel_head_report(head.labels, logits[head.name], ml.y, th, split, ref, resamples=resamples, seed=seed)
    unused = sorted(set(thresholds) - used_thresholds)
    if unused:
        raise InputError(f"thresholds given for {unused}, which are not tags of any multi-label head of the model card")
    t_end = time.perf_counter()
    return EvalReport(
        target=target_name, reference=ref_name,
        golden={"path": str(gs.root), "name": gs.name, "version": gs.version, "sha256": verify.actual_sha256,
                "recorded_sha256": verify.recorded_sha256, "verified": verify.ok},
        n_samples=len(gs), heads=heads, warnings=warnings,
        settings={"tail_max_count": tail_max_count, "thresholds": thresholds, "batch_size": batch_size, "threads": threads,
                  "bootstrap": {"method": "paired percentile bootstrap over images", "resamples": resamples, "seed": seed,
                                "confidence": CONFIDENCE},
                  "ece_bins": 15, "target_format": rt.format, "reference_format": ref_rt.format if ref_rt else None,
                  "preprocess_cache": {"path": str(cache_path) if cache_path else None, "hit": hit,
                                       "reference_path": str(ref_cache) if ref_cache else None}},
        timings_s={"total": t_end - t0, "load": t_prep - t0, "preprocess": t_pred - t_prep, "predict_target": t_pred_end - t_pred,
                   "predict_reference": t_metrics - t_pred_end, "metrics": t_end - t_metrics},
        ids=list(gs.ids), card=card, logits=logits, ref_logits=ref_logits, labels={h: m.y for h, m in matched.items()},
    )


def _resolve_tail_heads(tail_classes: Mapping[str, Sequence[str]] | None, card: ModelCard) -> dict[str, list[str]]:
    """Explicit tail classes per head; the key ``""`` names the card's only multiclass head."""
    out: dict[str, list[str]] = {}
    for head, labels in dict(tail_classes or {}).items():
        if head == "":
            mc = [h.name for h in card.heads if h.kind == "multiclass"]
            if len(mc) != 1:
                raise InputError(f"tail classes {list(labels)} name no head, but the model card has {len(mc)} multiclass heads {mc}; use HEAD=LABEL")
            head = mc[0]
        else:
            card.head(head)  # raises InputError naming the heads
        out.setdefault(head, []).extend(labels)
    return out


def _not_evaluated(kind: str, labels) -> dict:
    if kind == "multiclass":
        return {"kind": kind, "n_used": 0, "n_missing_labels": None,
                "metrics": {k: None for k in ("top1", "top2", "top5", "macro_f1", "ece", "head_top1", "tail_top1")},
                "reference_metrics": None, "tail_classes": [], "tail_source": "none", "per_class": [], "delta": None,
                "evaluated": False}
    return {"kind": kind, "n_used": 0, "n_ignored": 0, "metrics": {"macro_f1": None, "head_macro_f1": None, "tail_macro_f1": None},
            "reference_metrics": None, "tail_classes": [], "tail_source": "none", "per_tag": [], "delta": None, "evaluated": False}
