"""Fuzz table, distill area: bad teachers, students, training data, outputs and run
directories for `optim distill`, through the real CLI (see tests/fuzz_harness.py). Every case
fails before a training step: exit 2 naming the thing, no traceback, no payload, nothing
written outside the workdir, no student file."""

from __future__ import annotations

import io
import shutil

import pytest

from fuzz_harness import Case, make_workspace, pickle_bomb, run_case
from train_split import write_mnist_split

STUDENT = "torchvision:mobilenet_v2(num_classes=10)"


def _train(ws, name="train", indices=range(0, 5000, 125)):
    return write_mnist_split(ws.work / name, indices)


def _teacher(ws):
    """A copy of the world's resnet18 with its card, in the workdir."""
    t = ws.copy(ws.world.ckpt, "teacher.pt")
    shutil.copy2(str(ws.world.ckpt) + ".optim.toml", ws.work / "teacher.pt.optim.toml")
    return t


def _args(ws, *extra, teacher=None, student=STUDENT, train=None, out="student.pt"):
    return ["distill", str(teacher or _teacher(ws)), "--student", student, "--train", str(train or _train(ws)),
            "--epochs", "1", "--batch-size", "20", "--out", out, *map(str, extra)]


def _torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _state(ws, data: bytes):
    """A run directory holding ``train_state.pt`` with ``data`` (what --resume would read)."""
    rd = ws.work / "student.pt.run"
    rd.mkdir()
    (rd / "train_state.pt").write_bytes(data)
    return []


def _golden_copy(ws):
    return ws.copy(ws.world.golden, "golden-copy")


def _link(ws, name, target):
    p = ws.work / name
    p.symlink_to(target)
    return p


def _foreign_labels(ws):
    t = _train(ws)
    m = t / "manifest.csv"
    lines = m.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",cat"  # a class the teacher's card does not have
    m.write_text("\n".join(lines) + "\n")
    return t


CASES = [
    # ---- the teacher -----------------------------------------------------------------------------
    Case("teacher-missing", "distill", lambda ws: _args(ws, teacher="nope.pt"), 2, "nope.pt"),
    Case("teacher-pickle-bomb", "distill",
         lambda ws: _args(ws, teacher=(ws.work / "evil.pt").write_bytes(_torch_bytes({"state_dict": pickle_bomb(ws.payload)}))
                          and ws.work / "evil.pt"), 2, "evil.pt"),
    Case("teacher-empty", "distill", lambda ws: _args(ws, teacher=(ws.work / "e.pt").write_bytes(b"") or ws.work / "e.pt"), 2,
         "e.pt is empty"),
    # ---- the student architecture -------------------------------------------------------------
    Case("student-fewer-classes", "distill", lambda ws: _args(ws, student="torchvision:mobilenet_v2(num_classes=7)"), 2,
         "mobilenet_v2(num_classes=7)"),
    Case("student-default-1000-classes", "distill", lambda ws: _args(ws, student="torchvision:resnet34"), 2, "10 classes"),
    Case("student-unknown-arch", "distill", lambda ws: _args(ws, student="torchvision:mobilenet_v9(num_classes=10)"), 2,
         "mobilenet_v9"),
    Case("student-os-system", "distill",
         lambda ws: _args(ws, student=f"os:system(command='touch {ws.payload}')"), 2, "never allowed"),
    Case("student-subprocess", "distill",
         lambda ws: _args(ws, student=f"subprocess:run(args=['touch', '{ws.payload}'])"), 2, "never allowed"),
    Case("student-user-module-not-allowed", "distill",
         lambda ws: (ws.work / "userarch.py").write_text(f"open({str(ws.payload)!r}, 'w').close()\n") and
         _args(ws, student="userarch:net(num_classes=10)"), 2, "not allowed"),
    Case("student-code-in-kwargs", "distill",
         lambda ws: _args(ws, student="torchvision:mobilenet_v2(num_classes=__import__('os').system('id'))"), 2,
         "architecture arguments"),
    Case("student-pretrained-weights", "distill",
         lambda ws: _args(ws, student="torchvision:mobilenet_v2(weights='IMAGENET1K_V1', num_classes=10)"), 2, "download"),
    Case("student-bad-kwarg", "distill", lambda ws: _args(ws, student="torchvision:mobilenet_v2(num_klasses=10)"), 2,
         "num_klasses"),
    Case("student-malformed-ref", "distill", lambda ws: _args(ws, student="mobilenet_v2"), 2, "mobilenet_v2"),
    Case("student-private-factory", "distill", lambda ws: _args(ws, student="torchvision:_hidden(num_classes=10)"), 2,
         "_hidden"),
    # ---- training data ------------------------------------------------------------------------
    Case("train-is-golden", "distill",
         lambda ws: _args(ws, "--golden", ws.world.golden, train=ws.world.golden), 2, "golden set"),
    Case("train-copy-of-golden", "distill",
         lambda ws: _args(ws, "--golden", ws.world.golden, train=_golden_copy(ws)), 2, "golden set"),
    Case("train-symlink-to-golden", "distill",
         lambda ws: _args(ws, "--golden", ws.world.golden, train=_link(ws, "train-link", ws.world.golden)), 2, "golden set"),
    Case("train-missing", "distill", lambda ws: _args(ws, train=ws.work / "no-train"), 2, "no-train"),
    Case("train-label-not-in-card", "distill", lambda ws: _args(ws, train=_foreign_labels(ws)), 2, "'cat'"),
    Case("train-fewer-images-than-a-batch", "distill",
         lambda ws: _args(ws, train=_train(ws, "tiny", range(0, 50, 5))), 2, "fewer than one batch"),
    # ---- the output ---------------------------------------------------------------------------
    Case("out-is-the-teacher", "distill", lambda ws: _args(ws, out="teacher.pt"), 2, "would overwrite the teacher"),
    Case("out-symlink-to-teacher", "distill",
         lambda ws: _args(ws, teacher=_teacher(ws), out=str(_link(ws, "s.pt", ws.work / "teacher.pt"))), 2,
         "would overwrite the teacher"),
    Case("out-card-is-the-teachers-card", "distill",
         lambda ws: _args(ws, teacher=_teacher(ws), out=str(_link(ws, "s.pt.optim.toml", ws.work / "teacher.pt.optim.toml"))[:-len(".optim.toml")]),
         2, "would overwrite the teacher's card"),
    Case("out-is-a-directory", "distill", lambda ws: _args(ws, out=str((ws.work / "d").mkdir() or ws.work / "d")), 2, "directory"),
    # ---- run directory (resume) ---------------------------------------------------------------
    Case("run-state-pickle-bomb", "distill",
         lambda ws: _state(ws, _torch_bytes({"fingerprint": "x", "model": pickle_bomb(ws.payload)})) + _args(ws), 2,
         "train_state.pt is not a readable training state"),
    Case("run-state-truncated", "distill",
         lambda ws: _state(ws, _torch_bytes({"fingerprint": "x", "step": 3})[:100]) + _args(ws), 2, "train_state.pt"),
    Case("run-state-other-run", "distill",
         lambda ws: _state(ws, _torch_bytes({"fingerprint": "0" * 64, "step": 3})) + _args(ws), 2, "different run"),
    Case("run-state-not-a-dict", "distill", lambda ws: _state(ws, _torch_bytes([1, 2, 3])) + _args(ws), 2, "different run"),
    # ---- settings -----------------------------------------------------------------------------
    Case("alpha-out-of-range", "distill", lambda ws: _args(ws, "--alpha", "2"), 2, "alpha 2.0"),
    Case("temperature-zero", "distill", lambda ws: _args(ws, "--temperature", "0"), 2, "temperature 0.0: must be > 0"),
    Case("epochs-zero", "distill", lambda ws: _args(ws, "--epochs", "0"), 2, "epochs must be ≥ 1"),
    Case("batch-of-one", "distill", lambda ws: _args(ws, "--batch-size", "1"), 2, "≥ 2 images a batch"),
    Case("bn-batches-negative", "distill", lambda ws: _args(ws, "--bn-batches", "-1"), 2, "bn_batches -1"),
    Case("lr-negative", "distill", lambda ws: _args(ws, "--lr", "-1"), 2, "lr must be > 0"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_distill(case, fuzz_world, tmp_path, monkeypatch):
    ws = make_workspace(tmp_path, fuzz_world)
    run_case(case, ws, monkeypatch)
    assert not (ws.work / "student.pt").exists() and not (ws.work / "student.pt.optim.toml").exists()
