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

What is trusted, what is checked: nothing in the directory is trusted. Every file the set is
made of (``golden.json``, the manifest, ``train_counts.json``, every image and every folder on
the way to it) must be a regular file or folder *inside* the golden directory: symbolic links
are refused (an :class:`InputError` naming the link and its target), never followed, and files
are opened with ``O_NOFOLLOW``; manifest paths must be relative, without ``..``. Each file is
read once and hashed from the bytes read; images are decoded from those same bytes (PIL,
formats :data:`IMAGE_FORMATS` only, at most :data:`MAX_IMAGE_PIXELS` pixels) at build and at
verify, and every undecodable file is named. Only the golden directory itself may be a link
(it is the path the user chose).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from optim.errors import InputError

GOLDEN_JSON = "golden.json"
MANIFEST_CSV = "manifest.csv"
MANIFEST_PARQUET = "manifest.parquet"
TRAIN_COUNTS_JSON = "train_counts.json"
ID_COLUMN = "id"
PATH_COLUMN = "path"
TAG_SEP = ":"
GOLDEN_SCHEMA_VERSION = 1
MANIFEST_NAMES = (MANIFEST_CSV, MANIFEST_PARQUET)
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF")
"""PIL decoders a golden image may use (others, e.g. EPS which runs Ghostscript, are refused)."""
MAX_IMAGE_PIXELS = 89_478_485
"""Largest image (width × height) decoded: Pillow's own decompression-bomb threshold."""
MAX_MEMBER_BYTES = 1 << 30
"""Largest file of a golden set that is read (1 GiB): a bigger "image" or manifest is an error."""
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
    files: dict[str, str] = field(default_factory=dict)
    """relative path → sha256 of the bytes read now (what ``actual_sha256`` is made of)."""

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
        return (f"golden set does NOT verify: golden.json records sha256 {str(self.recorded_sha256)[:16]}…, the files hash to "
                f"{self.actual_sha256[:16]}…; " + "; ".join(parts) + ". Rebuild it with `optim golden build` if the change is intended.")


# ---- files inside the set: no links, regular files only, each read once ----------------------
def check_relpath(rel: str, source: str) -> str:
    """Normalise a manifest path (``\\`` → ``/``) and refuse empty, absolute, ``..`` and NUL paths.

    Raises :class:`InputError` naming ``source`` and the path."""
    pp = PurePosixPath(rel.replace("\\", "/"))
    if not rel or not pp.parts or "\x00" in rel:
        raise InputError(f"{source} path {rel!r} is empty or holds a NUL character")
    if pp.is_absolute() or ".." in pp.parts:
        raise InputError(f"{source} path {rel!r} must be relative to the golden directory, without '..'")
    return str(pp)


def _link_error(root: Path, rel: str, link: Path, what: str) -> InputError:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    inner = "" if link == root / rel else f" ({link.relative_to(root)} on its path is the link)"
    return InputError(f"golden set {root}: {what} {rel} is a symbolic link to {target}{inner}; a golden set must not contain "
                      "links (they can point outside it): replace it with a copy of the file and rebuild with `optim golden build`")


def member_stat(root: Path, rel: str, what: str = "file") -> os.stat_result | None:
    """``lstat`` of ``root/rel`` after checking every component below ``root``.

    Returns None if it does not exist. Raises :class:`InputError` naming the file if it (or a
    folder on its way) is a symbolic link (naming the link's target), if ``rel`` escapes
    ``root``, or if it is not a regular file."""
    rel = check_relpath(rel, f"golden set {root}")
    cur = root
    st = None
    for part in PurePosixPath(rel).parts:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise InputError(f"golden set {root}: {what} {rel} cannot be read ({e.strerror or e})") from None
        if stat.S_ISLNK(st.st_mode):
            raise _link_error(root, rel, cur, what)
    if st is None or not stat.S_ISREG(st.st_mode):
        raise InputError(f"golden set {root}: {what} {rel} is not a regular file")
    return st


def read_member(root: Path, rel: str, what: str = "file") -> bytes | None:
    """The bytes of ``root/rel`` (None if it does not exist), read without following links.

    Raises :class:`InputError` as :func:`member_stat` does, and for a file over
    :data:`MAX_MEMBER_BYTES`."""
    st = member_stat(root, rel, what)
    if st is None:
        return None
    rel = check_relpath(rel, f"golden set {root}")
    if st.st_size > MAX_MEMBER_BYTES:
        raise InputError(f"golden set {root}: {what} {rel} is {st.st_size} bytes, over the {MAX_MEMBER_BYTES}-byte limit")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(root / rel, flags)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: swapped for a link after the check
        if (root / rel).is_symlink():
            raise _link_error(root, rel, root / rel, what) from None
        raise InputError(f"golden set {root}: {what} {rel} cannot be read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InputError(f"golden set {root}: {what} {rel} is not a regular file")
        data = f.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        raise InputError(f"golden set {root}: {what} {rel} is over the {MAX_MEMBER_BYTES}-byte limit")
    return data


def decode_image(data: bytes, name: str):
    """Decode image bytes → a loaded PIL image (any mode PIL can convert to RGB).

    Only :data:`IMAGE_FORMATS` are tried; images over :data:`MAX_IMAGE_PIXELS` pixels, with a
    zero side, truncated or otherwise undecodable raise :class:`InputError` naming ``name``."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            w, h = im.size
            if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
                raise ValueError(f"size {w}×{h} is outside 1 … {MAX_IMAGE_PIXELS} pixels")
            im.load()
            if im.mode not in ("L", "RGB"):  # these always convert
                im.convert("RGB")  # every consumer converts to RGB; a mode that cannot is undecodable
    except MemoryError:
        raise InputError(f"image {name} cannot be decoded (out of memory)") from None
    except UnidentifiedImageError:
        raise InputError(f"image {name} cannot be decoded (not a {', '.join(IMAGE_FORMATS)} image); replace or remove it") from None
    except Exception as e:  # any decoder failure on untrusted bytes means the file is bad
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise InputError(f"image {name} cannot be decoded ({reason}); replace or remove it") from None
    return im


@dataclass
class Scan:
    """What :func:`scan_files` read: per-file sha256, missing files, undecodable images (reason)."""

    files: dict[str, str]
    missing: list[str]
    undecodable: dict[str, str]

    def undecodable_error(self, root: Path) -> InputError:
        items = sorted(self.undecodable)
        shown = "; ".join(f"{r}: {self.undecodable[r]}" for r in items[:10])
        rest = f"; also {', '.join(items[10:])}" if len(items) > 10 else ""
        return InputError(f"golden set {root}: {len(items)} image(s) cannot be decoded ({shown}{rest}); "
                          "replace or remove them and rebuild with `optim golden build`")


def scan_files(root: Path, relpaths: list[str], images: set[str] | frozenset[str] = frozenset()) -> Scan:
    """Read each file once (no links, see :func:`read_member`), hash it, and decode those in
    ``images`` from the same bytes. Raises :class:`InputError` for links and unreadable files;
    missing files and undecodable images are returned, not raised."""
    files: dict[str, str] = {}
    missing: list[str] = []
    bad: dict[str, str] = {}
    for rel in sorted(set(relpaths)):
        data = read_member(root, rel, "image" if rel in images else "file")
        if data is None:
            missing.append(rel)
            continue
        files[rel] = hashlib.sha256(data).hexdigest()
        if rel in images:
            try:
                decode_image(data, rel)
            except InputError as e:
                bad[rel] = str(e).removeprefix(f"image {rel} cannot be decoded ").split("; replace")[0]
    return Scan(files, missing, bad)


def digest_of(files: dict[str, str]) -> str:
    """The content hash from per-file hashes (see the module docstring)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\t{files[rel]}\n".encode())
    return h.hexdigest()


def find_links(root: Path) -> list[tuple[str, str]]:
    """Every symbolic link below ``root`` (not followed) → [(relative path, target)]."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p.is_symlink():
                try:
                    out.append((p.relative_to(root).as_posix(), os.readlink(p)))
                except OSError:
                    out.append((p.relative_to(root).as_posix(), "?"))
    return sorted(out)


def refuse_links(root: Path) -> None:
    """Raise :class:`InputError` naming every symbolic link below ``root`` and its target."""
    links = find_links(root)
    if links:
        shown = "; ".join(f"{r} is a symbolic link to {t}" for r, t in links[:10]) + (f" and {len(links) - 10} more" if len(links) > 10 else "")
        raise InputError(f"golden set {root}: {len(links)} symbolic link(s) ({shown}); a golden set must not contain links "
                         "(they can point outside it): replace them with copies of the files")


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
        if not p:
            raise InputError(f"{source}: row {i} (id {sid!r}) has an empty path")
        ids.append(sid)
        paths.append(check_relpath(p, f"{source}: row {i} (id {sid!r})"))

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
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"manifest {path} cannot be read ({e.strerror or e})") from None
    return parse_manifest_bytes(data, str(path), parquet=path.suffix == ".parquet")


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, float)) and math.isfinite(float(v)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def parse_manifest_bytes(data: bytes, source: str, *, parquet: bool) -> tuple[list[dict[str, str]], list[str]]:
    """A manifest's bytes (CSV, UTF-8 with or without BOM; or Parquet) → (rows, column names).

    Raises :class:`InputError` naming ``source`` for anything that is not a readable table:
    bad encoding, malformed CSV, ragged rows, duplicate or non-text column names."""
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data))
            columns = list(table.column_names)
            records = table.to_pylist()
        except Exception as e:  # pyarrow raises many types for corrupt files; all mean "not a manifest"
            raise InputError(f"manifest {source} is not a readable Parquet file ({str(e)[:200]})") from None
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise InputError(f"manifest {source}: duplicate columns {dupes}")
        try:
            rows = [{k: _cell(v) for k, v in r.items()} for r in records]
        except (ValueError, OverflowError) as e:
            raise InputError(f"manifest {source}: a cell cannot be read as text ({e})") from None
        return rows, columns
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"manifest {source} is not UTF-8 text ({e})") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = list(reader.fieldnames or [])
        rows = []
        for i, r in enumerate(reader, start=1):
            if None in r:
                raise InputError(f"manifest {source}: row {i} has more cells than the header's {len(columns)} columns")
            rows.append({k: (v or "") for k, v in r.items()})
    except csv.Error as e:
        raise InputError(f"manifest {source} is not valid CSV ({e})") from None
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputError(f"manifest {source}: duplicate columns {dupes}")
    return rows, columns


def read_train_counts(path: Path) -> dict[str, dict[str, int]]:
    """Read ``train_counts.json`` → ``{head: {label: count}}``; errors name the key."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"training counts {path} cannot be read ({e.strerror or e})") from None
    return parse_train_counts_bytes(raw, str(path))


def _loads(raw: bytes, what: str) -> object:
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        raise InputError(f"{what} is not valid JSON ({str(e)[:200] or type(e).__name__})") from None


def parse_train_counts_bytes(raw: bytes, source: str) -> dict[str, dict[str, int]]:
    """``train_counts.json`` bytes → ``{head: {label: count}}``; errors name ``source``."""
    return validate_train_counts(_loads(raw, f"training counts {source}"), source)


def validate_train_counts(data: object, source: str) -> dict[str, dict[str, int]]:
    if not isinstance(data, dict):
        raise InputError(f"training counts {source}: expected an object {{head: {{label: count}}}}")
    out: dict[str, dict[str, int]] = {}
    for head, counts in data.items():
        if not isinstance(counts, dict):
            raise InputError(f"training counts {source}: {head!r} must map labels to counts")
        for label, c in counts.items():
            if (isinstance(c, bool) or not isinstance(c, (int, float)) or (isinstance(c, float) and not math.isfinite(c))
                    or c < 0 or int(c) != c):
                raise InputError(f"training counts {source}: {head}.{label} = {c!r}; counts are non-negative integers")
        out[str(head)] = {str(k): int(v) for k, v in counts.items()}
    return out


# ---- hashing ------------------------------------------------------------------------------
def content_hash(root: Path, relpaths: list[str], images: set[str] | frozenset[str] = frozenset()) -> tuple[str, dict[str, str]]:
    """sha256 over sorted ``<relpath>\\t<file sha256>\\n`` lines → (hex digest, per-file hashes).

    Files are read without following links (:func:`read_member`); images in ``images`` are
    decoded from the bytes hashed. Raises :class:`InputError` naming the first file that is
    missing, every image that cannot be decoded, and any link."""
    scan = scan_files(root, relpaths, images)
    if scan.missing:
        raise InputError(f"golden set {root}: file {scan.missing[0]} does not exist")
    if scan.undecodable:
        raise scan.undecodable_error(root)
    return digest_of(scan.files), scan.files


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
        if os.path.lexists(self.root / TRAIN_COUNTS_JSON):  # a link is listed, then refused when read
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
        raw = read_member(root, GOLDEN_JSON)
        if raw is None:
            raise InputError(f"{root} is not a golden set: {GOLDEN_JSON} is missing; create it with `optim golden build`")
        meta = _loads(raw, str(meta_path))
        if not isinstance(meta, dict):
            raise InputError(f"{meta_path}: expected a JSON object")
        manifest_name = meta.get("manifest") or (MANIFEST_PARQUET if os.path.lexists(root / MANIFEST_PARQUET) else MANIFEST_CSV)
        if manifest_name not in MANIFEST_NAMES:
            raise InputError(f"{meta_path}: manifest {manifest_name!r} must be one of {list(MANIFEST_NAMES)} (inside the golden directory)")
        recorded = meta.get("sha256")
        if recorded is not None and not (isinstance(recorded, str) and len(recorded) == 64 and all(c in "0123456789abcdef" for c in recorded)):
            raise InputError(f"{meta_path}: sha256 {str(recorded)[:80]!r} is not a sha256 hex digest; rebuild with `optim golden build`")
        files_meta = meta.get("files") or {}
        if not (isinstance(files_meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files_meta.items())):
            raise InputError(f"{meta_path}: files must map relative paths to sha256 digests; rebuild with `optim golden build`")
        manifest_raw = read_member(root, manifest_name, "manifest")
        if manifest_raw is None:
            raise InputError(f"manifest {root / manifest_name} does not exist")
        rows, columns = parse_manifest_bytes(manifest_raw, str(root / manifest_name), parquet=manifest_name == MANIFEST_PARQUET)
        ids, paths, heads = parse_manifest(rows, columns, str(root / manifest_name))
        counts_raw = read_member(root, TRAIN_COUNTS_JSON, "training counts")
        counts = None if counts_raw is None else parse_train_counts_bytes(counts_raw, str(root / TRAIN_COUNTS_JSON))
        tails = meta.get("tail_classes")
        if tails is not None and not (isinstance(tails, dict) and all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                                                       for v in tails.values())):
            raise InputError(f"{meta_path}: tail_classes must map head names to lists of labels")
        gs = cls(root=root, name=str(meta.get("name") or root.name), version=str(meta.get("version", "")),
                 created=None if meta.get("created") is None else str(meta.get("created")), recorded_sha256=recorded,
                 manifest_name=manifest_name, ids=ids, paths=paths, heads=heads, train_counts=counts, tail_classes=tails,
                 recorded_files=dict(files_meta))
        if check_images:
            missing = [i for i, p in enumerate(paths) if member_stat(root, p, "image") is None]
            if missing:
                shown = "; ".join(f"{gs.row_name(i)}: {paths[i]}" for i in missing[:5])
                raise InputError(f"golden set {root}: {len(missing)} of {len(paths)} images do not exist ({shown}{' …' if len(missing) > 5 else ''})")
        return gs

    def content_sha256(self) -> str:
        """Recompute the content hash (reads every hashed file)."""
        return content_hash(self.root, self.hashed_files)[0]

    def verify(self, *, decode: bool = True) -> VerifyResult:
        """Recompute the content hash and compare it with golden.json's; a changed, missing or
        added file is reported in the result, not raised.

        Reads every hashed file once, without following links, and (``decode``) decodes every
        image from the bytes hashed. Raises :class:`InputError` for a symbolic link anywhere in
        the set (naming it and its target), a non-regular file, and — naming every one — images
        that cannot be decoded."""
        refuse_links(self.root)
        scan = scan_files(self.root, self.hashed_files, set(self.paths) if decode else frozenset())
        files, missing = scan.files, scan.missing
        actual = digest_of(files)
        if scan.undecodable:
            err = scan.undecodable_error(self.root)
            ok_hash = self.recorded_sha256 == actual and not missing
            raise InputError(f"{err} (content hash {'matches' if ok_hash else 'does NOT match'} golden.json)")
        if missing:  # a missing file changes the hash even if its line were just dropped
            actual = hashlib.sha256((actual + "|missing:" + ",".join(missing)).encode()).hexdigest()
        rec = self.recorded_files
        missing = sorted(set(missing) | {f for f in rec if f not in files})  # e.g. a deleted train_counts.json
        changed = tuple(sorted(f for f in files if f in rec and rec[f] != files[f]))
        added = tuple(sorted(f for f in files if rec and f not in rec))
        ok = self.recorded_sha256 is not None and actual == self.recorded_sha256 and not missing
        return VerifyResult(ok, self.recorded_sha256, actual, changed, tuple(missing), added, dict(files))
