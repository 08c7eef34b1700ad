"""`optim verify` / `optim publish` command lines: input errors exit 2 before anything runs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from optim.cli.main import cli
from optim.errors import InputError
from test_gate_publish import make_artifact


def test_policy_typo_exits_2_naming_key_and_file(tmp_path):
    art = make_artifact(tmp_path)
    (tmp_path / "golden").mkdir()
    pol = tmp_path / "optim.toml"
    pol.write_text("[defaults]\nmax_top1_drop = 1.0\n")
    r = CliRunner().invoke(cli, ["verify", str(art), "--golden", str(tmp_path / "golden"), "--policy", str(pol),
                                 "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert "defaults.max_top1_drop" in r.output and str(pol) in r.output
    assert not (tmp_path / "out").exists()


def test_no_policy_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    art = make_artifact(tmp_path)
    (tmp_path / "golden").mkdir()
    r = CliRunner().invoke(cli, ["verify", str(art), "--golden", "golden"])
    assert r.exit_code == 2 and "no policy" in r.output


def test_not_an_artifact_exits_2(tmp_path):
    (tmp_path / "golden").mkdir()
    (tmp_path / "optim.toml").write_text("[defaults]\nsize_mb = 5\n")
    (tmp_path / "junk").mkdir()
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "junk"), "--golden", str(tmp_path / "golden"),
                                 "--policy", str(tmp_path / "optim.toml")])
    assert r.exit_code == 2 and "not an artifact" in r.output


def test_publish_without_results_exits_2(tmp_path):
    art = make_artifact(tmp_path)
    r = CliRunner().invoke(cli, ["publish", str(art), "--registry", str(tmp_path / "reg"),
                                 "--results", str(tmp_path / "nope.json")])
    assert r.exit_code == 2 and "optim verify" in r.output


def test_reference_defaults_to_the_artifacts_source_checkpoint(tmp_path):
    from gate_inputs import bench_result, eval_report
    from optim.gate.policy import Policy
    from optim.gate.verify import verify

    import hashlib

    # artifact.json source.checkpoint = tmp_path/model.pt, exported from the bytes b"fp32"
    art = make_artifact(tmp_path, source_sha256=hashlib.sha256(b"fp32").hexdigest())
    (tmp_path / "golden").mkdir()
    seen = []

    def evaluate_fn(target, golden, reference, **kw):
        seen.append(reference)
        return eval_report()

    pol = Policy.from_dict({"defaults": {"max_top1_drop_pts": 1}})
    with pytest.raises(InputError, match="no FP32 reference"):  # recorded checkpoint not on disk
        verify([art], tmp_path / "golden", policy=pol, evaluate_fn=evaluate_fn, bench_fn=lambda *a, **k: bench_result())
    (tmp_path / "model.pt").write_bytes(b"fp32")
    res = verify([art], tmp_path / "golden", policy=pol, evaluate_fn=evaluate_fn, bench_fn=lambda *a, **k: bench_result())
    assert seen == [str((tmp_path / "model.pt").resolve())]
    assert res.report["reference"]["resolved_from"] == "source checkpoint"
    (tmp_path / "model.pt").write_bytes(b"another model")  # the source changed after export: never a silent reference
    with pytest.raises(InputError, match="changed since export"):
        verify([art], tmp_path / "golden", policy=pol, evaluate_fn=evaluate_fn, bench_fn=lambda *a, **k: bench_result())
    assert res.report["reference"]["path"] == str((tmp_path / "model.pt").resolve())
