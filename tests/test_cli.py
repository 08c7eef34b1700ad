"""The CLI: help and version, inspect figures, and the documented exit codes."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from click.testing import CliRunner

from optim.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def resnet18_1000(tmp_path_factory):
    path = tmp_path_factory.mktemp("r18") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_version_and_help_on_every_command():
    assert run("--version").output.startswith("optim, version ")
    top = run("--help")
    assert top.exit_code == 0 and "Exit codes" in top.output
    for name, cmd in cli.commands.items():
        result = run(name, "--help")
        assert result.exit_code == 0, name
        if hasattr(cmd, "commands"):
            for sub in cmd.commands:
                assert run(name, sub, "--help").exit_code == 0, f"{name} {sub}"


def test_inspect_resnet18_state_dict_figures(resnet18_1000):
    result = run("inspect", str(resnet18_1000), "--arch", "torchvision:resnet18", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["parameters"] == 11_689_512  # torchvision resnet18: 11.69 M
    assert report["fp32_mb"] == pytest.approx(46.8, abs=0.05)  # MB = 10^6 bytes
    assert report["macs"] == pytest.approx(1.82e9, rel=0.01)  # at 1×3×224×224
    assert report["heads"] == [{"name": "logits", "kind": "multiclass", "num_labels": 1000}]


def test_inspect_table(resnet18_ckpt):
    result = run("inspect", str(resnet18_ckpt))
    assert result.exit_code == 0
    assert "11.18 M" in result.output and "head class" in result.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["inspect", "missing.pt"], 2, "does not exist"),
        (["inspect", "{ckpt}", "--input-shape", "1x3x32"], 2, "N×C×H×W"),
        (["inspect", "{r18}"], 2, "needs an architecture"),
        (["inspect", "{r18}", "--arch", "torchvision:nonet"], 2, "unknown torchvision architecture"),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_exit_codes(args, code, message, resnet18_ckpt, resnet18_1000):
    args = [a.format(ckpt=resnet18_ckpt, r18=resnet18_1000) for a in args]
    result = run(*args)
    assert result.exit_code == code
    assert message in result.output


def test_unsafe_pickle_exit_code(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    result = run("inspect", str(path))
    assert result.exit_code == 2 and "--trust-pickle" in result.output
