"""``optim keygen --out DIR``: an Ed25519 key pair for signing verify attestations."""

from __future__ import annotations

import click

from optim.cli.output import json_option, print_json, state


@click.command("keygen")
@click.option("--out", type=click.Path(file_okay=False), default=".", show_default=True, help="Directory for the key pair.")
@click.option("--name", default="optim-verify", show_default=True, help="File stem: NAME.key (private) and NAME.pub.")
@json_option
def command(out, name, as_json) -> None:
    """Write a new Ed25519 key pair: NAME.key (private, PKCS#8 PEM, mode 0600) for
    `optim verify --sign-key` and NAME.pub for `optim publish --trusted-key`. Never overwrites.

    Keep the private key where only the verify job can read it (a CI secret); give the
    public key to whoever publishes.
    """
    from optim.gate.attestation import generate_keypair

    priv, pub = generate_keypair(out, name)
    if as_json:
        print_json({"private_key": str(priv), "public_key": str(pub)})
        return
    state().console.print(f"private key {priv} (keep secret) · public key {pub}", markup=False)
