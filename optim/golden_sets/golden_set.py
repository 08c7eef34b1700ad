"""The golden set format: a directory of labelled images with a manifest and a content hash.

Layout::

    golden/
      golden.json          name, version, created, sha256, per-file hashes (written by build)
      manifest.csv         or manifest.parquet: one row per image
      train_counts.json    optional: training images per class {head: {label: count}}
      <any>/<images>       image files, referenced by relative path from the manifest

Manifest columns:

* ``id`` — unique sample id (non-empty);
* ``path`` — image path relative to the golden directory (no absolute paths, no ``..``);
* one column per **multiclass** head, named after the head (e.g. ``category``), holding a
  class name; an empty cell means "no label for this head" (the sample is left out of that
  head, and reports count it);
* one column per tag of a **multi-label** head, named ``HEAD:TAG`` (e.g. ``pattern:striped``),
  holding ``1``, ``0`` or empty (missing label, ignored and counted).

``train_counts.json`` holds the number of *training* images per class (or tag) and head,
``{"category": {"shoe": 812, "kayak": 14}}``; it defines the tail classes (fewer than
``tail_max_count`` training images, see :mod:`optim.golden_sets.tail`). ``golden.json`` may also
list tail classes explicitly: ``"tail_classes": {"category": ["kayak"]}``.

Content hash (``sha256`` in golden.json): sha256 over the UTF-8 text made of one line
``<relative path>\\t<sha256 of the file's bytes>\\n`` per file — the manifest, the training
counts file if present, and every image the manifest references — sorted by path. Changing,
adding, removing or renaming any of them changes the hash; ``golden.json`` itself is not
hashed. :meth:`GoldenSet.verify` recomputes it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from optim.errors import InputError
from optim.files import sha256_file

GOLDEN_JSON = "golden.json"
MANIFEST_CSV = "manifest.csv"
MANIFEST_PARQUET = "manifest.parquet"
TRAIN_COUNTS_JSON = "train_counts.json"
ID_COLUMN = "id"
PATH_COLUMN = "path"
TAG_SEP = ":"
GOLDEN_SCHEMA_VERSION = 1
_POSITIVE = {"1", "1.0", "true", "True"}
_NEGATIVE = {"0", "0.0", "false", "False"}


@dataclass(frozen=True)
class HeadLabels:
    """The golden labels of one head, as read from the manifest (before matching a model card).

    ``values`` — multiclass: a list of N class names (None = no label);
    multi-label: an N×T float array of 1.0 / 0.0 / NaN (missing), tags in ``labels`` order.
    ``labels`` — multiclass: the distinct class names present (sorted); multi-label: the tags
    (column order). ``columns`` — the manifest columns this head was read from.
    """

    name: str
    kind: Literal["multiclass", "multilabel"]
    labels: tuple[str, ...]
    columns: tuple[str, ...]
    values: object

    @property
    def n_missing(self) -> int:
        if self.kind == "multiclass":
            return sum(v is None for v in self.values)  # type: ignore[union-attr]
        return int(np.isnan(self.values).sum())  # type: ignore[arg-type]


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`GoldenSet.verify`: ``ok`` iff the recomputed hash equals the recorded one."""

    ok: bool
    recorded_sha256: str | None
    actual_sha256: str
    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.ok:
            return f"golden set verified (sha256 {self.actual_sha256[:16]}…)"
        parts = []
        if self.recorded_sha256 is None:
            parts.append("golden.json records no sha256")
        for name, items in (("changed", self.changed), ("missing", self.missing), ("new", self.added)):
            if items:
                shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
                parts.append(f"{len(items)} {name} file(s): {shown}")
        if not parts:
            parts.append("content hash differs")
        return (f"golden set does NOT verify: recorded sha256 {str(self.recorded_sha256)[:16]}…, actual "
                f"{self.actual_sha256[:16]}…; " + "; ".join(parts) + ". Rebuild it with `optim golden build` if the change is intended.")


# ---- manifest parsing (pure) ----------------------------------------------------------------
def parse_manifest(rows: list[dict[str, str]], columns: list[str], source: str) -> tuple[list[str], list[str], dict[str, HeadLabels]]:
    """Validate manifest rows (all cells as strings, "" = empty) → ids, paths, heads.

    Raises :class:`InputError` naming the row (1-based, data rows) and column for: a missing
    ``id``/``path`` column, an empty set, empty or duplicate ids, empty/absolute/escaping
    paths, a malformed ``HEAD:TAG`` column, a multi-label cell other than 1/0/empty, a head
    name used both as multiclass and multi-label.
    """
    for col in (ID_COLUMN, PATH_COLUMN):
        if col not in columns:
            raise InputError(f"{source}: no {col!r} column; columns are {columns}. A manifest needs 'id', 'path' and one column per head")
    if not rows:
        raise InputError(f"{source}: the golden set is empty (no rows)")
    ids: list[str] = []
    paths: list[str] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        sid = (row.get(ID_COLUMN) or "").strip()
        if not sid:
            raise InputError(f"{source}: row {i} has an empty id")
        if sid in seen:
            raise InputError(f"{source}: duplicate id {sid!r} in rows {seen[sid]} and {i}; ids must be unique")
        seen[sid] = i
        p = (row.get(PATH_COLUMN) or "").strip()
        pp = PurePosixPath(p.replace("\\", "/"))
        if not p:
            raise InputError(f"{source}: row {i} (id {sid!r}) has an empty path")
        if pp.is_absolute() or ".." in pp.parts:
            raise InputError(f"{source}: row {i} (id {sid!r}) path {p!r} must be relative to the golden directory, without '..'")
        ids.append(sid)
        paths.append(str(pp))

    multiclass_cols: list[str] = []
    tag_cols: dict[str, list[tuple[str, str]]] = {}
    for col in columns:
        if col in (ID_COLUMN, PATH_COLUMN):
            continue
        if TAG_SEP in col:
            head, _, tag = col.partition(TAG_SEP)
            if not head or not tag:
                raise InputError(f"{source}: column {col!r}: multi-label columns are named 'HEAD{TAG_SEP}TAG' with both parts non-empty")
            tag_cols.setdefault(head, []).append((tag, col))
        elif not col.strip():
            raise InputError(f"{source}: a column has an empty name; every column must be id, path, a head or HEAD{TAG_SEP}TAG")
        else:
            multiclass_cols.append(col)
    both = sorted(set(multiclass_cols) & set(tag_cols))
    if both:
        raise InputError(f"{source}: {both} used both as a multiclass column and as multi-label 'HEAD{TAG_SEP}TAG' columns")

    heads: dict[str, HeadLabels] = {}
    for col in multiclass_cols:
        vals = [((row.get(col) or "").strip() or None) for row in rows]
        heads[col] = HeadLabels(col, "multiclass", tuple(sorted({v for v in vals if v is not None})), (col,), vals)
    for head, tags in tag_cols.items():
        arr = np.full((len(rows), len(tags)), np.nan)
        for j, (tag, col) in enumerate(tags):
            for i, row in enumerate(rows):
                cell = (row.get(col) or "").strip()
                if cell in _POSITIVE:
                    arr[i, j] = 1.0
                elif cell in _NEGATIVE:
                    arr[i, j] = 0.0
                elif cell not in ("", "nan", "NaN", "None"):
                    raise InputError(f"{source}: row {i + 1} (id {ids[i]!r}) column {col!r} holds {cell!r}; multi-label cells are 1, 0 or empty (missing)")
        dup = sorted({t for t, _ in tags if [x for x, _ in tags].count(t) > 1})
        if dup:
            raise InputError(f"{source}: head {head!r} has duplicate tag columns {dup}")
        heads[head] = HeadLabels(head, "multilabel", tuple(t for t, _ in tags), tuple(c for _, c in tags), arr)
    return ids, paths, heads


def read_manifest_rows(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Read a manifest CSV or Parquet file → (rows as str→str dicts, column names).

    Raises :class:`InputError` if it is missing or cannot be parsed."""
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:
            raise InputError(f"manifest {path} is not a readable Parquet file ({e})") from None
        columns = list(table.column_names)
        rows = [{k: ("" if v is None else (str(int(v)) if isinstance(v, (bool, float)) and float(v).is_integer() else str(v)))
                 for k, v in r.items()} for r in table.to_pylist()]
        return rows, columns
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"manifest {path} is not UTF-8 text ({e})") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = list(reader.fieldnames or [])
        rows = []
        for i, r in enumerate(reader, start=1):
            if None in r:
                raise InputError(f"manifest {path}: row {i} has more cells than the header's {len(columns)} columns")
            rows.append({k: (v or "") for k, v in r.items()})
    except csv.Error as e:
        raise InputError(f"manifest {path} is not valid CSV ({e})") from None
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputError(f"manifest {path}: duplicate columns {dupes}")
    return rows, columns


def read_train_counts(path: Path) -> dict[str, dict[str, int]]:
    """Read ``train_counts.json`` → ``{head: {label: count}}``; errors name the key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"training counts {path} cannot be read as JSON ({e})") from None
    return validate_train_counts(data, str(path))


def validate_train_counts(data: object, source: str) -> dict[str, dict[str, int]]:
    if not isinstance(data, dict):
        raise InputError(f"training counts {source}: expected an object {{head: {{label: count}}}}")
    out: dict[str, dict[str, int]] = {}
    for head, counts in data.items():
        if not isinstance(counts, dict):
            raise InputError(f"training counts {source}: {head!r} must map labels to counts")
        for label, c in counts.items():
            if isinstance(c, bool) or not isinstance(c, (int, float)) or c < 0 or int(c) != c:
                raise InputError(f"training counts {source}: {head}.{label} = {c!r}; counts are non-negative integers")
        out[str(head)] = {str(k): int(v) for k, v in counts.items()}
    return out


# ---- hashing ------------------------------------------------------------------------------
def content_hash(root: Path, relpaths: list[str]) -> tuple[str, dict[str, str]]:
    """sha256 over sorted ``<relpath>\\t<file sha256>\\n`` lines → (hex digest, per-file hashes).

    Raises :class:`InputError` naming the first file that is missing."""
    files: dict[str, str] = {}
    for rel in sorted(set(relpaths)):
        p = root / rel
        if not p.is_file():
            raise InputError(f"golden set {root}: file {rel} does not exist")
        files[rel] = sha256_file(p)
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\t{files[rel]}\n".encode())
    return h.hexdigest(), files


@dataclass
class GoldenSet:
    """A golden set loaded from its directory (see the module docstring for the format)."""

    root: Path
    name: str
    version: str
    created: str | None
    recorded_sha256: str | None
    manifest_name: str
    ids: list[str]
    paths: list[str]
    heads: dict[str, HeadLabels]
    train_counts: dict[str, dict[str, int]] | None = None
    tail_classes: dict[str, list[str]] | None = None
    recorded_files: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def hashed_files(self) -> list[str]:
        files = [self.manifest_name, *self.paths]
        if (self.root / TRAIN_COUNTS_JSON).is_file():
            files.append(TRAIN_COUNTS_JSON)
        return files

    def image_path(self, i: int) -> Path:
        return self.root / self.paths[i]

    def row_name(self, i: int) -> str:
        """``"row 3 (id 'cat/001')"`` for messages."""
        return f"row {i + 1} (id {self.ids[i]!r})"

    @classmethod
    def load(cls, root: str | Path, *, check_images: bool = True) -> "GoldenSet":
        """Read ``golden.json``, the manifest and optional training counts from ``root``.

        Raises :class:`InputError` naming the file/row/column on any format problem, and — with
        ``check_images`` — for images that do not exist (all missing ones are counted, the first
        few named).
        """
        root = Path(root)
        meta_path = root / GOLDEN_JSON
        if not root.is_dir():
            raise InputError(f"golden set {root} is not a directory")
        if not meta_path.is_file():
            raise InputError(f"{root} is not a golden set: {GOLDEN_JSON} is missing; create it with `optim golden build`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(f"{meta_path} is not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise InputError(f"{meta_path}: expected a JSON object")
        manifest_name = meta.get("manifest") or (MANIFEST_PARQUET if (root / MANIFEST_PARQUET).is_file() else MANIFEST_CSV)
        rows, columns = read_manifest_rows(root / manifest_name)
        ids, paths, heads = parse_manifest(rows, columns, str(root / manifest_name))
        counts = read_train_counts(root / TRAIN_COUNTS_JSON) if (root / TRAIN_COUNTS_JSON).is_file() else None
        tails = meta.get("tail_classes")
        if tails is not None and not (isinstance(tails, dict) and all(isinstance(v, list) for v in tails.values())):
            raise InputError(f"{meta_path}: tail_classes must map head names to lists of labels")
        gs = cls(root=root, name=str(meta.get("name") or root.name), version=str(meta.get("version", "")),
                 created=meta.get("created"), recorded_sha256=meta.get("sha256"), manifest_name=manifest_name,
                 ids=ids, paths=paths, heads=heads, train_counts=counts, tail_classes=tails,
                 recorded_files=dict(meta.get("files") or {}))
        if check_images:
            missing = [i for i, p in enumerate(paths) if not (root / p).is_file()]
            if missing:
                shown = "; ".join(f"{gs.row_name(i)}: {paths[i]}" for i in missing[:5])
                raise InputError(f"golden set {root}: {len(missing)} of {len(paths)} images do not exist ({shown}{' …' if len(missing) > 5 else ''})")
        return gs

    def content_sha256(self) -> str:
        """Recompute the content hash (reads every hashed file)."""
        return content_hash(self.root, self.hashed_files)[0]

    def verify(self) -> VerifyResult:
        """Recompute the content hash and compare it with golden.json's; never raises for a
        changed or missing file (it is reported in the result)."""
        present = [f for f in self.hashed_files if (self.root / f).is_file()]
        missing = sorted(set(self.hashed_files) - set(present))
        actual, files = content_hash(self.root, present)
        if missing:  # a missing file changes the hash even if its line were just dropped
            actual = hashlib.sha256((actual + "|missing:" + ",".join(missing)).encode()).hexdigest()
        rec = self.recorded_files
        missing = sorted(set(missing) | {f for f in rec if f not in files})  # e.g. a deleted train_counts.json
        changed = tuple(sorted(f for f in files if f in rec and rec[f] != files[f]))
        added = tuple(sorted(f for f in files if rec and f not in rec))
        ok = self.recorded_sha256 is not None and actual == self.recorded_sha256 and not missing
        return VerifyResult(ok, self.recorded_sha256, actual, changed, tuple(missing), added)
