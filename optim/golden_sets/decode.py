"""Golden-set images → preprocessed float32 tensors, digest-checked: the one decoding step of
every evaluation engine (single process, ``--workers N``, ``--engine ray``), so that they
check the same things and give bit-identical tensors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import numpy as np

from optim.errors import InputError
from optim.golden_sets.golden_set import GoldenSet, decode_image, read_member
from optim.model_card import ModelCard
from optim.preprocessing import preprocess_pil


def decode_rows(gs: GoldenSet, card: ModelCard, digests: Mapping[str, str], rows, on_image: Callable[[int], None] | None = None) -> np.ndarray:
    """Preprocess the images of manifest ``rows`` → float32 len(rows)×C×H×W, per ``card``.

    Each image is read without following links (:func:`~optim.golden_sets.golden_set.read_member`)
    and decoded (:func:`~optim.golden_sets.golden_set.decode_image`) only if its bytes' sha256
    equals ``digests[path]`` (the digests the golden content hash was computed from), then
    preprocessed by :func:`optim.preprocessing.preprocess_pil`. ``on_image(row)`` is called
    after each image.

    Raises:
        InputError: naming the row, for an image that is missing, whose bytes do not match its
            digest, that is undecodable, or that preprocesses to another size than the card's input.
    """

    chw = tuple(card.input.shape[1:])
    rows = list(rows)
    out = np.empty((len(rows), *chw), dtype=np.float32)
    for k, i in enumerate(rows):
        rel = gs.paths[i]
        where = f"golden set {gs.root}: {gs.row_name(i)}"
        data = read_member(gs.root, rel, "image")
        if data is None:
            raise InputError(f"{where}: image {rel} does not exist")
        if hashlib.sha256(data).hexdigest() != digests.get(rel):
            raise InputError(f"{where}: image {rel} does not match the golden set (its sha256 differs from the one hashed "
                             "when the evaluation started); make sure nothing writes the golden set, verify it "
                             "(`optim golden verify`) and run again")
        try:
            im = decode_image(data, str(gs.root / rel))
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        x = preprocess_pil(im, card.preprocessing, out=out[k])  # written in place when it has the card's shape
        if x.shape != chw:
            raise InputError(f"{where}: image {rel} preprocesses to "
                             f"{'×'.join(map(str, x.shape))} but the model card expects {'×'.join(map(str, chw))}; "
                             "set preprocessing.resize/center_crop in the card")
        if on_image:
            on_image(i)
    return out
