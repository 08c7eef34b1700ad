"""``optim.publish``: put an artifact that passed ``optim verify`` into a release registry.

A registry is a local directory (or a ``file://`` URI). Layout::

    REGISTRY/
      NAME/VERSION/
        manifest.json              # model card, gate results, provenance, file table
        model_card.toml
        gate/verify.json           # the verify report the release was admitted on

        gate/verify.intoto.json     # the attestation it was admitted by (optim.gate.attestation)
        blobs/sha256/<hex>         # the artifact's files, artifact.json included, content-addressed
      .incoming/                   # staging; a crashed publish leaves only this behind

Rules: the artifact is re-hashed now (every file, ``artifact.json`` and its card included;
symlinks and unlisted files refused) and admitted only through the attestation that
``optim verify`` wrote beside ``verify.json``: an entry with exactly this file set must have
passed every check (:func:`optim.gate.attestation.admit`), ``verify.json`` must be the bytes the
attestation names, and with ``trusted_keys`` the attestation must carry a valid signature. The
files are copied with their bytes hashed as they are read, so what lands in the registry is
exactly what was attested. A release is staged in ``.incoming`` and appears under
``NAME/VERSION`` by one ``os.rename`` (atomic on POSIX within one file system), so readers see
a whole release or none; an existing version is never overwritten.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
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

from optim.errors import InputError
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
    """A registry directory from a path or a ``file://`` URI; other schemes are refused, and so
    is a path that exists but is not a directory."""
    s = str(registry)
    if "://" in s:
        u = urlparse(s)
        if u.scheme != "file":
            raise InputError(f"registry {s}: only local directories and file:// URIs are supported")
        p = Path(unquote(u.path))
    else:
        p = Path(s)
    if p.exists() and not p.is_dir():
        raise InputError(f"registry {p} exists and is not a directory; pass a registry directory")
    return p


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


def _copy_fsync(src: Path, dst: Path) -> str:
    """Copy ``src`` (never through a symlink) to ``dst``, fsync it; returns the sha256 of the
    bytes copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(src, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as fi, open(dst, "xb") as fo:
        while block := fi.read(1 << 20):
            h.update(block)
            fo.write(block)
        fo.flush()
        os.fsync(fo.fileno())
    return h.hexdigest()


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


def publish(
    artifact: str | Path,
    registry: str | Path,
    *,
    results: str | Path = DEFAULT_RESULTS,
    attestation: str | Path | None = None,
    trusted_keys: list[str | Path] | tuple = (),
    require_signature: bool = False,
    name: str | None = None,
    version: str | None = None,
) -> Release:
    """Publish ``artifact`` (an artifact directory) into ``registry`` as ``NAME/VERSION``.

    ``results`` is the ``verify.json`` written by ``optim verify --out``; ``attestation`` its
    ``verify.intoto.json`` (default: beside ``results``). ``trusted_keys`` (PEM public keys)
    make a valid signature by one of them required; ``require_signature`` refuses to run
    without them. ``name`` defaults to ``<card name>-<format>-<scheme>``, ``version`` to
    ``sha256-<first 12 hex of the content hash>``.

    Raises :class:`InputError` (exit 2) for a missing/invalid artifact, results or attestation
    file, a bad or missing signature, bytes that were never verified (or changed since), or a
    version that already exists; :class:`CheckFailed` (exit 1) when the bytes were verified but
    did not pass. The registry is left unchanged whenever it raises.
    """
    from optim.gate.attestation import ATTESTATION_FILE, admit, load_attestation
    from optim.gate.verify import library_versions
    from optim.runtimes.artifact import METADATA_FILE, Artifact

    src = Path(artifact)
    if not src.exists():
        raise InputError(f"artifact {src} does not exist")
    art = Artifact.load(src)
    digests = art.digests()
    content_sha = art.content_sha256()
    results_path = Path(results)
    rep = load_results(results_path)
    att = load_attestation(Path(attestation) if attestation else results_path.parent / ATTESTATION_FILE,
                           trusted_keys=trusted_keys, require_signature=require_signature)
    results_sha = sha256_file(results_path)
    if results_sha != att.predicate.report.sha256:
        raise InputError(f"verify results {results_path} are not the report attested in {att.path} (sha256 "
                         f"{results_sha[:12]}… vs {str(att.predicate.report.sha256)[:12]}…): it was edited or belongs "
                         "to another run")
    entry = admit(att, digests, content_sha, str(src))
    reported = [a for a in rep.get("artifacts", []) if isinstance(a, dict) and a.get("content_sha256") == content_sha]
    if not reported or any(a.get("verdict") != "pass" or a.get("digests") != digests for a in reported):
        raise InputError(f"verify results {results_path} disagree with the attestation {att.path} about {src}: "
                         "one of them was edited; run optim verify again")
    if not att.signed:
        print(f"warning: the attestation {att.path} is unsigned: it proves the bytes match what verify judged, "
              "not who ran verify (sign with `optim verify --sign-key`, check with `--trusted-key`)", file=sys.stderr)
    name = name or f"{art.card.name}-{art.format}-{art.scheme}"
    version = version or f"sha256-{content_sha[:12]}"
    for what, v in (("name", name), ("version", version)):
        if not _NAME_RE.match(v):
            raise InputError(f"release {what} {v!r}: use letters, digits and . _ + - (at most 128, no /)")
    reg = registry_path(registry)
    final = reg / name / version
    for p in (reg / INCOMING, reg / name):
        if p.is_symlink():
            raise InputError(f"registry {reg}: {p.name} is a symlink; a registry never writes through links")
    if final.exists():
        raise InputError(f"{name} {version} is already published at {final}; a published version is never "
                         "overwritten (choose another --version)")

    incoming = reg / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    sweep_stale_staging(reg)
    stage = incoming / f"{name}--{version}--{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        # 1. content-addressed blobs, each hashed as it is copied: exactly the attested bytes
        def blob_of(rel: str) -> dict[str, Any]:
            blob = Path("blobs") / "sha256" / digests[rel]
            tmp = stage / f"copy-{uuid.uuid4().hex}"
            got = _copy_fsync(art.dir / rel, tmp)
            if got != digests[rel]:
                raise InputError(f"artifact {src}: {rel} changed while it was being published; verify it again")
            if (stage / blob).exists():
                tmp.unlink()
            else:
                (stage / blob).parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, stage / blob)
            return {"path": rel, "sha256": digests[rel], "size_bytes": (stage / blob).stat().st_size, "blob": str(blob)}

        files = [blob_of(rel) for rel in art.files]
        metadata_files = [blob_of(rel) for rel in sorted(digests) if rel not in set(art.files)]
        if [m["path"] for m in metadata_files] != [METADATA_FILE]:
            raise InputError(f"artifact {src} holds unexpected files: {[m['path'] for m in metadata_files]}")
        _pause("staged", stage)
        # 2. card, gate results (the exact bytes attested), manifest
        art.card.save(stage / "model_card.toml")
        for source, dest in ((results_path, "verify.json"), (att.path, ATTESTATION_FILE)):
            got = _copy_fsync(source, stage / "gate" / dest)
            if dest == "verify.json" and got != results_sha:
                raise InputError(f"verify results {results_path} changed while publishing; run publish again")
        md = art.metadata or {}
        pred = att.predicate
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
            "gate": {"verdict": entry.verdict, "checks": [c.model_dump() for c in entry.checks],
                     "budget": next((a.get("budget") for a in rep.get("artifacts", [])
                                     if a.get("content_sha256") == content_sha), None),
                     "devices": pred.devices, "verified": pred.created,
                     "results_sha256": results_sha, "results": "gate/verify.json",
                     "attestation": f"gate/{ATTESTATION_FILE}",
                     "attestation_sha256": sha256_file(stage / "gate" / ATTESTATION_FILE),
                     "signed": att.signed, "signature_verified_by": list(att.signed_by)},
            "provenance": {
                "checkpoint": md.get("source"),  # {"checkpoint": path, "sha256", "source_format", "lineage"}
                "calibration": md.get("calibration"),
                "reference": None if pred.reference is None else pred.reference.model_dump(),
                "golden_set": pred.golden.model_dump(),
                "policy": pred.policy.model_dump(),
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
        # 3. the one atomic step
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
    Raises :class:`InputError` naming the first file whose bytes differ or are missing, or a
    manifest that is not JSON or names a path outside the release."""
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.is_file():
        raise InputError(f"{path} is not a release (no manifest.json)")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
        entries = manifest["artifact"]["files"] + manifest["artifact"].get("metadata_files", [])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise InputError(f"release {path}: manifest.json is not a release manifest ({type(e).__name__}: {e})") from None
    for f in entries:
        rel, blob_rel = str(f.get("path", "")), str(f.get("blob", ""))
        for r in (rel, blob_rel):
            if not r or r.startswith("/") or any(part in ("", ".", "..") for part in r.split("/")):
                raise InputError(f"release {path}: manifest names the path {r!r}, which is not inside the release")
        blob = path / blob_rel
        if blob.is_symlink() or not blob.is_file() or sha256_file(blob) != f["sha256"]:
            raise InputError(f"release {path}: file {rel} ({blob_rel}) is missing or its bytes changed")
    return manifest


def list_releases(registry: str | Path) -> list[tuple[str, str]]:
    """(name, version) of every complete release; staging directories are ignored."""
    reg = registry_path(registry)
    if not reg.is_dir():
        return []
    return sorted((n.name, v.name) for n in reg.iterdir() if n.is_dir() and n.name != INCOMING
                  for v in n.iterdir() if (v / "manifest.json").is_file())


def materialize(path: str | Path, dest: str | Path) -> Path:
    """Rebuild the artifact directory of a release at ``dest`` (files under their names),
    after :func:`check_release`; each copy is re-hashed."""
    manifest = check_release(path)
    dest = Path(dest)
    for f in manifest["artifact"]["files"] + manifest["artifact"].get("metadata_files", []):
        if _copy_fsync(Path(path) / f["blob"], dest / f["path"]) != f["sha256"]:
            raise InputError(f"release {path}: {f['path']} changed while it was being copied")
    return dest
