"""Checkpoint loading: every accepted format and every bad input has a test."""

from __future__ import annotations

import os
import pickle
import random
import sys

import pytest
import torch
import torchvision

from optim.checkpoint import build_architecture, extract_state_dict, load_checkpoint, parse_arch_ref
from optim.errors import InputError, UnsafeCheckpointError
from optim.model_card import ModelCard, card_path_for

from conftest import small_card

X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def ref_model():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _same_outputs(loaded, ref) -> None:
    with torch.inference_mode():
        assert torch.allclose(loaded(X), ref(X), atol=1e-5)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {}},
        lambda sd: {"module." + k: v for k, v in sd.items()},
        lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}},
    ],
    ids=["raw", "nested-state_dict", "nested-model", "dataparallel", "nested-dataparallel"],
)
def test_state_dict_variants_load_with_arch(tmp_path, ref_model, wrap):
    path = tmp_path / "m.pt"
    torch.save(wrap(ref_model.state_dict()), path)
    loaded = load_checkpoint(path, arch="torchvision:resnet18(num_classes=10)", input_shape=(1, 3, 32, 32))
    assert loaded.source_format == "state_dict"
    assert not loaded.model.training
    _same_outputs(loaded.model, ref_model)
    assert loaded.card_inferred and loaded.card.heads[0].num_classes == 10


def test_state_dict_uses_card_architecture_and_kwargs(tmp_path, ref_model):
    path = tmp_path / "m.pt"
    torch.save(ref_model.state_dict(), path)
    small_card().save(card_path_for(path))
    loaded = load_checkpoint(path)
    assert loaded.card_path == card_path_for(path)
    assert loaded.card.heads[0].name == "class"
    _same_outputs(loaded.model, ref_model)


def test_exported_program(tmp_path, ref_model):
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(ref_model, (X,)), path)
    loaded = load_checkpoint(path, input_shape=(1, 3, 32, 32))
    assert loaded.source_format == "exported_program"
    _same_outputs(loaded.model, ref_model)


def test_torchscript_needs_trust_flag(tmp_path, ref_model):
    # issue 11: TorchScript runs code stored in the file, so it is behind --trust-pickle now
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(ref_model, X), path)
    with pytest.raises(UnsafeCheckpointError, match=r"TorchScript.*--trust-pickle.*state_dict"):
        load_checkpoint(path, input_shape=(1, 3, 32, 32))
    loaded = load_checkpoint(path, input_shape=(1, 3, 32, 32), trust_pickle=True)
    assert loaded.source_format == "torchscript"
    _same_outputs(loaded.model, ref_model)


def test_pickled_module_needs_trust_flag(tmp_path, ref_model):
    path = tmp_path / "whole.pt"
    torch.save(ref_model, path)
    with pytest.raises(UnsafeCheckpointError, match="--trust-pickle"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, trust_pickle=True, input_shape=(1, 3, 32, 32))
    assert loaded.source_format == "pickled_module"
    _same_outputs(loaded.model, ref_model)


class _FileCreatingPayload:
    """Unpickling this would run ``touch MARKER`` — the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": _FileCreatingPayload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="can run arbitrary code"):
        load_checkpoint(path, arch="torchvision:resnet18")
    assert not marker.exists(), "loading ran code from the checkpoint"


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path, ref_model):
    good = tmp_path / "good.pt"
    torch.save(ref_model.state_dict(), good)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_checkpoint(bad, arch="torchvision:resnet18(num_classes=10)")


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(InputError, match=str(path.name)):
        load_checkpoint(path, arch="torchvision:resnet18")


def test_valid_torch_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "list.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(InputError, match="not a checkpoint optim can use.*epoch"):
        load_checkpoint(path, arch="torchvision:resnet18")


def test_state_dict_without_architecture(tmp_path, ref_model):
    path = tmp_path / "m.pt"
    torch.save(ref_model.state_dict(), path)
    with pytest.raises(InputError, match="needs an architecture"):
        load_checkpoint(path)


def test_unknown_architecture(tmp_path, ref_model):
    path = tmp_path / "m.pt"
    torch.save(ref_model.state_dict(), path)
    with pytest.raises(InputError, match="unknown torchvision architecture 'resnet19'"):
        load_checkpoint(path, arch="torchvision:resnet19")
    with pytest.raises(InputError, match="not allowed"):  # issue 11: user modules must be allowed first
        load_checkpoint(path, arch="no_such_pkg.models:net")
    with pytest.raises(InputError, match="cannot be imported"):
        load_checkpoint(path, arch="no_such_pkg.models:net", allow_modules=["no_such_pkg"])


def test_state_dict_that_does_not_fit_lists_keys_and_shapes(tmp_path, ref_model):
    sd = dict(ref_model.state_dict())
    sd.pop("layer1.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "m.pt"
    torch.save(sd, path)
    with pytest.raises(InputError) as err:
        load_checkpoint(path, arch="torchvision:resnet18")  # 1000 classes: fc shapes differ
    msg = str(err.value)
    assert "missing keys (1): layer1.0.conv1.weight" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "fc.weight: checkpoint (10, 512) vs model (1000, 512)" in msg


def test_user_factory_reference(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(
        "import torch\n"
        "def make(width=4, num_classes=3):\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.AdaptiveAvgPool2d(1),\n"
        "                               torch.nn.Flatten(), torch.nn.Linear(width, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # issue 11: a user module is imported only when allowed (the package or the module itself)
    model = build_architecture("userpkg.nets:make(width=6)", allow_modules=["userpkg"])
    path = tmp_path / "u.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(InputError, match=r"not allowed.*--allow-module userpkg\.nets"):
        load_checkpoint(path, arch="userpkg.nets:make(width=6)", input_shape=(1, 3, 16, 16))
    loaded = load_checkpoint(path, arch="userpkg.nets:make(width=6)", input_shape=(1, 3, 16, 16), allow_modules=["userpkg.nets"])
    assert loaded.card.heads[0].num_classes == 3
    sys.modules.pop("userpkg.nets", None)
    sys.modules.pop("userpkg", None)


def test_parse_arch_ref():
    assert parse_arch_ref("torchvision:resnet18(num_classes=250, dropout=0.2)") == (
        "torchvision", "resnet18", {"num_classes": 250, "dropout": 0.2})
    assert parse_arch_ref("pkg.mod:factory") == ("pkg.mod", "factory", {})
    for bad in ["resnet18", "torchvision:resnet18(250)", "torchvision:resnet18(num_classes=os.system)", "x:y(a=1"]:
        with pytest.raises(InputError):
            parse_arch_ref(bad)


def test_extract_state_dict_ignores_non_tensor_dicts():
    assert extract_state_dict({"a": 1}) is None
    sd = extract_state_dict({"net": {"module.w": torch.zeros(1)}})
    assert list(sd) == ["w"]


# ---- issue 11: no file runs code, corruption caught at the door, lineage ------------------
from ckpt_forgery import TinyNet, flip_bytes, pt2_with_evil_sample_inputs, pt2_with_evil_weight, rewrite_zip, save_pt2  # noqa: E402
from fuzz_harness import pickle_bomb  # noqa: E402

from optim.checkpoint import (  # noqa: E402
    check_pt2_archive, check_zip, make_lineage, never_allowed, pickle_globals, validate_lineage)


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory):
    return save_pt2(tmp_path_factory.mktemp("pt2") / "tiny.pt2")


def test_clean_pt2_has_no_unsafe_members_and_loads(good_pt2):
    names = check_zip(good_pt2)
    assert check_pt2_archive(good_pt2, names) == []
    loaded = load_checkpoint(good_pt2, input_shape=(1, 3, 8, 8))
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(x), TinyNet.make()(x))


@pytest.mark.parametrize("forge", [pt2_with_evil_sample_inputs, pt2_with_evil_weight], ids=["sample-inputs", "weight"])
def test_malicious_pt2_member_is_refused_and_never_runs(tmp_path, good_pt2, forge):
    marker = tmp_path / "PWNED"
    evil = forge(good_pt2, tmp_path / "evil.pt2", pickle_bomb(marker))
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(evil, input_shape=(1, 3, 8, 8))
    member = "sample_inputs/model.pt" if forge is pt2_with_evil_sample_inputs else "data/weights/weight_"
    assert member in str(err.value) and "--trust-pickle" in str(err.value) and str(evil) in str(err.value)
    assert not marker.exists(), "loading ran code from the .pt2"


@pytest.mark.parametrize("forge", [pt2_with_evil_sample_inputs, pt2_with_evil_weight], ids=["sample-inputs", "weight"])
def test_torch_export_load_runs_weights_only_even_without_the_precheck(tmp_path, good_pt2, forge, monkeypatch):
    # second line of defence: TORCH_FORCE_WEIGHTS_ONLY_LOAD covers torch.export.load's torch.load calls
    import optim.checkpoint as ck

    monkeypatch.setattr(ck, "check_pt2_archive", lambda path, names: [])
    marker = tmp_path / "PWNED"
    evil = forge(good_pt2, tmp_path / "evil.pt2", pickle_bomb(marker))
    with pytest.raises(InputError, match="cannot be loaded"):
        load_checkpoint(evil, input_shape=(1, 3, 8, 8))
    assert not marker.exists(), "torch.export.load unpickled a payload despite TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # restored after loading


def test_trust_pickle_means_trust_for_pt2(tmp_path, good_pt2):
    # documented behaviour: --trust-pickle hands the file to torch.export.load unchecked — the
    # payload runs. This proves the refusal above is what protects users, not a broken forgery.
    marker = tmp_path / "PWNED"
    evil = pt2_with_evil_sample_inputs(good_pt2, tmp_path / "evil.pt2", pickle_bomb(marker))
    with pytest.raises(InputError):
        load_checkpoint(evil, input_shape=(1, 3, 8, 8), trust_pickle=True)
    assert marker.exists()


def test_pt2_with_compiled_code_or_foreign_members_is_refused(tmp_path, good_pt2):
    aoti = rewrite_zip(good_pt2, tmp_path / "aoti.pt2", add={"data/aotinductor/model/model.so": b"\x7fELF..."})
    with pytest.raises(UnsafeCheckpointError, match=r"aotinductor/model/model\.so \(compiled code\)"):
        load_checkpoint(aoti, input_shape=(1, 3, 8, 8))
    opaque = rewrite_zip(good_pt2, tmp_path / "opaque.pt2", add={"data/constants/opaque_obj_0": b"\x80\x04N."})
    assert any("opaque_obj_0" in u for u in check_pt2_archive(opaque, check_zip(opaque)))


def test_flipped_bytes_in_a_zip_checkpoint_fail_the_crc(tmp_path, ref_model):
    good = tmp_path / "good.pt"
    torch.save({"state_dict": ref_model.state_dict()}, good)
    bad = flip_bytes(good, tmp_path / "flipped.pt", count=3000)
    with pytest.raises(InputError, match=r"flipped\.pt is corrupt: member '.*' fails its CRC"):
        load_checkpoint(bad, arch="torchvision:resnet18(num_classes=10)")


def test_flipped_bytes_in_a_pt2_fail_the_crc(tmp_path):
    big = tmp_path / "r.pt2"
    m = torchvision.models.resnet18(num_classes=10).eval()
    torch.export.save(torch.export.export(m, (X,)), big)
    bad = flip_bytes(big, tmp_path / "flipped.pt2", count=3000)
    with pytest.raises(InputError, match="fails its CRC"):
        load_checkpoint(bad, input_shape=(1, 3, 32, 32))


# Random bytes that begin with a valid pickle of plain data (None, [], {}, an extension
# code), found by drawing 200,000 noise files: each once made the loader say "a pickle that
# torch's restricted loader cannot read" (a CI run drew one).
_NOISE_THAT_LOOKS_LIKE_A_PICKLE = [b"N.\xd1\x9e\x15\x97", b"\x82q.'\xea\xd2", b"].:\xb4+B", b"}.\xfb@a\x05",
                                   b"\x8f.\x0e|\xc7E", b"(.N\x03\x83%"]


def test_garbage_is_not_a_checkpoint_and_gets_no_trust_advice(tmp_path):
    rng = random.Random(0)
    samples = [head + rng.randbytes(4096) for head in _NOISE_THAT_LOOKS_LIKE_A_PICKLE]
    samples += [random.Random(seed).randbytes(4096) for seed in range(300)]
    for i, data in enumerate(samples):  # never the --trust-pickle advice, never "a pickle"
        path = tmp_path / f"noise{i}.pt"
        path.write_bytes(data)
        with pytest.raises(InputError) as err:
            load_checkpoint(path, arch="torchvision:resnet18")
        assert "not a PyTorch checkpoint" in str(err.value) and "--trust-pickle" not in str(err.value), str(err.value)
        assert not isinstance(err.value, UnsafeCheckpointError)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.pt is empty"):
        load_checkpoint(empty)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_unsafe_pickle_names_the_refused_global(tmp_path, writer):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": _FileCreatingPayload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(UnsafeCheckpointError, match=r"(posix|os)\.system.*--trust-pickle"):
        load_checkpoint(path, arch="torchvision:resnet18")
    assert not marker.exists()


def test_legacy_torch_save_names_the_refused_global_of_its_object_pickle(tmp_path):
    # the legacy (non-zip) layout starts with three harmless pickles; the global is in the fourth
    marker = tmp_path / "PWNED"
    path = tmp_path / "legacy.pt"
    torch.save({"state_dict": _FileCreatingPayload(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match=r"(posix|os)\.system.*--trust-pickle"):
        load_checkpoint(path, arch="torchvision:resnet18")
    assert not marker.exists()


def test_pickle_globals_reads_without_unpickling(tmp_path):
    import io as _io

    data = pickle.dumps({"a": _FileCreatingPayload(tmp_path / "x"), "b": [1, 2]}, protocol=4)
    assert pickle_globals(_io.BytesIO(data)) == {f"{os.system.__module__}.system"}
    assert pickle_globals(_io.BytesIO(pickle.dumps({"a": 1}, protocol=2))) == set()
    assert pickle_globals(_io.BytesIO(b"\x80\x04garbage")) is None
    assert pickle_globals(_io.BytesIO(b"0.")) is None  # opcodes up to a STOP, but POP on an empty stack
    assert pickle_globals(_io.BytesIO(b")).")) is None  # two objects left under the STOP
    stream = _io.BytesIO(pickle.dumps(1, protocol=2) + pickle.dumps([], protocol=2))
    assert pickle_globals(stream) == set() and pickle_globals(stream) == set()  # left after each STOP
    assert not (tmp_path / "x").exists()


# ---- architecture references ----------------------------------------------------------------
@pytest.mark.parametrize("ref", [
    "os:system(command='touch {m}')", "posix:system(command='touch {m}')", "subprocess:call(args=['touch', '{m}'])",
    "builtins:eval(source='1')", "shutil:rmtree(path='{m}')", "importlib:import_module(name='os')",
    "torch.serialization:load(f='{m}', weights_only=False)", "numpy:load(file='{m}', allow_pickle=True)",
    "webbrowser:open(url='file://{m}')", "optim.checkpoint:load_checkpoint(path='{m}', trust_pickle=True)",
])
def test_dangerous_architecture_modules_are_never_imported(tmp_path, ref, monkeypatch):
    marker = tmp_path / "PWNED"
    ref = ref.format(m=marker)
    module = ref.split(":")[0]
    before = set(sys.modules)
    for allow in ([], [module], [module.split(".")[0]]):
        with pytest.raises(InputError, match="never allowed|not allowed") as err:
            build_architecture(ref, allow_modules=allow, source="model card c.toml")
        assert "c.toml" in str(err.value) or "allowed module" in str(err.value)
    assert not marker.exists()
    assert set(sys.modules) == before or module in before  # nothing new imported for the reference


def test_factory_must_be_public_and_defined_in_the_allowed_module(tmp_path, monkeypatch):
    pkg = tmp_path / "evilpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("from os import system\nimport torch\n"
                                 "def _hidden():\n    return torch.nn.Identity()\n"
                                 "def make():\n    return torch.nn.Identity()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(InputError, match="leading underscore"):
            build_architecture("evilpkg.nets:_hidden", allow_modules=["evilpkg"])
        with pytest.raises(InputError, match="must be a public"):
            build_architecture("evilpkg.nets:torch.load", allow_modules=["evilpkg"])
        with pytest.raises(InputError, match=r"defined in an allowed module \(it comes from '(posix|nt)'\)"):
            build_architecture("evilpkg.nets:system(command='true')", allow_modules=["evilpkg"])
        assert isinstance(build_architecture("evilpkg.nets:make", allow_modules=["evilpkg"]), torch.nn.Identity)
    finally:
        sys.modules.pop("evilpkg.nets", None)
        sys.modules.pop("evilpkg", None)


def test_card_allowed_modules_and_its_refusals(tmp_path, monkeypatch):
    pkg = tmp_path / "cardpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import torchvision\ndef net(num_classes=10):\n    return torchvision.models.resnet18(num_classes=num_classes)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        torch.manual_seed(0)
        ref = torchvision.models.resnet18(num_classes=10).eval()
        path = tmp_path / "m.pt"
        torch.save(ref.state_dict(), path)
        card = small_card(arch="cardpkg:net")
        card.save(card_path_for(path))
        with pytest.raises(InputError, match=r"cardpkg:net.*m\.pt\.optim\.toml.*allowed_modules"):
            load_checkpoint(path)
        ModelCard.from_dict(card.to_dict() | {"allowed_modules": ["cardpkg"]}).save(card_path_for(path))
        _same_outputs(load_checkpoint(path).model, ref)
        ModelCard.from_dict(card.to_dict() | {"allowed_modules": ["os"]}).save(card_path_for(path))
        with pytest.raises(InputError, match=r"allowed_modules entry 'os'.*never allowed"):
            load_checkpoint(path)
        with pytest.raises(InputError, match="allowed_modules"):
            ModelCard.from_dict(card.to_dict() | {"allowed_modules": ["os;rm"]})
    finally:
        sys.modules.pop("cardpkg", None)


def test_never_allowed():
    assert never_allowed("os") and never_allowed("os.path") and never_allowed("subprocess")
    assert never_allowed("json") and never_allowed("torch.hub") and never_allowed("__main__")
    assert not never_allowed("mypkg.models") and not never_allowed("torchvision_extra")


def test_parse_arch_ref_refuses_star_kwargs_and_bad_names():
    for bad in ["x:y(**{'a': 1})", "x:_y", "x:y.z", "x y:z", "x:1y"]:
        with pytest.raises(InputError):
            parse_arch_ref(bad)


# ---- the card must fit the model --------------------------------------------------------------
def test_card_with_wrong_label_count_or_shape_is_an_input_error(tmp_path, ref_model):
    path = tmp_path / "m.pt"
    torch.save(ref_model.state_dict(), path)
    bad = small_card().to_dict()
    bad["heads"][0]["labels"] = [str(i) for i in range(7)]
    bad_card = ModelCard.from_dict(bad)
    with pytest.raises(InputError, match=r"m\.pt.*does not fit the model's outputs.*"):
        load_checkpoint(path, card=bad_card, arch="torchvision:resnet18(num_classes=10)")
    pt2 = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(ref_model, (X,)), pt2)
    with pytest.raises(InputError, match=r"does not accept the card's input shape 1×3×64×48"):
        load_checkpoint(pt2, card=ModelCard.from_dict(small_card().to_dict() | {"input": {"shape": [1, 3, 64, 48]}}))


# ---- lineage ------------------------------------------------------------------------------------
def _lineage(parent="a" * 64, reference="b" * 64, **kw):
    d = {"kind": "pruned", "parent": {"path": "/x/p.pt", "sha256": parent}, "reference": {"path": "/x/r.pt", "sha256": reference},
         "fine_tuned": False, "epochs": 0}
    d.update(kw)
    return d


def test_validate_lineage_accepts_the_shape_and_rejects_malformed():
    assert validate_lineage(_lineage(), "p.pt") == _lineage()
    for bad, field in [
        (_lineage(kind="magic"), "kind"), (_lineage(parent="xyz"), "parent.sha256"),
        (_lineage(fine_tuned="yes"), "fine_tuned"), (_lineage(epochs=-1), "epochs"), (_lineage(epochs=True), "epochs"),
        (_lineage(fine_tuned=True, epochs=0), "epochs is 0"), (_lineage(epochs=2), "epochs is 2"),
        (_lineage(extra=1), "extra"), ({k: v for k, v in _lineage().items() if k != "reference"}, "reference"),
        ("pruned", "mapping"),
    ]:
        with pytest.raises(InputError, match=field) as err:
            validate_lineage(bad, "p.pt")
        assert "p.pt" in str(err.value)
    with pytest.raises(InputError, match="its own FP32 reference"):
        validate_lineage(_lineage(reference="c" * 64), "p.pt", own_sha256="c" * 64)


def test_make_lineage_copies_the_reference_of_a_pruned_parent(resnet18_ckpt):
    from optim.checkpoint import LoadedModel

    root = load_checkpoint(resnet18_ckpt)
    assert root.lineage is None
    first = make_lineage(root, fine_tuned=True, epochs=2)
    assert first["parent"] == first["reference"] == {"path": str(resnet18_ckpt.resolve()), "sha256": root.sha256}
    child = LoadedModel(model=None, card=root.card, path=resnet18_ckpt.parent / "p.pt", sha256="d" * 64,
                        source_format="pruned_state_dict", card_path=None, lineage=first)
    second = make_lineage(child, fine_tuned=False, epochs=5)
    assert second["reference"] == first["reference"] and second["parent"]["sha256"] == "d" * 64
    assert second["epochs"] == 0 and second["fine_tuned"] is False


def test_pruned_checkpoint_records_and_validates_lineage(tmp_path, resnet18_ckpt):
    from optim.optimize.pruning import prune, save_pruned

    root = load_checkpoint(resnet18_ckpt)
    p1 = save_pruned(prune(root.model, root.card, ratio=0.2).model, root.card, tmp_path / "p1.pt",
                     lineage=make_lineage(root, fine_tuned=False, epochs=0))
    l1 = load_checkpoint(p1)
    assert l1.lineage["reference"]["sha256"] == root.sha256 and l1.lineage["parent"]["sha256"] == root.sha256
    assert l1.lineage["fine_tuned"] is False
    p2 = save_pruned(prune(l1.model, l1.card, ratio=0.2).model, l1.card, tmp_path / "p2.pt",
                     lineage=make_lineage(l1, fine_tuned=False, epochs=0))
    l2 = load_checkpoint(p2)
    assert l2.lineage["parent"]["sha256"] == l1.sha256 and l2.lineage["reference"]["sha256"] == root.sha256
    # forged: lineage removed / malformed / pointing at itself
    obj = torch.load(p2, weights_only=True)
    for name, lineage, msg in [("gone", None, "without a lineage"), ("bad", _lineage(parent="nothex"), "malformed lineage"),
                               ("wrongtype", ["pruned"], "must be a mapping")]:
        forged = dict(obj)
        if lineage is None:
            forged.pop("lineage")
        else:
            forged["lineage"] = lineage
        path = tmp_path / f"{name}.pt"
        torch.save(forged, path)
        with pytest.raises(InputError, match=msg) as err:
            load_checkpoint(path, card=l2.card)
        assert str(path) in str(err.value)
    with pytest.raises(InputError, match="lineage"):
        save_pruned(l2.model, l2.card, tmp_path / "x.pt", lineage={"kind": "pruned"})
