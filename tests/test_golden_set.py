"""Golden set format: building, hashing/verify, inspect summary, tail split, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optim.errors import InputError
from optim.golden_sets import GoldenSet, build_from_image_folder, build_from_manifest, build_golden_set_from_images
from optim.golden_sets.build import read_train_counts_file
from optim.golden_sets.golden_set import parse_manifest
from optim.golden_sets.summary import summarize
from optim.golden_sets.tail import split_head_tail


def _png(path: Path, value: int = 0, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "golden"
    for cls, n in (("cat", 3), ("dog", 2), ("eel", 1)):
        for i in range(n):
            _png(root / cls / f"{i}.png", value=10 * i + len(cls))
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_build_from_image_folder_writes_manifest_and_verifiable_golden_json(folder):
    res = build_from_image_folder(folder, name="pets", version="3", train_counts={"cat": 500, "dog": 120, "eel": 4})
    gs = res.golden
    assert len(gs) == 6 and gs.name == "pets" and gs.version == "3"
    assert gs.ids[:2] == ["cat/0", "cat/1"] and gs.paths[0] == "cat/0.png"
    assert gs.heads["class"].values == ["cat"] * 3 + ["dog"] * 2 + ["eel"]
    assert gs.train_counts == {"class": {"cat": 500, "dog": 120, "eel": 4}}
    assert any("notes.txt" in w for w in res.warnings)  # skipped, and said so
    meta = json.loads((folder / "golden.json").read_text())
    assert meta["sha256"] == gs.recorded_sha256 and len(meta["files"]) == 8  # manifest, counts, 6 images
    assert meta["created"] and meta["n_samples"] == 6
    assert gs.verify().ok


@pytest.mark.parametrize("change", ["image", "manifest", "counts", "delete"])
def test_changed_golden_set_no_longer_verifies(folder, change):
    build_from_image_folder(folder, train_counts={"cat": 500, "dog": 120, "eel": 4})
    if change == "image":
        _png(folder / "dog" / "1.png", value=200)
    elif change == "manifest":
        text = (folder / "manifest.csv").read_text().replace("dog/1.png,dog", "dog/1.png,cat")
        (folder / "manifest.csv").write_text(text)
    elif change == "counts":
        (folder / "train_counts.json").write_text(json.dumps({"class": {"cat": 500, "dog": 120, "eel": 400}}))
    else:
        (folder / "eel" / "0.png").unlink()
    v = GoldenSet.load(folder, check_images=False).verify()
    assert not v.ok
    expected = {"image": "dog/1.png", "manifest": "manifest.csv", "counts": "train_counts.json", "delete": "eel/0.png"}[change]
    assert expected in v.changed + v.missing
    assert expected in v.describe()


def test_hash_is_independent_of_location_and_rebuild(folder, tmp_path):
    a = build_from_image_folder(folder).golden.recorded_sha256
    import shutil

    copy = tmp_path / "elsewhere"
    shutil.copytree(folder, copy)
    assert GoldenSet.load(copy).verify().ok
    (copy / "golden.json").unlink()
    assert build_from_image_folder(copy).golden.recorded_sha256 == a


def test_build_from_images_in_memory(tmp_path):
    imgs = [np.full((6, 6), v, dtype=np.uint8) for v in (0, 50, 100, 150)] + [Image.new("RGB", (6, 6), (1, 2, 3))]
    res = build_golden_set_from_images(tmp_path / "g", imgs, ["1", "1", "0", "7", "0"], train_counts={"0": 80, "1": 20, "7": 5})
    gs = res.golden
    assert sorted(gs.heads["class"].labels) == ["0", "1", "7"]
    assert len(gs) == 5 and gs.verify().ok
    assert (tmp_path / "g" / "7" / "000003.png").is_file()
    with pytest.raises(InputError, match="not empty"):
        build_golden_set_from_images(tmp_path / "g", imgs, ["1"] * 5)
    with pytest.raises(InputError, match="5 images but 4 labels"):
        build_golden_set_from_images(tmp_path / "h", imgs, ["1"] * 4)


def _write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_build_from_csv_with_multilabel_columns_and_missing(tmp_path):
    root = tmp_path / "g"
    for i in range(3):
        _png(root / "img" / f"{i}.png", i)
    csv = _write_csv(root / "labels.csv", "id,path,category,pattern:striped,pattern:dotted\n"
                                         "a,img/0.png,shirt,1,0\nb,img/1.png,,0,\nc,img/2.png,shoe,,1\n")
    gs = build_from_manifest(csv, train_counts={"category": {"shirt": 10, "shoe": 90}}).golden
    assert gs.manifest_name == "manifest.csv" and (root / "manifest.csv").is_file()
    assert gs.heads["category"].values == ["shirt", None, "shoe"]
    pat = gs.heads["pattern"]
    assert pat.kind == "multilabel" and pat.labels == ("striped", "dotted")
    np.testing.assert_array_equal(pat.values, np.array([[1, 0], [0, np.nan], [np.nan, 1]]))
    assert pat.n_missing == 2
    s = summarize(gs)
    assert s["verified"] and s["heads"]["category"]["tail_classes"] == ["shirt"]
    assert s["heads"]["category"]["n_missing"] == 1
    assert any("2 of 6 labels" in w for w in s["heads"]["pattern"]["warnings"])


def test_build_from_parquet_manifest(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "g"
    _png(root / "x.png")
    _png(root / "y.png", 9)
    pq.write_table(pa.table({"id": ["x", "y"], "path": ["x.png", "y.png"], "digit": ["3", "4"], "t:odd": [1, None]}), root / "m.parquet")
    gs = build_from_manifest(root / "m.parquet").golden
    assert gs.manifest_name == "manifest.parquet" and gs.heads["digit"].values == ["3", "4"]
    np.testing.assert_array_equal(gs.heads["t"].values, np.array([[1.0], [np.nan]]))
    assert gs.verify().ok


# ---- bad input -------------------------------------------------------------------------
ROWS_OK = [{"id": "a", "path": "a.png", "c": "x"}, {"id": "b", "path": "b.png", "c": "y"}]


@pytest.mark.parametrize(
    ("rows", "columns", "match"),
    [
        ([], ["id", "path", "c"], "empty"),
        ([{"id": "a", "path": "a.png", "c": "x"}, {"id": "a", "path": "b.png", "c": "y"}], ["id", "path", "c"], "duplicate id 'a' in rows 1 and 2"),
        ([{"id": "", "path": "a.png"}], ["id", "path"], "row 1 has an empty id"),
        ([{"id": "a", "path": "../a.png"}], ["id", "path"], r"row 1 \(id 'a'\) path '../a.png'"),
        ([{"id": "a", "path": "/etc/a.png"}], ["id", "path"], "must be relative"),
        (ROWS_OK, ["path", "c"], "no 'id' column"),
        ([{"id": "a", "path": "a.png", "h:t": "yes"}], ["id", "path", "h:t"], r"row 1 \(id 'a'\) column 'h:t' holds 'yes'"),
        ([{"id": "a", "path": "a.png", ":t": "1"}], ["id", "path", ":t"], "HEAD:TAG"),
        ([{"id": "a", "path": "a.png", "h": "x", "h:t": "1"}], ["id", "path", "h", "h:t"], "both as a multiclass"),
    ],
)
def test_parse_manifest_rejects_bad_input_naming_row_or_column(rows, columns, match):
    with pytest.raises(InputError, match=match):
        parse_manifest(rows, columns, "m.csv")


def test_load_names_rows_of_missing_images(tmp_path):
    root = tmp_path / "g"
    _png(root / "a.png")
    _write_csv(root / "manifest.csv", "id,path,c\na,a.png,x\nb,b.png,y\n")
    (root / "golden.json").write_text(json.dumps({"name": "g", "manifest": "manifest.csv"}))
    with pytest.raises(InputError, match=r"1 of 2 images do not exist \(row 2 \(id 'b'\): b.png"):
        GoldenSet.load(root)
    with pytest.raises(InputError, match="b.png"):
        build_from_manifest(root / "manifest.csv")


def test_not_a_golden_set_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="golden.json is missing"):
        GoldenSet.load(tmp_path)
    with pytest.raises(InputError, match="no class sub-folders"):
        build_from_image_folder(tmp_path)
    (tmp_path / "cls").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        build_from_image_folder(tmp_path)


def test_csv_row_with_too_many_cells(tmp_path):
    _write_csv(tmp_path / "m.csv", "id,path\na,a.png,extra\n")
    with pytest.raises(InputError, match="row 1 has more cells"):
        build_from_manifest(tmp_path / "m.csv")


def test_train_counts_files_json_and_csv(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"a": 3, "b": 70}))
    assert read_train_counts_file(tmp_path / "c.json", head="class") == {"class": {"a": 3, "b": 70}}
    _write_csv(tmp_path / "c.csv", "label,count\na,3\nb,70\n")
    assert read_train_counts_file(tmp_path / "c.csv", head="class") == {"class": {"a": 3, "b": 70}}
    _write_csv(tmp_path / "bad.csv", "label,count\na,three\n")
    with pytest.raises(InputError, match="row 1 count 'three'"):
        read_train_counts_file(tmp_path / "bad.csv", head="class")
    (tmp_path / "neg.json").write_text(json.dumps({"class": {"a": -1}}))
    with pytest.raises(InputError, match="class.a = -1"):
        read_train_counts_file(tmp_path / "neg.json")


# ---- tail split -------------------------------------------------------------------------
def test_tail_split_from_counts_explicit_and_none():
    labels = ["a", "b", "c", "d"]
    s = split_head_tail("h", labels, {"a": 400, "b": 50, "c": 49}, tail_max_count=50)
    # fewer than 50 is tail: c (49) and d (no count → 0) are tail; b (exactly 50) is head
    assert s.tail_labels(labels) == ["c", "d"] and s.source == "train_counts"
    assert any("no training count" in w for w in s.warnings)
    assert split_head_tail("h", labels, {"a": 1}, explicit=["b"]).tail_labels(labels) == ["b"]
    none = split_head_tail("h", labels, None)
    assert none.mask is None and none.warnings
    with pytest.raises(InputError, match=r"\['zz'\] are not labels"):
        split_head_tail("h", labels, None, explicit=["zz"])


def test_summary_warns_about_classes_without_golden_images(folder):
    gs = build_from_image_folder(folder, train_counts={"cat": 500, "dog": 120, "eel": 4, "fox": 30}).golden
    s = summarize(gs, tail_max_count=50)
    h = s["heads"]["class"]
    by = {c["label"]: c for c in h["classes"]}
    assert by["cat"]["images"] == 3 and by["fox"]["images"] == 0 and by["eel"]["train_count"] == 4
    assert h["tail_classes"] == ["eel", "fox"]
    assert any("no golden image" in w and "fox" in w for w in h["warnings"])


def test_cli_build_rehashes_an_existing_manifest_and_takes_explicit_tails(tmp_path):
    from click.testing import CliRunner

    from optim.cli.main import cli

    root = tmp_path / "g"
    for i in range(2):
        _png(root / "img" / f"{i}.png", i)
    _write_csv(root / "manifest.csv", "id,path,category,pattern:striped\na,img/0.png,shirt,1\nb,img/1.png,shoe,\n")
    r = CliRunner().invoke(cli, ["golden", "build", str(root), "--tail-class", "category=shoe", "--json"])
    assert r.exit_code == 0, r.output
    gs = GoldenSet.load(root)
    assert set(gs.heads) == {"category", "pattern"}  # multi-label columns kept, not rebuilt from folders
    assert gs.tail_classes == {"category": ["shoe"]} and gs.verify().ok
    assert summarize(gs)["heads"]["category"]["tail_classes"] == ["shoe"]
    r = CliRunner().invoke(cli, ["golden", "build", str(tmp_path / "nowhere")])
    assert r.exit_code == 2


def test_deleting_train_counts_is_named_by_verify(folder):
    build_from_image_folder(folder, train_counts={"cat": 500, "dog": 120, "eel": 4})
    (folder / "train_counts.json").unlink()
    v = GoldenSet.load(folder).verify()
    assert not v.ok and v.missing == ("train_counts.json",)
