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
    bytes), MACs at the card's input shape, heads, and the schemes each export format offers
    for it (``optim quantize --scheme``; size schemes — weight-only INT8/INT4 — marked, with
    the physical floor parameters × 1 byte and × ½ byte)."""
    from optim.checkpoint import load_checkpoint
    from optim.model_stats import model_stats
    from optim.runtimes.registry import formats

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
        "schemes": {name: {"schemes": list(spec.schemes), "size_schemes": list(spec.size_schemes),
                           "calibrated_schemes": [c for c in spec.calibrated_schemes if c in spec.schemes]}
                    for name, spec in formats().items()},
        "int8_floor_mb": round(stats.parameters / 1e6, 3),
        "int4_floor_mb": round(stats.parameters / 2e6, 3),
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
    rows.append(["size floor", f"{report['int8_floor_mb']:.2f} MB at 8 bits a weight, {report['int4_floor_mb']:.2f} MB at 4"])
    for name, f in report["schemes"].items():
        marks = {s: s + ("*" if s in f["size_schemes"] else "") + (" (calib)" if s in f["calibrated_schemes"] else "")
                 for s in f["schemes"]}
        rows.append([f"schemes {name}", ", ".join(marks[s] for s in f["schemes"])])
    rows.append(["", "* size scheme: 4- or 8-bit weights for a smaller file, not a faster one (tune tries it under a size budget)"])
    s.console.print(make_table(None, ["", ""], rows))
