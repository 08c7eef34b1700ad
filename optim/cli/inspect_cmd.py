"""``optim inspect CKPT``: what was loaded — architecture, parameters, FP32 size, MACs, heads."""

from __future__ import annotations

import click

from optim.cli.checkpoint_options import checkpoint_options
from optim.cli.output import json_option, make_table, print_json, state


@click.command("inspect")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@checkpoint_options
@json_option
def command(checkpoint: str, load_kwargs: dict, as_json: bool) -> None:
    """Load CHECKPOINT and print its architecture, parameter count, FP32 size (MB = 10^6
    bytes), MACs at the card's input shape, and heads."""
    from optim.checkpoint import load_checkpoint
    from optim.model_stats import model_stats

    loaded = load_checkpoint(checkpoint, **load_kwargs)
    stats = model_stats(loaded.model, loaded.card.input.shape)
    report = {
        "checkpoint": str(loaded.path),
        "sha256": loaded.sha256,
        "source_format": loaded.source_format,
        "architecture": loaded.card.architecture or type(loaded.model).__name__,
        "card": str(loaded.card_path) if loaded.card_path else None,
        "card_inferred": loaded.card_inferred,
        "parameters": stats.parameters,
        "fp32_mb": round(stats.fp32_mb, 3),
        "macs": stats.macs,
        "input_shape": list(stats.input_shape),
        "heads": [{"name": h.name, "kind": h.kind, "num_labels": h.num_classes} for h in loaded.card.heads],
    }
    if as_json:
        print_json(report)
        return
    s = state()
    if loaded.card_inferred:
        s.info("[yellow]no model card found: heads and input shape were inferred; write <ckpt>.optim.toml or pass --card[/yellow]")
    rows = [
        ["checkpoint", report["checkpoint"]],
        ["format", report["source_format"]],
        ["architecture", report["architecture"]],
        ["parameters", f"{stats.parameters / 1e6:.2f} M ({stats.parameters:,})"],
        ["FP32 size", f"{stats.fp32_mb:.1f} MB (10^6 bytes)"],
        ["MACs", f"{stats.macs / 1e9:.3f} G at {'×'.join(map(str, stats.input_shape))}" if stats.macs else "n/a (graph not countable)"],
    ]
    rows += [[f"head {h['name']}", f"{h['kind']}, {h['num_labels']} labels"] for h in report["heads"]]
    s.console.print(make_table(None, ["", ""], rows))
