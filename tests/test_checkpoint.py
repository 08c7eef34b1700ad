"""Checkpoint loading: every accepted format and every bad input has a test."""

from __future__ import annotations

import os
import pickle
import sys

import pytest
import torch
import torchvision

from optim.checkpoint import build_architecture, extract_state_dict, load_checkpoint, parse_arch_ref
from optim.errors import InputError, UnsafeCheckpointError
from optim.model_card import card_path_for

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


def test_torchscript(tmp_path, ref_model):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(ref_model, X), path)
    loaded = load_checkpoint(path, input_shape=(1, 3, 32, 32))
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
    with pytest.raises(InputError, match="cannot be imported"):
        load_checkpoint(path, arch="no_such_pkg.models:net")


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
    model = build_architecture("userpkg.nets:make(width=6)")
    path = tmp_path / "u.pt"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path, arch="userpkg.nets:make(width=6)", input_shape=(1, 3, 16, 16))
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
