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


# ---- issue 11: policy typos and forged values are errors, never a silently skipped budget -------
def load_text(tmp_path, body, **kw):
    p = tmp_path / "optim.toml"
    p.write_text(body)
    return p, Policy.load(p, **kw)


@pytest.mark.parametrize("body,key,device", [
    ("[defaults]\np95_ms = { hots = 1 }\n", "defaults.p95_ms", "hots"),
    ('[defaults]\nrequired_devices = ["host", "pixel9"]\n', "defaults.required_devices", "pixel9"),
    ('[targets."*-int8"]\np95_ms = { host = 30, Pixel6a = 25 }\n', "targets.*-int8.p95_ms", "Pixel6a"),
])
def test_unknown_device_names_key_file_and_known_names(tmp_path, body, key, device):
    p = tmp_path / "optim.toml"
    p.write_text(body)
    with pytest.raises(InputError) as e:
        Policy.load(p)
    msg = str(e.value)
    assert key in msg and repr(device) in msg and str(p) in msg
    assert "host" in msg and "pixel6a" in msg  # the known names are listed


def test_typo_of_host_suggests_host(tmp_path):
    with pytest.raises(InputError, match="did you mean 'host'"):
        load_text(tmp_path, "[defaults]\np95_ms = { hots = 1 }\n")


def test_known_devices_are_builtin_profiles_users_profiles_and_host(tmp_path, monkeypatch):
    body = '[defaults]\np95_ms = { host = 1, pixel6a = 2 }\nrequired_devices = ["my-phone"]\n'
    monkeypatch.setenv("OPTIM_CONFIG_DIR", str(tmp_path / "cfg"))
    with pytest.raises(InputError, match="'my-phone'"):
        load_text(tmp_path, body)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "devices.toml").write_text('[profiles.my-phone]\nname = "My phone"\n')
    _, pol = load_text(tmp_path, body)
    assert pol.resolve(["x"]).required_devices == ("my-phone",)
    # an explicit list replaces the profiles (host is always known)
    with pytest.raises(InputError, match="'pixel6a'"):
        load_text(tmp_path, body, known_devices=["my-phone"])


def test_host_only_policy_does_not_read_the_devices_config(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIM_CONFIG_DIR", str(tmp_path / "cfg"))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "devices.toml").write_text("not toml [")
    _, pol = load_text(tmp_path, "[defaults]\np95_ms = { host = 5 }\n")
    assert pol.resolve(["x"]).p95_ms == {"host": 5}
    with pytest.raises(InputError, match="devices.toml"):  # a device profile is needed: the broken config is named
        load_text(tmp_path, "[defaults]\np95_ms = { pixel6a = 5 }\n")


@pytest.mark.parametrize("body,key", [
    ("[defaults]\nsize_mb = nan\n", "defaults.size_mb"),
    ("[defaults]\nsize_mb = inf\n", "defaults.size_mb"),
    ("[defaults]\np95_ms = { host = inf }\n", "defaults.p95_ms.host"),
    ("[defaults]\nmax_top1_drop_pts = -nan\n", "defaults.max_top1_drop_pts"),
    ("[defaults]\nmin_top1 = nan\n", "defaults.min_top1"),
    ("[defaults]\nsize_mb = true\n", "defaults.size_mb"),
    ('[defaults]\nsize_mb = "20"\n', "defaults.size_mb"),
    ("[defaults]\nmin_class_support = 2.5\n", "defaults.min_class_support"),
    ("[defaults]\nrequired_devices = \"host\"\n", "defaults.required_devices"),
    ("[defaults]\nrequired_devices = [1]\n", "defaults.required_devices"),
    ("[defaults]\nmin_top1 = 90\n", "defaults.min_top1"),
    ("[defaults]\nmin_top1 = -0.1\n", "defaults.min_top1"),
    ("[defaults]\nmin_tail_top1 = { digit = 1.5 }\n", "defaults.min_tail_top1.digit"),
    ('[defaults]\nmin_macro_f1 = "high"\n', "defaults.min_macro_f1"),
    ("[defaults]\nmin_top1 = true\n", "defaults.min_top1"),
    ('golden_sha256 = "abc"\n[defaults]\nsize_mb = 1\n', "golden_sha256"),
    ("golden_sha256 = 12\n[defaults]\nsize_mb = 1\n", "golden_sha256"),
    ('reference_sha256 = "' + "g" * 64 + '"\n[defaults]\nsize_mb = 1\n', "reference_sha256"),
    ("golden_sha = 1\n", "golden_sha"),
    ("targets = 3\n", "targets"),
])
def test_wrong_types_and_non_finite_numbers_name_the_key(tmp_path, body, key):
    p = tmp_path / "optim.toml"
    p.write_text(body)
    with pytest.raises(InputError) as e:
        Policy.load(p)
    assert key in str(e.value) and str(p) in str(e.value)


def test_directory_not_utf8_and_huge_file(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        Policy.load(tmp_path)
    p = tmp_path / "optim.toml"
    p.write_bytes(b"[defaults]\nsize_mb = 1\n# \xff\xfe\n")
    with pytest.raises(InputError, match="not valid TOML"):
        Policy.load(p)
    p.write_bytes(b"#" * 2_000_001)
    with pytest.raises(InputError, match="at most"):
        Policy.load(p)


def test_pins_are_read_lowercased_and_copied_into_every_budget(tmp_path):
    g, r = "AB" * 32, "0f" * 32
    _, pol = load_text(tmp_path, f'golden_sha256 = "{g}"\nreference_sha256 = "{r}"\n[targets."onnx-*"]\nsize_mb = 3\n')
    assert pol.golden_sha256 == g.lower() and pol.reference_sha256 == r
    b = pol.resolve(["onnx-fp32"])
    assert b.golden_sha256 == g.lower() and b.reference_sha256 == r
    # pins alone are not a budget: verify still refuses a policy that judges nothing
    assert not Policy.from_dict({"golden_sha256": r}).resolve(["x"]).has_checks


def test_floors_number_or_table_merge_per_head(tmp_path):
    _, pol = load_text(tmp_path, '[defaults]\nmin_top1 = 0.5\nmin_macro_f1 = { tags = 0.4 }\n'
                                 '[targets."*-int8"]\nmin_top1 = { digit = 0.8 }\nmin_tail_top1 = 0.3\n'
                                 '[targets."onnx-*"]\nmin_top1 = 0.6\n')
    b = pol.resolve(["onnx-int8"])
    assert b.min_top1 == {"*": 0.6, "digit": 0.8}  # a later number sets "*"; the head's own floor stays
    assert b.min_tail_top1 == {"*": 0.3} and b.min_macro_f1 == {"tags": 0.4}
    t = pol.resolve(["tflite-fp32"])
    assert t.min_top1 == {"*": 0.5} and t.min_tail_top1 == {}
    # floors are checks but need no reference
    f = Policy.from_dict({"defaults": {"min_top1": 0.5}}).resolve(["x"])
    assert f.has_checks and not f.needs_reference and f.has_floors
    for key in ("min_tail_top1", "min_macro_f1"):
        f = Policy.from_dict({"defaults": {key: {"digit": 0.5}}}).resolve(["x"])
        assert f.has_checks and not f.needs_reference
    # the resolved budget (written into verify.json) is plain JSON
    assert b.model_dump(mode="json")["min_top1"] == {"*": 0.6, "digit": 0.8}


# ---- property: whatever the TOML holds, loading either gives a Policy or an InputError -----------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KEYS = ["size_mb", "p95_ms", "required_devices", "max_top1_drop_pts", "min_class_support", "decide_on",
         "min_top1", "min_tail_top1", "min_macro_f1", "min_top1_agreement", "tail_max_count", "sizemb"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=8), st.sampled_from(["host", "hots", "pixel6a", "estimate", "ci"]))
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.sampled_from(["host", "hots", "digit", "*", "pixel6a"]), c, max_size=3), max_leaves=6)
_sections = st.dictionaries(st.sampled_from(_KEYS), _values, max_size=4)
_policies = st.fixed_dictionaries({}, optional={
    "schema_version": _values, "golden_sha256": st.one_of(_values, st.just("ab" * 32)),
    "defaults": st.one_of(_sections, _values), "targets": st.dictionaries(st.sampled_from(["*", "onnx-*"]), _sections, max_size=2),
    "extra": _values})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_policies)
def test_policy_parser_total(data):
    try:
        pol = Policy.from_dict(data, "fuzz.toml", known_devices=["pixel6a"])
    except InputError as e:
        assert "fuzz.toml" in str(e)
        return
    b = pol.resolve(["onnx-int8", "onnx"])
    for v in [b.size_mb, *b.p95_ms.values(), *b.min_top1.values(), *b.min_tail_top1.values(), *b.min_macro_f1.values()]:
        assert v is None or (isinstance(v, float) and v == v and abs(v) != float("inf"))
    assert set(b.p95_ms) | set(b.required_devices) <= {"host", "pixel6a"}
    assert all(0 <= v <= 1 for t in (b.min_top1, b.min_tail_top1, b.min_macro_f1) for v in t.values())
