"""``optim golden build|inspect|verify``: make, look at and check golden sets."""

from __future__ import annotations

from pathlib import Path

import click

from optim.cli.output import json_option, make_table, print_json, state


@click.group("golden")
def command() -> None:
    """Golden sets: labelled images + manifest + training class counts + content hash.

    A golden set is a directory with manifest.csv (id, path, one column per head; multi-label
    heads as HEAD:TAG columns holding 1/0/empty), optional train_counts.json and golden.json.
    """


@command.command("build")
@click.argument("source", type=click.Path(exists=True))
@click.option("--root", type=click.Path(file_okay=False), help="For a manifest SOURCE: the folder its image paths are relative to (default: the manifest's folder).")
@click.option("--head", default="class", show_default=True, help="Head name for an image-folder tree (the column the class names go to).")
@click.option("--name", help="Golden set name (default: the folder name).")
@click.option("--version", "version_", default="1", show_default=True, help="Golden set version.")
@click.option("--train-counts", type=click.Path(exists=True, dir_okay=False),
              help="Training images per class: JSON {label: n} or {head: {label: n}}, or CSV with label,count[,head].")
@click.option("--tail-class", "tail_classes", multiple=True, metavar="[HEAD=]LABEL",
              help="Explicit tail class (overrides training counts); repeatable. HEAD defaults to --head.")
@click.option("--from-folders", is_flag=True, help="For a directory that already has a manifest: rebuild the manifest from its <class>/ folders.")
@json_option
def build(source: str, root: str | None, head: str, name: str | None, version_: str, train_counts: str | None,
          tail_classes: tuple[str, ...], from_folders: bool, as_json: bool) -> None:
    """Build a golden set in place from SOURCE: an image-folder tree SOURCE/<class>/<images>,
    or an existing manifest (CSV or Parquet). Writes manifest.csv, train_counts.json and
    golden.json (with the sha256 over manifest, counts and images).

    A directory that already holds manifest.csv/.parquet is re-hashed from that manifest
    (so multi-label columns are kept) unless --from-folders is given."""
    from optim.golden_sets.build import build_from_image_folder, build_from_manifest, read_train_counts_file
    from optim.golden_sets.golden_set import MANIFEST_CSV, MANIFEST_PARQUET

    src = Path(source)
    existing = next((src / m for m in (MANIFEST_CSV, MANIFEST_PARQUET) if src.is_dir() and (src / m).is_file()), None)
    folder_mode = src.is_dir() and (existing is None or from_folders)
    counts = read_train_counts_file(train_counts, head if folder_mode else None) if train_counts else None
    tails: dict[str, list[str]] = {}
    for item in tail_classes:
        h, sep, lab = item.partition("=")
        h, lab = (h, lab) if sep else (head, item)
        tails.setdefault(h.strip(), []).append(lab.strip())
    if folder_mode:
        extra = sorted(set(tails) - {head})
        if extra:
            raise click.BadParameter(f"an image-folder golden set has one head, {head!r}; got tail classes for {extra}", param_hint="--tail-class")
        result = build_from_image_folder(src, head=head, name=name, version=version_, train_counts=counts,
                                         tail_classes=tails.get(head))
    else:
        result = build_from_manifest(existing or src, root=root, name=name, version=version_, train_counts=counts,
                                     tail_classes=tails or None)
    gs = result.golden
    if as_json:
        print_json({"path": str(gs.root), "name": gs.name, "version": gs.version, "n_samples": len(gs),
                    "sha256": gs.recorded_sha256, "heads": sorted(gs.heads), "warnings": result.warnings})
        return
    s = state()
    for w in result.warnings:
        s.info(f"[yellow]warning:[/yellow] {w}")
    s.console.print(f"golden set {gs.name!r} v{gs.version}: {len(gs)} samples, heads {sorted(gs.heads)}, sha256 {gs.recorded_sha256}")
    s.console.print(f"written: {gs.root / 'golden.json'}")


@command.command("inspect")
@click.argument("golden", type=click.Path(exists=True, file_okay=False))
@click.option("--tail-max-count", default=50, show_default=True, type=click.IntRange(min=1),
              help="A class is tail when it had fewer than this many training images.")
@json_option
def inspect(golden: str, tail_max_count: int, as_json: bool) -> None:
    """Show GOLDEN's class histogram (golden images and training images per class), tail
    classes, hash status and warnings."""
    from optim.golden_sets.golden_set import GoldenSet
    from optim.golden_sets.summary import summarize

    summary = summarize(GoldenSet.load(golden, check_images=False), tail_max_count)
    if as_json:
        print_json(summary)
        return
    s = state()
    s.console.print(f"golden set {summary['name']!r} v{summary['version']} at {summary['path']}: {summary['n_samples']} samples, "
                    f"{'verified' if summary.get('verified') else 'NOT VERIFIED'} (sha256 {str(summary['sha256'])[:16]}…)")
    for name, h in summary["heads"].items():
        peak = max([c["images"] for c in h["classes"]] + [1])
        rows = [[c["label"], c["images"], "—" if c["train_count"] is None else c["train_count"], "tail" if c["is_tail"] else "",
                 "█" * max(0, round(20 * c["images"] / peak))] for c in h["classes"]]
        what = "images" if h["kind"] == "multiclass" else "positives"
        s.console.print(make_table(f"head {name!r} ({h['kind']}; {h['n_labelled']} labelled, {h['n_missing']} missing; tail from {h['tail_source']})",
                                   ["class", f"golden {what}", "training images", "", "histogram"], rows))
        s.console.print(f"tail classes ({len(h['tail_classes'])}, < {tail_max_count} training images): {', '.join(h['tail_classes']) or 'none'}")
    for w in summary["warnings"]:
        s.console.print(f"[yellow]warning:[/yellow] {w}")


@command.command("verify")
@click.argument("golden", type=click.Path(exists=True, file_okay=False))
@json_option
def verify(golden: str, as_json: bool) -> None:
    """Recompute GOLDEN's content hash and compare it with golden.json. Exit 0 if it matches,
    1 if any hashed file changed, was added or is missing."""
    from optim.errors import CheckFailed
    from optim.golden_sets.golden_set import GoldenSet

    result = GoldenSet.load(golden, check_images=False).verify()
    if as_json:
        print_json({"path": golden, "ok": result.ok, "recorded_sha256": result.recorded_sha256, "actual_sha256": result.actual_sha256,
                    "changed": list(result.changed), "missing": list(result.missing), "added": list(result.added)})
    if not result.ok:
        raise CheckFailed(result.describe())
    if not as_json:
        state().console.print(result.describe())
