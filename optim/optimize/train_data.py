"""Training data for recovery fine-tuning and QAT: a labelled split in the golden-set format.

A train split is a directory laid out like a golden set (see :mod:`optim.golden_sets`): a
manifest (``manifest.csv``; columns ``id``, ``path`` relative to the directory, one column per
multiclass head holding a class name, one ``HEAD:TAG`` column per multi-label tag holding
1/0/empty) plus the images. Labels are matched to the model card's heads.

Training on the golden set that gates the release would make the gate measure memorised
images: :func:`check_not_golden` refuses a train split that is the golden set (same resolved
directory, same ``golden.json`` content hash, or a byte-identical manifest).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from optim.errors import InputError
from optim.files import sha256_file
from optim.model_card import ModelCard

MANIFEST_NAMES = ("manifest.csv", "manifest.parquet")
TAG_SEP = ":"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_POS = {"1", "1.0", "true", "True"}
_NEG = {"0", "0.0", "false", "False"}


def _manifest_path(root: Path) -> Path:
    if root.is_file():
        return root
    for name in MANIFEST_NAMES:
        if (root / name).is_file():
            return root / name
    raise InputError(f"training data {root}: no {' or '.join(MANIFEST_NAMES)} found; a train split is laid out like a golden set")


def _read_rows(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:
            raise InputError(f"manifest {path} is not a readable Parquet file ({e})") from None
        rows = [{k: ("" if v is None else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)) for k, v in r.items()}
                for r in table.to_pylist()]
        return rows, list(table.column_names)
    try:
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        columns = list(reader.fieldnames or [])
        rows = [{k: (v or "") for k, v in r.items()} for r in reader]
    except (csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"manifest {path} is not a valid UTF-8 CSV file ({e})") from None
    return rows, columns


@dataclass
class TrainSet:
    """A labelled split matched to a model card.

    Attributes:
        root: the directory (images are relative to it).
        manifest: the manifest file read.
        ids / paths: per sample (paths absolute).
        targets: per head — multiclass: int64 array (N,) of class indices into the card's
            labels, −1 = no label; multilabel: float32 array N×T of 1/0, NaN = missing.
    """

    root: Path
    manifest: Path
    ids: list[str]
    paths: list[Path]
    targets: dict[str, np.ndarray]
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def load(cls, root: str | Path, card: ModelCard) -> "TrainSet":
        """Read the manifest under ``root`` and match its columns to ``card``'s heads.

        Raises:
            InputError: no manifest; no ``id``/``path`` column; empty; duplicate id; a path
                that is absolute, escapes the directory or does not exist; a class name not in
                the card (names row and column); a head of the card with no column; a
                multi-label cell other than 1/0/empty.
        """
        root = Path(root)
        if not root.exists():
            raise InputError(f"training data {root} does not exist")
        if root.is_dir() and not any((root / n).is_file() for n in MANIFEST_NAMES):
            return cls._from_folders(root, card)
        manifest = _manifest_path(root)
        root = manifest.parent
        rows, columns = _read_rows(manifest)
        for col in ("id", "path"):
            if col not in columns:
                raise InputError(f"{manifest}: no {col!r} column; columns are {columns}")
        if not rows:
            raise InputError(f"{manifest}: no rows; the training split is empty")
        ids, paths, seen = [], [], {}
        for i, r in enumerate(rows, start=1):
            sid = r["id"].strip()
            if not sid or sid in seen:
                raise InputError(f"{manifest}: row {i}: id {sid!r} is empty or repeats row {seen.get(sid)}")
            seen[sid] = i
            p = PurePosixPath(r["path"].strip().replace("\\", "/"))
            if not str(p) or p.is_absolute() or ".." in p.parts:
                raise InputError(f"{manifest}: row {i} (id {sid!r}): path {r['path']!r} must be relative to {root}, without '..'")
            full = root / p
            if not full.is_file():
                raise InputError(f"{manifest}: row {i} (id {sid!r}): image {full} does not exist")
            ids.append(sid)
            paths.append(full)
        targets: dict[str, np.ndarray] = {}
        for head in card.heads:
            if head.kind == "multiclass":
                if head.name not in columns:
                    raise InputError(f"{manifest}: no column {head.name!r} for multiclass head {head.name!r}; columns are {columns}")
                index = {lab: k for k, lab in enumerate(head.labels)}
                y = np.full(len(rows), -1, dtype=np.int64)
                for i, r in enumerate(rows):
                    v = r[head.name].strip()
                    if v:
                        if v not in index:
                            raise InputError(f"{manifest}: row {i + 1} (id {ids[i]!r}) column {head.name!r}: {v!r} is not a class of the model card ({list(head.labels)[:10]}…)")
                        y[i] = index[v]
                targets[head.name] = y
            else:
                cols = [f"{head.name}{TAG_SEP}{t}" for t in head.labels]
                missing = [c for c in cols if c not in columns]
                if missing:
                    raise InputError(f"{manifest}: multi-label head {head.name!r} needs columns {missing}")
                y = np.full((len(rows), len(cols)), np.nan, dtype=np.float32)
                for i, r in enumerate(rows):
                    for j, c in enumerate(cols):
                        cell = r[c].strip()
                        if cell in _POS:
                            y[i, j] = 1.0
                        elif cell in _NEG:
                            y[i, j] = 0.0
                        elif cell not in ("", "nan", "NaN"):
                            raise InputError(f"{manifest}: row {i + 1} (id {ids[i]!r}) column {c!r}: {cell!r}; use 1, 0 or empty")
                targets[head.name] = y
        return cls(root=root, manifest=manifest, ids=ids, paths=paths, targets=targets)

    @classmethod
    def _from_folders(cls, root: Path, card: ModelCard) -> "TrainSet":
        """An image-folder tree ``root/<class name>/*.png|jpg|…`` for a single multiclass head
        (what ``optim demo`` writes as ``train/``). ``manifest`` is the root directory."""
        heads = card.heads
        if len(heads) != 1 or heads[0].kind != "multiclass":
            raise InputError(f"training data {root}: no manifest.csv; an image-folder tree only works for one multiclass head "
                             f"(this card has {[h.name for h in heads]}): write a manifest with one column per head")
        head = heads[0]
        index = {lab: k for k, lab in enumerate(head.labels)}
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        unknown = [p.name for p in folders if p.name not in index]
        if unknown:
            raise InputError(f"training data {root}: folders {unknown[:8]} are not classes of head {head.name!r} ({list(head.labels)[:10]}…)")
        ids, paths, labels = [], [], []
        for folder in folders:
            for f in sorted(folder.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    ids.append(str(f.relative_to(root)))
                    paths.append(f)
                    labels.append(index[folder.name])
        if not ids:
            raise InputError(f"training data {root}: no manifest.csv and no images in class folders")
        return cls(root=root, manifest=root, ids=ids, paths=paths, targets={head.name: np.asarray(labels, dtype=np.int64)})

    def images(self, indices: np.ndarray | list[int], card: ModelCard) -> np.ndarray:
        """Float32 N×C×H×W batch for ``indices``, preprocessed as the card says (decoded once,
        then kept in memory)."""
        from optim.preprocessing import load_image

        out = []
        for i in indices:
            i = int(i)
            if i not in self._cache:
                self._cache[i] = load_image(self.paths[i], card.preprocessing)
            out.append(self._cache[i])
        return np.stack(out).astype(np.float32, copy=False)

    def batch_targets(self, indices) -> dict[str, np.ndarray]:
        return {h: t[np.asarray(indices)] for h, t in self.targets.items()}


def _golden_hash(root: Path) -> str | None:
    gj = root / "golden.json"
    if not gj.is_file():
        return None
    try:
        return json.loads(gj.read_text(encoding="utf-8")).get("sha256")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def check_not_golden(train_root: str | Path, golden_root: str | Path | None) -> None:
    """Refuse to train on the golden set that gates the release.

    Refused when the two resolve to the same directory, their ``golden.json`` files carry the
    same content ``sha256``, or their manifests are byte-identical (sha256). ``golden_root``
    None does nothing.

    Raises:
        InputError: the training data is the golden set.
    """
    if golden_root is None:
        return
    t, g = Path(train_root), Path(golden_root)
    t_dir = (t.parent if t.is_file() else t).resolve()
    g_dir = (g.parent if g.is_file() else g).resolve()
    why = None
    if t_dir == g_dir:
        why = "it is the same directory"
    else:
        th, gh = _golden_hash(t_dir), _golden_hash(g_dir)
        if th and gh and th == gh:
            why = f"golden.json content sha256 {gh[:12]}… is the same"
        else:
            try:
                if sha256_file(_manifest_path(t_dir)) == sha256_file(_manifest_path(g_dir)):
                    why = "the manifests are identical"
            except InputError:
                pass
    if why:
        raise InputError(
            f"refusing to train on {train_root}: it is the golden set {golden_root} used by the gate ({why}). "
            "Fine-tune on a separate train split; the gate must measure images the model never saw"
        )


def _listing_sha256(ts: TrainSet) -> str:
    """sha256 of the manifest file, or for an image-folder tree of its sorted (id, label) listing."""
    if ts.manifest.is_file():
        return sha256_file(ts.manifest)
    h = hashlib.sha256()
    for i, sid in enumerate(ts.ids):
        h.update(f"{sid}\t{[int(v[i]) for v in ts.targets.values()]}\n".encode())
    return h.hexdigest()


def describe(ts: TrainSet) -> dict[str, Any]:
    """Sample count and labelled counts per head (for run logs)."""
    out: dict[str, Any] = {"n_samples": len(ts), "manifest": str(ts.manifest), "manifest_sha256": _listing_sha256(ts)}
    for h, y in ts.targets.items():
        out[h] = int((y >= 0).sum()) if y.ndim == 1 else int((~np.isnan(y)).sum())
    return out
