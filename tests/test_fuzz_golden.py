"""Fuzz table, golden-set area (issue 11): bad golden sets and a forged preprocessed cache,
through the real CLI (``optim golden build|inspect|verify``, ``optim eval``, ``optim verify``).

Every case asserts (see :mod:`fuzz_harness`) the exit code, that the message names the file,
no traceback, nothing changed outside the workdir and the registry unchanged."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuzz_harness import Case, Workspace, make_workspace, run_case

IMG = "0/000000.png"  # the first digit image of the fuzz world's golden set


def _g(ws: Workspace) -> Path:
    """A private copy of the world's golden set in the workdir."""
    g = ws.work / "g"
    if not g.exists():
        ws.copy(ws.world.golden, "g")
    return g


def _secret(ws: Workspace, name: str = "secret.png") -> Path:
    """A real PNG outside the workdir (what a link would smuggle into the set)."""
    p = ws.outside / name
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(p)
    return p


def _link_image(ws: Workspace) -> Path:
    g = _g(ws)
    (g / IMG).unlink()
    os.symlink(_secret(ws), g / IMG)
    return g


def _link_file(ws: Workspace, name: str) -> Path:
    g = _g(ws)
    target = ws.outside / name
    target.write_bytes((g / name).read_bytes())
    (g / name).unlink()
    os.symlink(target, g / name)
    return g


def _link_class_dir(ws: Workspace) -> Path:
    g = _g(ws)
    outside_dir = ws.outside / "classdir"
    outside_dir.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(outside_dir / "x.png")
    os.symlink(outside_dir, g / "zz")
    return g


def _manifest_row(ws: Workspace, path: str) -> Path:
    g = _g(ws)
    with open(g / "manifest.csv", "a", encoding="utf-8") as f:
        f.write(f"evil,{path},0\n")
    return g


def _bad_image(ws: Workspace, data: bytes | None = None, truncate: bool = False) -> Path:
    g = _g(ws)
    p = g / IMG
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2] if truncate else data)
    return g


def _png_bytes(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((28, 28), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _edit_json(ws: Workspace, name: str, edit) -> Path:
    g = _g(ws)
    p = g / name
    p.write_text(edit(p.read_text()))
    return g


def _golden_json(ws: Workspace, **changes) -> Path:
    def edit(text: str) -> str:
        meta = json.loads(text)
        meta.update(changes)
        return json.dumps(meta)
    return _edit_json(ws, "golden.json", edit)


def _extra_image(ws: Workspace) -> Path:
    g = _g(ws)
    (g / "0" / "extra.png").write_bytes(_png_bytes(7))
    return _manifest_row(ws, "0/extra.png")


def _rename_head(ws: Workspace) -> Path:
    g = _g(ws)
    text = (g / "manifest.csv").read_text().splitlines()
    text[0] = text[0].replace("class", "klass")
    (g / "manifest.csv").write_text("\n".join(text) + "\n")
    return g


def _poisoned_cache(ws: Workspace, value: float) -> Path:
    """Evaluate once (filling the disk cache), then overwrite every cached tensor with
    ``value`` and forge the record's sha256 to match: an attacker who can write the cache."""
    import optim

    cache = ws.work / ".cache"
    optim.evaluate(ws.world.ckpt, ws.world.golden, cache_dir=cache, resamples=50)
    entries = sorted((cache / "golden-preprocessed").glob("*.npy"))
    assert entries, "the first evaluation wrote no cache entry"
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
    return cache


def _verify_args(ws: Workspace) -> list:
    return ["verify", ws.world.artifact, "--golden", ws.world.golden, "--policy", ws.world.policy, "--reference", ws.world.ckpt,
            "--out", ws.work / "v", "--runs", "3", "--warmup", "1", "--trials", "1"]


def _ev(ws: Workspace, g: Path) -> list:
    return ["eval", ws.world.ckpt, "--golden", g, "--no-cache"]


CASES = [
    # symbolic links: refused, named with their target, never followed
    Case("golden-build-image-symlink-outside", "golden", lambda ws: ["golden", "build", _link_image(ws)], 2,
         lambda ws: f"{IMG} is a symbolic link to {ws.outside / 'secret.png'}"),
    Case("golden-verify-image-symlink-outside", "golden", lambda ws: ["golden", "verify", _link_image(ws)], 2,
         lambda ws: str(ws.outside / "secret.png")),
    Case("golden-inspect-image-symlink-outside", "golden", lambda ws: ["golden", "inspect", _link_image(ws)], 2,
         lambda ws: str(ws.outside / "secret.png")),
    Case("golden-eval-image-symlink-outside", "golden", lambda ws: _ev(ws, _link_image(ws)), 2,
         lambda ws: str(ws.outside / "secret.png")),
    Case("golden-build-manifest-symlink", "golden", lambda ws: ["golden", "build", _link_file(ws, "manifest.csv")], 2,
         lambda ws: f"manifest.csv is a symbolic link to {ws.outside / 'manifest.csv'}"),
    Case("golden-verify-golden-json-symlink", "golden", lambda ws: ["golden", "verify", _link_file(ws, "golden.json")], 2,
         lambda ws: f"golden.json is a symbolic link to {ws.outside / 'golden.json'}"),
    Case("golden-verify-train-counts-symlink", "golden", lambda ws: ["golden", "verify", _link_file(ws, "train_counts.json")], 2,
         lambda ws: f"train_counts.json is a symbolic link to {ws.outside / 'train_counts.json'}"),
    Case("golden-build-class-dir-symlink", "golden", lambda ws: ["golden", "build", "--from-folders", _link_class_dir(ws)], 2,
         lambda ws: f"zz is a symbolic link to {ws.outside / 'classdir'}"),
    # manifest paths that escape the set
    Case("golden-build-manifest-dotdot-path", "golden", lambda ws: ["golden", "build", _manifest_row(ws, "../../outside/secret.png")], 2,
         "'../../outside/secret.png' must be relative"),
    Case("golden-build-manifest-absolute-path", "golden",
         lambda ws: ["golden", "build", _manifest_row(ws, str(_secret(ws)))], 2, lambda ws: f"{ws.outside / 'secret.png'}' must be relative"),
    Case("golden-verify-golden-json-manifest-escape", "golden",
         lambda ws: ["golden", "verify", _golden_json(ws, manifest="../../outside/m.csv")], 2, "manifest '../../outside/m.csv' must be one of"),
    # images decoded where they enter
    Case("golden-build-corrupt-png", "golden", lambda ws: ["golden", "build", _bad_image(ws, b"\x89PNG\r\n\x1a\n" + os.urandom(300))], 2,
         f"{IMG}: ("),
    Case("golden-build-truncated-png", "golden", lambda ws: ["golden", "build", _bad_image(ws, truncate=True)], 2, f"{IMG}: ("),
    Case("golden-build-zero-byte-image", "golden", lambda ws: ["golden", "build", _bad_image(ws, b"")], 2, f"{IMG}: (not a PNG"),
    Case("golden-build-text-named-png", "golden", lambda ws: ["golden", "build", _bad_image(ws, b"just some text\n")], 2,
         f"{IMG}: (not a PNG"),
    Case("golden-verify-corrupt-png-after-build", "golden", lambda ws: ["golden", "verify", _bad_image(ws, b"GIF89a" + b"\0" * 40)], 2,
         f"{IMG}: ("),
    Case("golden-inspect-corrupt-png-after-build", "golden", lambda ws: ["golden", "inspect", _bad_image(ws, truncate=True)], 2, IMG),
    Case("golden-eval-truncated-png-after-build", "golden", lambda ws: _ev(ws, _bad_image(ws, truncate=True)), 2,
         f"{IMG} cannot be decoded (image file is truncated)"),
    # golden.json and the hashed files
    Case("golden-verify-golden-json-edited-hash", "golden", lambda ws: ["golden", "verify", _golden_json(ws, sha256="ab" * 32)], 1,
         "golden.json records sha256 abababab"),
    Case("golden-verify-golden-json-not-json", "golden", lambda ws: ["golden", "verify", _edit_json(ws, "golden.json", lambda t: "{oops")],
         2, "golden.json is not valid JSON"),
    Case("golden-verify-golden-json-files-not-a-map", "golden", lambda ws: ["golden", "verify", _golden_json(ws, files=[1, 2])], 2,
         "golden.json: files must map"),
    Case("golden-verify-image-changed", "golden", lambda ws: ["golden", "verify", _bad_image(ws, _png_bytes(3))], 1,
         f"1 changed file(s): {IMG}"),
    Case("golden-verify-image-missing", "golden", lambda ws: ["golden", "verify", (lambda g: ((g / IMG).unlink(), g)[1])(_g(ws))], 1,
         f"1 missing file(s): {IMG}"),
    Case("golden-verify-extra-image", "golden", lambda ws: ["golden", "verify", _extra_image(ws)], 1, "1 new file(s): 0/extra.png"),
    Case("golden-verify-train-counts-not-json", "golden",
         lambda ws: ["golden", "verify", _edit_json(ws, "train_counts.json", lambda t: t[:-5])], 2, "train_counts.json is not valid JSON"),
    Case("golden-verify-train-counts-negative", "golden",
         lambda ws: ["golden", "verify", _edit_json(ws, "train_counts.json", lambda t: json.dumps({"class": {"0": -5}}))], 2,
         "train_counts.json: class.0 = -5"),
    Case("golden-verify-train-counts-nan", "golden",
         lambda ws: ["golden", "verify", _edit_json(ws, "train_counts.json", lambda t: '{"class": {"0": NaN}}')], 2,
         "train_counts.json: class.0 = nan"),
    Case("golden-eval-unknown-head", "golden", lambda ws: _ev(ws, _rename_head(ws)), 2, "head 'klass'"),
    # the preprocessed cache: eval detects and recomputes; the gate never reads it
    Case("golden-eval-cache-overwritten-with-zeros", "golden",
         lambda ws: (_poisoned_cache(ws, 0.0), ["eval", ws.world.ckpt, "--golden", ws.world.golden, "--cache-dir", ws.work / ".cache"])[1],
         0, "failed its check (16 of 16 randomly chosen rows differ"),
    Case("golden-verify-gate-ignores-poisoned-cache", "golden", lambda ws: (_poisoned_cache(ws, float("nan")), _verify_args(ws))[1],
         0, "optim verify: PASS"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_golden(case, fuzz_world, tmp_path, monkeypatch):
    run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)
