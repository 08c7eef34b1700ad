"""``--engine ray``: the golden-set prediction pass on Ray Data, for a cluster (or one big machine).

The same work as the single-process path (``decode.decode_rows`` then ``evaluate.predict_all``),
spread over a pool of Ray actors:

``ray.data.from_items`` — one item per prediction batch: the row indices ``[k·B, (k+1)·B)`` of the
golden set (B = ``batch_size``), their image paths and the sha256 each image must have →
``Dataset.map_batches`` with the callable class :class:`BatchPredictor` on a fixed-size actor
pool (``compute=ray.data.ActorPoolStrategy(size=workers)``, ``num_cpus=threads`` per actor).
Each actor opens the artifact or checkpoint once (:func:`optim.runtimes.open_runtime`, ``threads``
CPU threads); each call reads the images, checks every image's bytes against its sha256, decodes
and preprocesses them (:func:`decode_batch`: ``decode_rows`` after a path check) and
predicts the batch with one ``Runtime.predict`` call, as ``predict_all`` does. The driver
puts the logits back by row index (Ray Data does not keep order) and checks that every row came
back exactly once.

Bit-identical to the single-process run: the batches hold the same rows as ``predict_all``'s
(a runtime whose kernels depend on the batch size still gives the same numbers), the
preprocessing is the same function, and each actor's runtime runs with ``threads`` threads
(default 1).

Where it runs (:func:`ray_session`): ``address`` (``--ray-address``), else ``$RAY_ADDRESS``, names a
running Ray cluster to join (``HOST:6379``, ``ray://HOST:10001`` for Ray Client, ``auto`` for the
cluster ``ray start`` runs on this machine); with neither, a local Ray is started for the run
(``num_cpus = workers × threads``) and shut down afterwards. A Ray that is already initialised in
this process is used as it is and left running. Every node must have the same optim environment
installed and see the golden set and the artifact at the same paths (a shared file system).

Ray's own output stays off the console unless ``verbose``: worker logs are not forwarded to the
driver (``log_to_driver=False``), Ray Data's progress bars and console log handler are off for the
run (its ``ray-data.log`` in the Ray session's ``logs/`` folder still gets everything).

Errors: Ray not importable, a cluster that cannot be reached or an actor that died → :class:`ToolError`
(exit 3) saying what to do; an image whose bytes do not match its sha256 (or that is missing or
undecodable) → :class:`InputError` naming the row and the image; the golden set is a gate input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optim.errors import InputError, OptimError, ToolError
from optim.golden_sets.golden_set import GoldenSet
from optim.model_card import ModelCard, describe_head_differences

RAY_ADDRESS_ENV = "RAY_ADDRESS"
"""Environment variable naming the Ray cluster to join when no address is given (Ray's own)."""
CONNECT_TIMEOUT_S = 5.0
"""Seconds to wait for a TCP connection to a cluster's address before calling it unreachable
(``ray.init`` itself retries an unreachable address for minutes)."""
ROW = "row"
ERROR = "error"
ERROR_KIND = "error_kind"
RAY_LOGS_HINT = "Ray's logs are under /tmp/ray/session_latest/logs on the head node"
LOCAL_START_ATTEMPTS = 3
"""Tries to start a local Ray whose node timed out registering (Ray allows it a fixed 30 s)."""


def _logits_column(i: int) -> str:
    return f"logits_{i}"


# ---- batches and reassembly (pure) --------------------------------------------------------
def plan_batches(n: int, batch_size: int) -> list[range]:
    """Row ranges ``[k·B, min((k+1)·B, n))`` for ``k = 0 … ⌈n/B⌉−1``: the batches
    :func:`~optim.golden_sets.evaluate.predict_all` runs. Raises :class:`InputError` for B < 1."""
    if batch_size < 1:
        raise InputError(f"batch_size must be ≥ 1, got {batch_size}")
    return [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def assemble(parts: Iterable[Mapping[str, np.ndarray]], n: int, card: ModelCard) -> dict[str, np.ndarray]:
    """Put predicted rows back in golden-set order.

    ``parts``: in any order, mappings with ``"row"`` (int, m) and ``"logits_<i>"`` (float32 m×K_i,
    i = index of the head in ``card.heads``), and optionally ``"error"``/``"error_kind"`` (str, m;
    empty = no error). Returns ``{head: float32 n×K}``.

    Raises :class:`InputError` for a part carrying an input error (kind ``"input"``),
    :class:`ToolError` for any other error, a row index outside ``[0, n)``, a row that came back
    twice, or rows that never came back (fail closed: no logits are made up)."""
    out = {h.name: np.empty((n, len(h.labels)), dtype=np.float32) for h in card.heads}
    seen = np.zeros(n, dtype=bool)
    for part in parts:
        errors = part.get(ERROR)
        if errors is not None:
            bad = [k for k, e in enumerate(errors) if e]
            if bad:
                kind = part[ERROR_KIND][bad[0]] if ERROR_KIND in part else "tool"
                msg = str(errors[bad[0]])
                if kind == "input":
                    raise InputError(msg)
                raise ToolError(f"a Ray worker failed: {msg}")
        rows = np.asarray(part[ROW], dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ToolError(f"the Ray engine returned row {int(rows.min() if rows.min() < 0 else rows.max())}, outside the "
                            f"golden set's {n} rows")
        dup = rows[seen[rows]] if rows.size else rows
        if dup.size or len(np.unique(rows)) != len(rows):
            shown = dup[:5].tolist() if dup.size else rows.tolist()[:5]
            raise ToolError(f"the Ray engine returned row(s) {shown} more than once; not using its results")
        seen[rows] = True
        for i, h in enumerate(card.heads):
            col = np.asarray(part[_logits_column(i)])
            if col.shape != (len(rows), len(h.labels)):
                raise ToolError(f"the Ray engine returned head {h.name!r} logits of shape {col.shape} for {len(rows)} rows; "
                                f"expected {len(rows)}×{len(h.labels)}")
            out[h.name][rows] = col
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise ToolError(f"the Ray engine returned no logits for {missing.size} of {n} rows (first: {missing[:5].tolist()}); "
                        "not using its results")
    return out


# ---- one batch of images (runs on the workers) ----------------------------------------------
def decode_batch(gs: GoldenSet, card: ModelCard, rows: list[int], paths: list[str], sha256: list[str]) -> np.ndarray:
    """Images of manifest ``rows`` → float32 len(rows)×C×H×W, preprocessed per ``card``.

    The single-process path's own step, :func:`optim.golden_sets.decode.decode_rows`, with each
    image's sha256 taken from ``sha256[k]``, after checking that ``paths[k]`` is row ``rows[k]``'s image.

    Raises :class:`InputError` naming the row and the image for a path that is not the row's, an
    image that is missing, whose bytes do not match its sha256, undecodable, or that preprocesses
    to another size than the card's input."""
    from optim.golden_sets.decode import decode_rows

    for i, rel in zip(rows, paths):
        if gs.paths[i] != rel:
            raise InputError(f"golden set {gs.root}: {gs.row_name(i)}: the Ray engine was sent image {rel} for this row, "
                             f"whose image is {gs.paths[i]}")
    return decode_rows(gs, card, dict(zip(paths, sha256)), rows)


# ---- the actor ----------------------------------------------------------------------------
class BatchPredictor:
    """The callable class ``map_batches`` runs on each actor of the pool.

    Opens ``target`` once (:func:`optim.runtimes.open_runtime` with ``threads`` threads). Each call
    takes a batch of items ``{"batch": int, "rows": int[m], "paths": str[m], "sha256": str[m]}``
    and returns ``{"row": int64 M, "logits_<i>": float32 M×K_i, "error": str M, "error_kind": str M}``
    (M = all rows of its items). An error (an image whose bytes do not match, a runtime that
    failed or could not be opened on this node) is returned as data, not raised, so that the
    driver can raise the right :class:`~optim.errors.OptimError` with its message intact."""

    def __init__(self, target: str, gs: GoldenSet, card: ModelCard, threads: int, load_kwargs: Mapping | None = None):
        self.gs, self.card = gs, card
        self.rt = None
        self.open_error: tuple[str, str] | None = None
        try:
            from optim.runtimes import open_runtime

            path = Path(target)
            if not path.exists():
                raise InputError(f"{path} does not exist on Ray node {socket.gethostname()} (every node must see the "
                                 "artifact at the same path: use a shared file system)")
            self.rt = open_runtime(path, threads=threads, **(dict(load_kwargs or {}) if path.is_file() else {}))
            diffs = describe_head_differences(self.rt.card, card)
            if diffs:
                raise InputError(f"{path} opened on Ray node {socket.gethostname()} has other heads than the model card "
                                 f"the evaluation uses ({'; '.join(diffs)}); did it change during the run?")
        except Exception as e:  # reported per batch by __call__
            self.open_error = _describe(e)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows_all: list[np.ndarray] = []
        logits: list[list[np.ndarray]] = [[] for _ in self.card.heads]
        errors: list[str] = []
        kinds: list[str] = []
        for rows, paths, shas in zip(batch["rows"], batch["paths"], batch["sha256"]):
            rows = np.asarray(rows, dtype=np.int64)
            err = self.open_error
            if err is None:
                try:
                    x = decode_batch(self.gs, self.card, rows.tolist(), [str(p) for p in paths], [str(h) for h in shas])
                    pred = self.rt.predict(x)  # type: ignore[union-attr]
                    for i, h in enumerate(self.card.heads):
                        logits[i].append(np.asarray(pred[h.name], dtype=np.float32))
                except Exception as e:
                    err = _describe(e)
            if err is not None:
                for i, h in enumerate(self.card.heads):
                    logits[i].append(np.zeros((len(rows), len(h.labels)), dtype=np.float32))
            rows_all.append(rows)
            errors += [err[1] if err else ""] * len(rows)
            kinds += [err[0] if err else ""] * len(rows)
        out: dict[str, np.ndarray] = {ROW: np.concatenate(rows_all) if rows_all else np.empty(0, dtype=np.int64)}
        for i, h in enumerate(self.card.heads):
            out[_logits_column(i)] = (np.concatenate(logits[i]) if logits[i]
                                      else np.empty((0, len(h.labels)), dtype=np.float32))
        out[ERROR] = np.asarray(errors, dtype=object)
        out[ERROR_KIND] = np.asarray(kinds, dtype=object)
        return out


def _describe(e: BaseException) -> tuple[str, str]:
    """(kind, message) of an exception raised on a worker: kind ``"input"`` for an InputError."""
    if isinstance(e, InputError):
        return "input", str(e)
    if isinstance(e, OptimError):
        return "tool", f"on Ray node {socket.gethostname()}: {e}"
    return "tool", f"on Ray node {socket.gethostname()}: {type(e).__name__}: {e}"


# ---- connecting ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RaySession:
    """Where :func:`ray_session` runs: ``address`` (None for a local Ray started here), ``started``
    (this session initialised Ray in this process, a local Ray or a connection to a cluster, and
    shuts that down on exit; a joined cluster keeps running), ``cpus`` (the cluster's CPUs)."""

    address: str | None
    started: bool
    cpus: float


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ToolError(f"--engine ray needs Ray Data, which cannot be imported here ({e}); install it in optim's environment "
                        "(the 'ray[data]' package, the version in optim's dependencies) or use the default engine") from None
    return ray


def _probe(address: str) -> None:
    """Raise :class:`ToolError` unless a TCP connection to ``address`` (``[ray://]HOST:PORT``) opens
    within :data:`CONNECT_TIMEOUT_S`. ``auto``/``local`` and addresses without a port are left to Ray."""
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ToolError(f"the Ray cluster at {address} cannot be reached ({e.strerror or e}); start it (`ray start --head` on "
                        f"the head node), check the address and port given by --ray-address or ${RAY_ADDRESS_ENV}, "
                        "or leave both unset to run on a local Ray") from None


@contextlib.contextmanager
def _quiet_ray_data(ray, verbose: bool) -> Iterator[None]:
    """Ray Data's progress bars and console log handler off (unless ``verbose``) for the block."""
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start)
    logger = logging.getLogger("ray.data")
    console = [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in console]
    if not verbose:
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        for h in console:
            h.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        for h, lv in zip(console, levels):
            h.setLevel(lv)


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, verbose: bool = False) -> Iterator[RaySession]:
    """Ray for the ``with`` block: join the cluster at ``address`` (else ``$RAY_ADDRESS``), or start
    a local Ray with ``num_cpus`` CPUs (default: this machine's). A Ray already initialised in this
    process is used as it is. Only a Ray this call started is shut down on exit.

    Wrap several :func:`predict_ray` calls (target and reference) in one session to start Ray once.
    Raises :class:`ToolError` if Ray cannot be imported, the cluster cannot be reached or Ray fails
    to start."""
    ray = _import_ray()
    if ray.is_initialized():
        yield RaySession(address=address, started=False, cpus=float(ray.cluster_resources().get("CPU", 0)))
        return
    addr = address or os.environ.get(RAY_ADDRESS_ENV) or None
    kwargs = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR, "include_dashboard": False}
    if addr:
        _probe(addr)
        try:
            ray.init(address=addr, **kwargs)
        except Exception as e:
            raise ToolError(f"could not join the Ray cluster at {addr} ({type(e).__name__}: {str(e).strip().splitlines()[-1:] or ''}); "
                            "check --ray-address / $RAY_ADDRESS and that the cluster runs the same Ray and Python versions") from None
    else:
        for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
            try:
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
                break
            except Exception as e:
                with contextlib.suppress(Exception):
                    ray.shutdown()  # what a failed start left running
                if attempt < LOCAL_START_ATTEMPTS and "timed out during startup" in str(e):
                    continue  # Ray gives its raylet a fixed 30 s to register: a busy host can miss it
                raise ToolError(f"could not start a local Ray ({type(e).__name__}: {e}); {RAY_LOGS_HINT}; run again on a less "
                                "busy machine, or use the default engine") from None
    try:
        yield RaySession(address=addr, started=True, cpus=float(ray.cluster_resources().get("CPU", 0)))
    finally:
        ray.shutdown()


# ---- the engine ---------------------------------------------------------------------------
def predict_ray(gs: GoldenSet, card: ModelCard, target: str | Path, digests: Mapping[str, str], *, batch_size: int = 32,
                workers: int | None = None, threads: int | None = None, address: str | None = None,
                load_kwargs: Mapping | None = None, verbose: bool = False,
                on_batch: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Predict every golden image with ``target`` on Ray Data → ``{head: float32 N×K}`` (N = len(gs),
    golden-set row order, i.e. ``gs.ids``; K = the head's labels), bit-identical to
    ``predict_all(open_runtime(target), decode_rows(gs, card, digests, range(N)), batch_size)``.

    Args:
        gs: the golden set (its ``paths`` and ``root``; every node must see ``root`` at that path).
        card: the model card of ``target`` (preprocessing, input C×H×W, heads).
        target: artifact directory or checkpoint file (same path on every node).
        digests: relative image path → sha256 (hex) its bytes must have (``GoldenSet.verify().files``).
        batch_size: images per ``Runtime.predict`` call (one Ray item per batch).
        workers: actors in the pool (default: cluster CPUs ÷ ``threads``), each a separate process
            with its own runtime; capped at the number of batches.
        threads: CPU threads per actor's runtime, also its Ray ``num_cpus`` (default 1).
        address: Ray cluster to join (else ``$RAY_ADDRESS``; neither: a local Ray with
            ``workers × threads`` CPUs, see :func:`ray_session`).
        load_kwargs: :func:`optim.load_checkpoint` options for a checkpoint file.
        verbose: show Ray's logs and progress bars.
        on_batch: called on the driver with the number of images in each result block that comes
            back (a block holds one or more whole batches).

    Raises:
        InputError: an image that is missing, undecodable, wrongly sized or whose bytes do not
            match its sha256 (naming the row and the image); a target that cannot be opened;
            ``workers × threads`` over the cluster's CPUs; bad ``batch_size``/``workers``/``threads``.
        ToolError: Ray not importable, a cluster that cannot be reached, an actor that failed or
            died, rows that did not come back.
    """
    n = len(gs)
    batches = plan_batches(n, batch_size)
    for name, v in (("workers", workers), ("threads", threads)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise InputError(f"{name} must be an integer ≥ 1, got {v!r}")
    tpa = threads or 1
    missing = [gs.paths[i] for i in range(n) if gs.paths[i] not in digests]
    if missing:
        raise InputError(f"golden set {gs.root}: no sha256 for image(s) {missing[:5]}; verify the golden set first")
    if not os.path.exists(target):
        raise InputError(f"{target} does not exist (expected a checkpoint file or an artifact directory)")
    if n == 0:
        return {h.name: np.empty((0, len(h.labels)), dtype=np.float32) for h in card.heads}
    root = Path(os.path.abspath(gs.root))
    slim = dataclasses.replace(gs, root=root, heads={}, train_counts=None, tail_classes=None, recorded_files={})
    target_abs = os.path.abspath(target)
    items = [{"batch": k, "rows": list(r), "paths": [gs.paths[i] for i in r], "sha256": [digests[gs.paths[i]] for i in r]}
             for k, r in enumerate(batches)]
    local_cpus = (workers or max(1, (os.cpu_count() or 1) // tpa)) * tpa
    ray = _import_ray()
    with ray_session(address, num_cpus=local_cpus, verbose=verbose) as session, _quiet_ray_data(ray, verbose):
        if session.cpus < tpa:
            raise InputError(f"the Ray cluster has {session.cpus:g} CPUs, fewer than the {tpa} threads asked for each worker; "
                             "pass fewer --threads")
        size = workers or max(1, int(session.cpus // tpa))
        if size * tpa > session.cpus:
            raise InputError(f"{size} workers × {tpa} threads need {size * tpa} CPUs but the Ray cluster has {session.cpus:g}; "
                             "pass fewer --workers or --threads")
        size = min(size, len(batches))

        def parts() -> Iterator[Mapping[str, np.ndarray]]:
            ds = ray.data.from_items(items).map_batches(
                BatchPredictor, batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=size), num_cpus=tpa,
                fn_constructor_kwargs={"target": target_abs, "gs": slim, "card": card, "threads": tpa,
                                       "load_kwargs": {k: v for k, v in dict(load_kwargs or {}).items() if v not in (None, False)}},
            )
            for part in ds.iter_batches(batch_format="numpy", batch_size=None):
                yield part
                if on_batch:
                    on_batch(len(part[ROW]))

        try:
            return assemble(parts(), n, card)
        except OptimError:
            raise
        except Exception as e:  # an actor died, the cluster went away, …
            last = (str(e).strip().splitlines() or [""])[-1]
            raise ToolError(f"the Ray evaluation of {target} failed ({type(e).__name__}: {last[:300]}); {RAY_LOGS_HINT}; "
                            "run with -v to see Ray's output, or use the default engine") from None
