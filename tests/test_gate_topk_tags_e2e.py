"""Issue 14, end to end: ``optim.verify`` with real evaluation enforces the top-2 and the
tail-tag macro-F1 budgets. A two-head model on channel means (known predictions), exported to
ONNX FP32; the "broken" variant keeps every top-1 prediction but scrambles the second choice
and never predicts the tail tag ``blueish``. Judged against the good FP32 checkpoint it must
fail exactly those budgets (exit 1); the good model's own export passes them (exit 0)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

# colour, category, redish, blueish; 4 shades each. Good model: category logits 10·m (m =
# channel means), tags on when R (resp. B) > 0.5. Broken: same argmax, the other categories
# get −10·m (second choice = weakest channel), blueish never on.
GROUPS = [
    ((255, 0, 0), "r", 1, 0),    # both: top-1 r ✓ → top-2 ✓
    ((0, 0, 255), "b", 0, 1),    # both: top-1 b ✓
    ((200, 100, 0), "g", 1, 0),  # good: r ✗, top-2 {r, g} ✓; broken: top-2 {r, b} ✗
    ((100, 0, 200), "r", 0, 1),  # good: b ✗, top-2 {b, r} ✓; broken: top-2 {b, g} ✗
]
# blueish is a tail tag (5 < 50 training positives), redish is not
TRAIN_COUNTS = {"category": {"r": 500, "g": 500, "b": 500}, "pattern": {"redish": 400, "blueish": 5}}


def _card() -> ModelCard:
    return ModelCard(name="colours", input=InputSpec(shape=(1, 3, 4, 4)),
                     preprocessing=Preprocessing(resize=(4, 4), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
                     heads=(Head(name="category", kind="multiclass", labels=("r", "g", "b")),
                            Head(name="pattern", kind="multilabel", labels=("redish", "blueish"))))


def _save(path: Path, broken: bool) -> Path:
    import torch

    class TwoHead(torch.nn.Module):
        def forward(self, x):
            m = x.mean(dim=(2, 3))
            cat = 10 * m
            if broken:
                top = cat == cat.max(dim=1, keepdim=True).values
                cat = torch.where(top, cat, -10 * m)
            blue = 20 * (m[:, 2] - 0.5)
            if broken:
                blue = blue * 0 - 10.0
            return cat, torch.stack([20 * (m[:, 0] - 0.5), blue], dim=1)

    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(TwoHead().eval(), (torch.zeros(2, 3, 4, 4),), dynamic_shapes=({0: batch},)), path)
    _card().save(card_path_for(path))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from optim import quantize
    from optim.golden_sets import build_from_manifest

    tmp = tmp_path_factory.mktemp("topk_tags")
    root = tmp / "golden"
    root.mkdir()
    lines = ["id,path,category,pattern:redish,pattern:blueish"]
    for g, (rgb, cat, red, blue) in enumerate(GROUPS):
        for shade in range(4):
            sid = f"g{g}s{shade}"
            Image.new("RGB", (4, 4), tuple(max(0, c - 5 * shade) for c in rgb)).save(root / f"{sid}.png")
            lines.append(f"{sid},{sid}.png,{cat},{red},{blue}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    build_from_manifest(root / "manifest.csv", name="colours", train_counts=TRAIN_COUNTS)
    good, broken = _save(tmp / "good.pt2", False), _save(tmp / "broken.pt2", True)
    arts = {}
    for name, ckpt in (("good", good), ("broken", broken)):
        q = quantize(ckpt, formats=["onnx"], scheme="fp32", out=tmp / f"art-{name}")
        assert q.ok, q.to_dict()
        arts[name] = q.results[0].artifact_dir
    return {"golden": root, "good": good, "arts": arts, "tmp": tmp}


def _policy():
    from optim.gate.policy import Policy

    return Policy.from_dict({"defaults": {"max_top1_drop_pts": 1.0, "max_top2_drop_pts": 1.0,
                                          "max_topk_drop_pts": {"3": 0.5},
                                          "max_tail_tag_macro_f1_drop_pts": 3.0, "size_mb": 100}},
                            source="e2e-topk-tags")


def _checks(res):
    return {c["id"]: c for c in res.report["artifacts"][0]["checks"]}


def test_broken_second_choice_and_tail_tag_fail_verify(world):
    from optim import verify

    res = verify([world["arts"]["broken"]], world["golden"], devices=["host"], policy=_policy(), reference=world["good"],
                 runs=3, warmup=1, trials=1, out=world["tmp"] / "v-broken")
    c = _checks(res)
    assert res.exit_code == 1 and res.verdict == "fail"
    # top-1 is unchanged (same argmax everywhere): that budget passes, the others catch the damage
    assert c["top1_drop[category]"]["status"] == "pass" and c["top1_drop[category]"]["measured"] == pytest.approx(0.0)
    # top-2: good 16/16, broken 8/16 → a 50-point drop
    assert c["top2_drop[category]"]["status"] == "fail" and c["top2_drop[category]"]["measured"] == pytest.approx(50.0)
    # top-3 on 3 classes is always 1.0: computed because the policy asks, and it cannot fail
    assert c["top3_drop[category]"]["status"] == "pass" and c["top3_drop[category]"]["details"]["clipped_to"] == 3
    # the only tail tag, blueish, goes from F1 1.0 to 0.0
    t = c["tail_tag_macro_f1_drop[pattern]"]
    assert t["status"] == "fail" and t["measured"] == pytest.approx(100.0) and t["details"]["tail_tags"] == ["blueish"]
    ev = res.report["artifacts"][0]["eval"]
    assert ev["settings"]["topk"] == [2, 3, 5]
    assert ev["heads"]["category"]["metrics"]["top2"] == pytest.approx(0.5)
    assert ev["heads"]["category"]["reference_metrics"]["top2"] == pytest.approx(1.0)
    md = res.paths["markdown"].read_text()
    assert "top-2 drop [category]" in md and "tail-tag macro-F1 drop [pattern]" in md


def test_good_export_passes_the_same_budgets(world):
    from optim import verify

    res = verify([world["arts"]["good"]], world["golden"], devices=["host"], policy=_policy(), reference=world["good"],
                 runs=3, warmup=1, trials=1, out=world["tmp"] / "v-good")
    c = _checks(res)
    assert res.exit_code == 0, [x for x in c.values() if x["status"] != "pass"]
    for id in ("top2_drop[category]", "top3_drop[category]", "tail_tag_macro_f1_drop[pattern]"):
        assert c[id]["status"] == "pass" and c[id]["measured"] == pytest.approx(0.0), c[id]
