"""Building golden sets: from an image-folder tree, from the users' own label files (CSV or
Parquet), or from in-memory images.

All builders work **in place**: the golden directory is the folder that holds the images; they
write ``manifest.csv`` (except when given one), ``train_counts.json`` (when counts are given)
and ``golden.json`` (name, version, created, content sha256, per-file hashes) into it.

Label files (:func:`plan_from_labels`): which column is which head is decided, in this order,
by explicit mappings (:class:`ColumnMapping`: ``--multilabel-head pattern=polka_dot,floral``,
``--multiclass-head category=COLUMN``, ``--ignore-column``), by a model card's heads (a
multiclass head reads the column named after it, a multi-label head its ``HEAD:TAG`` columns
or the columns named after its tags), by ``HEAD:TAG`` column names, and finally — without a
card — a column whose values are class names is a multiclass head named after the column.
A column that holds only 1/0/empty (a tag column) and is not mapped is an error, never a head
of its own; with a card, every column must belong to one of its heads. The plan is checked
and summarised (:meth:`BuildPlan.summary`) before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from optim.errors import InputError
from optim.files import atomic_write_bytes, atomic_write_json
from optim.golden_sets.golden_set import (
    GOLDEN_JSON, GOLDEN_SCHEMA_VERSION, ID_COLUMN, MANIFEST_CSV, MANIFEST_PARQUET, PATH_COLUMN, TAG_SEP, TRAIN_COUNTS_JSON,
    GoldenSet, HeadLabels, content_hash, member_stat, parse_manifest, parse_manifest_bytes, read_manifest_rows, read_member,
    refuse_links, validate_train_counts,
)
from optim.model_card import ModelCard

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
_RESERVED = {GOLDEN_JSON, MANIFEST_CSV, MANIFEST_PARQUET, TRAIN_COUNTS_JSON}


@dataclass
class BuildResult:
    """The built (and re-loaded) golden set plus what the builder skipped or noticed."""

    golden: GoldenSet
    warnings: list[str] = field(default_factory=list)


def normalize_train_counts(counts: Mapping | None, head: str | None) -> dict[str, dict[str, int]] | None:
    """``{label: n}`` (for ``head``) or ``{head: {label: n}}`` → ``{head: {label: n}}``."""
    if counts is None:
        return None
    counts = dict(counts)
    if counts and all(not isinstance(v, Mapping) for v in counts.values()):
        if head is None:
            raise InputError("training counts given as {label: count} need a head name; use {head: {label: count}}")
        counts = {head: counts}
    return validate_train_counts({h: dict(c) for h, c in counts.items()}, "<train_counts>")


def read_train_counts_file(path: str | Path, head: str | None = None) -> dict[str, dict[str, int]]:
    """Training counts from a JSON file (``{label: n}`` or ``{head: {label: n}}``) or a CSV file
    with columns ``label,count`` (and optionally ``head``). Errors name the file and row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"training counts file {path} does not exist")
    if path.suffix.lower() == ".csv":
        out: dict[str, dict[str, int]] = {}
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"label", "count"} <= set(reader.fieldnames):
                raise InputError(f"training counts {path}: needs columns 'label' and 'count' (optional 'head'), got {reader.fieldnames}")
            for i, row in enumerate(reader, start=1):
                h = (row.get("head") or head or "").strip()
                if not h:
                    raise InputError(f"training counts {path}: row {i} has no head; add a 'head' column or pass the head name")
                try:
                    n = int(row["count"])
                except (TypeError, ValueError):
                    raise InputError(f"training counts {path}: row {i} count {row['count']!r} is not an integer") from None
                out.setdefault(h, {})[row["label"].strip()] = n
        return validate_train_counts(out, str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(f"training counts {path} is not valid JSON ({e})") from None
    return normalize_train_counts(data, head) or {}


def write_golden_json(root: Path, *, manifest_name: str, name: str | None, version: str,
                      train_counts: dict[str, dict[str, int]] | None = None,
                      tail_classes: dict[str, list[str]] | None = None) -> GoldenSet:
    """Write ``train_counts.json`` (if given) and ``golden.json`` with the content hash of the
    manifest, counts and every referenced image; return the loaded, verified set.

    Every image is decoded from the bytes hashed. Raises :class:`InputError` for a symbolic link
    anywhere in ``root`` (named with its target), missing images (rows named) and undecodable
    images (every one named); nothing is written then."""
    root = Path(root)
    refuse_links(root)
    raw = read_member(root, manifest_name, "manifest")
    if raw is None:
        raise InputError(f"manifest {root / manifest_name} does not exist")
    rows, columns = parse_manifest_bytes(raw, str(root / manifest_name), parquet=manifest_name == MANIFEST_PARQUET)
    ids, paths, heads = parse_manifest(rows, columns, str(root / manifest_name))
    missing = [(i, p) for i, p in enumerate(paths) if member_stat(root, p, "image") is None]
    if missing:
        shown = "; ".join(f"row {i + 1} (id {ids[i]!r}): {p}" for i, p in missing[:5])
        raise InputError(f"{root / manifest_name}: {len(missing)} image(s) do not exist ({shown})")
    if train_counts is not None:
        atomic_write_json(root / TRAIN_COUNTS_JSON, train_counts)
    hashed = [manifest_name, *paths] + ([TRAIN_COUNTS_JSON] if os.path.lexists(root / TRAIN_COUNTS_JSON) else [])
    digest, files = content_hash(root, hashed, set(paths))
    meta = {
        "schema_version": GOLDEN_SCHEMA_VERSION,
        "name": name or root.resolve().name,
        "version": str(version),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "manifest": manifest_name,
        "n_samples": len(ids),
        "heads": {h.name: {"kind": h.kind, "labels": list(h.labels)} for h in heads.values()},
        "hash_method": "sha256 over sorted '<relpath>\\t<sha256(file)>\\n' lines of manifest, train_counts.json and images",
        "sha256": digest,
        "files": files,
    }
    if tail_classes:
        meta["tail_classes"] = {h: list(v) for h, v in tail_classes.items()}
    atomic_write_json(root / GOLDEN_JSON, meta)
    return GoldenSet.load(root)


def _write_manifest_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def build_from_image_folder(root: str | Path, *, head: str = "class", name: str | None = None, version: str = "1",
                            train_counts: Mapping | None = None, tail_classes: Sequence[str] | None = None) -> BuildResult:
    """Build a golden set in place from ``root/<class name>/<image files>`` (one multiclass head).

    Sample ids are ``<class>/<file stem>``; paths ``<class>/<file name>``. Files that are not
    images (by extension) and hidden files are skipped and counted in the warnings.

    Raises :class:`InputError` if ``root`` is not a directory, has no class folders or no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder {root} is not a directory")
    refuse_links(root)  # never follow a link out of the set
    warnings: list[str] = []
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise InputError(f"image folder {root} has no class sub-folders; expected {root}/<class>/<image files>")
    loose = [p.name for p in root.iterdir() if p.is_file() and p.name not in _RESERVED and not p.name.startswith(".")]
    if loose:
        warnings.append(f"{len(loose)} file(s) directly in {root} are not in a class folder and were skipped: {loose[:5]}")
    rows: list[dict[str, str]] = []
    skipped: list[str] = []
    for d in class_dirs:
        found = [Path(dp) / n for dp, _, names in os.walk(d, followlinks=False) for n in names]
        for p in sorted(found):
            if not p.is_file():
                continue
            rel = p.relative_to(root).as_posix()
            if p.suffix.lower() not in IMAGE_EXTENSIONS or any(part.startswith(".") for part in p.relative_to(root).parts):
                skipped.append(rel)
                continue
            rows.append({ID_COLUMN: str(Path(rel).with_suffix("").as_posix()), PATH_COLUMN: rel, head: d.name})
    if skipped:
        warnings.append(f"{len(skipped)} non-image or hidden file(s) skipped: {skipped[:5]}")
    if not rows:
        raise InputError(f"image folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    empty = [d.name for d in class_dirs if not any(r[head] == d.name for r in rows)]
    if empty:
        warnings.append(f"{len(empty)} class folder(s) hold no image: {empty[:10]}")
    _write_manifest_csv(root / MANIFEST_CSV, [ID_COLUMN, PATH_COLUMN, head], rows)
    gs = write_golden_json(root, manifest_name=MANIFEST_CSV, name=name, version=version,
                           train_counts=normalize_train_counts(train_counts, head),
                           tail_classes={head: list(tail_classes)} if tail_classes is not None else None)
    return BuildResult(gs, warnings)


def build_from_manifest(manifest: str | Path, *, root: str | Path | None = None, name: str | None = None, version: str = "1",
                        train_counts: Mapping | None = None, tail_classes: Mapping[str, Sequence[str]] | None = None,
                        mapping: ColumnMapping | None = None, card: ModelCard | str | Path | None = None,
                        counts_head: str | None = None) -> BuildResult:
    """Build a golden set in place from a label file or an existing manifest (CSV or Parquet;
    see :mod:`optim.golden_sets.golden_set` for the manifest columns and the module docstring for
    how other columns are mapped to heads). Image paths are relative to ``root`` (default: the
    file's folder). A file already in the manifest format is copied to ``root/manifest.csv`` (or
    ``.parquet``) unless it already is that file; any other is rewritten as ``manifest.csv``.

    ``train_counts``: ``{head: {label: n}}``, or ``{label: n}`` for ``counts_head`` (or the
    only head). ``card``: check the heads against this model card (see :func:`plan_from_labels`).

    Raises :class:`InputError` naming the row/column of any problem and missing images.
    """
    plan = plan_from_labels(manifest, root=root, mapping=mapping, card=card, train_counts=train_counts, counts_head=counts_head)
    return write_plan(plan, name=name, version=version, tail_classes=tail_classes)


_SAFE = re.compile(r"^[^/\\\x00]+$")


def build_golden_set_from_images(root: str | Path, images: Sequence, labels: Sequence[str], *, head: str = "class",
                                 ids: Sequence[str] | None = None, name: str | None = None, version: str = "1",
                                 train_counts: Mapping | None = None) -> BuildResult:
    """Write in-memory images as PNGs to ``root/<label>/<id>.png`` and build the golden set there.

    Args:
        root: a new or empty directory.
        images: PIL images, or numpy uint8 arrays H×W (grayscale) or H×W×3 (RGB).
        labels: one class name per image (a multiclass head named ``head``).
        ids: file stems (default ``000000``, ``000001``, …); must be unique.
        train_counts: ``{label: training images}`` defining tail classes (optional).

    Raises :class:`InputError` for mismatched lengths, unsafe label names or a non-empty root.
    """
    from PIL import Image

    root = Path(root)
    if len(images) != len(labels):
        raise InputError(f"{len(images)} images but {len(labels)} labels")
    if not len(images):
        raise InputError("no images: a golden set needs at least one")
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root} is not empty; give a new directory for the golden set")
    ids = [f"{i:06d}" for i in range(len(images))] if ids is None else [str(x) for x in ids]
    if len(set(ids)) != len(ids):
        raise InputError("ids must be unique")
    for lab in set(map(str, labels)):
        if not _SAFE.match(lab) or lab in (".", "..") or lab.startswith("."):
            raise InputError(f"label {lab!r} cannot be used as a folder name")
    for img, lab, sid in zip(images, labels, ids):
        d = root / str(lab)
        d.mkdir(parents=True, exist_ok=True)
        if not isinstance(img, Image.Image):
            arr = np.asarray(img)
            if arr.dtype != np.uint8:
                raise InputError(f"image {sid}: numpy images must be uint8 (got {arr.dtype})")
            img = Image.fromarray(arr)
        img.save(d / f"{sid}.png")
    return build_from_image_folder(root, head=head, name=name, version=version, train_counts=train_counts)


# ---- golden sets from the users' own label files ------------------------------------------
TAG_POSITIVE = frozenset({"1", "1.0", "true", "True", "TRUE"})
TAG_NEGATIVE = frozenset({"0", "0.0", "false", "False", "FALSE"})
TAG_MISSING = frozenset({"", "nan", "NaN", "None"})
"""Cells of a tag column: positive, negative, missing label (what a manifest's HEAD:TAG cells hold)."""
_RESERVED_HEADS = {ID_COLUMN, PATH_COLUMN}


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of a label file are which heads (see the module docstring).

    ``multilabel``: head → its tag columns (the tag is the column name), e.g.
    ``{"pattern": ("polka_dot", "floral", "checker")}``; ``multiclass``: head → the column
    holding its class names; ``ignore``: columns to leave out; ``id_column``/``path_column``:
    where the sample id and the image path are (default ``id``, else the path is the id; and
    ``path``, else the one of ``image``, ``image_path``, ``file``, ``filename``, ``filepath``).
    """

    multilabel: Mapping[str, Sequence[str]] = field(default_factory=dict)
    multiclass: Mapping[str, str] = field(default_factory=dict)
    ignore: Sequence[str] = ()
    id_column: str | None = None
    path_column: str | None = None

    @property
    def explicit(self) -> bool:
        return bool(self.multilabel or self.multiclass or self.ignore or self.id_column or self.path_column)


PATH_ALIASES = ("image", "image_path", "file", "filename", "filepath")


@dataclass
class BuildPlan:
    """A checked, not yet written golden set: the canonical manifest rows and what they hold.

    ``rows``/``columns`` are the manifest to write (``id``, ``path``, one column per multiclass
    head, ``HEAD:TAG`` per tag); ``heads`` the parsed labels; ``copy_source`` is True when the
    label file already is a manifest in the golden-set format (it is copied byte for byte)."""

    source: Path
    root: Path
    columns: list[str]
    rows: list[dict[str, str]]
    heads: dict[str, HeadLabels]
    train_counts: dict[str, dict[str, int]] | None
    copy_source: bool
    card_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    source_columns: dict[str, list[str]] = field(default_factory=dict)
    """head → the label file's columns it was read from."""

    def summary(self) -> dict:
        """What the set holds: ``n_images`` and per head its ``kind``, ``columns`` (of the label
        file), ``labels`` ({label: golden images (multiclass) or positives (tags)}), and for a
        multi-label head ``negatives``/``missing`` per tag, ``n_missing``, ``n_cells`` and
        ``missing_rate`` (missing cells / (images × tags), 0…1); for a multiclass head
        ``n_missing`` (images without a label) and ``missing_rate`` (of images)."""
        out = heads_summary(self.heads, len(self.rows), self.train_counts)
        for h, cols in self.source_columns.items():
            out["heads"][h]["columns"] = list(cols)
        return {"source": str(self.source), "root": str(self.root), **out, "warnings": list(self.warnings)}


def heads_summary(heads: Mapping[str, HeadLabels], n: int, train_counts: Mapping[str, Mapping[str, int]] | None = None) -> dict:
    """``{"n_images": n, "heads": {name: {...}}}`` as described in :meth:`BuildPlan.summary`."""
    out: dict[str, dict] = {}
    for name, h in heads.items():
        if h.kind == "multiclass":
            vals = list(h.values)  # type: ignore[arg-type]
            counts = {lab: sum(v == lab for v in vals) for lab in h.labels}
            miss = sum(v is None for v in vals)
            out[name] = {"kind": h.kind, "columns": list(h.columns), "labels": counts, "n_missing": miss,
                         "missing_rate": miss / n if n else 0.0}
        else:
            arr = np.asarray(h.values)
            miss = int(np.isnan(arr).sum())
            out[name] = {"kind": h.kind, "columns": list(h.columns),
                         "labels": {t: int(np.sum(arr[:, j] == 1.0)) for j, t in enumerate(h.labels)},
                         "negatives": {t: int(np.sum(arr[:, j] == 0.0)) for j, t in enumerate(h.labels)},
                         "missing": {t: int(np.isnan(arr[:, j]).sum()) for j, t in enumerate(h.labels)},
                         "n_missing": miss, "n_cells": int(arr.size), "missing_rate": miss / arr.size if arr.size else 0.0}
        if train_counts and name in train_counts:
            out[name]["train_counts"] = dict(train_counts[name])
    return {"n_images": n, "heads": out}


def _tag_like(values: list[str]) -> bool:
    filled = [v for v in values if v not in TAG_MISSING]
    return bool(filled) and all(v in TAG_POSITIVE or v in TAG_NEGATIVE for v in filled)


def _fix_options(col: str) -> str:
    return (f"map it with --multilabel-head HEAD={col},… (a tag column of 1/0/empty), --multiclass-head HEAD={col} "
            f"(a column of class names) or pass --card with the model's heads, or leave it out with --ignore-column {col}")


def _pick_path_column(columns: list[str], mapping: ColumnMapping, source: str) -> str:
    if mapping.path_column:
        if mapping.path_column not in columns:
            raise InputError(f"{source}: --path-column {mapping.path_column!r} is not a column; columns are {columns}")
        return mapping.path_column
    if PATH_COLUMN in columns:
        return PATH_COLUMN
    found = [c for c in PATH_ALIASES if c in columns]
    if len(found) == 1:
        return found[0]
    raise InputError(f"{source}: no image path column ({PATH_COLUMN!r}{' or one of ' + str(list(PATH_ALIASES)) if not found else ''}); "
                     f"columns are {columns}; name it with --path-column COLUMN (paths relative to the golden directory)")


def _resolve_heads(columns: list[str], rows: list[dict[str, str]], mapping: ColumnMapping, card: ModelCard | None,
                   taken: set[str], source: str, card_name: str) -> tuple[dict[str, str], dict[str, list[tuple[str, str]]], list[str]]:
    """→ (multiclass head → column, multi-label head → [(tag, column)], warnings)."""
    warnings: list[str] = []
    used: dict[str, str] = {c: "id/path" for c in taken}

    def claim(col: str, what: str) -> None:
        if col not in columns:
            raise InputError(f"{source}: {what} names column {col!r}, which the file does not have; columns are {columns}")
        if col in used:
            raise InputError(f"{source}: column {col!r} is used twice ({used[col]} and {what}); map each column once")
        used[col] = what

    for col in mapping.ignore:
        claim(col, f"--ignore-column {col}")
    mc: dict[str, str] = {}
    ml: dict[str, list[tuple[str, str]]] = {}
    for head, cols in mapping.multilabel.items():
        if not cols:
            raise InputError(f"--multilabel-head {head}=: give the tag columns, e.g. {head}=polka_dot,floral,checker")
        ml[head] = []
        for c in cols:
            claim(c, f"--multilabel-head {head}")
            ml[head].append((c.partition(TAG_SEP)[2] if c.startswith(head + TAG_SEP) else c, c))
    for head, col in mapping.multiclass.items():
        if head in ml:
            raise InputError(f"head {head!r} is given both as --multiclass-head and as --multilabel-head")
        claim(col, f"--multiclass-head {head}")
        mc[head] = col
    if card is not None:
        names = [h.name for h in card.heads]
        for head in [*mc, *ml]:
            if head not in names:
                raise InputError(f"{source}: head {head!r} is not in the model card {card_name} (its heads: {names}); "
                                 "map the columns to the card's heads")
            kind = card.head(head).kind
            given = "multiclass" if head in mc else "multilabel"
            if kind != given:
                raise InputError(f"{source}: head {head!r} is {kind} in the model card {card_name} but was mapped as {given} "
                                 f"(use --{'multiclass' if kind == 'multiclass' else 'multilabel'}-head)")
        for h in card.heads:
            if h.name in mc or h.name in ml:
                continue
            if h.kind == "multiclass":
                if h.name in columns and h.name not in used:
                    claim(h.name, f"card head {h.name}")
                    mc[h.name] = h.name
                    continue
                raise InputError(f"{source}: the model card {card_name} has a multiclass head {h.name!r} but the file has no "
                                 f"column {h.name!r}; map one with --multiclass-head {h.name}=COLUMN (columns are {columns})")
            cols = [c for c in columns if c.startswith(h.name + TAG_SEP) and c not in used]
            pairs = [(c.partition(TAG_SEP)[2], c) for c in cols] or [(t, t) for t in h.labels if t in columns and t not in used]
            if not pairs:
                raise InputError(f"{source}: the model card {card_name} has a multi-label head {h.name!r} (tags {_few(h.labels)}) but "
                                 f"the file has no column named after a tag or {h.name}{TAG_SEP}TAG; map them with "
                                 f"--multilabel-head {h.name}=COLUMN,COLUMN,…")
            for t, c in pairs:
                claim(c, f"card head {h.name}")
            ml[h.name] = pairs
    # HEAD:TAG columns keep working
    for c in columns:
        if c in used or TAG_SEP not in c:
            continue
        head, _, tag = c.partition(TAG_SEP)
        if not head or not tag:
            raise InputError(f"{source}: column {c!r}: multi-label columns are named 'HEAD{TAG_SEP}TAG' with both parts non-empty")
        if card is not None and head not in [h.name for h in card.heads]:
            raise InputError(f"{source}: column {c!r} belongs to head {head!r}, which the model card {card_name} does not have "
                             f"(heads: {[h.name for h in card.heads]}); {_fix_options(c)}")
        if head in mc:
            raise InputError(f"{source}: column {c!r} names head {head!r}, which is already a multiclass head")
        claim(c, f"{head}{TAG_SEP}TAG column")
        ml.setdefault(head, []).append((tag, c))
    left = [c for c in columns if c not in used]
    tagged = [c for c in left if _tag_like([(r.get(c) or "").strip() for r in rows])]
    empty = [c for c in left if all(not (r.get(c) or "").strip() for r in rows)]
    if card is not None and left:
        raise InputError(f"{source}: column(s) {left} belong to no head of the model card {card_name} "
                         f"(heads: {[h.name for h in card.heads]}); {_fix_options(left[0])}")
    if tagged:
        raise InputError(f"{source}: column(s) {tagged} hold only 1/0/empty (tag columns) and are not mapped to a head; "
                         f"{_fix_options(tagged[0])}")
    if empty:
        raise InputError(f"{source}: column(s) {empty} are empty in every row; {_fix_options(empty[0])}")
    for c in left:  # a column of class names is a multiclass head of that name (the manifest format)
        if c.strip() != c or not c:
            raise InputError(f"{source}: column {c!r} has an empty name or surrounding spaces; rename it or {_fix_options(c)}")
        mc[c] = c
    for head in [*mc, *ml]:
        if head in _RESERVED_HEADS or TAG_SEP in head or not head.strip():
            raise InputError(f"head name {head!r} cannot be used (reserved, empty, or holds {TAG_SEP!r}); choose another name")
    for head, pairs in ml.items():
        tags = [t for t, _ in pairs]
        dup = sorted({t for t in tags if tags.count(t) > 1})
        if dup:
            raise InputError(f"{source}: head {head!r} has duplicate tags {dup}")
    return mc, ml, warnings


def _few(items: Sequence[str], k: int = 8) -> str:
    items = list(items)
    return str(items[:k])[:-1] + (f", … {len(items) - k} more]" if len(items) > k else "]")


def _check_against_card(heads: dict[str, HeadLabels], card: ModelCard, source: str, card_name: str) -> list[str]:
    warnings: list[str] = []
    for h in card.heads:
        got = heads.get(h.name)
        if got is None or got.kind != h.kind:  # _resolve_heads makes this impossible; fail closed anyway
            raise InputError(f"{source}: the model card {card_name} head {h.name!r} ({h.kind}) is not in the built set")
        unknown = [x for x in got.labels if x not in h.labels]
        if unknown:
            what = "class(es)" if h.kind == "multiclass" else "tag column(s)"
            raise InputError(f"{source}: head {h.name!r} has {len(unknown)} {what} that the model card {card_name} does not list: "
                             f"{_few(unknown)}; fix the labels or the card (card labels: {_few(h.labels)})")
        absent = [x for x in h.labels if x not in got.labels]
        if absent:
            what = "have no golden image" if h.kind == "multiclass" else "have no column (all their labels are missing)"
            warnings.append(f"head {h.name!r}: {len(absent)} of {len(h.labels)} card labels {what}: {_few(absent)}")
    return warnings


def normalize_counts_for(raw: Mapping | None, heads: Mapping[str, HeadLabels], head: str | None, source: str) -> dict[str, dict[str, int]] | None:
    """Training counts in either form → ``{head: {label: n}}`` for a set with ``heads``.

    Flat ``{label: n}`` counts belong to ``head`` (``--head``), or to the only head. Raises
    :class:`InputError` naming ``source`` for flat counts without a head when there are several,
    a ``head`` the set does not have, or nested counts for heads the set does not have."""
    if raw is None:
        return None
    raw = dict(raw)
    names = sorted(heads)
    flat = bool(raw) and all(not isinstance(v, Mapping) for v in raw.values())
    if head is not None and head not in heads:
        raise InputError(f"training counts {source}: --head {head!r} is not a head of the golden set (heads: {names})")
    if flat:
        if head is None:
            if len(heads) != 1:
                raise InputError(f"training counts {source} are flat {{label: count}}; pass --head NAME to say which head they "
                                 f"count (heads: {names}), or write {{head: {{label: count}}}}")
            head = names[0]
        return validate_train_counts({head: raw}, source)
    counts = validate_train_counts(raw, source)
    unknown = sorted(set(counts) - set(heads))
    if unknown:
        raise InputError(f"training counts {source} name head(s) {unknown} that the golden set does not have (heads: {names}); "
                         "fix the head names (a typo would leave that head without tail classes)")
    return counts


def read_train_counts_raw(path: str | Path) -> dict:
    """Training counts as written: JSON ``{label: n}`` or ``{head: {label: n}}``, or a CSV with
    columns ``label,count`` (→ flat) or ``label,count,head`` (→ nested). Not yet validated:
    pass it to :func:`normalize_counts_for`. Raises :class:`InputError` naming the file/row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"training counts file {path} does not exist")
    if path.suffix.lower() == ".csv":
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(f"training counts {path} is not UTF-8 text ({e})") from None
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            if not reader.fieldnames or not {"label", "count"} <= set(reader.fieldnames):
                raise InputError(f"training counts {path}: needs columns 'label' and 'count' (optional 'head'), got {reader.fieldnames}")
            has_head = "head" in reader.fieldnames
            out: dict = {}
            for i, row in enumerate(reader, start=1):
                try:
                    n = int((row["count"] or "").strip())
                except (TypeError, ValueError, AttributeError):
                    raise InputError(f"training counts {path}: row {i} count {row.get('count')!r} is not an integer") from None
                label = (row["label"] or "").strip()
                if not label:
                    raise InputError(f"training counts {path}: row {i} has an empty label")
                if has_head:
                    h = (row.get("head") or "").strip()
                    if not h:
                        raise InputError(f"training counts {path}: row {i} has an empty head")
                    out.setdefault(h, {})[label] = n
                else:
                    out[label] = n
        except csv.Error as e:
            raise InputError(f"training counts {path} is not valid CSV ({e})") from None
        return out
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (ValueError, RecursionError) as e:
        raise InputError(f"training counts {path} is not valid JSON ({str(e)[:200] or type(e).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"training counts {path}: expected an object {{label: count}} or {{head: {{label: count}}}}")
    return data


def plan_from_labels(labels_file: str | Path, *, root: str | Path | None = None, mapping: ColumnMapping | None = None,
                     card: ModelCard | str | Path | None = None, train_counts: Mapping | None = None,
                     counts_head: str | None = None, counts_source: str = "<train_counts>") -> BuildPlan:
    """Read a label file (CSV or Parquet), map its columns to heads, check them (and against
    ``card``), attach training counts — and write nothing.

    Args:
        labels_file: the users' label file; image paths in it are relative to ``root``
            (default: its folder).
        mapping: explicit column → head mapping (see :class:`ColumnMapping`).
        card: a model card (or card file) whose heads decide the columns and against which the
            result is checked: every card head present with its kind; labels the card does not
            list are an error; card labels absent from the set are a warning.
        train_counts: ``{label: n}`` (for ``counts_head``, or the only head) or ``{head: {label: n}}``.

    Raises :class:`InputError` naming the file, column, row or label of every problem (see the
    module docstring for the mapping rules)."""
    labels_file = Path(labels_file)
    mapping = mapping or ColumnMapping()
    root = Path(root) if root is not None else labels_file.parent
    if not root.is_dir():
        raise InputError(f"golden directory {root} is not a directory")
    card_name = ""
    if card is not None and not isinstance(card, ModelCard):
        card_name = str(card)
        card = ModelCard.load(card)
    elif card is not None:
        card_name = repr(card.name)
    rows, columns = read_manifest_rows(labels_file)
    src = str(labels_file)
    if not rows:
        raise InputError(f"{src}: the file has no rows; a golden set needs at least one labelled image")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputError(f"{src}: duplicate columns {dupes}")
    path_col = _pick_path_column(columns, mapping, src)
    if mapping.id_column and mapping.id_column not in columns:
        raise InputError(f"{src}: --id-column {mapping.id_column!r} is not a column; columns are {columns}")
    id_col = mapping.id_column or (ID_COLUMN if ID_COLUMN in columns else None)
    mc, ml, warnings = _resolve_heads(columns, rows, mapping, card, {c for c in (path_col, id_col) if c}, src, card_name)
    identity = (path_col == PATH_COLUMN and id_col == ID_COLUMN and not mapping.ignore
                and all(h == c for h, c in mc.items())
                and all(c == f"{h}{TAG_SEP}{t}" for h, pairs in ml.items() for t, c in pairs))
    out_cols = [ID_COLUMN, PATH_COLUMN, *mc, *(f"{h}{TAG_SEP}{t}" for h, pairs in ml.items() for t, _ in pairs)]
    out_rows: list[dict[str, str]] = []
    for i, row in enumerate(rows, start=1):
        p = (row.get(path_col) or "").strip()
        o = {ID_COLUMN: (row.get(id_col) or "").strip() if id_col else p, PATH_COLUMN: p}
        for h, c in mc.items():
            o[h] = (row.get(c) or "").strip()
        for h, pairs in ml.items():
            for t, c in pairs:
                cell = (row.get(c) or "").strip()
                if cell in TAG_POSITIVE:
                    o[f"{h}{TAG_SEP}{t}"] = "1"
                elif cell in TAG_NEGATIVE:
                    o[f"{h}{TAG_SEP}{t}"] = "0"
                elif cell in TAG_MISSING:
                    o[f"{h}{TAG_SEP}{t}"] = ""
                else:
                    raise InputError(f"{src}: row {i} column {c!r} (tag {t!r} of head {h!r}) holds {cell[:40]!r}; tag cells are "
                                     "1, 0 or empty (missing label)")
        out_rows.append(o)
    _, _, heads = parse_manifest(out_rows, out_cols, src)  # ids, paths (relative, no '..'), cells
    if card is not None:
        warnings += _check_against_card(heads, card, src, card_name)
    counts = normalize_counts_for(train_counts, heads, counts_head, counts_source)
    if counts and card is not None:
        for h, c in counts.items():
            unknown = [x for x in c if x not in card.head(h).labels]
            if unknown:
                warnings.append(f"training counts {counts_source}: head {h!r} counts {len(unknown)} label(s) the model card does not list: {_few(unknown)}")
    return BuildPlan(source=labels_file, root=root, columns=out_cols, rows=out_rows, heads=heads, train_counts=counts,
                     copy_source=identity, card_labels={h.name: h.labels for h in card.heads} if card is not None else {},
                     warnings=warnings, source_columns={**{h: [c] for h, c in mc.items()},
                                                        **{h: [c for _, c in pairs] for h, pairs in ml.items()}})


def write_plan(plan: BuildPlan, *, name: str | None = None, version: str = "1",
               tail_classes: Mapping[str, Sequence[str]] | None = None) -> BuildResult:
    """Write a :class:`BuildPlan` into its root: ``manifest.csv`` (or the label file's bytes when
    it already is a manifest; a Parquet one stays ``manifest.parquet``), ``train_counts.json``
    and ``golden.json``; return the re-loaded, verified set.

    Raises :class:`InputError` for links in the root, missing or undecodable images (named), and
    tail classes for heads the set does not have; nothing is written then (images are checked
    before the manifest is replaced)."""
    root = plan.root
    refuse_links(root)
    if tail_classes:
        unknown = sorted(set(tail_classes) - set(plan.heads))
        if unknown:
            raise InputError(f"--tail-class names head(s) {unknown} that the golden set does not have (heads: {sorted(plan.heads)})")
    paths = [r[PATH_COLUMN] for r in plan.rows]
    missing = [(i, p) for i, p in enumerate(paths) if member_stat(root, p, "image") is None]
    if missing:
        shown = "; ".join(f"row {i + 1} (id {plan.rows[i][ID_COLUMN]!r}): {p}" for i, p in missing[:5])
        raise InputError(f"{plan.source}: {len(missing)} image(s) do not exist under {root} ({shown})")
    content_hash(root, paths, set(paths))  # every image decodes before anything is replaced
    if plan.copy_source:
        target = root / (MANIFEST_PARQUET if plan.source.suffix == ".parquet" else MANIFEST_CSV)
        if plan.source.resolve() != target.resolve():
            atomic_write_bytes(target, plan.source.read_bytes())
    else:
        target = root / MANIFEST_CSV
        _write_manifest_csv(target, plan.columns, plan.rows)
    gs = write_golden_json(root, manifest_name=target.name, name=name, version=version, train_counts=plan.train_counts,
                           tail_classes={h: list(v) for h, v in tail_classes.items()} if tail_classes else None)
    return BuildResult(gs, list(plan.warnings))
