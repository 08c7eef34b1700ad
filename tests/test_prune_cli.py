"""`optim prune` end to end: prune + distilled fine-tune, reload, run log, refusals."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from optim import load_checkpoint
from optim.cli.main import cli
from train_split import write_mnist_split


def test_prune_finetune_cli(resnet18_ckpt, tmp_path):
    train = write_mnist_split(tmp_path / "train", range(0, 5000, 125))
    out = tmp_path / "pruned.pt"
    r = CliRunner().invoke(cli, ["prune", str(resnet18_ckpt), "--ratio", "0.3", "--finetune", "--train", str(train),
                                 "--epochs", "1", "--batch-size", "20", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["pruning"]["after"]["parameters"] < 0.7 * rep["pruning"]["before"]["parameters"]
    assert rep["finetune"]["steps"] == 2 and rep["pruning"]["ignored_layers"] == ["fc"]
    loaded = load_checkpoint(out)
    assert loaded.card.heads[0].name == "class"
    # issue 11: the pruned checkpoint names its parent and FP32 reference, and says it was fine-tuned
    from optim.files import sha256_file

    root = {"path": str(resnet18_ckpt.resolve()), "sha256": sha256_file(resnet18_ckpt)}
    assert loaded.lineage == rep["lineage"] == {"kind": "pruned", "parent": root, "reference": root, "fine_tuned": True, "epochs": 1}
    again = tmp_path / "pruned-again.pt"
    r = CliRunner().invoke(cli, ["prune", str(out), "--ratio", "0.2", "--out", str(again), "--json"])
    assert r.exit_code == 0, r.output
    twice = load_checkpoint(again).lineage
    assert twice["parent"] == {"path": str(out.resolve()), "sha256": loaded.sha256} and twice["reference"] == root
    assert twice["fine_tuned"] is False and twice["epochs"] == 0
    assert loaded.model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    log = [json.loads(line) for line in open(rep["finetune"]["run_log"])]
    assert log[0]["event"] == "start" and log[0]["distill"] == {"alpha": 0.5, "temperature": 4.0}
    assert any(e["event"] == "grad_health" for e in log)


def test_prune_cli_refuses_golden_and_missing_train(resnet18_ckpt, tmp_path):
    train = write_mnist_split(tmp_path / "train", range(0, 500, 50))
    r = CliRunner().invoke(cli, ["prune", str(resnet18_ckpt), "--ratio", "0.3", "--finetune", "--train", str(train),
                                 "--golden", str(train), "--out", str(tmp_path / "p.pt")])
    assert r.exit_code == 2 and "golden set" in r.output
    r = CliRunner().invoke(cli, ["prune", str(resnet18_ckpt), "--ratio", "0.3", "--finetune", "--out", str(tmp_path / "p.pt")])
    assert r.exit_code == 2 and "--train" in r.output
    r = CliRunner().invoke(cli, ["prune", str(resnet18_ckpt), "--out", str(tmp_path / "p.pt")])
    assert r.exit_code == 2 and "exactly one" in r.output
    assert not (tmp_path / "p.pt").exists()
