"""``optim.publish``: put an artifact that passed ``optim verify`` into a release registry.

A registry is a local directory (or a ``file://`` URI). Layout::

    REGISTRY/
      NAME/VERSION/
        manifest.json              # model card, gate results, provenance, file table
        model_card.toml
        gate/verify.json           # the verify report the release was admitted on
        blobs/sha256/<hex>         # the artifact's files, content-addressed
      .incoming/                   # staging; a crashed publish leaves only this behind

Rules: only an artifact whose exact bytes (``Artifact.content_sha256()``) appear with verdict
``pass`` in the verify results can be published; a release is staged in ``.incoming`` and
appears under ``NAME/VERSION`` by one ``os.rename`` (atomic on POSIX within one file system),
so readers see a whole release or none; an existing version is never overwritten.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from optim.errors import CheckFailed, InputError
from optim.files import atomic_write_json, sha256_file

MANIFEST_SCHEMA_VERSION = 1
DEFAULT_RESULTS = Path("optim-verify") / "verify.json"
INCOMING = ".incoming"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
# Test hook: when this environment variable names a stage ("staged", "before_rename"), publish
# prints "OPTIM_PUBLISH_PAUSED <stage> <dir>" and sleeps, so a test can SIGKILL it there.
PAUSE_ENV = "OPTIM_TEST_PUBLISH_PAUSE"
STALE_STAGING_S = 24 * 3600  # staging dirs older than this are left-overs of crashed publishes


@dataclass
class Release:
    name: str
    version: str
    path: Path
    manifest: dict[str, Any]


def registry_path(registry: str | Path) -> Path:
    """A registry directory from a path or a ``file://`` URI; other schemes are refused."""
    s = str(registry)
    if "://" in s:
        u = urlparse(s)
        if u.scheme != "file":
            raise InputError(f"registry {s}: only local directories and file:// URIs are supported")
        return Path(unquote(u.path))
    return Path(s)


def _pause(stage: str, where: Path) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        print(f"OPTIM_PUBLISH_PAUSED {stage} {where}", flush=True)
        time.sleep(float(os.environ.get(PAUSE_ENV + "_SECONDS", "60")))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_fsync(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"verify results {path} do not exist: run `optim verify ... --out {path.parent}` first "
                         "or pass --results")
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"verify results {path} are not valid JSON: {e}") from None
    if not isinstance(rep, dict) or rep.get("kind") != "optim.verify" or rep.get("schema_version") != 1:
        raise InputError(f"{path} is not an optim verify report (schema_version 1)")
    return rep


def admitted_entry(results: dict[str, Any], content_sha256: str, source: str) -> dict[str, Any]:
    """The verify entry for exactly these bytes; raises unless every entry for them passed
    every check (none failed, none errored, at least one passed)."""
    entries = [a for a in results.get("artifacts", []) if a.get("content_sha256") == content_sha256]
    if not entries:
        raise InputError(f"no artifact with content sha256 {content_sha256[:12]}… in {source}: these exact bytes "
                         "were never verified (re-run optim verify on this artifact)")
    passing = [a for a in entries if a.get("verdict") == "pass"
               and all(c.get("status") in ("pass", "skipped") for c in a.get("checks", []))
               and any(c.get("status") == "pass" for c in a.get("checks", []))]
    if len(passing) != len(entries):  # fail closed: the same bytes judged twice must pass both times
        bad = [c["id"] for a in entries for c in a.get("checks", []) if c.get("status") in ("fail", "error")]
        raise CheckFailed(f"artifact {content_sha256[:12]}… did not pass verify in {source} "
                          f"(failed or unmeasured checks: {', '.join(bad) or 'none passed'}): it cannot be published")
    return passing[-1]


def publish(
    artifact: str | Path,
    registry: str | Path,
    *,
    results: str | Path = DEFAULT_RESULTS,
    name: str | None = None,
    version: str | None = None,
) -> Release:
    """Publish ``artifact`` (an artifact directory) into ``registry`` as ``NAME/VERSION``.

    ``results`` is the ``verify.json`` written by ``optim verify --out``. ``name`` defaults to
    ``<card name>-<format>-<scheme>``, ``version`` to ``sha256-<first 12 hex of the content hash>``.
    Raises :class:`InputError` (exit 2) for a missing/invalid artifact or results file, bytes that
    were never verified, or a version that already exists; :class:`CheckFailed` (exit 1) when
    the bytes were verified but did not pass.
    """
    from optim.gate.verify import library_versions
    from optim.runtimes.artifact import Artifact

    src = Path(artifact)
    if not src.exists():
        raise InputError(f"artifact {src} does not exist")
    art = Artifact.load(src)
    content_sha = art.content_sha256()
    results_path = Path(results)
    rep = load_results(results_path)
    entry = admitted_entry(rep, content_sha, str(results_path))
    name = name or f"{art.card.name}-{art.format}-{art.scheme}"
    version = version or f"sha256-{content_sha[:12]}"
    for what, v in (("name", name), ("version", version)):
        if not _NAME_RE.match(v):
            raise InputError(f"release {what} {v!r}: use letters, digits and . _ + - (at most 128, no /)")
    reg = registry_path(registry)
    final = reg / name / version
    if final.exists():
        raise InputError(f"{name} {version} is already published at {final}; a published version is never "
                         "overwritten (choose another --version)")

    incoming = reg / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    sweep_stale_staging(reg)
    stage = incoming / f"{name}--{version}--{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        # 1. stage a copy of the artifact and prove it holds exactly the verified bytes
        staged_art = stage / "artifact"
        shutil.copytree(art.dir, staged_art)
        copy = Artifact.load(staged_art)
        if copy.content_sha256() != content_sha:
            raise InputError(f"artifact {src} changed while it was being published; verify it again")
        # 2. content-addressed blobs: the artifact's files, then its metadata file(s)
        def blob_of(rel: str) -> dict[str, Any]:
            p = staged_art / rel
            digest = sha256_file(p)
            blob = Path("blobs") / "sha256" / digest
            if not (stage / blob).exists():
                _copy_fsync(p, stage / blob)
            return {"path": rel, "sha256": digest, "size_bytes": p.stat().st_size, "blob": str(blob)}

        files = [blob_of(rel) for rel in copy.files]
        counted = set(copy.files)
        metadata_files = [blob_of(str(p.relative_to(staged_art))) for p in sorted(staged_art.rglob("*"))
                          if p.is_file() and str(p.relative_to(staged_art)) not in counted]
        shutil.rmtree(staged_art)
        _pause("staged", stage)
        # 3. card, gate results, manifest
        art.card.save(stage / "model_card.toml")
        atomic_write_json(stage / "gate" / "verify.json", rep)
        md = art.metadata or {}
        manifest = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "kind": "optim.release",
            "name": name,
            "version": version,
            "published": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "artifact": {"format": art.format, "scheme": art.scheme, "content_sha256": content_sha,
                         "size_bytes": art.size_bytes, "size_mb": art.size_bytes / 1e6, "files": files,
                         "metadata_files": metadata_files, "metadata": art.metadata},
            "model_card": art.card.to_dict(),
            "gate": {"verdict": entry["verdict"], "checks": entry["checks"], "budget": entry.get("budget"),
                     "devices": rep.get("devices"), "verified": rep.get("created"),
                     "results_sha256": sha256_file(results_path), "results": "gate/verify.json"},
            "provenance": {
                "checkpoint": md.get("source"),  # {"checkpoint": path, "sha256", "source_format"}
                "calibration": md.get("calibration"),
                "reference": rep.get("reference"),
                "golden_set": rep.get("golden"),
                "policy": rep.get("policy"),
                "recipe": md.get("recipe"),
                "artifact_libraries": md.get("versions"),
                "libraries": library_versions(),
                "python": sys.version.split()[0],
                "verify_environment": rep.get("environment"),
            },
        }
        atomic_write_json(stage / "manifest.json", manifest)
        for d in [p for p in stage.rglob("*") if p.is_dir()] + [stage]:
            _fsync_dir(d)
        _pause("before_rename", stage)
        # 4. the one atomic step
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(stage, final)
        except OSError:
            if final.exists():
                raise InputError(f"{name} {version} was published concurrently at {final}; "
                                 "a published version is never overwritten") from None
            raise
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return Release(name, version, final, manifest)


def sweep_stale_staging(registry: str | Path, max_age_s: float = STALE_STAGING_S) -> list[Path]:
    """Delete staging directories of crashed publishes (older than ``max_age_s``); returns them.
    They were never visible as releases, so removing them loses nothing."""
    incoming = registry_path(registry) / INCOMING
    now, removed = time.time(), []
    for d in incoming.iterdir() if incoming.is_dir() else []:
        if d.is_dir() and now - d.stat().st_mtime > max_age_s:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def check_release(path: str | Path) -> dict[str, Any]:
    """Re-hash a published release's blobs against its manifest; returns the manifest.
    Raises :class:`InputError` naming the first file whose bytes differ or are missing."""
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.is_file():
        raise InputError(f"{path} is not a release (no manifest.json)")
    manifest = json.loads(mf.read_text())
    for f in manifest["artifact"]["files"] + manifest["artifact"].get("metadata_files", []):
        blob = path / f["blob"]
        if not blob.is_file() or sha256_file(blob) != f["sha256"]:
            raise InputError(f"release {path}: file {f['path']} ({f['blob']}) is missing or its bytes changed")
    return manifest


def list_releases(registry: str | Path) -> list[tuple[str, str]]:
    """(name, version) of every complete release; staging directories are ignored."""
    reg = registry_path(registry)
    if not reg.is_dir():
        return []
    return sorted((n.name, v.name) for n in reg.iterdir() if n.is_dir() and n.name != INCOMING
                  for v in n.iterdir() if (v / "manifest.json").is_file())


def materialize(path: str | Path, dest: str | Path) -> Path:
    """Rebuild the artifact directory of a release at ``dest`` (files under their names)."""
    manifest = check_release(path)
    dest = Path(dest)
    for f in manifest["artifact"]["files"] + manifest["artifact"].get("metadata_files", []):
        _copy_fsync(Path(path) / f["blob"], dest / f["path"])
    return dest
