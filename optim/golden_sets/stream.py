"""Streaming prediction over a golden set in bounded memory, and its resumable Parquet results.

Used by :func:`optim.golden_sets.evaluate.evaluate`. The golden set is cut into fixed batches
of ``batch_size`` consecutive manifest rows (:func:`batch_ranges`; the same cuts whatever the
number of workers). Per batch the images are decoded from bytes whose sha256 matches the
golden digest (:func:`optim.golden_sets.decode.decode_rows`), preprocessed into a float32
B×C×H×W array, run through the runtime(s) and dropped: only the logits (float32 N×K per head,
small) are kept. Peak memory is therefore one batch per worker plus the O(N×K) logits,
independent of N.

Workers (``workers`` = N > 1): N processes (``spawn``; the parent's thread pools are never
forked), each opening its own runtime(s) from the target path with
``threads = max(1, threads // N)`` (``threads`` None: the machine's CPU count), and each
decoding + predicting whole batches. A batch is computed by exactly one worker, with the same
rows as a single-process run, so predictions are bit-identical to a single process whose
runtime has the same thread count (``--threads 1`` vs ``--workers 2 --threads 2``). Across
thread counts they may differ in the last bits: torch's mobilenet_v3_small at 224×224 gives
logits differing by up to 6.7e-16 between 1 and 2 threads (resnet18 does not; measured
2026-11-25), which can only flip a top-1 on an exact near-tie. The parent only collects logits.

Results (:class:`ResultsStore`): per-sample logits are appended as they arrive to Parquet
part files in one folder per *binding* (target digest, reference digest, golden content
sha256, model cards, batch size — :func:`binding_digest`). Each part is written by a
``pyarrow.parquet.ParquetWriter`` (one row group per batch) under a temporary name and renamed
when closed (every :data:`PART_ROWS` rows, or at the end), so a killed evaluation leaves only
complete parts; resuming reads them back and computes only the missing rows. A part whose
recorded binding differs from this run's (another model, golden set or setting), that cannot
be read, or whose rows or ids do not match the golden set, is never mixed in: it is dropped
with a warning and its rows are recomputed. The release gate (in-memory tensors) never reads
results from disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError, ToolError

RESULTS_VERSION = 1
PART_ROWS = 4096
"""Rows per results part file (a kill loses at most this many rows plus the batches in flight)."""
PART_SECONDS = 30.0
"""A part is also closed after this many seconds, so a slow evaluation checkpoints often."""
META_KEY = b"optim.eval_results"


def batch_ranges(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(0, b), (b, 2b), …]`` covering ``range(n)``; the cuts depend only on ``n`` and ``batch_size``."""
    if batch_size < 1:
        raise InputError(f"batch_size must be ≥ 1, got {batch_size}")
    return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def worker_threads(threads: int | None, workers: int) -> int:
    """Threads per worker runtime: ``max(1, threads // workers)``; ``threads`` None = ``os.cpu_count()``."""
    return max(1, (threads or os.cpu_count() or 1) // max(1, workers))


# ---- binding: which run a results file belongs to ------------------------------------------------
def target_digest(target: str | Path) -> str:
    """sha256 naming a target on disk: an artifact directory's content sha256 (every file), or a
    checkpoint file's bytes together with its model card sidecar's (when present)."""
    from optim.model_card import card_path_for
    from optim.runtimes.artifact import Artifact, is_artifact

    p = Path(target)
    if is_artifact(p):
        return Artifact.load(p).content_sha256()
    from optim.files import sha256_file

    h = hashlib.sha256(b"checkpoint\0" + sha256_file(p).encode())
    card = card_path_for(p)
    if card.is_file():
        h.update(b"\0card\0" + sha256_file(card).encode())
    return h.hexdigest()


def binding_digest(binding: Mapping[str, Any]) -> str:
    """Hex sha256 of the canonical JSON of ``binding``."""
    return hashlib.sha256(json.dumps(binding, sort_keys=True, default=str).encode()).hexdigest()


# ---- results store --------------------------------------------------------------------------------
@dataclass
class Resumed:
    """Rows read back from a results folder: ``done`` (N bool), logits per head (N×K float32,
    valid where ``done``), the same for the reference (None without one), and warnings."""

    done: np.ndarray
    logits: dict[str, np.ndarray]
    ref_logits: dict[str, np.ndarray] | None
    warnings: list[str]
    parts: int


class ResultsStore:
    """Per-sample logits of one evaluation, as Parquet parts in ``folder`` (see module docstring).

    Columns: ``row`` (int64, manifest order), ``id`` (string), ``logits:HEAD`` (fixed-size list
    of K float32 per head) and, with a reference, ``reference_logits:HEAD``. Every part's schema
    metadata records the binding (``optim.eval_results`` → JSON) it was computed under."""

    def __init__(self, folder: str | Path, binding: Mapping[str, Any], heads: Mapping[str, int], reference: bool,
                 part_rows: int | None = None, part_seconds: float | None = None):
        import pyarrow as pa

        self.folder = Path(folder)
        self.binding = dict(binding)
        self.digest = binding_digest(self.binding)
        self.heads = dict(heads)
        self.reference = reference
        self.part_rows = PART_ROWS if part_rows is None else part_rows
        self.part_seconds = PART_SECONDS if part_seconds is None else part_seconds
        fields = [pa.field("row", pa.int64()), pa.field("id", pa.string())]
        for h, k in self.heads.items():
            fields.append(pa.field(f"logits:{h}", pa.list_(pa.float32(), k)))
        if reference:
            for h, k in self.heads.items():
                fields.append(pa.field(f"reference_logits:{h}", pa.list_(pa.float32(), k)))
        meta = json.dumps({"version": RESULTS_VERSION, "digest": self.digest, "binding": self.binding}, sort_keys=True, default=str)
        self.schema = pa.schema(fields, metadata={META_KEY: meta.encode()})
        self._writer = None
        self._tmp: Path | None = None
        self._rows = 0
        self._opened = 0.0
        self.written_parts: list[Path] = []

    # reading -----------------------------------------------------------------------------------
    def read(self, ids: Sequence[str]) -> Resumed:
        """Read every complete part; rows bound to another run or inconsistent with ``ids`` are
        dropped (with a warning, the part deleted) — never mixed in."""
        import pyarrow.parquet as pq

        n = len(ids)
        done = np.zeros(n, dtype=bool)
        logits = {h: np.zeros((n, k), np.float32) for h, k in self.heads.items()}
        ref = {h: np.zeros((n, k), np.float32) for h, k in self.heads.items()} if self.reference else None
        warnings: list[str] = []
        parts = 0
        if not self.folder.is_dir():
            return Resumed(done, logits, ref, warnings, 0)
        for p in sorted(self.folder.glob("part-*.parquet")):
            why = None
            try:
                if p.is_symlink() or not p.is_file():
                    raise ValueError("not a regular file")
                f = pq.ParquetFile(p)
                meta = json.loads((f.schema_arrow.metadata or {}).get(META_KEY, b"{}"))
                if meta.get("digest") != self.digest or meta.get("binding") != json.loads(json.dumps(self.binding, default=str)):
                    why = "it was computed for another target, reference, golden set or setting"
                elif f.schema_arrow.remove_metadata() != self.schema.remove_metadata():
                    why = "its columns differ from this evaluation's"
                else:
                    t = f.read()
                    rows = t.column("row").to_numpy()
                    if len(rows) and (rows.min() < 0 or rows.max() >= n):
                        why = "it holds rows outside the golden set"
                    elif len(np.unique(rows)) != len(rows) or done[rows].any():
                        why = "it repeats rows already read"
                    elif [ids[r] for r in rows] != t.column("id").to_pylist():
                        why = "its ids do not match the golden set's rows"
                    else:
                        cols = {}
                        for h, k in self.heads.items():
                            cols[("t", h)] = _fixed_list_to_numpy(t.column(f"logits:{h}"), k)
                            if self.reference:
                                cols[("r", h)] = _fixed_list_to_numpy(t.column(f"reference_logits:{h}"), k)
                        for (kind, h), arr in cols.items():
                            (logits if kind == "t" else ref)[h][rows] = arr  # type: ignore[index]
                        done[rows] = True
                        parts += 1
            except Exception as e:  # unreadable, truncated, not Parquet, bad metadata
                why = f"it cannot be read ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
            if why is not None:
                warnings.append(f"results part {p} was not used ({why}); it was deleted and its rows are recomputed")
                try:
                    p.unlink()
                except OSError:
                    pass
        return Resumed(done, logits, ref, warnings, parts)

    # writing -----------------------------------------------------------------------------------
    def append(self, start_rows: np.ndarray, ids: Sequence[str], logits: Mapping[str, np.ndarray],
               ref_logits: Mapping[str, np.ndarray] | None) -> None:
        """Append one batch (``rows`` int, its ``ids``, logits per head B×K) as a row group."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = [pa.array(np.asarray(start_rows, dtype=np.int64)), pa.array(list(ids), pa.string())]
        for h, k in self.heads.items():
            cols.append(_numpy_to_fixed_list(logits[h], k))
        if self.reference:
            for h, k in self.heads.items():
                cols.append(_numpy_to_fixed_list(ref_logits[h], k))  # type: ignore[index]
        table = pa.Table.from_arrays(cols, schema=self.schema)
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._tmp = self.folder / f".part-{uuid.uuid4().hex}.parquet.tmp"
            self._writer = pq.ParquetWriter(self._tmp, self.schema)
            self._opened = time.monotonic()
            self._rows = 0
        self._writer.write_table(table)
        self._rows += len(table)
        if self._rows >= self.part_rows or time.monotonic() - self._opened >= self.part_seconds:
            self.flush()

    def flush(self) -> None:
        """Close the open part and give it its final name (it is then read on resume)."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        final = self.folder / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        os.replace(self._tmp, final)  # type: ignore[arg-type]
        self.written_parts.append(final)
        self._tmp = None

    def abandon(self) -> None:
        """Close and delete a half-written part (after an error)."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
                try:
                    self._tmp.unlink()  # type: ignore[union-attr]
                except OSError:
                    pass

    def remove_stale_tmp(self) -> None:
        """Delete temporary parts left by a killed run (they have no footer and are never read)."""
        if self.folder.is_dir():
            for p in self.folder.glob(".part-*.parquet.tmp"):
                try:
                    p.unlink()
                except OSError:
                    pass


def _numpy_to_fixed_list(arr: np.ndarray, k: int):
    import pyarrow as pa

    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), k)


def _fixed_list_to_numpy(col, k: int) -> np.ndarray:
    arr = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, k)


# ---- prediction loops -------------------------------------------------------------------------------
BatchFn = Callable[[int, int], tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]]
"""(start, stop) → (target logits per head, reference logits per head or None) for rows start:stop."""


def run_local(batches: Sequence[tuple[int, int]], batch_fn: BatchFn, on_result: Callable[[int, int, dict, dict | None], None],
              prefetch: Callable[[int, int], Any] | None = None) -> None:
    """Single process: ``batch_fn`` per batch in order, ``on_result`` after each. ``prefetch``
    (start, stop) → prepared input, run in one helper thread one batch ahead (PIL decoding and
    numpy release the GIL), is then passed to ``batch_fn`` as a third argument."""
    if prefetch is None:
        for a, b in batches:
            lg, rl = batch_fn(a, b)
            on_result(a, b, lg, rl)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="optim-decode") as pool:
        nxt: Future | None = pool.submit(prefetch, *batches[0]) if batches else None
        for j, (a, b) in enumerate(batches):
            x = nxt.result()  # type: ignore[union-attr]
            nxt = pool.submit(prefetch, *batches[j + 1]) if j + 1 < len(batches) else None
            lg, rl = batch_fn(a, b, x)  # type: ignore[call-arg]
            on_result(a, b, lg, rl)


def run_workers(batches: Sequence[tuple[int, int]], workers: int, initializer: Callable, initargs: tuple,
                batch_fn: Callable[[int, int], tuple], on_result: Callable[[int, int, dict, dict | None], None]) -> None:
    """``workers`` processes (``spawn``), each set up once by ``initializer(*initargs)`` (e.g.
    opening its runtimes) and computing whole batches with the module-level ``batch_fn(start,
    stop) → (start, stop, logits, ref_logits)``; at most 2 batches per worker in flight (bounded memory); ``on_result`` is called in
    the parent as batches complete (any order). A worker's :class:`InputError` is re-raised; a
    worker that dies is a :class:`ToolError`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    todo = list(batches)
    pending: set[Future] = set()
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=initializer, initargs=initargs) as pool:
            try:
                while todo or pending:
                    while todo and len(pending) < 2 * workers:
                        pending.add(pool.submit(batch_fn, *todo.pop(0)))
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        on_result(*f.result())
            except BaseException:
                for f in pending:
                    f.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except BrokenProcessPool as e:
        raise ToolError(f"an evaluation worker process died ({e}); run again with --workers 1, or -v to see the runtime's log") from None
