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


# ---- cards that scale: labels from a file or a count ------------------------------------------
def _card_text(labels_line: str, name: str = "category", kind: str = "multiclass") -> str:
    return f'name = "big"\n[[heads]]\nname = "{name}"\nkind = "{kind}"\n{labels_line}\n'


def test_labels_from_a_file_next_to_the_card(tmp_path):
    names = [f"class {i} ünïcode" for i in range(1200)]
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "classes.txt").write_text("\ufeff" + "\r\n".join(names) + "\r\n", encoding="utf-8")
    path = tmp_path / "m.pt.optim.toml"
    path.write_text(_card_text('labels = "meta/classes.txt"'))
    card = ModelCard.load(path)
    assert card.head("category").labels == tuple(names) and card.head("category").num_classes == 1200
    # written back, the card lists every label and no longer needs the file
    (tmp_path / "copy").mkdir()
    again = card.save(tmp_path / "copy" / "x.optim.toml")
    (tmp_path / "meta" / "classes.txt").unlink()
    assert ModelCard.load(again) == card


def test_num_labels_generates_names(tmp_path):
    path = tmp_path / "c.optim.toml"
    path.write_text(_card_text("num_labels = 1200") + '[[heads]]\nname = "attr"\nkind = "multilabel"\nnum_labels = 8\n')
    card = ModelCard.load(path)
    assert card.head("category").labels[:3] == ("0", "1", "2") and card.head("category").labels[-1] == "1199"
    assert len(card.head("category").labels) == 1200 and card.head("attr").labels == tuple(map(str, range(8)))
    assert ModelCard.from_dict({"heads": [{"name": "a", "kind": "multiclass", "num_labels": 3}]}).heads[0].labels == ("0", "1", "2")


@pytest.mark.parametrize("content, line, what", [
    ("cat\ndog\n\ncow\n", 3, "is empty"),
    ("cat\ndog\ncat\n", 3, "duplicate label 'cat' (first on line 1)"),
    ("cat\n  dog \ndog\n", 3, "duplicate label 'dog' (first on line 2)"),
    ("cat\nd\tog\n", 2, "control character"),
])
def test_bad_labels_file_names_file_and_line(tmp_path, content, line, what):
    (tmp_path / "classes.txt").write_text(content, encoding="utf-8")
    path = tmp_path / "c.optim.toml"
    path.write_text(_card_text('labels = "classes.txt"'))
    with pytest.raises(InputError) as err:
        ModelCard.load(path)
    msg = str(err.value)
    assert str(path) in msg and str(tmp_path / "classes.txt") in msg and f"line {line}" in msg and what in msg and "heads.0" in msg


def test_labels_file_not_utf8_names_the_line(tmp_path):
    (tmp_path / "classes.txt").write_bytes(b"cat\ndog\nk\xe4se\n")
    path = tmp_path / "c.optim.toml"
    path.write_text(_card_text('labels = "classes.txt"'))
    with pytest.raises(InputError, match=r"classes\.txt line 3: not UTF-8"):
        ModelCard.load(path)


def test_labels_file_must_stay_inside_the_card_folder(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("root:x:0:0\n")
    d = tmp_path / "card"
    d.mkdir()
    (d / "link.txt").symlink_to(outside)
    for ref, what in [("../secret.txt", "without '..'"), (str(outside), "without '..'"), ("link.txt", "symbolic link"),
                      ("none.txt", "does not exist"), ("", "relative")]:
        (d / "c.optim.toml").write_text(_card_text(f"labels = {ref!r}".replace("'", '"')))
        with pytest.raises(InputError, match=what) as err:
            ModelCard.load(d / "c.optim.toml")
        assert "root:x" not in str(err.value)  # never leaks the other file's content
    (d / "adir").mkdir()
    (d / "c.optim.toml").write_text(_card_text('labels = "adir"'))
    with pytest.raises(InputError, match="not a regular file"):
        ModelCard.load(d / "c.optim.toml")


@pytest.mark.parametrize("head, what", [
    ({"num_labels": 0}, "num_labels must be an integer from 1"),
    ({"num_labels": True}, "num_labels must be an integer"),
    ({"num_labels": "12"}, "num_labels must be an integer"),
    ({"num_labels": 3, "labels": ["a", "b", "c"]}, "not both"),
    ({"labels": "classes.txt"}, "only a card file can do"),
])
def test_num_labels_and_labels_file_errors_name_the_field(head, what):
    with pytest.raises(InputError, match="heads.0") as err:
        ModelCard.from_dict({"heads": [{"name": "a", "kind": "multiclass", **head}]}, source="card.toml")
    assert what in str(err.value) and "card.toml" in str(err.value)


# ---- messages that show the difference ---------------------------------------------------------
def test_head_differences_name_what_differs():
    from optim.model_card import describe_head_differences

    big = tuple(f"c{i}" for i in range(1200))
    a = ModelCard(heads=(Head(name="category", kind="multiclass", labels=big), Head(name="attr", kind="multilabel", labels=("x", "y"))))
    b = ModelCard(heads=(Head(name="category", kind="multiclass", labels=big[:7] + ("shoe",) + big[8:1199]),
                         Head(name="attr", kind="multiclass", labels=("x", "y"))))
    d = describe_head_differences(a, b)
    assert len(d) == 2
    assert "head 'category'" in d[0] and "1200 labels in the target, 1199 in the reference" in d[0]
    assert "first difference at label 7: 'c7' vs 'shoe'" in d[0] and "only in the reference: 'shoe'" in d[0]
    assert "'c1199'" in d[0]
    assert "head 'attr' is multilabel in the target, multiclass in the reference" in d[1]
    assert describe_head_differences(a, a) == []
    c = ModelCard(heads=(Head(name="category", kind="multiclass", labels=big[::-1]),))
    assert any("same labels in another order" in x for x in describe_head_differences(ModelCard(heads=a.heads[:1]), c))
    assert describe_head_differences(a, c) == ["heads only in the target: ['attr']",
                                               "head 'category': first difference at label 0: 'c0' vs 'c1199', same labels in another order"]
