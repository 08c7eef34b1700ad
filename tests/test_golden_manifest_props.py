"""Property-based tests (hypothesis) for the golden-set manifest and training-counts readers:
any CSV/Parquet/JSON bytes either give a valid golden set or raise InputError naming the file —
never any other exception (issue 11)."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optim.errors import InputError
from optim.golden_sets.golden_set import (
    ID_COLUMN, PATH_COLUMN, parse_manifest, parse_manifest_bytes, parse_train_counts_bytes,
)

SRC = "golden/manifest.csv"
FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
cell = st.one_of(st.text(max_size=12), st.sampled_from(["", "1", "0", "nan", "../x.png", "/abs.png", "a\nb", '"q"', "\ufeff", "x\x00y"]))
column = st.one_of(st.sampled_from([ID_COLUMN, PATH_COLUMN, "class", "h:t", ":t", "h:", "", "\ufeffid"]), st.text(max_size=8))


def _check(rows, columns, source):
    ids, paths, heads = parse_manifest(rows, columns, source)
    assert len(ids) == len(paths) == len(rows) and len(set(ids)) == len(ids)
    for p in paths:
        assert p and not p.startswith("/") and ".." not in p.split("/") and "\x00" not in p
    for h in heads.values():
        assert h.kind in ("multiclass", "multilabel")


def _csv_bytes(columns, rows, bom: bool) -> bytes:
    import csv

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for r in rows:
        w.writerow(r)
    return (("\ufeff" if bom else "") + buf.getvalue()).encode("utf-8")


@FAST
@given(columns=st.lists(column, min_size=0, max_size=5), rows=st.lists(st.lists(cell, max_size=6), max_size=6), bom=st.booleans())
def test_csv_manifest_is_valid_or_input_error_naming_the_file(columns, rows, bom):
    try:
        r, c = parse_manifest_bytes(_csv_bytes(columns, rows, bom), SRC, parquet=False)
        _check(r, c, SRC)
    except InputError as e:
        assert SRC in str(e)


@FAST
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_as_csv_or_parquet(data):
    for parquet in (False, True):
        try:
            r, c = parse_manifest_bytes(data, SRC, parquet=parquet)
            _check(r, c, SRC)
        except InputError as e:
            assert SRC in str(e)


@FAST
@given(columns=st.lists(column, min_size=1, max_size=4, unique=True),
       values=st.lists(st.one_of(st.none(), st.text(max_size=8), st.integers(-10**20, 10**20), st.floats(allow_nan=True), st.booleans()),
                       min_size=0, max_size=5))
def test_parquet_manifest_is_valid_or_input_error_naming_the_file(columns, values):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {}
    for j, name in enumerate(columns):
        vals = [str(v) if v is not None and j % 2 == 0 else v for v in values]
        try:
            cols[name] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            cols[name] = pa.array([None if v is None else str(v) for v in values])
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    try:
        r, c = parse_manifest_bytes(buf.getvalue(), SRC, parquet=True)
        _check(r, c, SRC)
    except InputError as e:
        assert SRC in str(e)


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(), st.text(max_size=6)),
                          lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=12)


@FAST
@given(data=st.one_of(json_value, st.dictionaries(st.text(max_size=5), st.dictionaries(st.text(max_size=5), json_value, max_size=3), max_size=3)))
def test_train_counts_valid_or_input_error(data):
    src = "golden/train_counts.json"
    try:
        out = parse_train_counts_bytes(json.dumps(data).encode(), src)
        assert all(isinstance(n, int) and n >= 0 for c in out.values() for n in c.values())
    except InputError as e:
        assert src in str(e)


@pytest.mark.parametrize("raw", [b"[" * 100000, b'{"class": {"a": Infinity}}', b'{"class": {"a": -1}}', b'{"class": {"a": 1e400}}',
                                 b"\xff\xfe", b'{"class": {"a": 10000000000000000000000000000000}}'])
def test_train_counts_edge_cases(raw):
    src = "golden/train_counts.json"
    try:
        out = parse_train_counts_bytes(raw, src)
        assert out == {"class": {"a": 10**31}}
    except InputError as e:
        assert src in str(e)
