"""Fuzz table, gate part: forged or edited artifacts, verify reports and attestations, and bad
publish inputs, each through the real CLI (see tests/fuzz_harness.py for what every case
asserts). The artifact and the attestation are the real ones verify wrote for the fuzz world;
each case corrupts its own copy."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from fuzz_harness import Case, Workspace, make_workspace, run_case

ART = "onnx-fp32"


# ---- building blocks ------------------------------------------------------------------------
def art(ws: Workspace) -> Path:
    """A copy of the verified artifact in the workdir (same bytes as verified)."""
    d = ws.work / ART
    if not d.exists():
        shutil.copytree(ws.world.artifact, d, symlinks=True)
    return d


def results(ws: Workspace) -> Path:
    """A copy of the world's verify output directory (verify.json + verify.intoto.json)."""
    d = ws.work / "v"
    if not d.exists():
        shutil.copytree(ws.world.verify_json.parent, d)
    return d / "verify.json"


def publish_args(ws: Workspace, *extra) -> list:
    return ["publish", art(ws), "--registry", ws.registry, "--results", results(ws), *extra]


def edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def edit_card(ws: Workspace, fn) -> list:
    edit_json(art(ws) / "artifact.json", lambda m: fn(m["card"]))
    return publish_args(ws)


def reversed_labels(card):
    card["heads"][0]["labels"] = list(reversed(card["heads"][0]["labels"]))


def changed_mean(card):
    card["preprocessing"]["mean"] = [0.0, 0.0, 0.0]


def envelope(ws: Workspace) -> Path:
    results(ws)
    return ws.work / "v" / "verify.intoto.json"


def edit_statement(ws: Workspace, fn) -> list:
    """Edit the attestation's statement (payload), leaving it unsigned."""
    env_path = envelope(ws)
    env = json.loads(env_path.read_text())
    stmt = json.loads(base64.b64decode(env["payload"]))
    fn(stmt)
    env["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    env_path.write_text(json.dumps(env))
    return publish_args(ws)


def keys(ws: Workspace, name="ci"):
    from optim.gate.attestation import generate_keypair

    d = ws.work / "keys"
    if (d / f"{name}.key").exists():
        return d / f"{name}.key", d / f"{name}.pub"
    return generate_keypair(d, name)


def sign(ws: Workspace, key: Path) -> None:
    """Sign the attestation copy the way `optim verify --sign-key` does."""
    from securesystemslib.dsse import Envelope

    from optim.gate.attestation import load_signer

    p = envelope(ws)
    env = Envelope.from_dict(json.loads(p.read_text()))
    env.sign(load_signer(key))
    p.write_text(json.dumps(env.to_dict()))


def signed_then_altered(ws: Workspace) -> list:
    priv, pub = keys(ws)
    sign(ws, priv)
    env = json.loads(envelope(ws).read_text())
    stmt = json.loads(base64.b64decode(env["payload"]))
    stmt["predicate"]["created"] = "2020-01-01T00:00:00+00:00"
    env["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    envelope(ws).write_text(json.dumps(env))
    return publish_args(ws, "--trusted-key", pub)


def signed_by_other_key(ws: Workspace) -> list:
    priv, _ = keys(ws, "attacker")
    _, pub = keys(ws, "ci")
    sign(ws, priv)
    return publish_args(ws, "--trusted-key", pub)


def swap_data_and_relist(ws: Workspace) -> list:
    """Zero the external weights and update artifact.json to match: self-consistent, never verified."""
    from optim.files import sha256_file

    d = art(ws)
    data = d / "model.onnx.data"
    data.write_bytes(b"\0" * data.stat().st_size)
    edit_json(d / "artifact.json", lambda m: [f.update(sha256=sha256_file(data)) for f in m["files"]
                                              if f["name"] == "model.onnx.data"])
    return publish_args(ws)


def drop_data_from_list(ws: Workspace) -> list:
    edit_json(art(ws) / "artifact.json", lambda m: m.update(files=[f for f in m["files"] if f["name"] != "model.onnx.data"]))
    return publish_args(ws)


def hand_written_results(ws: Workspace) -> list:
    """The five-line verify.json that once released a file holding the text `x`."""
    d = ws.work / "x-art"
    d.mkdir()
    (d / "model.onnx").write_text("x")
    (ws.work / "forged").mkdir()
    (ws.work / "forged" / "verify.json").write_text(json.dumps(
        {"kind": "optim.verify", "schema_version": 1,
         "artifacts": [{"content_sha256": "0" * 64, "verdict": "pass", "checks": [{"id": "size", "status": "pass"}]}]}))
    return ["publish", art(ws), "--registry", ws.registry, "--results", ws.work / "forged" / "verify.json"]


def report_verdict_flipped(ws: Workspace) -> list:
    edit_json(results(ws), lambda r: r.update(created="2020-01-01T00:00:00+00:00"))
    return publish_args(ws)


def predicate_check_failed(ws: Workspace) -> list:
    def fail(stmt):
        stmt["predicate"]["artifacts"][0]["checks"][0]["status"] = "fail"
        stmt["predicate"]["artifacts"][0]["verdict"] = "fail"
    return edit_statement(ws, fail)


def predicate_passes_but_report_fails(ws: Workspace) -> list:
    """Both files edited consistently by hash, but verify.json says the artifact failed."""
    from optim.files import sha256_file

    edit_json(results(ws), lambda r: r["artifacts"][0].update(verdict="fail"))
    sha = sha256_file(results(ws))
    return edit_statement(ws, lambda s: s["predicate"]["report"].update(sha256=sha))


def symlink_in_artifact(ws: Workspace, target: str) -> list:
    d = art(ws)
    os.symlink(target, d / "extra.bin")
    return publish_args(ws)


def model_file_is_symlink(ws: Workspace) -> list:
    d = art(ws)
    real = ws.work / "elsewhere.onnx"
    shutil.move(d / "model.onnx", real)
    os.symlink(real, d / "model.onnx")
    return publish_args(ws)


def fifo_in_artifact(ws: Workspace) -> list:
    os.mkfifo(art(ws) / "pipe")
    return publish_args(ws)


def listed_name(ws: Workspace, name: str) -> list:
    edit_json(art(ws) / "artifact.json", lambda m: m["files"].append({"name": name, "bytes": 1, "sha256": "0" * 64}))
    return publish_args(ws)


def registry_name_symlink(ws: Workspace) -> list:
    os.symlink(ws.outside, ws.registry / "tiny-onnx-fp32-evil")
    return publish_args(ws, "--name", "tiny-onnx-fp32-evil")


def failing_results(ws: Workspace) -> list:
    """A real verify run whose size budget the artifact breaks (exit 1 at verify), then publish."""
    from optim.cli.main import cli
    from click.testing import CliRunner

    pol = ws.work / "tight.toml"
    pol.write_text('[defaults]\nsize_mb = 0.001\nrequired_devices = ["host"]\n')
    r = CliRunner().invoke(cli, ["verify", str(art(ws)), "--golden", str(ws.world.golden), "--policy", str(pol),
                                 "--reference", str(ws.world.ckpt), "--out", str(ws.work / "vfail"),
                                 "--runs", "3", "--warmup", "1", "--trials", "1"])
    assert r.exit_code == 1, r.output
    return ["publish", art(ws), "--registry", ws.registry, "--results", ws.work / "vfail" / "verify.json"]


def verify_args(ws: Workspace, *extra) -> list:
    return ["verify", art(ws), "--golden", ws.world.golden, "--policy", ws.world.policy, "--out", ws.work / "vout",
            "--runs", "3", "--warmup", "1", "--trials", "1", *extra]


def step(action, args=publish_args):
    """A case maker: ``action(ws)`` corrupts something, then ``args(ws)`` are the CLI arguments."""
    def make(ws: Workspace) -> list:
        action(ws)
        return args(ws)
    return make


def with_file(ws: Workspace, rel: str, data: bytes) -> Path:
    p = ws.work / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


CASES = [
    # artifacts edited after verify
    Case("artifact-card-labels-reversed", "artifact", lambda ws: edit_card(ws, reversed_labels), 2, "artifact.json"),
    Case("artifact-card-mean-changed", "artifact", lambda ws: edit_card(ws, changed_mean), 2, "artifact.json"),
    Case("artifact-onnx-data-unlisted", "artifact", drop_data_from_list, 2, "model.onnx.data"),
    Case("artifact-onnx-data-zeroed", "artifact",
         step(lambda ws: (art(ws) / "model.onnx.data").write_bytes(b"\0" * 10)), 2, "model.onnx.data"),
    Case("artifact-onnx-data-zeroed-and-relisted", "artifact", swap_data_and_relist, 2, "never verified"),
    Case("artifact-symlink-to-etc-passwd", "artifact", lambda ws: symlink_in_artifact(ws, "/etc/passwd"), 2, "symlink"),
    Case("artifact-symlink-to-dir", "artifact", lambda ws: symlink_in_artifact(ws, "/etc"), 2, "extra.bin"),
    Case("artifact-model-file-symlink", "artifact", model_file_is_symlink, 2, "model.onnx"),
    Case("artifact-fifo", "artifact", fifo_in_artifact, 2, "pipe"),
    Case("artifact-extra-file", "artifact",
         step(lambda ws: (art(ws) / "payload.sh").write_text("rm -rf /")), 2, "payload.sh"),
    Case("artifact-listed-dotdot", "artifact", lambda ws: listed_name(ws, "../outside/canary.txt"), 2, "../outside"),
    Case("artifact-listed-absolute", "artifact", lambda ws: listed_name(ws, "/etc/passwd"), 2, "/etc/passwd"),
    Case("artifact-listed-twice", "artifact", lambda ws: listed_name(ws, "model.onnx"), 2, "twice"),
    Case("artifact-json-not-json", "artifact",
         step(lambda ws: (art(ws) / "artifact.json").write_text("{not json")), 2, "artifact.json"),
    Case("artifact-json-schema-2", "artifact",
         step(lambda ws: edit_json(art(ws) / "artifact.json", lambda m: m.update(schema_version=2))),
         2, "schema_version"),
    Case("artifact-json-files-not-list", "artifact",
         step(lambda ws: edit_json(art(ws) / "artifact.json", lambda m: m.update(files="model.onnx"))),
         2, "files"),
    Case("artifact-missing", "artifact",
         lambda ws: ["publish", ws.work / "nope", "--registry", ws.registry, "--results", results(ws)], 2, "nope"),
    Case("artifact-model-deleted", "artifact",
         step(lambda ws: (art(ws) / "model.onnx").unlink()), 2, "model.onnx"),
    # verify reports and attestations
    Case("report-hand-written-five-lines", "verify-report", hand_written_results, 2, "verify.intoto.json"),
    Case("report-edited", "verify-report", report_verdict_flipped, 2, "verify.json"),
    Case("report-not-json", "verify-report",
         step(lambda ws: results(ws).write_text("nope")), 2, "verify.json"),
    Case("report-missing", "verify-report",
         lambda ws: ["publish", art(ws), "--registry", ws.registry, "--results", ws.work / "nothing.json"], 2,
         "nothing.json"),
    Case("report-is-directory", "verify-report",
         lambda ws: ["publish", art(ws), "--registry", ws.registry, "--results", ws.work], 2, "--results"),
    Case("attestation-missing", "verify-report",
         step(lambda ws: envelope(ws).unlink()), 2, "verify.intoto.json"),
    Case("attestation-not-json", "verify-report",
         step(lambda ws: envelope(ws).write_text("{")), 2, "verify.intoto.json"),
    Case("attestation-wrong-payload-type", "verify-report",
         step(lambda ws: edit_json(envelope(ws), lambda e: e.update(payloadType="text/plain"))),
         2, "payloadType"),
    Case("attestation-no-subjects", "verify-report", lambda ws: edit_statement(ws, lambda s: s.update(subject=[])),
         2, "in-toto Statement"),
    Case("attestation-wrong-predicate-type", "verify-report",
         lambda ws: edit_statement(ws, lambda s: s.update(predicateType="https://example.invalid/x")), 2, "predicateType"),
    Case("attestation-predicate-unknown-key", "verify-report",
         lambda ws: edit_statement(ws, lambda s: s["predicate"].update(trust_me=True)), 2, "trust_me"),
    Case("attestation-subject-missing-file", "verify-report",
         lambda ws: edit_statement(ws, lambda s: s.update(subject=s["subject"][1:])), 2, "subjects"),
    Case("attestation-check-failed", "verify-report", predicate_check_failed, 1, "did not pass verify"),
    Case("attestation-and-report-disagree", "verify-report", predicate_passes_but_report_fails, 2, "disagree"),
    Case("attestation-unsigned-key-required", "verify-report",
         lambda ws: publish_args(ws, "--trusted-key", keys(ws)[1]), 2, "not signed"),
    Case("attestation-signed-by-other-key", "verify-report", signed_by_other_key, 2, "trusted key"),
    Case("attestation-signed-then-altered", "verify-report", signed_then_altered, 2, "no signature verifies"),
    Case("attestation-require-signature-without-key", "verify-report",
         lambda ws: publish_args(ws, "--require-signature"), 2, "--trusted-key"),
    Case("trusted-key-not-pem", "verify-report",
         lambda ws: publish_args(ws, "--trusted-key", with_file(ws, "k.pub", b"ssh-ed25519 AAAA")), 2, "k.pub"),
    # publish inputs
    Case("publish-registry-is-a-file", "publish",
         lambda ws: ["publish", art(ws), "--registry", with_file(ws, "reg.txt", b"x"), "--results", results(ws)],
         2, "reg.txt"),
    Case("publish-registry-s3", "publish",
         lambda ws: ["publish", art(ws), "--registry", "s3://bucket/x", "--results", results(ws)], 2, "s3://"),
    Case("publish-version-exists", "publish", lambda ws: publish_args(ws, "--version", "1.0.0"), 2, "never overwritten"),
    Case("publish-name-with-slash", "publish", lambda ws: publish_args(ws, "--name", "../../evil"), 2, "../../evil"),
    Case("publish-registry-name-symlink", "publish", registry_name_symlink, 2, "symlink"),
    Case("publish-failed-verify", "publish", failing_results, 1, "size"),
    # verify inputs
    Case("verify-artifact-symlink", "verify", step(lambda ws: symlink_in_artifact(ws, "/etc/passwd"), verify_args),
         2, "extra.bin"),
    Case("verify-reference-missing", "verify", lambda ws: verify_args(ws, "--reference", ws.work / "gone.pt"), 2, "gone.pt"),
    Case("verify-sign-key-missing", "verify", lambda ws: verify_args(ws, "--sign-key", ws.work / "none.key"), 2, "none.key"),
    Case("verify-sign-key-garbage", "verify",
         lambda ws: verify_args(ws, "--sign-key", with_file(ws, "bad.key", b"-----BEGIN nothing")), 2, "bad.key"),
    Case("verify-golden-is-file", "verify",
         lambda ws: ["verify", art(ws), "--golden", with_file(ws, "g.txt", b"x"), "--policy", ws.world.policy], 2, "g.txt"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_gate(case, fuzz_world, tmp_path, monkeypatch):
    run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)


def test_copies_of_the_verified_bytes_publish_and_signed_attestations_verify(fuzz_world, tmp_path, monkeypatch):
    """The control for the table: the untouched copy publishes (exit 0), with a signature
    checked against the trusted key; the release records the signer and both gate files."""
    from click.testing import CliRunner

    from optim.cli.main import cli

    ws = make_workspace(tmp_path, fuzz_world)
    priv, pub = keys(ws)
    sign(ws, priv)
    monkeypatch.chdir(ws.work)
    r = CliRunner().invoke(cli, [str(a) for a in publish_args(ws, "--trusted-key", pub, "--require-signature",
                                                              "--version", "2.0.0", "--json")])
    assert r.exit_code == 0, r.output
    rel = ws.registry / "tiny-onnx-fp32" / "2.0.0"
    m = json.loads((rel / "manifest.json").read_text())
    assert m["gate"]["signed"] is True and len(m["gate"]["signature_verified_by"]) == 1
    assert (rel / "gate" / "verify.intoto.json").read_bytes() == envelope(ws).read_bytes()
    assert {f["path"] for f in m["artifact"]["metadata_files"]} == {"artifact.json"}
