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

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError
from optim.files import sha256_file
from optim.model_card import ModelCard

MANIFEST_NAMES = ("manifest.csv", "manifest.parquet")
TAG_SEP = ":"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _manifest_path(root: Path) -> Path:
    if root.is_file():
        return root
    for name in MANIFEST_NAMES:
        if (root / name).is_file():
            return root / name
    raise InputError(f"training data {root}: no {' or '.join(MANIFEST_NAMES)} found; a train split is laid out like a golden set")


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
        from optim.golden_sets.golden_set import parse_manifest, read_manifest_rows

        manifest = _manifest_path(root)
        root = manifest.parent
        rows, columns = read_manifest_rows(manifest)
        ids, rel_paths, heads = parse_manifest(rows, columns, str(manifest))
        paths = []
        for i, rel in enumerate(rel_paths, start=1):
            full = root / rel
            if not full.is_file():
                raise InputError(f"{manifest}: row {i} (id {ids[i - 1]!r}): image {full} does not exist")
            paths.append(full)
        targets: dict[str, np.ndarray] = {}
        for head in card.heads:
            got = heads.get(head.name)
            if got is None or got.kind != head.kind:
                raise InputError(f"{manifest}: no {head.kind} column(s) for head {head.name!r} "
                                 f"({'a column named after the head' if head.kind == 'multiclass' else f'{head.name}{TAG_SEP}TAG columns'}); "
                                 f"manifest heads: {sorted(heads)}")
            if head.kind == "multiclass":
                index = {lab: k for k, lab in enumerate(head.labels)}
                y = np.full(len(ids), -1, dtype=np.int64)
                for i, v in enumerate(got.values):
                    if v is not None:
                        if v not in index:
                            raise InputError(f"{manifest}: row {i + 1} (id {ids[i]!r}) column {head.name!r}: {v!r} is not a class of the model card ({list(head.labels)[:10]}…)")
                        y[i] = index[v]
            else:
                missing = [t for t in head.labels if t not in got.labels]
                if missing:
                    raise InputError(f"{manifest}: multi-label head {head.name!r} needs columns {[f'{head.name}{TAG_SEP}{t}' for t in missing]}")
                order = [got.labels.index(t) for t in head.labels]
                y = np.asarray(got.values, dtype=np.float32)[:, order]
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
