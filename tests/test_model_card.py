"""Model card: round trip, validation errors that name the field and the file, head mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optim.errors import InputError
from optim.heads import outputs_by_head
from optim.model_card import Head, ModelCard

from conftest import small_card


def test_round_trip(tmp_path):
    card = small_card(num_classes=4, hw=48)
    path = card.save(tmp_path / "m.pt.optim.toml")
    assert ModelCard.load(path) == card


def test_typo_names_field_and_file(tmp_path):
    path = tmp_path / "card.optim.toml"
    path.write_text(
        'name = "x"\n[input]\nshape = [1, 3, 32, 32]\n[preprocessing]\nmaen = [0.5, 0.5, 0.5]\n'
        '[[heads]]\nname = "c"\nkind = "multiclass"\nlabels = ["a", "b"]\n'
    )
    with pytest.raises(InputError) as err:
        ModelCard.load(path)
    assert "preprocessing.maen" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"input": {"shape": [1, 1, 32, 32]}}, "input.shape"),
        ({"heads": [{"name": "c", "kind": "softmax", "labels": ["a"]}]}, "heads.0.kind"),
        ({"heads": [{"name": "c", "kind": "multiclass", "labels": ["a", "a"]}]}, "heads.0.labels"),
        ({"preprocessing": {"std": [0, 1, 1]}}, "preprocessing.std"),
        ({"heads": []}, "heads"),
    ],
)
def test_invalid_values_name_the_field(patch, field):
    data = small_card().to_dict() | patch
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        ModelCard.from_dict(data, source="card.toml")


def test_not_toml_and_missing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = = 3")
    with pytest.raises(InputError, match="not valid TOML"):
        ModelCard.load(bad)
    with pytest.raises(InputError, match="does not exist"):
        ModelCard.load(tmp_path / "none.toml")


def _two_head_card() -> ModelCard:
    return ModelCard(heads=(Head(name="category", kind="multiclass", labels=("a", "b", "c")),
                            Head(name="tags", kind="multilabel", labels=("red", "striped"))))


def test_outputs_by_head_tensor_tuple_dict():
    card = _two_head_card()
    cat, tags = torch.zeros(2, 3), torch.ones(2, 2)
    assert set(outputs_by_head((cat, tags), card)) == {"category", "tags"}
    assert outputs_by_head({"tags": tags, "category": cat}, card)["tags"] is tags
    one = ModelCard(heads=(card.heads[0],))
    assert outputs_by_head(np.zeros((2, 3)), one)["category"].shape == (2, 3)


def test_outputs_by_head_mismatches():
    card = _two_head_card()
    with pytest.raises(InputError, match="declares 2 heads"):
        outputs_by_head(torch.zeros(2, 3), card)
    with pytest.raises(InputError, match="'tags' outputs shape"):
        outputs_by_head((torch.zeros(2, 3), torch.zeros(2, 5)), card)
    with pytest.raises(InputError, match="missing"):
        outputs_by_head({"category": torch.zeros(2, 3)}, card)
