"""Image files → model input tensors, exactly as the model card says.

Every runtime (torch, ONNX Runtime, LiteRT, ExecuTorch) and every consumer (calibration,
evaluation, benchmarks) uses these functions, so that all see identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optim.errors import InputError
from optim.model_card import Preprocessing


def _interp(name: str):
    from torchvision.transforms import InterpolationMode

    return {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
            "nearest": InterpolationMode.NEAREST}[name]


def _normalise(t, prep: Preprocessing):
    """uint8 C×H×W tensor (C = 3, RGB) → float32 C×H×W: scale to ``value_range``, reorder
    channels, subtract ``mean``, divide by ``std`` (torchvision ``normalize``). Element-wise only,
    so its value for a pixel depends on that pixel's channel and byte alone (this is what makes
    :func:`_lut` exact)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    x = t.to(torch.float32) * (prep.value_range / 255.0)
    if prep.channel_order == "BGR":
        x = x[[2, 1, 0]]
    return F.normalize(x, mean=list(prep.mean), std=list(prep.std))


_LUTS: dict[str, np.ndarray] = {}


def _lut(prep: Preprocessing) -> np.ndarray:
    """float32 3×256 table: ``lut[c, v]`` = output channel ``c`` of :func:`_normalise` where its
    source channel holds byte ``v``. Built by running :func:`_normalise` itself on every byte
    value, so a lookup gives the very same float32 bits."""
    import torch

    key = prep.model_dump_json()
    lut = _LUTS.get(key)
    if lut is None:
        ramp = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 256).expand(3, 1, 256).contiguous()
        lut = np.ascontiguousarray(_normalise(ramp, prep).numpy().reshape(3, 256))
        lut.setflags(write=False)
        _LUTS[key] = lut
    return lut


def _uint8_chw(image, prep: Preprocessing) -> np.ndarray:
    """PIL image → uint8 array 3×H×W (RGB) after ``resize`` and ``center_crop`` (torchvision,
    antialiased, on the uint8 tensor). An image already of the target size is not resized (as in
    torchvision); a grayscale one is not converted to RGB unless it must be resized (the gray
    channel is repeated, exactly what ``convert("RGB")`` does for mode L)."""
    from torchvision.transforms.v2 import functional as F

    size = None
    if prep.resize is not None:
        size = [prep.resize] if isinstance(prep.resize, int) else list(prep.resize)
    w, h = image.size
    sized = size is None or (len(size) == 2 and (h, w) == tuple(size)) or (len(size) == 1 and min(h, w) == size[0])
    if image.mode == "L" and sized:
        a = np.asarray(image)  # H×W uint8, no resize needed
        a = np.broadcast_to(a, (3, *a.shape))
        if prep.center_crop is None:
            return a
        import torch
        t = torch.from_numpy(np.ascontiguousarray(a))
    else:
        t = F.pil_to_tensor(image if image.mode == "RGB" else image.convert("RGB"))  # uint8 3×H×W
        if size is not None:
            t = F.resize(t, size, interpolation=_interp(prep.interpolation), antialias=True)
    if prep.center_crop is not None:
        crop = [prep.center_crop] * 2 if isinstance(prep.center_crop, int) else list(prep.center_crop)
        t = F.center_crop(t, crop)
    return t.numpy()


def preprocess_pil(image, prep: Preprocessing, out: np.ndarray | None = None) -> np.ndarray:
    """One PIL image → float32 array of shape C×H×W (C = 3), normalised per ``prep``.

    Grayscale and palette images are converted to RGB (the gray channel is repeated). The
    result is, bit for bit, ``normalize(to_float(center_crop(resize(pil_to_tensor(image.convert("RGB"))))))``
    with torchvision (scale ``value_range``/255, channel order, mean/std); the uint8 → float
    step is a per-channel lookup table computed with that same code (:func:`_lut`), which
    avoids three float passes over the image. ``out``: a float32 C×H×W array to write into
    (used when its shape matches; else a new array is returned).
    """
    t = _uint8_chw(image, prep)
    lut = _lut(prep)
    src = (2, 1, 0) if prep.channel_order == "BGR" else (0, 1, 2)
    if out is None or out.shape != t.shape or out.dtype != np.float32:
        out = np.empty(t.shape, np.float32)
    for c in range(3):
        np.take(lut[c], t[src[c]], out=out[c])
    return out


def load_image(path: str | Path, prep: Preprocessing) -> np.ndarray:
    """Read and preprocess one image file → float32 C×H×W.

    Raises :class:`InputError` naming the file if it is missing or cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return preprocess_pil(im, prep)
    except FileNotFoundError:
        raise InputError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"image {path} cannot be decoded ({e}); replace or remove it") from None


def load_images(paths: Sequence[str | Path], prep: Preprocessing) -> np.ndarray:
    """Read and preprocess image files → float32 N×C×H×W (N = len(paths))."""
    if not paths:
        raise InputError("no images to load")
    return np.stack([load_image(p, prep) for p in paths]).astype(np.float32, copy=False)


def check_input_shape(batch: np.ndarray, expected_chw: tuple[int, int, int]) -> None:
    """Raise :class:`InputError` unless ``batch`` is float32 N×C×H×W with C×H×W = ``expected_chw``."""
    if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(expected_chw):
        raise InputError(f"input batch has shape {tuple(batch.shape)}; the model card expects N×{'×'.join(map(str, expected_chw))}")
    if batch.dtype != np.float32:
        raise InputError(f"input batch has dtype {batch.dtype}; expected float32")
