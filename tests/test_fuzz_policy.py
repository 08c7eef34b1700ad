"""Fuzz table, area "policy" (issue 11): bad policy files through the real ``optim verify``.

Every policy problem is an input error (exit 2) naming the key or the file, raised before
anything is measured: a typo'd device key must never silently skip a latency budget. A pin
mismatch or an absolute floor the model cannot meet is a failed check (exit 1). The world's
model is a random-weight resnet18 (top-1 ≈ 0.1 on the golden digits).
"""

from __future__ import annotations

import pickle

import pytest

from fuzz_harness import Case, make_workspace, pickle_bomb, run_case

GOOD = '[defaults]\nrequired_devices = ["host"]\nsize_mb = 100\np95_ms = { host = 5000 }\n'


def verify_args(ws, policy):
    art = ws.copy(ws.world.artifact)
    args = ["verify", art, "--golden", ws.world.golden, "--reference", ws.world.ckpt,
            "--runs", 3, "--warmup", 1, "--trials", 1, "--out", "out"]
    return args + ([] if policy is None else ["--policy", policy])


def policy_text(text: str, name: str = "policy.toml"):
    """A case whose policy file holds ``text``."""
    def make(ws):
        p = ws.work / name
        p.write_text(text)
        return verify_args(ws, p)
    return make


def policy_bytes(data: bytes, name: str = "policy.toml"):
    def make(ws):
        p = ws.work / name
        p.write_bytes(data)
        return verify_args(ws, p)
    return make


def implicit_policy(ws):
    """No --policy: ./optim.toml (the command's working directory) has a device typo."""
    (ws.work / "optim.toml").write_text("[defaults]\np95_ms = { hots = 1 }\n")
    return verify_args(ws, None)


def symlink_outside(ws):
    p = ws.work / "policy.toml"
    p.symlink_to(ws.outside / "canary.txt")
    return verify_args(ws, p)


def directory_policy(ws):
    (ws.work / "policy.d").mkdir()
    return verify_args(ws, ws.work / "policy.d")


def pickled_policy(ws):
    p = ws.work / "policy.toml"
    p.write_bytes(pickle.dumps(pickle_bomb(ws.payload)))
    return verify_args(ws, p)


CASES = [
    # device keys: a typo must not silently skip a budget
    Case("policy-device-typo-hots", "policy", policy_text(GOOD + "[targets.\"onnx-*\"]\np95_ms = { hots = 1 }\n"), 2, "'hots'"),
    Case("policy-required-device-unknown", "policy", policy_text('[defaults]\nrequired_devices = ["pixel9"]\nsize_mb = 100\n'), 2, "'pixel9'"),
    Case("policy-device-typo-implicit-optim-toml", "policy", implicit_policy, 2, "optim.toml"),
    # keys and values
    Case("policy-unknown-top-level-key", "policy", policy_text('golden_sha = "ab"\n' + GOOD), 2, "golden_sha"),
    Case("policy-unknown-section-key", "policy", policy_text("[defaults]\nsize_mbb = 20\n"), 2, "defaults.size_mbb"),
    Case("policy-unknown-section", "policy", policy_text("[default]\nsize_mb = 20\n"), 2, "default"),
    Case("policy-wrong-type-string", "policy", policy_text('[defaults]\nsize_mb = "20"\n'), 2, "defaults.size_mb"),
    Case("policy-wrong-type-bool", "policy", policy_text("[defaults]\nsize_mb = true\n"), 2, "defaults.size_mb"),
    Case("policy-negative-budget", "policy", policy_text("[defaults]\nsize_mb = -5\n"), 2, "defaults.size_mb"),
    Case("policy-nan", "policy", policy_text("[defaults]\nsize_mb = 100\nmax_top1_drop_pts = nan\n"), 2, "defaults.max_top1_drop_pts"),
    Case("policy-inf-p95", "policy", policy_text("[defaults]\np95_ms = { host = inf }\n"), 2, "defaults.p95_ms.host"),
    Case("policy-floor-as-percent", "policy", policy_text("[defaults]\nmin_top1 = 90\n"), 2, "defaults.min_top1"),
    Case("policy-floor-table-wrong-type", "policy", policy_text('[defaults]\nmin_macro_f1 = { class = "high" }\n'), 2, "defaults.min_macro_f1.class"),
    Case("policy-pin-not-hex", "policy", policy_text('golden_sha256 = "not-a-digest"\n' + GOOD), 2, "golden_sha256"),
    Case("policy-schema-version-2", "policy", policy_text("schema_version = 2\n" + GOOD), 2, "schema_version"),
    # the file itself
    Case("policy-not-toml", "policy", policy_text("[defaults\nsize_mb = 1\n"), 2, "policy.toml"),
    Case("policy-duplicate-key", "policy", policy_text("[defaults]\nsize_mb = 100\nsize_mb = 1000\n"), 2, "policy.toml"),
    Case("policy-not-utf8", "policy", policy_bytes(GOOD.encode() + b"# \xff\xfe\n"), 2, "policy.toml"),
    Case("policy-pickle-bomb", "policy", pickled_policy, 2, "policy.toml"),
    Case("policy-too-large", "policy", policy_bytes(b"#" * 1_000_001), 2, "policy.toml"),
    Case("policy-missing-file", "policy", lambda ws: verify_args(ws, ws.work / "nope.toml"), 2, "nope.toml"),
    Case("policy-is-directory", "policy", directory_policy, 2, "policy.d"),
    Case("policy-is-dev-null", "policy", lambda ws: verify_args(ws, "/dev/null"), 2, "/dev/null"),
    Case("policy-symlink-outside", "policy", symlink_outside, 2, "policy.toml"),
    # a gate that judges nothing
    Case("policy-sets-no-budget", "policy", policy_text("schema_version = 1\n"), 2, "sets no budget"),
    Case("policy-budget-for-other-format-only", "policy", policy_text('[targets."tflite-*"]\nsize_mb = 1\n'), 2, "sets no budget"),
    Case("policy-pin-only-no-budget", "policy", policy_text('golden_sha256 = "' + "0" * 64 + '"\n'), 2, "sets no budget"),
    # failed checks (the measurement runs)
    Case("policy-golden-pin-mismatch", "policy", policy_text('golden_sha256 = "' + "0" * 64 + '"\n' + GOOD), 1, "golden_pin: golden set sha256"),
    Case("policy-reference-pin-mismatch", "policy", policy_text('reference_sha256 = "' + "0" * 64 + '"\n' + GOOD), 1, "reference_pin: "),
    Case("policy-floor-unmet", "policy", policy_text(GOOD + "min_top1 = 0.9\n"), 1, "min_top1[class]: "),
    Case("policy-floor-unknown-head", "policy", policy_text(GOOD + "min_macro_f1 = { digit = 0.01 }\n"), 1, "min_macro_f1[digit]: the policy sets"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_policy(case, fuzz_world, tmp_path, monkeypatch):
    run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)
