"""optim publish: only verified bytes, content-addressed, atomic (SIGKILL mid-publish leaves
no half release), never overwrites a version.

Artifacts here are real artifact directories (artifact.json written by
optim.runtimes.artifact.write_metadata) whose model file is a few bytes: publishing never
runs the model. verify.json comes from optim.verify with hand-made eval/bench dicts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate_inputs import bench_result, eval_report
from optim.cli.main import cli
from optim.errors import CheckFailed, InputError
from optim.gate import publish as P
from optim.gate.policy import Policy
from optim.gate.verify import verify

from conftest import small_card


def make_artifact(root: Path, name="onnx-int8", payload=b"model-bytes" * 100, source_sha256="c" * 64) -> Path:
    """An artifact directory whose model file is ``payload`` (never run) plus artifact.json."""
    from optim.runtimes.artifact import write_metadata

    d = root / name
    d.mkdir(parents=True)
    fmt, scheme = name.split("-", 1)
    if fmt == "onnx":
        (d / "model.onnx").write_bytes(payload)
        (d / "model.onnx.data").write_bytes(b"weights" * 50)
        names = ["model.onnx", "model.onnx.data"]
    else:
        names = [f"model.{fmt}"]
        (d / names[0]).write_bytes(payload)
    write_metadata(d, fmt=fmt, scheme=scheme, files=names, card=small_card(),
                   inputs=[], outputs=[], source={"checkpoint": str(root / "model.pt"), "sha256": source_sha256},
                   recipe={"quantizer": "nncf"}, versions={"onnx": "1.23"})
    return d


def verified(tmp: Path, art: Path, size_mb=1.0, out="v") -> Path:
    (tmp / "golden").mkdir(exist_ok=True)
    (tmp / "model.pt").write_bytes(b"ref")
    res = verify([art], tmp / "golden", policy=Policy.from_dict({"defaults": {"size_mb": size_mb, "max_top1_drop_pts": 1}}),
                 reference=tmp / "model.pt", out=tmp / out,
                 evaluate_fn=lambda *a, **k: eval_report(), bench_fn=lambda *a, **k: bench_result(5.0))
    return Path(res.paths["json"])


@pytest.fixture
def setup(tmp_path):
    art = make_artifact(tmp_path)
    return tmp_path, art, verified(tmp_path, art)


def test_publish_writes_content_addressed_release(setup):
    from optim.runtimes.artifact import Artifact

    tmp, art, results = setup
    rel = P.publish(art, tmp / "reg", results=results, version="1.0.0")
    assert rel.path == tmp / "reg" / "tiny-onnx-int8" / "1.0.0"
    m = json.loads((rel.path / "manifest.json").read_text())
    sha = Artifact.load(art).content_sha256()
    assert m["artifact"]["content_sha256"] == sha and m["gate"]["verdict"] == "pass"
    files = {f["path"]: f for f in m["artifact"]["files"]}
    assert set(files) == {"model.onnx", "model.onnx.data"}
    for f in files.values():
        assert f["blob"] == f"blobs/sha256/{f['sha256']}" and (rel.path / f["blob"]).is_file()
    prov = m["provenance"]
    assert prov["checkpoint"]["sha256"] == "c" * 64 and prov["recipe"] == {"quantizer": "nncf"}
    assert prov["golden_set"]["sha256"] and prov["policy"]["path"] and prov["libraries"]["torch"]
    assert (rel.path / "model_card.toml").is_file() and (rel.path / "gate" / "verify.json").is_file()
    assert P.list_releases(tmp / "reg") == [("tiny-onnx-int8", "1.0.0")]
    assert not list((tmp / "reg" / ".incoming").iterdir())
    # the release rebuilds into an artifact with the same bytes
    back = P.materialize(rel.path, tmp / "back")
    assert Artifact.load(back).content_sha256() == sha


def test_second_publish_of_same_version_is_refused(setup):
    tmp, art, results = setup
    rel = P.publish(art, tmp / "reg", results=results)
    assert rel.version.startswith("sha256-")
    before = (rel.path / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="never overwritten"):
        P.publish(art, tmp / "reg", results=results)
    assert (rel.path / "manifest.json").read_bytes() == before


def test_changed_bytes_cannot_be_published(setup):
    tmp, art, results = setup
    (art / "model.onnx").write_bytes(b"tampered")  # now refused on load: its listed sha256 no longer matches
    with pytest.raises(InputError, match="changed after export"):
        P.publish(art, tmp / "reg", results=results)
    assert P.list_releases(tmp / "reg") == []


def test_failed_verify_cannot_be_published(tmp_path):
    art = make_artifact(tmp_path)
    results = verified(tmp_path, art, size_mb=0.0001)
    with pytest.raises(CheckFailed, match="size"):
        P.publish(art, tmp_path / "reg", results=results)
    assert P.list_releases(tmp_path / "reg") == []


def test_registry_uri(setup):
    tmp, art, results = setup
    rel = P.publish(art, f"file://{tmp}/reg2", results=results)
    assert rel.path.parent.parent == tmp / "reg2"
    with pytest.raises(InputError, match="file://"):
        P.publish(art, "s3://bucket/x", results=results)


def test_corrupted_blob_is_detected(setup):
    tmp, art, results = setup
    rel = P.publish(art, tmp / "reg", results=results)
    blob = next((rel.path / "blobs" / "sha256").iterdir())
    blob.write_bytes(b"bitrot")
    with pytest.raises(InputError, match="bytes changed"):
        P.check_release(rel.path)


@pytest.mark.parametrize("stage", ["staged", "before_rename"])
def test_sigkill_mid_publish_leaves_no_half_release(setup, stage):
    tmp, art, results = setup
    env = {**os.environ, P.PAUSE_ENV: stage}
    code = (f"from optim.gate.publish import publish; "
            f"publish({str(art)!r}, {str(tmp / 'reg')!r}, results={str(results)!r}, version='1.0.0')")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"OPTIM_PUBLISH_PAUSED {stage}"), line
        staged = Path(line.split(" ", 2)[2].strip())
        assert staged.is_dir() and (staged / "blobs").is_dir()  # it really was mid-way
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp / "reg" / "tiny-onnx-int8" / "1.0.0").exists()
    assert P.list_releases(tmp / "reg") == []
    # the crash does not block a later publish of that version
    rel = P.publish(art, tmp / "reg", results=results, version="1.0.0")
    assert P.check_release(rel.path)["version"] == "1.0.0"
    # the crashed staging dir is swept once it is old (a day), never while it may be in use
    assert staged.exists()
    old = staged.stat().st_mtime - P.STALE_STAGING_S - 60
    os.utime(staged, (old, old))
    assert P.sweep_stale_staging(tmp / "reg") == [staged] and not staged.exists()


def test_cli_exit_codes(setup):
    tmp, art, results = setup
    r = CliRunner().invoke(cli, ["publish", str(art), "--registry", str(tmp / "reg"), "--results", str(results),
                                 "--version", "2"])
    assert r.exit_code == 0, r.output
    assert "published tiny-onnx-int8 2" in r.output
    r = CliRunner().invoke(cli, ["publish", str(art), "--registry", str(tmp / "reg"), "--results", str(results),
                                 "--version", "2"])
    assert r.exit_code == 2 and "never overwritten" in r.output
    bad = verified(tmp, art, size_mb=0.0001, out="v2")
    r = CliRunner().invoke(cli, ["publish", str(art), "--registry", str(tmp / "reg"), "--results", str(bad),
                                 "--version", "3"])
    assert r.exit_code == 1 and "did not pass verify" in r.output
