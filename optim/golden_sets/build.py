"""Building golden sets: from an image-folder tree, from an existing CSV, or from in-memory images.

All builders work **in place**: the golden directory is the folder that holds the images; they
write ``manifest.csv`` (except when given one), ``train_counts.json`` (when counts are given)
and ``golden.json`` (name, version, created, content sha256, per-file hashes) into it.
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
    GOLDEN_JSON, GOLDEN_SCHEMA_VERSION, ID_COLUMN, MANIFEST_CSV, MANIFEST_PARQUET, PATH_COLUMN, TRAIN_COUNTS_JSON,
    GoldenSet, content_hash, member_stat, parse_manifest, parse_manifest_bytes, read_manifest_rows, read_member, refuse_links,
    validate_train_counts,
)

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
                        train_counts: Mapping | None = None, tail_classes: Mapping[str, Sequence[str]] | None = None) -> BuildResult:
    """Build a golden set in place from an existing manifest (CSV or Parquet; see
    :mod:`optim.golden_sets.golden_set` for the columns). Image paths are relative to ``root``
    (default: the manifest's folder); the manifest is copied to ``root/manifest.csv`` (or
    ``.parquet``) unless it already is that file.

    Raises :class:`InputError` naming the row/column of any problem and missing images.
    """
    manifest = Path(manifest)
    root = Path(root) if root is not None else manifest.parent
    if not root.is_dir():
        raise InputError(f"golden directory {root} is not a directory")
    refuse_links(root)
    rows, columns = read_manifest_rows(manifest)
    parse_manifest(rows, columns, str(manifest))  # validate before writing anything
    target = root / (MANIFEST_PARQUET if manifest.suffix == ".parquet" else MANIFEST_CSV)
    if manifest.resolve() != target.resolve():
        atomic_write_bytes(target, manifest.read_bytes())
    heads = [c for c in columns if c not in (ID_COLUMN, PATH_COLUMN)]
    single = heads[0] if len(heads) == 1 and ":" not in heads[0] else None
    gs = write_golden_json(root, manifest_name=target.name, name=name, version=version,
                           train_counts=normalize_train_counts(train_counts, single),
                           tail_classes={h: list(v) for h, v in tail_classes.items()} if tail_classes else None)
    return BuildResult(gs, [])


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
