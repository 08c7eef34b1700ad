"""Calibration sets for static INT8 PTQ: real images, read exactly as the model card says.

A calibration directory is any directory: images are found recursively (``.png``, ``.jpg``,
``.jpeg``, ``.bmp``, ``.webp``, case-insensitive), sorted by relative path, and a seeded
random subset of ``size`` is drawn (all of them when there are fewer). A golden-set
directory works as it is (its images sit in sub-directories). optim never calibrates on
random noise: without images, static INT8 is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optim.errors import InputError
from optim.model_card import Preprocessing
from optim.preprocessing import load_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_CALIB_SIZE = 300
DEFAULT_SEED = 0


def find_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive), sorted by path relative to ``root``.

    Raises :class:`InputError` if ``root`` is not a directory or holds no image.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"calibration directory {root} does not exist")
    if not root.is_dir():
        raise InputError(f"calibration path {root} is not a directory; pass a directory of images (searched recursively)")
    found = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.relative_to(root).as_posix())
    if not found:
        raise InputError(f"calibration directory {root} holds no image ({', '.join(IMAGE_SUFFIXES)}, searched recursively)")
    return found


def batch_sha256(batch: np.ndarray) -> str:
    """sha256 over a float32 N×C×H×W batch: its shape (as text) then its C-order bytes."""
    arr = np.ascontiguousarray(batch, dtype=np.float32)
    h = hashlib.sha256(("x".join(map(str, arr.shape)) + "\n").encode())
    h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class CalibrationSet:
    """A preprocessed calibration batch and where it came from.

    Attributes:
        batch: float32 N×C×H×W, preprocessed per the model card.
        paths: the N image files, in batch order.
        root: the directory searched.
        available: how many images the directory holds.
        seed: the seed of the subset draw.
    """

    batch: np.ndarray
    paths: list[Path]
    root: Path
    available: int
    seed: int

    @property
    def size(self) -> int:
        return len(self.batch)

    @property
    def sha256(self) -> str:
        return batch_sha256(self.batch)

    def to_metadata(self) -> dict[str, Any]:
        """What ``artifact.json`` records: dir, size, available, seed, sha256 of the batch."""
        return {"dir": str(self.root), "size": self.size, "available": self.available, "seed": self.seed, "sha256": self.sha256}


def select_subset(n_available: int, size: int, seed: int = DEFAULT_SEED) -> list[int]:
    """Sorted indices of a seeded random subset of ``size`` out of ``n_available`` (all if fewer)."""
    if size < 1:
        raise InputError(f"calibration size must be ≥ 1, got {size}")
    if size >= n_available:
        return list(range(n_available))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_available, size=size, replace=False))


def load_calibration_set(root: str | Path, prep: Preprocessing, size: int = DEFAULT_CALIB_SIZE, seed: int = DEFAULT_SEED,
                         input_shape: tuple[int, ...] | None = None) -> CalibrationSet:
    """Find images under ``root``, draw ``size`` of them (seeded) and preprocess them per ``prep``
    (a card inferred for a cardless model resizes to its input, see
    :func:`optim.checkpoint.infer_card`).

    ``input_shape``: the model card's N×C×H×W; when given, the preprocessed images must be
    C×H×W of it.

    Raises :class:`InputError` for a missing/empty directory, a bad size, an unreadable image
    (the message names the file) or images that preprocess to another size than ``input_shape``
    (the message names the first image and says how to fix the card).
    """
    paths = find_images(root)
    chosen = [paths[i] for i in select_subset(len(paths), size, seed)]
    batch = load_images(chosen, prep)
    if input_shape is not None and tuple(batch.shape[1:]) != tuple(input_shape[1:]):
        got, want = "×".join(map(str, batch.shape[1:])), "×".join(map(str, input_shape[1:]))
        raise InputError(f"calibration images in {root} (e.g. {chosen[0]}) preprocess to {got}, but the model takes {want}: "
                         f"set [preprocessing] resize = [{input_shape[2]}, {input_shape[3]}] (or resize + center_crop) in the "
                         "model card; for a model without a card pass --input-shape with the size it was trained at")
    return CalibrationSet(batch=batch, paths=chosen, root=Path(root), available=len(paths), seed=seed)


# PT2E calibration lives with the formats that use it (issue 12: no upward imports from runtimes)
from optim.runtimes.pt2e import PT2E_CALIB_BATCH, pt2e_prepare_and_calibrate  # noqa: E402,F401
