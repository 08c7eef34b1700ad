"""Structured pruning: head layers kept, parameters drop, shapes kept, safe save/reload."""

from __future__ import annotations


import pytest
import torch
import torchvision

from conftest import small_card
from optim import load_checkpoint
from optim.errors import InputError
from optim.model_card import Head, InputSpec, ModelCard
from optim.optimize.channel_spec import apply_channel_spec
from optim.optimize.pruning import find_head_layers, prune, save_pruned

HW = 64


def _lineage(tmp_path, model, card) -> dict:
    """The lineage of a model pruned from ``model``: its FP32 state_dict saved as the parent
    (issue 11: save_pruned requires a lineage so the gate finds the FP32 reference)."""
    import torch

    from optim.checkpoint import make_lineage
    from optim.model_card import card_path_for

    parent = tmp_path / "parent-fp32.pt"
    torch.save(model.state_dict(), parent)
    card.save(card_path_for(parent))
    return make_lineage(load_checkpoint(parent), fine_tuned=False, epochs=0)


def _model(arch: str):
    torch.manual_seed(0)
    return torchvision.models.get_model(arch, num_classes=10, weights=None).eval()


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "mobilenet_v3_large",
                                  pytest.param("efficientnet_b0", marks=pytest.mark.slow)])
def test_prune_ratio_shrinks_keeps_head_and_reloads(arch, tmp_path):
    model = _model(arch)
    card = small_card(10, HW, f"torchvision:{arch}")
    res = prune(model, card, ratio=0.3)
    assert res.after.parameters < 0.75 * res.before.parameters
    assert res.after.macs < 0.8 * res.before.macs
    # the teacher is untouched: same parameter count as a fresh model
    assert sum(p.numel() for p in model.parameters()) == res.before.parameters
    head = dict(res.model.named_modules())[res.ignored_layers[-1]]
    assert isinstance(head, torch.nn.Linear) and head.out_features == 10
    x = torch.randn(2, 3, HW, HW)
    with torch.no_grad():
        y = res.model(x)
    assert y.shape == (2, 10)
    path = save_pruned(res.model, card, tmp_path / "pruned.pt", lineage=_lineage(tmp_path, model, card))
    loaded = load_checkpoint(path)
    assert loaded.source_format == "pruned_state_dict"
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), y, rtol=0, atol=0)


def test_head_layers_found_by_graph_not_name():
    torch.manual_seed(0)

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
            self.a = torch.nn.Linear(16, 5)
            self.b = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3, bias=False))

        def forward(self, x):
            f = self.body(x)
            return {"cat": self.a(f), "tags": self.b(f)}

    card = ModelCard(
        input=InputSpec(shape=(1, 3, 16, 16)),
        heads=(Head(name="cat", kind="multiclass", labels=tuple("abcde")), Head(name="tags", kind="multilabel", labels=("x", "y", "z"))),
    )
    assert find_head_layers(TwoHeads().eval(), card, torch.zeros(1, 3, 16, 16)) == ["a", "b.2"]


def test_target_macs_is_reached():
    model = _model("resnet18")
    card = small_card(10, 32, "torchvision:resnet18")
    before = prune(model, card, ratio=0.01).before.macs
    res = prune(model, card, target_macs=0.6 * before, max_steps=8)
    assert res.after.macs <= 0.6 * before
    assert res.after.macs > 0.25 * before  # stopped soon after the target, not at max_ratio
    assert res.steps < 8


def test_target_size_and_taylor():
    model = _model("resnet18")
    card = small_card(10, 32, "torchvision:resnet18")
    batches = [torch.randn(4, 3, 32, 32)]
    res = prune(model, card, target_size_mb=30.0, importance="taylor", taylor_batches=batches, max_steps=10)
    assert res.after.fp32_mb <= 30.0
    assert res.model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_bad_arguments():
    model = _model("resnet18")
    card = small_card(10, 32, "torchvision:resnet18")
    with pytest.raises(InputError, match="exactly one"):
        prune(model, card, ratio=0.3, target_size_mb=10)
    with pytest.raises(InputError, match="between 0 and 1"):
        prune(model, card, ratio=1.5)
    with pytest.raises(InputError, match="taylor"):
        prune(model, card, ratio=0.3, importance="taylor")
    with pytest.raises(InputError, match="below the current"):
        prune(model, card, target_size_mb=1000)


def test_pruned_checkpoint_is_weights_only_and_rejects_bad_spec(tmp_path):
    model = _model("resnet18")
    card = small_card(10, 32, "torchvision:resnet18")
    path = save_pruned(prune(model, card, ratio=0.2).model, card, tmp_path / "p.pt", lineage=_lineage(tmp_path, model, card))
    obj = torch.load(path, weights_only=True)  # no code runs: plain tensors and ints
    assert obj["optim_pruned"] == 1 and obj["channel_spec"]["conv1"]["out_channels"] < 64
    fresh = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(InputError, match="not a shape attribute"):
        apply_channel_spec(fresh, {"conv1": {"padding": 3}}, obj["state_dict"], "p.pt")
    with pytest.raises(InputError, match="does not have"):
        apply_channel_spec(fresh, {"nope": {"out_channels": 3}}, obj["state_dict"], "p.pt")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite", "pte"])
def test_pruned_checkpoint_exports_fp32(fmt, tmp_path):
    from optim.errors import ToolError
    from optim.optimize.ptq import quantize
    from optim.runtimes.registry import get_format

    try:
        get_format(fmt)
    except ToolError as e:
        pytest.skip(f"{fmt} exporter not in this build: {e}")
    card = small_card(10, 32, "torchvision:mobilenet_v2")
    model = _model("mobilenet_v2")
    path = save_pruned(prune(model, card, ratio=0.3).model, card, tmp_path / "p.pt", lineage=_lineage(tmp_path, model, card))
    res = quantize(path, formats=fmt, scheme="fp32", out=tmp_path / "a")
    (r,) = res.results
    assert r.status == "ok", r.error
    assert r.check["max_abs_error"] <= 1e-4  # the pruned model's export matches torch
