"""``optim.evaluate``: run a checkpoint or artifact over a golden set and compare it with FP32.

Flow: load + hash the golden set → open the runtime(s) → match the manifest's columns and
labels to the model card's heads → read back per-sample results of an interrupted run (if
any) → decode, preprocess and predict batch by batch, in this process or ``workers``
processes (:mod:`optim.golden_sets.stream`), keeping only the logits → per-head metrics and
deltas (:mod:`optim.golden_sets.head_report`) → an :class:`~optim.golden_sets.report.EvalReport`.
Memory: one batch of tensors per worker plus the N×K logits; a whole N×C×H×W array only when
it fits the cache (or memo) bound.

Preprocessed tensors — what is trusted:

* Images are decoded from bytes whose sha256 equals the per-file digest that makes up the
  golden content hash reported (read again, compared, then decoded: a file swapped between
  hashing and decoding is an :class:`InputError`).
* In memory (:class:`TensorMemo`, e.g. :data:`PROCESS_TENSORS`): tensors this process decoded,
  keyed by (content hash, preprocessing, input shape), read-only. This is what the release gate
  (``optim verify``) uses: it never reads a preprocessed cache from disk, so N artifacts of one
  verify run decode the images once and nothing on disk can change what the gate sees.
* On disk (``optim eval`` only; :func:`default_cache_dir` ``/golden-preprocessed/``): *not*
  trusted. Each entry is ``<key>.npy`` plus ``<key>.json`` recording the golden digest, the
  exact preprocessing and input shape, and the sha256 of the ``.npy`` bytes. Every read checks
  all of them and re-decodes :data:`CACHE_SAMPLE_ROWS` rows chosen with ``os.urandom`` (an
  attacker cannot know which), which must be bit-identical; any mismatch drops the entry with a
  warning and recomputes. An attacker who can write the cache can forge the sidecar, so the
  digest alone proves nothing against them: the random re-decode catches a cache rewritten
  wholesale (e.g. zeros) with certainty and one with k of N rows altered with probability
  1 − (1 − k/N)^16. The cache is bounded (:func:`cache_max_bytes`, least recently used
  entries evicted); ``--no-cache`` turns it off.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optim.errors import InputError
from optim.golden_sets.decode import decode_rows
from optim.golden_sets.golden_set import GoldenSet, VerifyResult
from optim.golden_sets.head_report import multiclass_head_report, multilabel_head_report
from optim.golden_sets.metrics import thresholds_for, topk_set
from optim.golden_sets.report import EvalReport
from optim.golden_sets.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE
from optim.golden_sets.tail import DEFAULT_TAIL_MAX_COUNT, split_head_tail
from optim.model_card import ModelCard, describe_head_differences

PREPROCESS_CACHE_VERSION = 2
CACHE_SAMPLE_ROWS = 16
"""Rows of a disk-cache entry re-decoded (at random) and compared bit for bit on every read."""
DEFAULT_CACHE_MAX_BYTES = 2 * 1024**3
"""Default bound of the on-disk preprocessed cache (2 GiB); ``$OPTIM_CACHE_MAX_BYTES`` overrides."""
DEFAULT_MEMO_MAX_BYTES = 2 * 1024**3
"""Default bound of :data:`PROCESS_TENSORS` (2 GiB); bigger tensors are decoded per evaluation."""


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
    diffs = describe_head_differences(target, reference)
    if diffs:
        raise InputError(f"target and reference model cards differ in their heads: {'; '.join(diffs)}; "
                         "compare an artifact with the FP32 checkpoint it was made from")


# ---- preprocessing cache ------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$OPTIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/optim``, else ``~/.cache/optim``.

    Preprocessed golden tensors go to its ``golden-preprocessed/`` folder (``optim eval`` only),
    at most :func:`cache_max_bytes` in all."""
    if os.environ.get("OPTIM_CACHE_DIR"):
        return Path(os.environ["OPTIM_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "optim"


def cache_max_bytes() -> int:
    """Bound of ``golden-preprocessed/`` in bytes: ``$OPTIM_CACHE_MAX_BYTES`` or
    :data:`DEFAULT_CACHE_MAX_BYTES`. Raises :class:`InputError` for a value that is not a
    non-negative integer."""
    raw = os.environ.get("OPTIM_CACHE_MAX_BYTES")
    if raw is None or raw.strip() == "":
        return DEFAULT_CACHE_MAX_BYTES
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise InputError(f"OPTIM_CACHE_MAX_BYTES={raw!r}: expected a non-negative number of bytes (0 disables the cache)")
    return n


def _spec(golden_sha256: str, card: ModelCard) -> dict:
    return {"v": PREPROCESS_CACHE_VERSION, "golden": golden_sha256, "prep": card.preprocessing.model_dump(mode="json"),
            "chw": list(card.input.shape[1:])}


def preprocess_cache_key(golden_sha256: str, card: ModelCard) -> str:
    """Hex key of (golden content hash, preprocessing settings, input C×H×W)."""
    return hashlib.sha256(json.dumps(_spec(golden_sha256, card), sort_keys=True).encode()).hexdigest()


class TensorMemo:
    """Preprocessed golden tensors held in memory, written only by this process.

    Keyed by :func:`preprocess_cache_key` (content hash recomputed from the bytes decoded,
    preprocessing, input shape); arrays are stored read-only. Bounded: at most ``max_bytes`` in
    all, least recently used dropped first; an array bigger than the bound is not kept."""

    def __init__(self, max_bytes: int = DEFAULT_MEMO_MAX_BYTES):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
            return arr

    def put(self, key: str, arr: np.ndarray) -> np.ndarray:
        arr = np.array(arr, dtype=np.float32, copy=True)
        arr.flags.writeable = False
        with self._lock:
            if arr.nbytes <= self.max_bytes:
                self._items[key] = arr
                self._items.move_to_end(key)
                while sum(a.nbytes for a in self._items.values()) > self.max_bytes:
                    self._items.popitem(last=False)
        return arr

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


PROCESS_TENSORS = TensorMemo()
"""The process-wide :class:`TensorMemo` the release gate shares across the artifacts of a run."""


def _read_regular(path: Path, limit: int) -> bytes | None:
    """Bytes of a regular, non-link file of at most ``limit`` bytes; None otherwise."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read(limit + 1)
    except OSError:
        return None


def _drop(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _cache_read(npy: Path, side: Path, spec: dict, gs: GoldenSet, card: ModelCard, digests: Mapping[str, str],
                limit: int) -> tuple[np.ndarray | None, str | None]:
    """(array, None) if the entry passes every check; (None, reason) if it exists and fails one;
    (None, None) if there is no entry."""
    if not os.path.lexists(npy) and not os.path.lexists(side):
        return None, None
    meta_raw = _read_regular(side, 1 << 20)
    if meta_raw is None:
        return None, f"its record {side.name} is missing, a link or not a regular file"
    try:
        meta = json.loads(meta_raw)
    except (ValueError, RecursionError):
        return None, f"its record {side.name} is not valid JSON"
    if not isinstance(meta, dict) or meta.get("spec") != spec:
        return None, f"its record {side.name} is for another golden set digest or preprocessing"
    raw = _read_regular(npy, limit)
    if raw is None or len(raw) > limit:
        return None, f"{npy.name} is missing, a link, not a regular file or over the cache bound"
    if hashlib.sha256(raw).hexdigest() != meta.get("npy_sha256"):
        return None, f"the sha256 of {npy.name} differs from the one recorded when it was written"
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        return None, f"{npy.name} is not a readable .npy array ({e})"
    want = (len(gs), *card.input.shape[1:])
    if arr.dtype != np.float32 or arr.shape != want:
        return None, f"{npy.name} holds {arr.dtype} {arr.shape}, expected float32 {want}"
    rows = sorted(random.SystemRandom().sample(range(len(gs)), min(CACHE_SAMPLE_ROWS, len(gs))))
    fresh = decode_rows(gs, card, digests, rows)
    bad = [gs.ids[i] for k, i in enumerate(rows) if not np.array_equal(arr[i].view(np.uint32), fresh[k].view(np.uint32))]
    if bad:
        return None, (f"{len(bad)} of {len(rows)} randomly chosen rows differ from the images decoded now "
                      f"(ids {', '.join(map(repr, bad[:5]))})")
    arr.flags.writeable = False
    return arr, None


def _cache_write(npy: Path, side: Path, arr: np.ndarray, spec: dict, limit: int) -> bool:
    from optim.files import atomic_write_bytes, atomic_write_json

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    raw = buf.getvalue()
    if len(raw) > limit:
        return False
    atomic_write_bytes(npy, raw)
    atomic_write_json(side, {"spec": spec, "npy_sha256": hashlib.sha256(raw).hexdigest(), "npy_bytes": len(raw)})
    _evict(npy.parent, limit, keep=npy.stem)
    return True


def _evict(folder: Path, limit: int, keep: str) -> None:
    """Delete least recently used entries until ``folder`` holds at most ``limit`` bytes."""
    entries: dict[str, list[Path]] = {}
    for p in folder.iterdir():
        if p.suffix in (".npy", ".json") or p.name.endswith(".tmp"):
            entries.setdefault(p.name.split(".")[0] or p.name, []).append(p)

    def size(ps: list[Path]) -> int:
        return sum(p.lstat().st_size for p in ps if os.path.lexists(p))

    def age(ps: list[Path]) -> float:
        return max((p.lstat().st_mtime for p in ps if os.path.lexists(p)), default=0.0)

    total = sum(size(ps) for ps in entries.values())
    for stem, ps in sorted(entries.items(), key=lambda kv: age(kv[1])):
        if total <= limit:
            break
        if stem == keep:
            continue
        total -= size(ps)
        _drop(*ps)


def preprocess_golden(gs: GoldenSet, card: ModelCard, verify: VerifyResult, cache_dir: str | Path | None | bool = None,
                      on_image: Callable[[int], None] | None = None, memo: TensorMemo | None = None
                      ) -> tuple[np.ndarray, Path | None, bool, list[str]]:
    """Every golden image preprocessed per ``card`` → read-only float32 N×C×H×W (manifest order).

    Args:
        verify: the :meth:`GoldenSet.verify` result of this run; images are decoded only from
            bytes matching its per-file digests, and its ``actual_sha256`` keys the tensors.
        cache_dir: the on-disk cache folder (default :func:`default_cache_dir`; ``False``: none).
            Read entries are content-checked (module docstring); a failing one is dropped with a
            warning and recomputed.
        memo: an in-memory :class:`TensorMemo`; when given, the disk cache is neither read nor
            written (the release gate's mode).

    Returns (array, cache file or None, cache hit, warnings). Raises :class:`InputError` naming
    the row of an image that is missing, changed, undecodable, or whose size does not match the
    card's input.
    """
    spec = _spec(verify.actual_sha256, card)
    key = preprocess_cache_key(verify.actual_sha256, card)
    warnings: list[str] = []
    if memo is not None:
        arr = memo.get(key)
        if arr is not None:
            return arr, None, True, warnings
        return memo.put(key, decode_rows(gs, card, verify.files, range(len(gs)), on_image)), None, False, warnings
    npy = side = None
    limit = 0
    if cache_dir is not False:
        limit = cache_max_bytes()
        d = (Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()) / "golden-preprocessed"
        npy, side = d / f"{key[:40]}.npy", d / f"{key[:40]}.json"
        if limit > 0:
            arr, why = _cache_read(npy, side, spec, gs, card, verify.files, limit)
            if arr is not None:
                try:
                    os.utime(npy)  # least recently used eviction
                except OSError:
                    pass
                return arr, npy, True, warnings
            if why is not None:
                warnings.append(f"the preprocessed cache {npy} failed its check ({why}); it was dropped and recomputed")
                _drop(npy, side)
    arr = decode_rows(gs, card, verify.files, range(len(gs)), on_image)
    arr.flags.writeable = False
    if npy is not None and side is not None and limit > 0:
        try:
            if not _cache_write(npy, side, arr, spec, limit):
                npy = None
        except OSError as e:
            warnings.append(f"the preprocessed cache {npy} could not be written ({e.strerror or e}); continuing without it")
            npy = None
    else:
        npy = None
    return arr, npy, False, warnings


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


def open_target(target, threads: int | None, load_kwargs: Mapping | None):
    """A path → (runtime via :func:`optim.runtimes.open_runtime`, its name); a Runtime passes through."""
    from optim.runtimes import Runtime, open_runtime

    if isinstance(target, Runtime):
        return target, getattr(target, "name", None) or f"<{type(target).__name__}>"
    path = Path(target)
    if not path.exists():
        raise InputError(f"{path} does not exist (expected a checkpoint file or an artifact directory)")
    kwargs = dict(load_kwargs or {}) if path.is_file() else {}
    kwargs = {k: v for k, v in kwargs.items() if v not in (None, False)}
    return open_runtime(path, threads=threads, **kwargs), str(path)


def same_input(card: ModelCard, other: ModelCard | None) -> bool:
    """True when ``other`` is None or preprocesses images exactly as ``card`` does (same tensors)."""
    return other is None or (other.preprocessing == card.preprocessing and tuple(other.input.shape[1:]) == tuple(card.input.shape[1:]))


def prepare_rows(gs: GoldenSet, digests: Mapping[str, str], card: ModelCard, ref_card: ModelCard | None, start: int, stop: int
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows ``start:stop`` decoded (digest-checked, :func:`decode_rows`) and preprocessed for
    ``card`` → float32 B×C×H×W, and for ``ref_card`` when it preprocesses differently (else None)."""
    xt = decode_rows(gs, card, digests, range(start, stop))
    xr = None if same_input(card, ref_card) else decode_rows(gs, ref_card, digests, range(start, stop))  # type: ignore[arg-type]
    return xt, xr


def predict_rows(gs: GoldenSet, digests: Mapping[str, str], rt, ref_rt, start: int, stop: int,
                 x: tuple[np.ndarray, np.ndarray | None] | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Logits of rows ``start:stop``: ``({head: float32 B×K}, reference's or None)``. ``x``: the
    rows already prepared by :func:`prepare_rows` (decoded here otherwise)."""
    if x is None:
        x = prepare_rows(gs, digests, rt.card, ref_rt.card if ref_rt is not None else None, start, stop)
    xt, xr = x
    lg = rt.predict(xt)
    rl = ref_rt.predict(xr if xr is not None else xt) if ref_rt is not None else None
    return lg, rl


@dataclass
class WorkerSpec:
    """What one evaluation worker process needs (picklable): the golden set, the digests its
    images must match, the target/reference paths and the runtime threads."""

    golden: GoldenSet
    digests: dict[str, str]
    target: str
    reference: str | None
    load_kwargs: dict
    threads: int


_WORKER: dict = {}


def _worker_init(spec: WorkerSpec) -> None:
    _WORKER["spec"] = spec
    _WORKER["rt"] = open_target(spec.target, spec.threads, spec.load_kwargs)[0]
    _WORKER["ref"] = open_target(spec.reference, spec.threads, spec.load_kwargs)[0] if spec.reference else None


def _worker_batch(start: int, stop: int):
    spec: WorkerSpec = _WORKER["spec"]
    lg, rl = predict_rows(spec.golden, spec.digests, _WORKER["rt"], _WORKER["ref"], start, stop)
    return start, stop, lg, rl


ENGINES = ("local", "ray")


def _check_logits(lg, card: ModelCard, n: int, who: str) -> dict[str, np.ndarray]:
    """The ray engine's output must be ``{head: float32 N×K}`` for every card head."""
    from optim.errors import ToolError

    out = {}
    for h in card.heads:
        a = None if not isinstance(lg, Mapping) else lg.get(h.name)
        if a is None or np.shape(a) != (n, len(h.labels)):
            raise ToolError(f"the ray engine returned {None if a is None else np.shape(a)} logits for head {h.name!r} of {who}; "
                            f"expected {n}×{len(h.labels)}")
        out[h.name] = np.asarray(a, dtype=np.float32)
    return out


def evaluate(
    target,
    golden: str | Path | GoldenSet,
    reference=None,
    *,
    tail_max_count: int = DEFAULT_TAIL_MAX_COUNT,
    thresholds: Mapping[str, float] | None = None,
    topk: Sequence[int] | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    cache_dir: str | Path | None | bool = None,
    memo: TensorMemo | None = None,
    tail_classes: Mapping[str, Sequence[str]] | None = None,
    load_kwargs: Mapping | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    progress: Callable[[str, int, int], None] | None = None,
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
    ray_verbose: bool = False,
    results_dir: str | Path | None = None,
    resume: bool = True,
) -> EvalReport:
    """Evaluate ``target`` on a golden set, and compare it with ``reference`` if given.

    Predictions stream batch by batch (:mod:`optim.golden_sets.stream`): images are decoded and
    preprocessed per batch of ``batch_size`` rows and dropped after prediction; only the logits
    (float32 N×K per head) are kept, so memory does not grow with the images' size × N. A whole
    preprocessed N×C×H×W array is built only when it fits the cache bound (the disk cache,
    ``workers == 1``) or the memo's bound (the gate's mode), and is then reused across runs.

    Args:
        target: checkpoint file or artifact directory (opened with
            :func:`optim.open_runtime`), or an already open :class:`~optim.runtimes.Runtime`.
        golden: golden set directory (or a loaded :class:`GoldenSet`).
        reference: the FP32 checkpoint (or artifact / Runtime) to compare with; None = no deltas.
        tail_max_count: a class (or tag) is tail when it had fewer than this many training
            images (positives, for a tag), from the golden set's ``train_counts.json``; tail
            tags give the multi-label ``tail_macro_f1``.
        topk: extra ks for the multiclass top-k accuracies (``top2`` and ``top5`` are always
            reported; ``optim verify`` passes the ks its policy budgets). Each k ≥ 1 is
            clipped to the head's number of classes.
        thresholds: multi-label probability thresholds, ``{"TAG": 0.3}`` or ``{"HEAD:TAG": 0.3}``
            (default 0.5 per tag).
        batch_size: images per ``Runtime.predict`` call (the batch cuts are the same for any
            number of workers, so predictions are too).
        threads: CPU threads for the runtime(s); with ``workers`` N > 1 each worker's runtime
            gets ``max(1, threads // N)`` (``threads`` None: the CPU count).
        cache_dir: where preprocessed tensors are cached (default :func:`default_cache_dir`;
            ``False`` disables caching). Every read is content-checked (module docstring). Used
            only when the whole N×C×H×W float32 array is at most :func:`cache_max_bytes`.
        memo: in-memory tensors shared across evaluations (e.g. :data:`PROCESS_TENSORS`); when
            given, neither the disk cache nor results on disk are used at all — the release
            gate's mode (a set bigger than the memo's bound is streamed, decoded per batch).
        tail_classes: explicit tail classes per head; overrides training counts.
        load_kwargs: ``load_checkpoint`` options (arch, card, trust_pickle, input_shape) for
            checkpoint files.
        resamples, seed: paired bootstrap settings (default 2000 resamples, seed 0).
        progress: optional callback ``(stage, done, total)``; stage ``"predict"`` counts images
            (resumed ones included), ``"preprocess"`` images put into a whole-array cache.
        workers: processes decoding and predicting batches (1 = this process, with a decoding
            thread one batch ahead). N > 1 needs target/reference given as paths.
        engine: ``"local"`` (this machine's processes) or ``"ray"`` (Ray Data,
            :func:`optim.golden_sets.ray_engine.predict_ray`); the metrics are computed the same way.
        ray_address: with ``engine="ray"``, the Ray cluster to join (``host:port``; default
            ``$RAY_ADDRESS``, else a local Ray started for this call and shut down after it).
        ray_verbose: with ``engine="ray"``, let Ray's own logs and progress bars through.
        results_dir: folder of per-sample results (Parquet parts under a sub-folder named by the
            run's binding digest, see :class:`~optim.golden_sets.stream.ResultsStore`); None =
            not kept. Only for targets (and references) given as paths, never with ``memo``.
        resume: read back the rows already in ``results_dir`` for this exact binding and compute
            only the rest (False: delete them and start over).

    Returns an :class:`EvalReport` (``.to_dict()`` is the EvalReport JSON, schema version 1).

    Raises:
        InputError: bad golden set (row/column named), labels the card does not know, missing
            or undecodable images, target/reference with different heads, bad thresholds, a
            top-k that is not an integer ≥ 1, workers < 1, an unknown engine, workers > 1 with
            an open Runtime.
        ToolError: a runtime (or a worker process) failed.
    """
    from optim.golden_sets.stream import (ResultsStore, batch_ranges, binding_digest, run_local, run_workers, target_digest,
                                         worker_threads)
    from optim.runtimes import Runtime

    t0 = time.perf_counter()
    try:
        ks = topk_set(topk)
    except ValueError as e:
        raise InputError(f"evaluate: {e}") from None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"evaluate: workers must be an integer ≥ 1, got {workers!r}")
    if engine not in ENGINES:
        raise InputError(f"evaluate: engine must be one of {list(ENGINES)}, got {engine!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be ≥ 1, got {batch_size}")
    opened = [t for t in (target, reference) if isinstance(t, Runtime)]
    if opened and (workers > 1 or engine != "local"):
        raise InputError(f"evaluate: workers={workers}, engine={engine!r} open the model in other processes, so the target and "
                         "reference must be given as checkpoint files or artifact directories, not as open Runtime objects")
    gs = golden if isinstance(golden, GoldenSet) else GoldenSet.load(golden)
    verify = gs.verify(decode=False)  # images are decoded below, from bytes matching these digests
    warnings: list[str] = [] if verify.ok else [verify.describe()]
    rt, target_name = open_target(target, threads, load_kwargs)
    card = rt.card
    ref_rt = ref_name = None
    if reference is not None:
        ref_rt, ref_name = open_target(reference, threads, load_kwargs)
        check_same_heads(card, ref_rt.card)
    matched, w = match_labels(gs, card)
    warnings += w
    ref_card = ref_rt.card if ref_rt is not None else None
    if not same_input(card, ref_card):
        warnings.append("target and reference model cards declare different preprocessing/input; each is evaluated with its own")
    n = len(gs)
    heads_k = {h.name: len(h.labels) for h in card.heads}
    logits = {h: np.zeros((n, k), np.float32) for h, k in heads_k.items()}
    ref_logits = {h: np.zeros((n, k), np.float32) for h, k in heads_k.items()} if ref_rt is not None else None
    done = np.zeros(n, dtype=bool)

    store = None
    resumed = 0
    if results_dir is not None and results_dir is not False and memo is None:
        if opened:
            warnings.append("per-sample results are not kept on disk for resuming: the target or reference is an open Runtime, not a file")
        else:
            binding = {"results_version": 1, "target": target_digest(target), "target_card": card.model_dump(mode="json"),
                       "reference": target_digest(reference) if reference is not None else None,
                       "reference_card": ref_card.model_dump(mode="json") if ref_card is not None else None,
                       "golden_sha256": verify.actual_sha256, "n": n,
                       "ids_sha256": hashlib.sha256("\0".join(gs.ids).encode()).hexdigest(), "batch_size": batch_size}
            store = ResultsStore(Path(results_dir) / binding_digest(binding)[:32], binding, heads_k, ref_rt is not None)
            store.remove_stale_tmp()
            if resume:
                r = store.read(gs.ids)
                warnings += r.warnings
                done = r.done
                for h in heads_k:
                    logits[h][done] = r.logits[h][done]
                    if ref_logits is not None and r.ref_logits is not None:
                        ref_logits[h][done] = r.ref_logits[h][done]
                resumed = int(done.sum())
            else:
                for p in store.folder.glob("part-*.parquet") if store.folder.is_dir() else ():
                    _drop(p)

    batches = [(a, b) for a, b in batch_ranges(n, batch_size) if not done[a:b].all()]
    counter = [resumed]
    if progress:
        progress("predict", resumed, n)

    def on_result(a: int, b: int, lg: dict, rl: dict | None) -> None:
        sel = ~done[a:b]
        rows = np.arange(a, b)[sel]
        for h in heads_k:
            logits[h][rows] = lg[h][sel]
            if ref_logits is not None:
                ref_logits[h][rows] = rl[h][sel]  # type: ignore[index]
        if store is not None and len(rows):
            store.append(rows, [gs.ids[i] for i in rows], {h: lg[h][sel] for h in heads_k},
                         {h: rl[h][sel] for h in heads_k} if rl is not None else None)
        done[a:b] = True
        counter[0] += len(rows)
        if progress and engine == "local":  # the ray engine reports its own batches as they come back
            progress("predict", counter[0], n)

    t_prep = time.perf_counter()
    cache_path = ref_cache = None
    hit = False
    x_full = xr_full = None
    streamed = True
    chw = tuple(card.input.shape[1:])
    est = n * int(np.prod(chw)) * 4
    if not same_input(card, ref_card):
        est += n * int(np.prod(ref_card.input.shape[1:])) * 4  # type: ignore[union-attr]
    if batches and engine == "local" and workers == 1:
        fits = est <= memo.max_bytes if memo is not None else (cache_dir is not False and est <= cache_max_bytes())
        if fits:
            streamed = False
            step = _prog_step(progress, "preprocess", n)
            x_full, cache_path, hit, w = preprocess_golden(gs, card, verify, cache_dir, step, memo)
            warnings += w
            if not same_input(card, ref_card):
                xr_full, ref_cache, _, w = preprocess_golden(gs, ref_card, verify, cache_dir, None, memo)  # type: ignore[arg-type]
                warnings += w
    t_pred = time.perf_counter()
    try:
        if not batches:
            pass
        elif engine == "ray":
            from optim.golden_sets.ray_engine import predict_ray, ray_session

            wt = worker_threads(threads, workers)
            ray_done = [0]

            def on_ray_batch(k: int) -> None:  # progress while Ray runs (target pass, then the reference's)
                ray_done[0] += k
                if progress:
                    progress("predict" if ray_done[0] <= n else "predict reference", min(ray_done[0], n) if ray_done[0] <= n
                             else ray_done[0] - n, n)
            extra = {"load_kwargs": dict(load_kwargs or {}), "on_batch": on_ray_batch, "verbose": ray_verbose}
            with ray_session(ray_address, num_cpus=workers * (wt or 1), verbose=ray_verbose):  # one Ray for both passes
                lg_all = _check_logits(predict_ray(gs, card, target, verify.files, batch_size=batch_size, workers=workers,
                                                   threads=wt, **extra), card, n, "the target")
                rl_all = None
                if ref_rt is not None:
                    rl_all = _check_logits(predict_ray(gs, ref_card, reference, verify.files, batch_size=batch_size,
                                                       workers=workers, threads=wt, **extra), card, n, "the reference")
            for a, b in batches:
                on_result(a, b, {h: v[a:b] for h, v in lg_all.items()}, {h: v[a:b] for h, v in rl_all.items()} if rl_all else None)
        elif workers > 1:
            spec = WorkerSpec(gs, dict(verify.files), str(target), None if reference is None else str(reference),
                              dict(load_kwargs or {}), worker_threads(threads, workers))
            run_workers(batches, workers, _worker_init, (spec,), _worker_batch, on_result)
        elif x_full is not None:
            def from_array(a: int, b: int):
                xt = np.array(x_full[a:b], dtype=np.float32, copy=True)
                xr = None if xr_full is None else np.array(xr_full[a:b], dtype=np.float32, copy=True)
                return predict_rows(gs, verify.files, rt, ref_rt, a, b, (xt, xr))
            run_local(batches, from_array, on_result)
        else:
            run_local(batches, lambda a, b, x: predict_rows(gs, verify.files, rt, ref_rt, a, b, x), on_result,
                      prefetch=lambda a, b: prepare_rows(gs, verify.files, card, ref_card, a, b))
    finally:
        if store is not None:
            store.flush()  # what is done is kept: an interrupted run resumes from here
    t_pred_end = time.perf_counter()
    t_metrics = t_pred_end

    thresholds = dict(thresholds or {})
    heads: dict[str, dict] = {}
    used_thresholds: set[str] = set()
    counts_all = gs.train_counts or {}
    explicit_all = {**(gs.tail_classes or {}), **_resolve_tail_heads(tail_classes, card)}
    for head in card.heads:
        ml = matched[head.name]
        if ml.y is None:
            heads[head.name] = _not_evaluated(head.kind, head.labels, ks)
            continue
        split = split_head_tail(head.name, head.labels, counts_all.get(head.name), tail_max_count, explicit_all.get(head.name))
        warnings += list(split.warnings)
        ref = ref_logits[head.name] if ref_logits is not None else None
        if head.kind == "multiclass":
            heads[head.name] = multiclass_head_report(head.labels, logits[head.name], ml.y, split, ref, resamples=resamples,
                                                      seed=seed, ks=ks)
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
        settings={"tail_max_count": tail_max_count, "topk": list(ks), "thresholds": thresholds, "batch_size": batch_size, "threads": threads,
                  "workers": workers, "engine": engine,
                  "worker_threads": worker_threads(threads, workers) if workers > 1 or engine != "local" else threads,
                  "bootstrap": {"method": "paired percentile bootstrap over images", "resamples": resamples, "seed": seed,
                                "confidence": CONFIDENCE},
                  "ece_bins": 15, "target_format": rt.format, "reference_format": ref_rt.format if ref_rt else None,
                  "streamed": streamed,
                  "preprocess_cache": {"path": str(cache_path) if cache_path else None, "hit": hit,
                                       "reference_path": str(ref_cache) if ref_cache else None},
                  "results": None if store is None else {"path": str(store.folder), "digest": store.digest, "resumed_rows": resumed,
                                                         "computed_rows": n - resumed}},
        timings_s={"total": t_end - t0, "load": t_prep - t0, "preprocess": t_pred - t_prep, "predict_target": t_pred_end - t_pred,
                   "predict_reference": 0.0, "metrics": t_end - t_metrics},
        ids=list(gs.ids), card=card, logits=logits, ref_logits=ref_logits, labels={h: m.y for h, m in matched.items()},
    )


def _prog_step(progress: Callable[[str, int, int], None] | None, stage: str, total: int) -> Callable[[int], None]:
    done = [0]

    def step(_i: int = 0) -> None:
        done[0] += 1
        if progress:
            progress(stage, done[0], total)
    return step


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


def _not_evaluated(kind: str, labels, ks: Sequence[int] = (2, 5)) -> dict:
    if kind == "multiclass":
        return {"kind": kind, "n_used": 0, "n_missing_labels": None,
                "metrics": {k: None for k in ("top1", *(f"top{kk}" for kk in ks), "macro_f1", "ece", "head_top1", "tail_top1")},
                "reference_metrics": None, "tail_classes": [], "tail_source": "none", "per_class": [], "delta": None,
                "evaluated": False}
    return {"kind": kind, "n_used": 0, "n_ignored": 0, "metrics": {"macro_f1": None, "head_macro_f1": None, "tail_macro_f1": None, "macro_ap": None},
            "reference_metrics": None, "tail_classes": [], "tail_source": "none", "per_tag": [], "delta": None, "evaluated": False}
