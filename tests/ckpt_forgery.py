"""Forged checkpoints for the checkpoint tests and the fuzz table: real files written by
torch, then edited the way an attacker or a broken disk would (members replaced, bytes flipped).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path


class TinyNet:
    """Factory for a small real CNN (3×8×8 → 4 logits): cheap to export with torch.export."""

    @staticmethod
    def make():
        import torch

        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 4)).eval()


def save_pt2(path: Path) -> Path:
    """A real torch.export archive of :class:`TinyNet` (input 1×3×8×8)."""
    import torch

    model = TinyNet.make()
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 8, 8),)), path)
    return path


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> Path:
    """Copy zip ``src`` to ``dst`` with some members' bytes replaced (matched by name suffix)
    or added; CRCs are recomputed, so only the content is forged."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info.filename, data)
        for name, data in add.items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def pt2_with_evil_sample_inputs(good: Path, dst: Path, bomb) -> Path:
    """``good`` with its sample inputs replaced by a pickle whose unpickling runs ``bomb``."""
    return rewrite_zip(good, dst, {"data/sample_inputs/model.pt": torch_bytes((bomb,))})


def pt2_with_evil_weight(good: Path, dst: Path, bomb) -> Path:
    """``good`` with weight_0 marked ``use_pickle`` and replaced by a pickle that runs ``bomb``."""
    with zipfile.ZipFile(good) as z:
        cfg_name = next(n for n in z.namelist() if n.endswith("_weights_config.json"))
        cfg = json.loads(z.read(cfg_name))
    first = next(iter(cfg["config"]))
    cfg["config"][first]["use_pickle"] = True
    path_name = cfg["config"][first]["path_name"]
    return rewrite_zip(good, dst, {cfg_name: json.dumps(cfg).encode(), f"data/weights/{path_name}": torch_bytes(bomb)})


def flip_bytes(src: Path, dst: Path, count: int = 3000, seed: int = 0) -> Path:
    """Copy ``src`` with ``count`` bytes XOR-ed at random positions between 10 % and 80 % of
    the file: the zip directory at the end survives, the members' bytes do not (what a bad
    disk or a bad transfer does)."""
    import random

    data = bytearray(src.read_bytes())
    rng = random.Random(seed)
    for _ in range(count):
        i = rng.randrange(len(data) // 10, len(data) * 8 // 10)
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst
