"""Fuzz table, golden-build area (issue 14): the users' own label files, counts and cards given to
``optim golden build`` — unmapped tag columns, bad mappings, bad cells, flat counts without a head,
counts for unknown heads, cards whose heads/labels do not match, and labels files that escape,
link, repeat or are not UTF-8.

Every case asserts (see :mod:`fuzz_harness`) exit 2, that the message names the column/file/line,
no traceback, nothing changed outside the workdir and the registry unchanged."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from fuzz_harness import Case, Workspace, make_workspace, run_case

LOOP = {"0", "6", "8", "9"}


def _labels(ws: Workspace, *, tag_cells=None, header=("path", "class", "loop"), name: str = "labels.csv") -> Path:
    """A copy of the world's golden images with a plain label file: path, class, and a ``loop``
    tag column (1/0), optionally with ``tag_cells`` {row index: cell} overriding cells."""
    g = ws.work / "g"
    if not g.exists():
        ws.copy(ws.world.golden, "g")
    with (g / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = g / name
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, r in enumerate(rows):
            cell = (tag_cells or {}).get(i, "1" if r["class"] in LOOP else "0")
            w.writerow([r["path"], r["class"], cell][: len(header)])
    return out


def _counts(ws: Workspace, data, name: str = "counts.json") -> Path:
    p = ws.work / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def _card(ws: Workspace, heads: str, files: dict[str, str | bytes] | None = None) -> Path:
    d = ws.work / "card"
    d.mkdir(exist_ok=True)
    for n, content in (files or {}).items():
        (d / n).write_bytes(content if isinstance(content, bytes) else content.encode())
    p = d / "model.pt.optim.toml"
    p.write_text(heads)
    return p


def _secret(ws: Workspace) -> Path:
    p = ws.outside / "secret.txt"
    p.write_text("do-not-read\n")
    return p


def _card_with_link(ws: Workspace) -> Path:
    card = _card(ws, '[[heads]]\nname = "class"\nkind = "multiclass"\nlabels = "classes.txt"\n')
    os.symlink(_secret(ws), card.parent / "classes.txt")
    return card


def _card_dotdot(ws: Workspace) -> Path:
    _secret(ws)
    return _card(ws, '[[heads]]\nname = "class"\nkind = "multiclass"\nlabels = "../../outside/secret.txt"\n')


CLASS_HEAD = '[[heads]]\nname = "class"\nkind = "multiclass"\nnum_labels = 10\n'
MAP = ["--multilabel-head", "shape=loop"]
DIGITS = {str(c): 10 * (c + 1) for c in range(10)}

CASES = [
    Case("build-unmapped-tag-column", "golden-build", lambda ws: ["golden", "build", _labels(ws)], 2, "['loop']"),
    Case("build-unmapped-tag-column-names-the-fix", "golden-build", lambda ws: ["golden", "build", _labels(ws)], 2,
         "--ignore-column loop"),
    Case("build-mapped-column-does-not-exist", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), "--multilabel-head", "shape=loop,stripes"], 2, "column 'stripes'"),
    Case("build-column-mapped-twice", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--ignore-column", "loop"], 2, "column 'loop' is used twice"),
    Case("build-multilabel-head-without-columns", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), "--multilabel-head", "shape"], 2, "expected HEAD=COLUMN,COLUMN"),
    Case("build-tag-cell-not-1-0-empty", "golden-build",
         lambda ws: ["golden", "build", _labels(ws, tag_cells={4: "yes?"}), *MAP], 2, "row 5 column 'loop'"),
    Case("build-no-path-column", "golden-build",
         lambda ws: ["golden", "build", _labels(ws, header=("picture", "class", "loop")), *MAP], 2, "--path-column"),
    Case("build-reserved-head-name", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), "--multilabel-head", "path:x=loop"], 2, "cannot be used"),
    Case("build-flat-counts-two-heads-no-head", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--train-counts", _counts(ws, DIGITS)], 2, "pass --head NAME"),
    Case("build-flat-counts-unknown-head", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--train-counts", _counts(ws, DIGITS), "--head", "colour"], 2,
         "--head 'colour' is not a head"),
    Case("build-nested-counts-typo-head", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--train-counts", _counts(ws, {"klass": DIGITS})], 2, "['klass']"),
    Case("build-counts-negative", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--train-counts", _counts(ws, {"0": -3}), "--head", "class"], 2,
         "class.0 = -3"),
    Case("build-counts-csv-not-integer", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--head", "class",
                     "--train-counts", _counts(ws, "label,count\n0,12\n1,lots\n", "counts.csv")], 2, "row 2 count 'lots'"),
    Case("build-tail-class-unknown-head", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--tail-class", "colour=red"], 2, "['colour']"),
    Case("build-card-missing-label", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card",
                     _card(ws, CLASS_HEAD.replace("10", "9") + '[[heads]]\nname = "shape"\nkind = "multilabel"\nlabels = ["loop"]\n')],
         2, "['9']"),
    Case("build-card-kind-differs", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card",
                     _card(ws, CLASS_HEAD + '[[heads]]\nname = "shape"\nkind = "multiclass"\nlabels = ["loop"]\n')],
         2, "head 'shape' is multiclass in the model card"),
    Case("build-card-head-without-column", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card",
                     _card(ws, CLASS_HEAD + '[[heads]]\nname = "shape"\nkind = "multilabel"\nlabels = ["loop"]\n'
                               '[[heads]]\nname = "colour"\nkind = "multilabel"\nlabels = ["red", "blue"]\n')],
         2, "multi-label head 'colour'"),
    Case("build-card-extra-column", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), "--card", _card(ws, CLASS_HEAD)], 2, "['loop'] belong to no head"),
    Case("build-card-labels-file-dotdot", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card",
                     _card_dotdot(ws)], 2, "without '..'"),
    Case("build-card-labels-file-symlink", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card", _card_with_link(ws)], 2, "is a symbolic link"),
    Case("build-card-labels-file-duplicate", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card",
                     _card(ws, '[[heads]]\nname = "class"\nkind = "multiclass"\nlabels = "classes.txt"\n',
                           {"classes.txt": "0\n1\n2\n1\n"})], 2, "classes.txt line 4: duplicate label '1' (first on line 2)"),
    Case("build-card-labels-file-blank-line", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card",
                     _card(ws, '[[heads]]\nname = "class"\nkind = "multiclass"\nlabels = "classes.txt"\n',
                           {"classes.txt": "0\n1\n\n2\n"})], 2, "classes.txt line 3 is empty"),
    Case("build-card-labels-file-not-utf8", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card",
                     _card(ws, '[[heads]]\nname = "class"\nkind = "multiclass"\nlabels = "classes.txt"\n',
                           {"classes.txt": b"0\n1\n\xff\xfe\n"})], 2, "classes.txt line 3: not UTF-8"),
    Case("build-card-num-labels-zero", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card", _card(ws, CLASS_HEAD.replace("10", "0"))], 2,
         "num_labels must be an integer from 1"),
    Case("build-card-missing-file", "golden-build",
         lambda ws: ["golden", "build", _labels(ws), *MAP, "--card", ws.work / "none.optim.toml"], 2, "none.optim.toml does not exist"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_golden_build(case, fuzz_world, tmp_path, monkeypatch):
    out = run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)
    assert "do-not-read" not in out  # a labels file outside the card's folder is never read into a message
