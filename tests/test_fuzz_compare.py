"""Fuzz table, compare part: bad candidates and inputs for `optim compare`, each through the real
CLI (see tests/fuzz_harness.py for what every case asserts). All of them are refused (exit 2)
before anything is measured, with a message that names the bad thing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fuzz_harness import Case, Workspace, make_workspace, pickle_bomb, run_case


def art(ws: Workspace, name: str = "onnx-fp32") -> Path:
    d = ws.work / "runs" / name
    if not d.exists():
        shutil.copytree(ws.world.artifact, d, symlinks=True)
    return d


def cmp(ws: Workspace, *candidates, extra=()) -> list:
    return ["compare", *candidates, "--golden", ws.world.golden, "--policy", ws.world.policy, *extra]


def text_file(ws: Workspace) -> list:
    p = ws.work / "notes.txt"
    p.write_text("these are not weights\n")
    return cmp(ws, p)


def plain_dir(ws: Workspace) -> list:
    d = ws.work / "just-a-folder"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"\x08\x01")
    return cmp(ws, d)


def bomb(ws: Workspace) -> list:
    import torch

    p = ws.work / "evil.pt"
    torch.save({"state_dict": {}, "x": pickle_bomb(ws.payload)}, p)
    return cmp(ws, p)


def edit_source(ws: Workspace, edit) -> Path:
    d = art(ws)
    meta_path = d / "artifact.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    return d


def lineage_reference_gone(ws: Workspace) -> list:
    gone = ws.work / "gone-fp32.pt"

    def edit(meta):
        ref = {"path": str(gone), "sha256": "0" * 64}
        meta["source"] = {**meta["source"], "checkpoint": None,
                          "lineage": {"kind": "pruned", "parent": ref, "reference": ref, "fine_tuned": False, "epochs": 0}}
    return cmp(ws, edit_source(ws, edit))


def source_changed(ws: Workspace) -> list:
    ckpt = ws.copy(ws.world.ckpt, "fp32.pt")
    with open(ckpt, "ab") as f:
        f.write(b"\0")

    def edit(meta):
        meta["source"] = {**meta["source"], "checkpoint": str(ckpt)}
    return cmp(ws, edit_source(ws, edit))


def tampered_model(ws: Workspace) -> list:
    d = art(ws)
    onnx = next(p for p in d.iterdir() if p.suffix == ".onnx")
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF
    onnx.write_bytes(bytes(data))
    return cmp(ws, d)


def bad_policy(ws: Workspace) -> list:
    p = ws.work / "optim.toml"
    p.write_text("[defaults]\nsize_mbb = 20\n")
    return ["compare", art(ws), "--golden", ws.world.golden, "--policy", p]


CASES = [
    Case("no-candidates", "compare", lambda ws: cmp(ws), 2, "at least one candidate"),
    Case("missing-path", "compare", lambda ws: cmp(ws, ws.work / "nope.pt"), 2, "nope.pt does not exist"),
    Case("text-file", "compare", text_file, 2, "notes.txt is neither an artifact directory nor a loadable checkpoint"),
    Case("folder-not-artifact", "compare", plain_dir, 2, "just-a-folder is a directory but not an artifact"),
    Case("pickle-bomb-checkpoint", "compare", bomb, 2, "evil.pt"),
    Case("duplicate-names", "compare", lambda ws: cmp(ws, f"a={art(ws)}", f"a={ws.world.ckpt}"), 2,
         "duplicate candidate name(s) a"),
    Case("same-candidate-twice", "compare", lambda ws: cmp(ws, art(ws), f"again={art(ws)}"), 2, "is given twice"),
    Case("name-clashes-with-derived", "compare", lambda ws: cmp(ws, f"model.pt={art(ws)}", ws.world.ckpt), 2,
         "model.pt would be shown twice"),
    Case("invalid-name", "compare", lambda ws: cmp(ws, f"<b>x={art(ws)}"), 2, "is not a valid name"),
    Case("empty-path-after-name", "compare", lambda ws: cmp(ws, "fast="), 2, "no path after fast="),
    Case("lineage-reference-gone", "compare", lineage_reference_gone, 2, "FP32 reference was not found"),
    Case("source-checkpoint-changed", "compare", source_changed, 2, "changed since export"),
    Case("artifact-tampered", "compare", tampered_model, 2, "changed after export"),
    Case("unknown-metric", "compare", lambda ws: cmp(ws, art(ws), extra=["--metric", "top3"]), 2, "--metric"),
    Case("policy-typo", "compare", bad_policy, 2, "size_mbb"),
    Case("policy-missing", "compare", lambda ws: ["compare", art(ws), "--golden", ws.world.golden, "--policy",
                                                  ws.work / "none.toml"], 2, "none.toml does not exist"),
    Case("golden-not-a-dir", "compare", lambda ws: ["compare", art(ws), "--golden", ws.work / "g", "--policy",
                                                    ws.world.policy], 2, "golden set"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_compare(case, fuzz_world, tmp_path, monkeypatch):
    run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)
