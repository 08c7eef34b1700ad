"""Artifacts: an exported model as a directory of files plus ``artifact.json``.

An artifact is a directory ``<out>/<format>-<scheme>/`` (e.g. ``artifacts/onnx-int8/``) that
holds every file the runtime needs (for ONNX the ``.onnx`` graph *and* its external-data
file, if any) and one metadata file, ``artifact.json``, and nothing else.

What an artifact *is* is pinned (issue 11, "Trust the gate"): the set of regular files in the
directory, ``artifact.json`` (with its model card) included. Loading refuses symlinks, special
files, files the metadata does not list, listed files that are missing, and listed files whose
bytes no longer match the sha256 recorded at export. Its size is the bytes on disk of that
whole set and its content hash (:func:`content_sha256`) covers it, so editing the card, the
label order or the file list after ``optim verify`` changes the hash and ``optim publish``
refuses it. MB = 10^6 bytes.

``artifact.json`` (schema_version 1) holds::

    {"schema_version": 1,
     "format": a registered format name (optim.runtimes.registry),
     "scheme": one of the format's FormatSpec.schemes ("fp32", "fp16", "int8", "int8-dynamic", ...),
     "files": [{"name": relative path, "bytes": int, "sha256": hex}, ...],
     "size_bytes": int, "size_mb": float,
     "inputs":  [{"name", "shape", "dtype", "layout", "quantization": null | {"scale", "zero_point"}}],
     "outputs": [{"name", "shape", "dtype", "head", "quantization": ...}],
     "card": {model card as a dict: input spec, preprocessing, heads},
     "source": {"checkpoint", "sha256", "source_format"},
     "calibration": null | {"dir", "size", "sha256", "seed"},
     "recipe": {how the export was made: library calls and options},
     "versions": {distribution name: version},
     "checks": {post-export checks against torch FP32, see optim.optimize.ptq},
     "created_utc": ISO-8601}
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from optim.errors import InputError
from optim.files import atomic_write_json, sha256_file, size_mb
from optim.model_card import ModelCard

METADATA_FILE = "artifact.json"
SCHEMA_VERSION = 1
#: the schemes every built-in format exports; each format lists its own in ``FormatSpec.schemes``
SCHEMES = ("fp32", "fp16", "int8", "int8-dynamic")


def artifact_dir_name(fmt: str, scheme: str) -> str:
    """The directory name of an artifact inside an output directory: ``<format>-<scheme>``."""
    return f"{fmt}-{scheme}"


def library_versions(*distributions: str, missing: str | None = "not installed") -> dict[str, str | None]:
    """Installed versions of the named distributions; ``missing`` (default ``"not installed"``)
    for those absent. The one place optim reads package versions (artifacts, verify, publish)."""
    out: dict[str, str | None] = {}
    for d in distributions:
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = missing
    return out


def is_artifact(path: str | Path) -> bool:
    """True if ``path`` is an artifact directory or its ``artifact.json``."""
    path = Path(path)
    return (path.is_dir() and (path / METADATA_FILE).is_file()) or (path.is_file() and path.name == METADATA_FILE)


@dataclass
class Artifact:
    """An artifact directory and its metadata (see the module docstring).

    Attributes:
        dir: the artifact directory.
        metadata: the parsed ``artifact.json``.
    """

    dir: Path
    metadata: dict[str, Any] = field(repr=False)

    # ---- reading ------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        """Open an artifact directory (or its ``artifact.json``).

        Raises :class:`InputError` if the metadata is missing, not JSON, of an unknown schema,
        or if a listed file is missing or escapes the directory.
        """
        path = Path(path)
        meta_path = path if path.name == METADATA_FILE and path.is_file() else path / METADATA_FILE
        if not meta_path.is_file():
            raise InputError(f"{path} is not an artifact: {meta_path} does not exist (artifacts are written by `optim quantize`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"artifact metadata {meta_path} is not valid JSON ({e}); re-run `optim quantize`") from None
        if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
            got = meta.get("schema_version") if isinstance(meta, dict) else type(meta).__name__
            raise InputError(f"artifact metadata {meta_path}: schema_version {got!r} is not supported (expected {SCHEMA_VERSION})")
        for key in ("format", "scheme", "files", "card"):
            if key not in meta:
                raise InputError(f"artifact metadata {meta_path} lacks the field {key!r}; re-run `optim quantize`")
        if not isinstance(meta["files"], list) or not all(
                isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("sha256"), str)
                for f in meta["files"]):
            raise InputError(f"artifact metadata {meta_path}: 'files' must list {{name, bytes, sha256}} entries; "
                             "re-run `optim quantize`")
        art = cls(dir=meta_path.parent, metadata=meta)
        on_disk = scan_files(art.dir)
        listed = [f["name"] for f in meta["files"]]
        for name in listed:
            if not _is_plain_relative(name) or name == METADATA_FILE:
                raise InputError(f"artifact {art.dir}: file name {name!r} in {METADATA_FILE} is not a plain relative "
                                 "path inside the artifact directory")
        if len(set(listed)) != len(listed):
            raise InputError(f"artifact {art.dir}: {METADATA_FILE} lists a file twice")
        missing = sorted(set(listed) - set(on_disk))
        if missing:
            raise InputError(f"artifact {art.dir} is incomplete: {', '.join(missing)} listed in {METADATA_FILE} "
                             "is missing")
        unlisted = sorted(set(on_disk) - set(listed) - {METADATA_FILE})
        if unlisted:
            raise InputError(f"artifact {art.dir} holds files its {METADATA_FILE} does not list: "
                             f"{', '.join(unlisted[:5])}{' …' if len(unlisted) > 5 else ''}; an artifact is exactly "
                             "its listed files (remove them, or re-run `optim quantize`)")
        for f in meta["files"]:
            got = sha256_file(on_disk[f["name"]])
            if got != f["sha256"]:
                raise InputError(f"artifact {art.dir}: {f['name']} changed after export (sha256 {got[:12]}… but "
                                 f"{METADATA_FILE} records {str(f['sha256'])[:12]}…); re-run `optim quantize`")
        return art

    @property
    def format(self) -> str:
        return self.metadata["format"]

    @property
    def scheme(self) -> str:
        return self.metadata["scheme"]

    @property
    def files(self) -> list[str]:
        """Relative names of the artifact's files (metadata excluded), sorted."""
        return sorted(f["name"] for f in self.metadata["files"])

    def path(self, name: str) -> Path:
        return self.dir / name

    def require_file(self, name: str) -> Path:
        """The path of the artifact's file ``name``; raises :class:`InputError` naming the
        format and the directory if it is not there."""
        p = self.path(name)
        if not p.is_file():
            raise InputError(f"{self.format} artifact {self.dir} has no {name}")
        return p

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of every file of the artifact, ``artifact.json`` included (the set
        :meth:`digests` pins)."""
        return sum(p.stat().st_size for p in scan_files(self.dir).values())

    @property
    def size_mb(self) -> float:
        """:attr:`size_bytes` in MB (10^6 bytes)."""
        return size_mb(self.size_bytes)

    @property
    def card(self) -> ModelCard:
        return ModelCard.from_dict(self.metadata["card"], source=str(self.dir / METADATA_FILE))

    def digests(self) -> dict[str, str]:
        """``{relative name: hex sha256}`` of every file in the artifact directory,
        ``artifact.json`` included, read now from disk (what verify attests and publish
        re-checks). Raises :class:`InputError` on a symlink or special file."""
        return {name: sha256_file(p) for name, p in sorted(scan_files(self.dir).items())}

    def content_sha256(self) -> str:
        """One sha256 naming the whole artifact: see :func:`content_sha256`."""
        return content_sha256(self.dir, list(scan_files(self.dir)))

    def __str__(self) -> str:
        return f"{self.format}-{self.scheme} artifact at {self.dir}"


def _is_plain_relative(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and "\0" not in name and all(
        p not in ("", ".", "..") for p in parts)


def scan_files(root: str | Path) -> dict[str, Path]:
    """Every regular file under ``root`` as ``{relative posix name: path}``, without following
    links. Raises :class:`InputError` naming the first symlink or special file (FIFO, device,
    socket) found: an artifact never reaches outside its directory."""
    root = Path(root)
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise InputError(f"artifact {root}: {rel} is a symlink (to {os.readlink(p)}); an artifact holds "
                                 "only regular files, never links")
            if stat.S_ISREG(st.st_mode):
                out[rel] = p
            elif not stat.S_ISDIR(st.st_mode):
                raise InputError(f"artifact {root}: {rel} is not a regular file")
    return out


def content_sha256(root: Path, names: list[str]) -> str:
    """sha256 over the sorted files: for each, its relative name (UTF-8), a NUL byte, its
    length as 8 little-endian bytes, then its bytes. :meth:`Artifact.content_sha256` passes
    every file of the directory, ``artifact.json`` included."""
    h = hashlib.sha256()
    for name in sorted(names):
        p = Path(root) / name
        with open(p, "rb", opener=_no_follow) as f:
            h.update(name.encode("utf-8") + b"\0" + os.fstat(f.fileno()).st_size.to_bytes(8, "little"))
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def write_metadata(
    artifact_dir: str | Path,
    *,
    fmt: str,
    scheme: str,
    files: list[str],
    card: ModelCard,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    source: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    versions: dict[str, str] | None = None,
    checks: dict[str, Any] | None = None,
) -> Artifact:
    """Write ``artifact.json`` into ``artifact_dir`` (atomically) and return the :class:`Artifact`.

    ``files`` are relative names of every file the runtime needs; each must exist. Sizes and
    hashes are computed here from the files on disk. Raises :class:`InputError` on an unknown
    format/scheme or a missing file.
    """
    artifact_dir = Path(artifact_dir)
    from optim.runtimes.registry import format_names

    if fmt not in format_names():
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(format_names())}")
    from optim.runtimes.registry import get_format

    known = get_format(fmt).schemes
    if scheme not in known:
        raise InputError(f"unknown {fmt} scheme {scheme!r}; known: {', '.join(known)}")
    entries = []
    for name in sorted(set(files)):
        p = artifact_dir / name
        if not p.is_file():
            raise InputError(f"artifact {artifact_dir}: file {name} does not exist")
        entries.append({"name": name, "bytes": p.stat().st_size, "sha256": sha256_file(p)})
    total = sum(e["bytes"] for e in entries)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "format": fmt,
        "scheme": scheme,
        "files": entries,
        "size_bytes": total,
        "size_mb": round(size_mb(total), 6),
        "inputs": inputs,
        "outputs": outputs,
        "card": card.to_dict(),
        "source": source or {},
        "calibration": calibration,
        "recipe": recipe or {},
        "versions": versions or {},
        "checks": checks or {},
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(artifact_dir / METADATA_FILE, meta)
    return Artifact(dir=artifact_dir, metadata=meta)


def update_metadata(artifact: Artifact, **fields: Any) -> Artifact:
    """Set top-level metadata fields (e.g. ``checks``) and rewrite ``artifact.json`` atomically."""
    artifact.metadata.update(fields)
    atomic_write_json(artifact.dir / METADATA_FILE, artifact.metadata)
    return artifact
