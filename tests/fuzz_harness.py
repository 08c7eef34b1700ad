"""The fuzz table's harness: one bad input or fault per case, run through the real CLI.

Every case (``Case``) writes its bad input under ``ws.work`` (the command's working
directory) and returns the ``optim`` arguments to run. :func:`run_case` then asserts what a
release gate owes its users for *every* bad input:

* the exit code is the documented one (2 input problem, 3 tool/device problem, 1 failed check);
* the message names the thing (``Case.names``: text that must appear in the output);
* no traceback is printed (none without ``-v``);
* nothing appeared, changed or vanished outside ``ws.work`` (``ws.outside`` holds a canary and
  is where code-execution payloads aim: :func:`payload_path`), and
* the registry (``ws.registry``, one good release in it) is byte-for-byte unchanged.

The shared real inputs (``FuzzWorld``: a resnet18 state_dict at 32×32 with its card, a golden
set of real MNIST digits, a verified ONNX FP32 artifact and its passing ``verify.json``) are
built once per session by the ``fuzz_world`` fixture in ``conftest.py``; a case copies what it
corrupts into ``ws.work`` and never touches the originals.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from click.testing import CliRunner

PAYLOAD_NAME = "PWNED"


@dataclass(frozen=True)
class FuzzWorld:
    """Real inputs shared by all cases (never modified by a case)."""

    ckpt: Path            # resnet18(num_classes=10) state_dict, card at <ckpt>.optim.toml
    golden: Path          # golden set directory (60 real MNIST digits, head "class")
    artifact: Path        # onnx-fp32 artifact directory exported from ckpt
    verify_json: Path     # passing verify report of ``artifact`` (reference = ckpt)
    policy: Path          # the policy verify_json was judged under
    release_registry: Path  # a registry holding one release of ``artifact``


@dataclass
class Workspace:
    root: Path
    work: Path
    outside: Path
    registry: Path
    world: FuzzWorld

    def copy(self, src: Path, name: str | None = None) -> Path:
        """Copy a world file or directory into ``work`` (symlinks copied as links) and return it."""
        dst = self.work / (name or src.name)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst)
        return dst

    @property
    def payload(self) -> Path:
        return payload_path(self)


def payload_path(ws: Workspace) -> Path:
    """Where a code-execution payload tries to write: its existence after a case is a failure."""
    return ws.outside / PAYLOAD_NAME


@dataclass(frozen=True)
class Case:
    """One row of the fuzz table.

    ``make(ws)`` builds the bad input and returns the CLI arguments (after ``optim``);
    ``names`` is a string, or a function of the workspace, that the message must contain;
    ``env`` adds environment variables (values may use ``{work}``, ``{outside}``)."""

    id: str
    area: str
    make: Callable[[Workspace], list[str]]
    exit_code: int
    names: str | Callable[[Workspace], str]
    env: dict[str, str] = field(default_factory=dict)


class _PickleBomb:
    """Unpickling this object writes the payload file (what an attacker's checkpoint would do)."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def pickle_bomb(target: Path) -> object:
    """An object whose unpickling creates ``target``."""
    return _PickleBomb(target)


def snapshot(root: Path) -> dict[str, str]:
    """Relative path → sha256 (files), ``"dir"`` or ``"link:<target>"`` of everything under ``root``."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"link:{os.readlink(p)}"
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_workspace(tmp_path: Path, world: FuzzWorld) -> Workspace:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "canary.txt").write_text("must stay as it is\n")
    registry = tmp_path / "registry"
    shutil.copytree(world.release_registry, registry, symlinks=True)
    return Workspace(tmp_path, work, outside, registry, world)


def run_case(case: Case, ws: Workspace, monkeypatch) -> str:
    """Run one case and assert the gate's promises (see the module docstring); returns the output."""
    from optim.cli.main import cli

    args = case.make(ws)
    before = {p: snapshot(p) for p in (ws.outside, ws.registry)}
    root_entries = sorted(p.name for p in ws.root.iterdir())
    monkeypatch.chdir(ws.work)
    monkeypatch.setenv("OPTIM_CACHE_DIR", str(ws.work / ".cache"))
    for k, v in case.env.items():
        monkeypatch.setenv(k, v.format(work=ws.work, outside=ws.outside))
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    out = result.output
    context = f"case {case.id}: optim {' '.join(map(str, args))}\n--- output ---\n{out}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{context}\nan exception escaped the CLI: {result.exception!r}") from result.exception
    assert not payload_path(ws).exists(), f"{context}\nthe payload ran: {payload_path(ws)} was created"
    assert result.exit_code == case.exit_code, f"{context}\nexit {result.exit_code}, expected {case.exit_code}"
    assert "Traceback" not in out, f"{context}\na traceback was printed without -v"
    names = case.names(ws) if callable(case.names) else case.names
    assert names in out, f"{context}\nthe message does not name {names!r}"
    for p, snap in before.items():
        assert snapshot(p) == snap, f"{context}\n{p} changed"
    assert sorted(p.name for p in ws.root.iterdir()) == root_entries, f"{context}\na file appeared outside the workdir"
    return out
