"""``optim publish ARTIFACT --registry DIR``: release an artifact that passed verify."""

from __future__ import annotations

import click

from optim.cli.output import json_option, print_json, state


@click.command("publish")
@click.argument("artifact", type=click.Path())
@click.option("--registry", required=True, help="Registry directory or file:// URI.")
@click.option("--results", type=click.Path(dir_okay=False), default="optim-verify/verify.json", show_default=True,
              help="verify.json written by `optim verify --out`.")
@click.option("--attestation", type=click.Path(dir_okay=False), default=None,
              help="verify.intoto.json written by `optim verify` [default: beside --results].")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="PEM public key whose signature on the attestation is required (repeatable; see `optim keygen`).")
@click.option("--require-signature", is_flag=True,
              help="Refuse unless the attestation is signed by a --trusted-key (for CI).")
@click.option("--name", default=None, help="Release name [default: <card name>-<format>-<scheme>].")
@click.option("--version", "version", default=None, help="Release version [default: sha256-<content hash prefix>].")
@json_option
def command(artifact, registry, results, attestation, trusted_keys, require_signature, name, version, as_json) -> None:
    """Publish ARTIFACT into a registry if its exact bytes (sha256) passed `optim verify`.

    ARTIFACT is re-hashed now (every file, artifact.json and its model card included) and must
    match an entry of the attestation verify wrote (verify.intoto.json) whose every check
    passed; with --trusted-key the attestation must be signed by that key.

    The release holds the artifact's files content-addressed, the model card, the gate results
    and provenance (checkpoint, golden set and policy hashes, recipe, library versions, time).
    Publishing is atomic and a published version is never overwritten.
    Exit codes: 0 published, 1 the artifact did not pass verify, 2 input error (never verified,
    changed since, attestation missing/forged/unsigned when a key is required, version exists, bad path).
    """
    from optim.gate.publish import publish

    rel = publish(artifact, registry, results=results, attestation=attestation, trusted_keys=list(trusted_keys),
                  require_signature=require_signature, name=name, version=version)
    if not rel.manifest["gate"].get("signed"):  # the API's own warning went to the run's log with the library output
        state().err_console.print(f"warning: the attestation of {rel.name} {rel.version} is unsigned: it proves the bytes match "
                                  "what verify judged, not who ran verify (sign with `optim verify --sign-key`, check with "
                                  "`--trusted-key`)", markup=False)
    if as_json:
        print_json({"name": rel.name, "version": rel.version, "path": str(rel.path),
                    "content_sha256": rel.manifest["artifact"]["content_sha256"]})
        return
    state().console.print(f"published {rel.name} {rel.version} → {rel.path} "
                          f"(sha256 {rel.manifest['artifact']['content_sha256'][:12]}…)", markup=False)
