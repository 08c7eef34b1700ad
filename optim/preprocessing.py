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


def preprocess_pil(image, prep: Preprocessing) -> np.ndarray:
    """One PIL image → float32 array of shape C×H×W (C = 3), normalised per ``prep``.

    Grayscale and palette images are converted to RGB (the gray channel is repeated).
    """
    import torch
    from torchvision.transforms.v2 import functional as F

    img = image.convert("RGB")
    t = F.pil_to_tensor(img)  # uint8 3×H×W
    if prep.resize is not None:
        size = [prep.resize] if isinstance(prep.resize, int) else list(prep.resize)
        t = F.resize(t, size, interpolation=_interp(prep.interpolation), antialias=True)
    if prep.center_crop is not None:
        crop = [prep.center_crop] * 2 if isinstance(prep.center_crop, int) else list(prep.center_crop)
        t = F.center_crop(t, crop)
    x = t.to(torch.float32) * (prep.value_range / 255.0)
    if prep.channel_order == "BGR":
        x = x[[2, 1, 0]]
    x = F.normalize(x, mean=list(prep.mean), std=list(prep.std))
    return x.numpy()


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
