"""Fuzz table, checkpoints and model cards (issue 11): forged, corrupt and code-carrying inputs
driven through the real CLI (``optim inspect`` / ``optim quantize``). Every case must exit 2,
name the file or reference, run no payload and change nothing outside the workdir (see
``fuzz_harness.run_case``)."""

from __future__ import annotations

import pickle
import shutil

import pytest

from ckpt_forgery import TinyNet, flip_bytes, pt2_with_evil_sample_inputs, pt2_with_evil_weight, rewrite_zip, save_pt2, torch_bytes
from fuzz_harness import Case, make_workspace, pickle_bomb, run_case

_SHARED: dict = {}  # a clean TinyNet .pt2 built once per module (see the fixture below)


def _ckpt(ws, name="model.pt"):
    """Copy the world's resnet18 state_dict and its card into the workdir under ``name``."""
    from optim.model_card import card_path_for

    dst = ws.copy(ws.world.ckpt, name)
    shutil.copy2(card_path_for(ws.world.ckpt), card_path_for(dst))
    return dst


def _write(ws, name, data: bytes):
    p = ws.work / name
    p.write_bytes(data)
    return p


def _card(ws, name="model.pt", edit=None, raw: bytes | None = None):
    """A checkpoint copy whose card is edited (``edit(dict)``) or replaced by ``raw`` bytes."""
    import tomli_w

    from optim.model_card import ModelCard, card_path_for

    ckpt = _ckpt(ws, name)
    card_file = card_path_for(ckpt)
    if raw is not None:
        card_file.write_bytes(raw)
    else:
        d = ModelCard.load(card_file).to_dict()
        edit(d)
        card_file.write_text(tomli_w.dumps(d))
    return ckpt


def _pruned(ws, name, lineage="absent", arch="torchvision:resnet18(num_classes=10)"):
    """A pruned-format checkpoint (optim_pruned=1) holding the world's weights, with a forged
    lineage (``"absent"`` = no lineage key) or architecture; no card."""
    import torch

    obj = torch.load(ws.world.ckpt, weights_only=True)
    payload = {"optim_pruned": 1, "architecture": arch, "state_dict": obj["state_dict"], "channel_spec": {}}
    if lineage != "absent":
        payload["lineage"] = lineage
    p = ws.work / name
    torch.save(payload, p)
    return p


def _good_lineage(ws):
    from optim.files import sha256_file

    ref = {"path": str(ws.world.ckpt), "sha256": sha256_file(ws.world.ckpt)}
    return {"kind": "pruned", "parent": ref, "reference": ref, "fine_tuned": False, "epochs": 0}


def _pickle_dump(ws, name):
    p = ws.work / name
    with open(p, "wb") as f:
        pickle.dump({"state_dict": pickle_bomb(ws.payload)}, f)
    return p


def _torchscript(ws):
    import torch

    p = ws.work / "model.ts"
    torch.jit.save(torch.jit.trace(TinyNet.make(), torch.zeros(1, 3, 8, 8)), p)
    return p


def _user_pkg(ws):
    """A real user package ``userarch`` in the workdir with a private factory and a re-export of os.system."""
    pkg = ws.work / "userarch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from os import system\nimport torchvision\n"
                                     "def _net(num_classes=10):\n    return torchvision.models.resnet18(num_classes=num_classes)\n")
    return pkg



Q = ["--format", "onnx", "--scheme", "fp32", "--out", "out"]
PAY = "{payload}"

CASES = [
    # ---- checkpoint files --------------------------------------------------------------------
    Case("ckpt-missing", "checkpoint", lambda ws: ["inspect", "nope.pt"], 2, "nope.pt"),
    Case("ckpt-directory", "checkpoint", lambda ws: ["inspect", str((ws.work / "adir").mkdir() or ws.work / "adir")], 2, "adir"),
    Case("ckpt-empty", "checkpoint", lambda ws: ["inspect", _write(ws, "empty.pt", b"")], 2, "empty.pt is empty"),
    Case("ckpt-random-bytes", "checkpoint", lambda ws: ["inspect", _write(ws, "noise.pt", bytes(range(256)) * 16)], 2,
         lambda ws: f"{ws.work / 'noise.pt'} is not a PyTorch checkpoint"),
    Case("ckpt-truncated-zip", "checkpoint",
         lambda ws: ["inspect", _write(ws, "half.pt", _ckpt(ws).read_bytes()[: ws.world.ckpt.stat().st_size // 2])], 2, "half.pt"),
    Case("ckpt-flipped-bytes", "checkpoint", lambda ws: ["inspect", flip_bytes(_ckpt(ws), ws.work / "flipped.pt")], 2, "fails its CRC"),
    Case("ckpt-pickle-bomb-torch-save", "checkpoint",
         lambda ws: ["inspect", _write(ws, "evil.pt", torch_bytes({"state_dict": pickle_bomb(ws.payload)}))], 2, "evil.pt"),
    Case("ckpt-pickle-bomb-pickle-dump", "checkpoint", lambda ws: ["inspect", _pickle_dump(ws, "evil2.pt")], 2, "Path.touch"),
    Case("ckpt-pickle-bomb-quantize", "checkpoint",
         lambda ws: ["quantize", _write(ws, "evil.pt", torch_bytes({"state_dict": pickle_bomb(ws.payload)})), *Q], 2, "evil.pt"),
    Case("pt2-evil-sample-inputs", "checkpoint",
         lambda ws: ["inspect", pt2_with_evil_sample_inputs(_SHARED["pt2"], ws.work / "si.pt2", pickle_bomb(ws.payload))], 2,
         "data/sample_inputs/model.pt"),
    Case("pt2-evil-weight", "checkpoint",
         lambda ws: ["quantize", pt2_with_evil_weight(_SHARED["pt2"], ws.work / "w.pt2", pickle_bomb(ws.payload)), *Q], 2, "data/weights/weight_"),
    Case("pt2-compiled-code", "checkpoint",
         lambda ws: ["inspect", rewrite_zip(_SHARED["pt2"], ws.work / "aoti.pt2", add={"data/aotinductor/model/m.so": b"\x7fELF"})], 2,
         "aotinductor/model/m.so"),
    Case("pt2-flipped-bytes", "checkpoint", lambda ws: ["inspect", flip_bytes(_SHARED["pt2"], ws.work / "f.pt2", count=200)], 2, "f.pt2"),
    Case("torchscript-without-trust", "checkpoint", lambda ws: ["inspect", _torchscript(ws)], 2, "TorchScript"),
    Case("state-dict-does-not-fit", "checkpoint",
         lambda ws: ["inspect", _ckpt(ws), "--arch", "torchvision:resnet18(num_classes=5)"], 2, "fc.weight"),
    Case("pruned-lineage-missing", "lineage", lambda ws: ["inspect", _pruned(ws, "p.pt")], 2, "without a lineage"),
    Case("pruned-lineage-malformed", "lineage",
         lambda ws: ["inspect", _pruned(ws, "p.pt", {**_good_lineage(ws), "reference": {"path": "x", "sha256": "not-hex"}})], 2,
         "reference.sha256"),
    Case("pruned-lineage-epochs-without-finetune", "lineage",
         lambda ws: ["inspect", _pruned(ws, "p.pt", {**_good_lineage(ws), "epochs": 3})], 2, "p.pt"),
    Case("pruned-arch-os-system-in-checkpoint", "architecture",
         lambda ws: ["inspect", _pruned(ws, "p.pt", _good_lineage(ws), arch=f"os:system(command='touch {ws.payload}')")], 2, "os:system"),
    # ---- architecture references ---------------------------------------------------------------
    Case("arch-os-system", "architecture",
         lambda ws: ["inspect", ws.world.ckpt, "--arch", f"os:system(command='touch {ws.payload}')"], 2, "os:system"),
    Case("arch-os-system-even-if-allowed", "architecture",
         lambda ws: ["inspect", ws.world.ckpt, "--arch", f"os:system(command='touch {ws.payload}')", "--allow-module", "os"], 2,
         "--allow-module 'os'"),
    Case("arch-subprocess", "architecture",
         lambda ws: ["inspect", ws.world.ckpt, "--arch", f"subprocess:run(args=['touch', '{ws.payload}'])"], 2, "subprocess:run"),
    Case("arch-builtins-eval", "architecture",
         lambda ws: ["quantize", ws.world.ckpt, "--arch", f"builtins:eval(source=\"open('{ws.payload}', 'w')\")", *Q], 2, "builtins:eval"),
    Case("arch-private-factory", "architecture",
         lambda ws: ["inspect", ws.world.ckpt, "--arch", "userarch:_net", "--allow-module", "userarch"] if _user_pkg(ws) else [], 2,
         "userarch:_net"),
    Case("arch-reexported-os-system", "architecture",
         lambda ws: ["inspect", ws.world.ckpt, "--arch", f"userarch:system(command='touch {ws.payload}')", "--allow-module", "userarch"]
         if _user_pkg(ws) else [], 2, "userarch:system"),
    Case("arch-module-not-allowed", "architecture",
         lambda ws: ["inspect", ws.world.ckpt, "--arch", "userarch:net"] if _user_pkg(ws) else [], 2, "--allow-module userarch"),
    # ---- model cards ---------------------------------------------------------------------------
    Case("card-arch-os-system", "card",
         lambda ws: ["inspect", _card(ws, edit=lambda d: d.update(architecture="os:system",
                                                                   architecture_kwargs={"command": f"touch {ws.payload}"}))], 2,
         "model.pt.optim.toml"),
    Case("card-allowed-modules-subprocess", "card",
         lambda ws: ["inspect", _card(ws, edit=lambda d: d.update(architecture="subprocess:getoutput(cmd='id')",
                                                                   allowed_modules=["subprocess"]))], 2, "allowed_modules"),
    Case("card-unknown-key", "card", lambda ws: ["inspect", _card(ws, edit=lambda d: d.update(colour="red"))], 2, "colour: unknown key"),
    Case("card-not-toml", "card", lambda ws: ["inspect", _card(ws, raw=b"name = = 3\n")], 2, "model.pt.optim.toml"),
    Case("card-not-utf8", "card", lambda ws: ["inspect", _card(ws, raw=b'name = "\xff\xfe"\n')], 2, "model.pt.optim.toml"),
    Case("card-labels-count", "card",
         lambda ws: ["inspect", _card(ws, edit=lambda d: d["heads"][0].update(labels=[str(i) for i in range(7)]))], 2,
         "does not fit the model's outputs"),
    Case("card-missing-given", "card", lambda ws: ["inspect", ws.world.ckpt, "--card", "nope.optim.toml"], 2, "nope.optim.toml"),
    Case("card-symlink-outside", "card",
         lambda ws: ["inspect", ws.world.ckpt, "--card", _link(ws, ws.outside / "canary.txt", "link.optim.toml")], 2, "link.optim.toml"),
]


def _link(ws, target, name):
    p = ws.work / name
    p.symlink_to(target)
    return p


#: extra promises for some cases: text that must NOT be in the output
ABSENT = {"ckpt-random-bytes": "--trust-pickle", "ckpt-empty": "--trust-pickle", "ckpt-truncated-zip": "--trust-pickle",
          "ckpt-flipped-bytes": "--trust-pickle"}


@pytest.fixture(scope="module", autouse=True)
def _clean_pt2(tmp_path_factory):
    _SHARED["pt2"] = save_pt2(tmp_path_factory.mktemp("fuzz_ckpt") / "tiny.pt2")
    yield
    _SHARED.clear()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_checkpoint(case, fuzz_world, tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "path", [str(tmp_path / "work"), *sys.path])  # the user package cases import from the workdir
    try:
        out = run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)
    finally:
        for m in [m for m in sys.modules if m == "userarch" or m.startswith("userarch.")]:
            del sys.modules[m]
    if case.id in ABSENT:
        assert ABSENT[case.id] not in out, f"case {case.id}: wrong advice {ABSENT[case.id]!r} in\n{out}"
