"""The fast preprocessing path (uint8 resize/crop + per-channel lookup table) gives the same
float32 bits as the torchvision reference pipeline on odd inputs (issue 15).

``reference`` is the former ``optim.preprocessing.preprocess_pil`` verbatim: convert to RGB,
resize (antialiased), centre-crop, scale, reorder channels, normalise — all with torchvision.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from optim.model_card import Preprocessing
from optim.preprocessing import _interp, load_image, preprocess_pil


def reference(image, prep: Preprocessing) -> np.ndarray:
    img = image.convert("RGB")
    t = F.pil_to_tensor(img)
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


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    u8 = lambda *s: rng.integers(0, 256, s, dtype=np.uint8)  # noqa: E731
    ims = {
        "L 32x32 (already sized)": Image.fromarray(u8(32, 32), "L"),
        "L 20x45 non-square": Image.fromarray(u8(20, 45), "L"),
        "RGB 32x32 (already sized)": Image.fromarray(u8(32, 32, 3), "RGB"),
        "RGB 17x50 non-square": Image.fromarray(u8(17, 50, 3), "RGB"),
        "RGBA 40x30": Image.fromarray(u8(30, 40, 4), "RGBA"),
        "LA 32x32": Image.fromarray(u8(32, 32, 2), "LA"),
        "1 (bilevel) 33x31": Image.fromarray(u8(31, 33) > 127),
        "I;16 (16-bit) 32x32": Image.fromarray(rng.integers(0, 65536, (32, 32), dtype=np.uint16)),
        "F (float) 24x24": Image.fromarray(rng.normal(100, 60, (24, 24)).astype(np.float32)),
        "CMYK 32x32": Image.fromarray(u8(32, 32, 4), "CMYK"),
    }
    p = Image.fromarray(u8(36, 28, 3), "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=37)
    ims["P (palette) 28x36"] = p
    pa = Image.fromarray(u8(32, 32), "L").convert("P")
    pa.info["transparency"] = 5
    ims["P with transparency 32x32"] = pa
    return ims


PREPS = {
    "resize 32x32 bilinear": Preprocessing(resize=(32, 32), mean=(0.1307,) * 3, std=(0.3081,) * 3),
    "resize int 32 bicubic": Preprocessing(resize=32, interpolation="bicubic"),
    "resize int 24 nearest, crop 20x18, BGR, 0-255": Preprocessing(resize=24, center_crop=(20, 18), interpolation="nearest",
                                                                   channel_order="BGR", value_range=255.0,
                                                                   mean=(103.9, 116.8, 123.7), std=(57.4, 57.1, 58.4)),
    "no resize, crop 16": Preprocessing(center_crop=16),
    "no resize, crop larger than image (pads)": Preprocessing(center_crop=(40, 52)),
    "no resize, no crop": Preprocessing(),
}


@pytest.mark.parametrize("prep_name", list(PREPS))
@pytest.mark.parametrize("image_name", list(_images()))
def test_fast_path_is_bit_identical_to_reference(image_name, prep_name):
    im, prep = _images()[image_name], PREPS[prep_name]
    want = reference(im, prep)
    got = preprocess_pil(im, prep)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"{image_name} / {prep_name}"
    # written in place into a caller's buffer of the right shape, a new array otherwise
    buf = np.full(want.shape, np.nan, np.float32)
    assert preprocess_pil(im, prep, out=buf) is buf and np.array_equal(buf.view(np.uint32), want.view(np.uint32))
    wrong = np.empty((3, 1, 1), np.float32)
    assert preprocess_pil(im, prep, out=wrong) is not wrong


def test_every_byte_value_of_every_channel(tmp_path):
    """All 256 byte values in each channel, through a PNG file (load_image), match the reference."""
    a = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16), np.arange(255, -1, -1, dtype=np.uint8).reshape(16, 16),
                  np.roll(np.arange(256, dtype=np.uint8), 77).reshape(16, 16)], axis=-1)
    path = tmp_path / "ramp.png"
    Image.fromarray(a, "RGB").save(path)
    for prep in (Preprocessing(), Preprocessing(channel_order="BGR", value_range=255.0, mean=(1.5, 2.5, 3.5), std=(7.0, 3.0, 0.5))):
        with Image.open(io.BytesIO(path.read_bytes())) as im:
            want = reference(im, prep)
        assert np.array_equal(load_image(path, prep).view(np.uint32), want.view(np.uint32))
