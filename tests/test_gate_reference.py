"""The gate always compares against the FP32 original (issue 11): a pruned checkpoint records
its lineage, verify resolves the reference from it, names it in every report, and refuses to
compare the compressed model with itself. Real parts: optim prune (no fine-tuning) on a
random-weight resnet18, an ONNX FP32 export, the fuzz world's golden set of MNIST digits."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from optim.cli.main import cli


@pytest.fixture(scope="module")
def pruned_artifact(fuzz_world, tmp_path_factory):
    from optim import quantize

    tmp = tmp_path_factory.mktemp("pruned")
    r = CliRunner().invoke(cli, ["prune", str(fuzz_world.ckpt), "--ratio", "0.5", "--out", str(tmp / "pruned.pt")])
    assert r.exit_code == 0, r.output
    q = quantize(tmp / "pruned.pt", formats=["onnx"], scheme="fp32", out=tmp / "artifacts")
    assert q.ok, q.to_dict()
    return tmp, tmp / "pruned.pt", q.results[0].artifact_dir


def run_verify(fuzz_world, art, out, *extra):
    return CliRunner().invoke(cli, ["verify", str(art), "--golden", str(fuzz_world.golden), "--policy",
                                    str(fuzz_world.policy), "--out", str(out), "--runs", "3", "--warmup", "1",
                                    "--trials", "1", *map(str, extra)])


def test_pruned_checkpoint_without_fine_tuning_fails_against_its_fp32_original(fuzz_world, pruned_artifact):
    from optim.files import sha256_file

    tmp, pruned, art = pruned_artifact
    lineage = json.loads((art / "artifact.json").read_text())["source"]["lineage"]
    assert lineage["reference"]["sha256"] == sha256_file(fuzz_world.ckpt) and lineage["fine_tuned"] is False
    r = run_verify(fuzz_world, art, tmp / "v")
    assert r.exit_code == 1, r.output  # before issue 11 the pruned model was its own reference: every delta 0, PASS
    rep = json.loads((tmp / "v" / "verify.json").read_text())
    assert rep["reference"] == {"path": str(fuzz_world.ckpt.resolve()), "sha256": sha256_file(fuzz_world.ckpt),
                                "resolved_from": "lineage"}
    assert f"FP32 reference: {fuzz_world.ckpt.resolve()}" in r.output
    for name in ("verify.md", "verify.html", "verify.junit.xml"):
        assert str(fuzz_world.ckpt.resolve()) in (tmp / "v" / name).read_text()
    checks = {c["id"]: c for c in rep["artifacts"][0]["checks"]}
    assert checks["top1_agreement[class]"]["status"] == "fail"


def test_the_compressed_model_is_never_its_own_reference(fuzz_world, pruned_artifact, tmp_path):
    _, pruned, art = pruned_artifact
    r = run_verify(fuzz_world, art, tmp_path / "v", "--reference", pruned)
    assert r.exit_code == 2 and "with itself" in r.output
    import shutil

    from optim.model_card import card_path_for

    other = tmp_path / "other.pt"  # the same FP32 bytes elsewhere on disk: accepted
    shutil.copy(fuzz_world.ckpt, other)
    shutil.copy(card_path_for(fuzz_world.ckpt), card_path_for(other))
    r = run_verify(fuzz_world, art, tmp_path / "v2", "--reference", other)
    assert r.exit_code == 1 and "from --reference" in r.output
