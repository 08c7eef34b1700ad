"""The policy file optim.toml: validation errors name key and file; sections merge in order."""

from __future__ import annotations

import pytest

from optim.errors import InputError
from optim.gate.policy import Policy, find_policy

GOOD = """
schema_version = 1
[defaults]
required_devices = ["host"]
max_top1_drop_pts = 1.0
max_class_drop_pts = 10
min_class_support = 25

[targets."*-int8"]
size_mb = 20
p95_ms = { host = 30, pixel6a = 25 }

[targets."onnx-*"]
p95_ms = { host = 12 }
max_top1_drop_pts = 0.5
"""


def test_sections_merge_in_file_order(tmp_path):
    p = tmp_path / "optim.toml"
    p.write_text(GOOD)
    pol = Policy.load(p)
    assert pol.sha256 and len(pol.sha256) == 64
    b = pol.resolve(["onnx-int8", "onnx"])
    assert b.sections == ("defaults", "*-int8", "onnx-*")
    assert b.size_mb == 20
    assert b.p95_ms == {"host": 12, "pixel6a": 25}  # per-device merge, later section wins
    assert b.max_top1_drop_pts == 0.5 and b.max_class_drop_pts == 10 and b.min_class_support == 25
    assert b.required_devices == ("host",)
    t = pol.resolve(["tflite-fp32", "tflite"])
    assert t.sections == ("defaults",) and t.size_mb is None and t.p95_ms == {}
    assert t.min_class_support == 25 and t.decide_on == "estimate"


def test_typo_names_key_and_file(tmp_path):
    p = tmp_path / "optim.toml"
    p.write_text('[targets."*"]\nsize_mbb = 20\n')
    with pytest.raises(InputError) as e:
        Policy.load(p)
    msg = str(e.value)
    assert "targets.*.size_mbb" in msg and "unknown key" in msg and str(p) in msg


@pytest.mark.parametrize("body,key", [
    ("[defaults]\nsize_mb = -3\n", "defaults.size_mb"),
    ("[defaults]\np95_ms = { host = 0 }\n", "defaults.p95_ms"),
    ("[defaults]\nmin_top1_agreement = 97\n", "defaults.min_top1_agreement"),
    ("[defaults]\ndecide_on = \"median\"\n", "defaults.decide_on"),
    ("schema_version = 2\n", "schema_version"),
    ("[default]\nsize_mb = 3\n", "default"),
])
def test_bad_values_name_the_key(tmp_path, body, key):
    p = tmp_path / "optim.toml"
    p.write_text(body)
    with pytest.raises(InputError, match=key.replace("*", r"\*")):
        Policy.load(p)


def test_not_toml_and_missing(tmp_path):
    p = tmp_path / "optim.toml"
    p.write_text("[defaults\n")
    with pytest.raises(InputError, match="not valid TOML"):
        Policy.load(p)
    with pytest.raises(InputError, match="does not exist"):
        Policy.load(tmp_path / "nope.toml")
    assert find_policy(None, tmp_path / "empty") is None


def test_needs_reference_and_has_checks():
    pol = Policy.from_dict({"targets": {"*": {"size_mb": 5}}})
    b = pol.resolve(["x"])
    assert b.has_checks and not b.needs_reference
    assert not pol.resolve(["x"]).needs_reference
    assert not Policy.from_dict({}).resolve(["x"]).has_checks
    assert Policy.from_dict({"defaults": {"min_top1_agreement": 0.9}}).resolve(["x"]).needs_reference
