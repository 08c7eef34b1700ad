"""Artifacts: an exported model as a directory of files plus ``artifact.json``.

An artifact is a directory ``<out>/<format>-<scheme>/`` (e.g. ``artifacts/onnx-int8/``) that
holds every file the runtime needs (for ONNX the ``.onnx`` graph *and* its external-data
file, if any) and one metadata file, ``artifact.json``. Its size is the sum of its files'
sizes (metadata excluded); MB = 10^6 bytes.

``artifact.json`` (schema_version 1) holds::

    {"schema_version": 1,
     "format": "onnx" | "tflite" | "pte",
     "scheme": "fp32" | "fp16" | "int8" | "int8-dynamic",
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
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from optim.errors import InputError
from optim.files import atomic_write_json, sha256_file, size_mb
from optim.model_card import ModelCard

METADATA_FILE = "artifact.json"
SCHEMA_VERSION = 1
FORMATS = ("onnx", "tflite", "pte")
SCHEMES = ("fp32", "fp16", "int8", "int8-dynamic")


def artifact_dir_name(fmt: str, scheme: str) -> str:
    """The directory name of an artifact inside an output directory: ``<format>-<scheme>``."""
    return f"{fmt}-{scheme}"


def library_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the named distributions (``"not installed"`` when absent)."""
    out = {}
    for d in distributions:
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = "not installed"
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
        art = cls(dir=meta_path.parent, metadata=meta)
        root = art.dir.resolve()
        for name in art.files:
            p = (art.dir / name).resolve()
            if root not in p.parents:
                raise InputError(f"artifact {art.dir}: file {name!r} in {METADATA_FILE} points outside the artifact directory")
            if not p.is_file():
                raise InputError(f"artifact {art.dir} is incomplete: {name} listed in {METADATA_FILE} is missing")
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
        """Sum of the artifact's files' sizes on disk, in bytes (metadata excluded)."""
        return sum((self.dir / n).stat().st_size for n in self.files)

    @property
    def size_mb(self) -> float:
        """:attr:`size_bytes` in MB (10^6 bytes)."""
        return size_mb(self.size_bytes)

    @property
    def card(self) -> ModelCard:
        return ModelCard.from_dict(self.metadata["card"], source=str(self.dir / METADATA_FILE))

    def content_sha256(self) -> str:
        """sha256 over the sorted files: for each, its relative name (UTF-8), a NUL byte, its
        length as 8 little-endian bytes, then its bytes. Metadata is excluded, so the hash
        names the model content only (what verify/publish pin)."""
        return content_sha256(self.dir, self.files)

    def __str__(self) -> str:
        return f"{self.format}-{self.scheme} artifact at {self.dir}"


def content_sha256(root: Path, names: list[str]) -> str:
    """See :meth:`Artifact.content_sha256`."""
    h = hashlib.sha256()
    for name in sorted(names):
        p = Path(root) / name
        h.update(name.encode("utf-8") + b"\0" + p.stat().st_size.to_bytes(8, "little"))
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()


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
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if scheme not in SCHEMES:
        raise InputError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")
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
