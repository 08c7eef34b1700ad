"""Verify's result as an attestation: an in-toto Statement in a DSSE envelope, optionally signed.

``optim verify --out DIR`` writes ``DIR/verify.intoto.json`` beside ``verify.json``. It is a
DSSE envelope (``payloadType`` ``application/vnd.in-toto+json``; securesystemslib's
:class:`~securesystemslib.dsse.Envelope`) whose payload is an in-toto Statement v1 (layout
checked with the in-toto-attestation library):

* ``subject``: one entry per file of every verified artifact, ``artifact.json`` included,
  named ``<artifact name>@<content sha256 prefix>/<file>`` with its sha256;
* ``predicateType``: :data:`PREDICATE_TYPE`;
* ``predicate``: the verdict; per artifact its full ``{file: sha256}`` set, content hash, size,
  verdict and checks; the policy, golden set and FP32 reference digests; the sha256 of the
  ``verify.json`` bytes it summarises; the optim version and time.

``optim publish`` admits an artifact only through :func:`admit`: it re-hashes the artifact
now, and requires an attested entry whose file set equals it exactly, whose every check passed
(none failed, errored or missing) and whose statement is well-formed; with trusted keys it also
requires a valid signature (Ed25519, RSA or ECDSA keys in PEM, via securesystemslib's
:class:`~securesystemslib.signer.CryptoSigner`). An unsigned attestation proves consistency,
not origin: anyone who can write the results directory can write one (see README, "Security
model").
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from optim.errors import CheckFailed, InputError, describe_validation_error
from optim.files import atomic_write_json, sha256_file

ATTESTATION_FILE = "verify.intoto.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:optim:predicate:verify:v1"
PASSING = ("pass", "skipped")
_HEX64 = r"^[0-9a-f]{64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttestedCheck(_Model):
    id: str
    status: str
    model_config = ConfigDict(extra="allow", frozen=True)


class AttestedArtifact(_Model):
    name: str
    format: str
    scheme: str
    content_sha256: str = Field(pattern=_HEX64)
    size_bytes: int = Field(ge=0)
    files: dict[str, str]
    verdict: str
    checks: list[AttestedCheck] = Field(min_length=1)


class Digest(_Model):
    path: str | None = None
    sha256: str | None = Field(default=None, pattern=_HEX64)
    model_config = ConfigDict(extra="allow", frozen=True)


class VerifyPredicate(_Model):
    """The predicate optim writes; every field is checked when publish reads it."""

    optim_version: str
    created: str
    verdict: str
    exit_code: int
    report: Digest
    policy: Digest
    golden: Digest
    reference: Digest | None
    devices: list[str]
    artifacts: list[AttestedArtifact] = Field(min_length=1)


@dataclass(frozen=True)
class Attestation:
    """A verified-to-be-well-formed attestation read from ``path``.

    ``signed_by``: key ids whose signature was checked against a trusted key (empty when
    unsigned or when no trusted keys were given)."""

    path: Path
    envelope: dict[str, Any]
    statement: dict[str, Any]
    predicate: VerifyPredicate
    signed_by: tuple[str, ...]

    @property
    def signed(self) -> bool:
        return bool(self.envelope.get("signatures"))


# ---- writing ------------------------------------------------------------------------------
def statement_for(report: dict[str, Any], digests: list[dict[str, str]], report_sha256: str) -> dict[str, Any]:
    """The in-toto Statement for a verify ``report``; ``digests[i]`` is the ``{file: sha256}``
    set of ``report["artifacts"][i]`` (``Artifact.digests()`` taken before measuring)."""
    from importlib.metadata import version

    subjects, entries = [], []
    for a, files in zip(report["artifacts"], digests, strict=True):
        for rel, sha in sorted(files.items()):
            subjects.append({"name": f"{a['name']}@{a['content_sha256'][:12]}/{rel}", "digest": {"sha256": sha}})
        entries.append({"name": a["name"], "format": a["format"], "scheme": a["scheme"],
                        "content_sha256": a["content_sha256"], "size_bytes": a["size_bytes"], "files": dict(files),
                        "verdict": a["verdict"], "checks": a["checks"]})
    g = report.get("golden") or {}
    predicate = {
        "optim_version": version("optim"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "verdict": report["verdict"], "exit_code": report["exit_code"],
        "report": {"path": "verify.json", "sha256": report_sha256},
        "policy": report["policy"],
        "golden": {k: g.get(k) for k in ("path", "name", "version", "sha256", "verified")},
        "reference": report.get("reference"),
        "devices": list(report["devices"]),
        "artifacts": entries,
    }
    stmt = {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE, "predicate": predicate}
    _validate_statement_layout(stmt, "<new statement>")
    return stmt


def write_attestation(report: dict[str, Any], digests: list[dict[str, str]], report_path: Path, out_dir: Path,
                      sign_key: str | Path | None = None) -> Path:
    """Write ``out_dir/verify.intoto.json`` for ``report`` (already written to ``report_path``),
    signed with the PEM private key ``sign_key`` when given. Raises :class:`InputError` for an
    unreadable or encrypted key."""
    from securesystemslib.dsse import Envelope

    stmt = statement_for(report, digests, sha256_file(report_path))
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    env = Envelope(payload, PAYLOAD_TYPE, {})
    if sign_key is not None:
        env.sign(load_signer(sign_key))
    return atomic_write_json(Path(out_dir) / ATTESTATION_FILE, env.to_dict())


def load_signer(path: str | Path):
    """A securesystemslib CryptoSigner from a PEM PKCS#8 private key file (no passphrase)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    path = Path(path)
    if not path.is_file():
        raise InputError(f"signing key {path} does not exist (create one with `optim keygen`)")
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
        return CryptoSigner(key)
    except (ValueError, TypeError) as e:
        raise InputError(f"signing key {path} is not an unencrypted PEM private key (Ed25519, RSA or ECDSA): {e}") from None


def load_public_key(path: str | Path):
    """A securesystemslib key from a PEM public key file."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    path = Path(path)
    if not path.is_file():
        raise InputError(f"trusted key {path} does not exist")
    try:
        return SSlibKey.from_crypto(load_pem_public_key(path.read_bytes()))
    except (ValueError, TypeError) as e:
        raise InputError(f"trusted key {path} is not a PEM public key (Ed25519, RSA or ECDSA): {e}") from None


def generate_keypair(out_dir: str | Path, name: str = "optim-verify") -> tuple[Path, Path]:
    """Write a new Ed25519 key pair ``NAME.key`` (PKCS#8 PEM, mode 0600) and ``NAME.pub``
    into ``out_dir``; never overwrites. Returns (private, public) paths."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    priv, pub = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv, pub):
        if p.exists():
            raise InputError(f"{p} already exists; a key is never overwritten (choose another --out or --name)")
    key = Ed25519PrivateKey.generate()
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


# ---- reading ------------------------------------------------------------------------------
def _validate_statement_layout(stmt: dict[str, Any], source: str) -> None:
    """Check the in-toto Statement v1 layout with the in-toto-attestation library."""
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    try:
        pb = json_format.ParseDict(stmt, statement_pb2.Statement())
        Statement.copy_from_pb(pb).validate()
    except (json_format.ParseError, ValueError, TypeError) as e:
        raise InputError(f"attestation {source} is not a valid in-toto Statement v1: {e}") from None


def load_attestation(path: str | Path, *, trusted_keys: list[str | Path] | tuple = (),
                     require_signature: bool = False) -> Attestation:
    """Read and check an attestation written by :func:`write_attestation`.

    Checks: a DSSE envelope of :data:`PAYLOAD_TYPE`; an in-toto Statement v1; the optim
    predicate type and schema (:class:`VerifyPredicate`, unknown keys refused); every
    artifact's file digests appear as subjects; with ``trusted_keys`` (PEM public keys) at
    least one signature verifies against one of them. ``require_signature`` without
    ``trusted_keys`` is refused (a signature checked against nothing proves nothing).

    Raises :class:`InputError` for anything missing, malformed, inconsistent or unsigned.
    """
    from securesystemslib.dsse import Envelope

    path = Path(path)
    if require_signature and not trusted_keys:
        raise InputError("--require-signature needs the public key(s) to trust: pass --trusted-key KEY.pub")
    if path.is_symlink() or not path.is_file():
        raise InputError(f"attestation {path} does not exist or is not a regular file: run `optim verify --out "
                         f"{path.parent}` first (it writes {ATTESTATION_FILE} beside verify.json)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        env = Envelope.from_dict(json.loads(json.dumps(raw)))  # from_dict mutates its input
        if not isinstance(raw, dict) or not isinstance(raw.get("signatures"), list):
            raise ValueError("no 'signatures' list")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise InputError(f"attestation {path} is not a DSSE envelope ({type(e).__name__}: {e}); "
                         "re-run `optim verify`") from None
    if env.payload_type != PAYLOAD_TYPE:
        raise InputError(f"attestation {path}: payloadType {env.payload_type!r} is not {PAYLOAD_TYPE!r}")
    signed_by: tuple[str, ...] = ()
    if trusted_keys:
        keys = [load_public_key(k) for k in trusted_keys]
        if not env.signatures:
            raise InputError(f"attestation {path} is not signed, but a signature by a trusted key is required "
                             "(sign with `optim verify --sign-key KEY`)")
        try:
            signed_by = tuple(env.verify(keys, 1))
        except Exception as e:  # securesystemslib VerificationError and friends
            raise InputError(f"attestation {path}: no signature verifies against the trusted key(s) "
                             f"({type(e).__name__}: {e}); it was altered or signed by another key") from None
    try:
        stmt = json.loads(env.payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"attestation {path}: payload is not JSON ({e})") from None
    if not isinstance(stmt, dict):
        raise InputError(f"attestation {path}: payload is not a JSON object")
    _validate_statement_layout(stmt, str(path))
    if stmt.get("predicateType") != PREDICATE_TYPE:
        raise InputError(f"attestation {path}: predicateType {stmt.get('predicateType')!r} is not {PREDICATE_TYPE!r}")
    try:
        predicate = VerifyPredicate.model_validate(stmt["predicate"])
    except ValidationError as e:
        raise InputError(f"attestation {path}: invalid optim predicate: {describe_validation_error(e)}") from None
    subjects = {(s.get("name"), (s.get("digest") or {}).get("sha256")) for s in stmt["subject"]}
    for a in predicate.artifacts:
        for rel, sha in a.files.items():
            if (f"{a.name}@{a.content_sha256[:12]}/{rel}", sha) not in subjects:
                raise InputError(f"attestation {path}: {a.name}/{rel} is in the predicate but not among the subjects")
    return Attestation(path, raw, stmt, predicate, signed_by)


def admit(att: Attestation, digests: dict[str, str], content_sha256: str, artifact: str) -> AttestedArtifact:
    """The attested entry for exactly these files (``{name: sha256}`` read now from disk).

    Raises :class:`InputError` (exit 2) when no entry has exactly this file set (the bytes were
    never verified, or were edited, added to or removed from since), and :class:`CheckFailed`
    (exit 1) unless every entry for them passed: no check failed, errored or is unknown, at
    least one check passed. The same bytes judged twice must pass both times."""
    entries = [a for a in att.predicate.artifacts if a.files == digests and a.content_sha256 == content_sha256]
    if not entries:
        near = [a for a in att.predicate.artifacts if set(a.files) == set(digests)]
        hint = ""
        if near:
            changed = sorted(n for n in digests if near[0].files.get(n) != digests[n])
            hint = f" (changed since verify: {', '.join(changed)})"
        raise InputError(f"artifact {artifact} (content sha256 {content_sha256[:12]}…) is not attested in "
                         f"{att.path}: these exact files were never verified{hint}; run optim verify on it again")
    for a in entries:
        statuses = [c.status for c in a.checks]
        if a.verdict != "pass" or any(s not in PASSING for s in statuses) or "pass" not in statuses:
            bad = [c.id for c in a.checks if c.status not in PASSING]
            raise CheckFailed(f"artifact {artifact} ({content_sha256[:12]}…) did not pass verify in {att.path} "
                              f"(failed or unmeasured checks: {', '.join(bad) or 'none passed'}): it cannot be published")
    return entries[-1]
