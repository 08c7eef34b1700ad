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
    `golden build` makes one from your own label file (see `optim golden build --help`).
    """


def _head_map(values: tuple[str, ...], option: str, multi: bool) -> dict:
    out: dict = {}
    for v in values:
        head, sep, cols = v.partition("=")
        head = head.strip()
        parts = [c.strip() for c in cols.split(",")] if multi else [cols.strip()]
        if not sep or not head or not all(parts) or (not multi and "," in cols):
            example = "pattern=polka_dot,floral,checker" if multi else "category=COLUMN"
            raise click.BadParameter(f"{v!r}: expected HEAD={'COLUMN,COLUMN,…' if multi else 'COLUMN'}, e.g. {example}", param_hint=option)
        if head in out:
            raise click.BadParameter(f"head {head!r} is given twice", param_hint=option)
        out[head] = tuple(parts) if multi else parts[0]
    return out


def _print_summary(summary: dict) -> None:
    s = state()
    heads = summary["heads"]
    s.console.print(f"built: {summary['n_images']} images, {len(heads)} head(s): "
                    + ", ".join(f"{n} ({h['kind']}, {len(h['labels'])} {'classes' if h['kind'] == 'multiclass' else 'tags'})"
                                for n, h in heads.items()))
    for name, h in heads.items():
        if h["kind"] == "multiclass":
            rows = [[lab, n, h.get("train_counts", {}).get(lab, "—")] for lab, n in h["labels"].items()]
            title = (f"head {name!r} (multiclass, from column {h['columns'][0]!r}): {h['n_missing']} of {summary['n_images']} "
                     f"images unlabelled ({100 * h['missing_rate']:.1f} %)")
            s.console.print(make_table(title, ["class", "golden images", "training images"], rows))
        else:
            rows = [[t, n, h["negatives"][t], h["missing"][t], h.get("train_counts", {}).get(t, "—")] for t, n in h["labels"].items()]
            title = (f"head {name!r} (multilabel, from columns {h['columns']}): missing-label rate {100 * h['missing_rate']:.1f} % "
                     f"({h['n_missing']} of {h['n_cells']} labels)")
            s.console.print(make_table(title, ["tag", "positives", "negatives", "missing", "training images"], rows))


@command.command("build")
@click.argument("source", type=click.Path(exists=True))
@click.option("--root", type=click.Path(file_okay=False), help="For a label-file SOURCE: the folder its image paths are relative to (default: the file's folder).")
@click.option("--head", default=None,
              help="Head the flat {label: n} training counts (and --tail-class without HEAD=) belong to; for an image-folder "
                   "tree, the head name (default 'class').")
@click.option("--multilabel-head", "multilabel_heads", multiple=True, metavar="HEAD=COL,COL,…",
              help="Columns holding 1/0/empty for each tag of a multi-label head (the tag is the column name); repeatable.")
@click.option("--multiclass-head", "multiclass_heads", multiple=True, metavar="HEAD=COLUMN",
              help="The column holding a multiclass head's class names; repeatable. A column named after its head needs none.")
@click.option("--ignore-column", "ignore_columns", multiple=True, metavar="COLUMN", help="A column of the label file to leave out; repeatable.")
@click.option("--id-column", help="Column with the sample ids (default 'id'; without one, the image path is the id).")
@click.option("--path-column", help="Column with the image paths (default 'path', or image/image_path/file/filename/filepath).")
@click.option("--card", "card", type=click.Path(dir_okay=False),
              help="Model card whose heads decide which columns are which; the set is checked against it (heads, kinds, labels).")
@click.option("--name", help="Golden set name (default: the folder name).")
@click.option("--version", "version_", default="1", show_default=True, help="Golden set version.")
@click.option("--train-counts", type=click.Path(exists=True, dir_okay=False),
              help="Training images per class: JSON {label: n} (with --head, or for a one-head set) or {head: {label: n}}, "
                   "or CSV with label,count[,head].")
@click.option("--tail-class", "tail_classes", multiple=True, metavar="[HEAD=]LABEL",
              help="Explicit tail class (overrides training counts); repeatable. HEAD defaults to --head (or the only head).")
@click.option("--from-folders", is_flag=True, help="For a directory that already has a manifest: rebuild the manifest from its <class>/ folders.")
@json_option
def build(source: str, root: str | None, head: str | None, multilabel_heads: tuple[str, ...], multiclass_heads: tuple[str, ...],
          ignore_columns: tuple[str, ...], id_column: str | None, path_column: str | None, card: str | None, name: str | None,
          version_: str, train_counts: str | None, tail_classes: tuple[str, ...], from_folders: bool, as_json: bool) -> None:
    """Build a golden set in place from SOURCE: an image-folder tree SOURCE/<class>/<images>,
    or a label file (CSV or Parquet: one row per image, an image path column, label columns).
    Prints what it built (heads, kinds, label counts, missing-label rate per multi-label head),
    then writes manifest.csv, train_counts.json and golden.json (with the sha256 over manifest,
    counts and images).

    \b
    Which column is which head:
      --multilabel-head pattern=polka_dot,floral,checker   tag columns (1/0/empty)
      --multiclass-head category=cat_name                  a column of class names
      --card model.pt.optim.toml                           the card's heads and labels decide
      HEAD:TAG columns are tags of HEAD; a column of class names is a multiclass head of its name.
    A tag column that is not mapped is an error (never a head of its own); --ignore-column drops one.

    A directory that already holds manifest.csv/.parquet is re-hashed from that manifest
    (so multi-label columns are kept) unless --from-folders is given."""
    from optim.golden_sets.build import (
        ColumnMapping, build_from_image_folder, heads_summary, plan_from_labels, read_train_counts_file, read_train_counts_raw,
        write_plan,
    )
    from optim.golden_sets.golden_set import MANIFEST_CSV, MANIFEST_PARQUET

    src = Path(source)
    existing = next((src / m for m in (MANIFEST_CSV, MANIFEST_PARQUET) if src.is_dir() and (src / m).is_file()), None)
    folder_mode = src.is_dir() and (existing is None or from_folders)
    mapping = ColumnMapping(multilabel=_head_map(multilabel_heads, "--multilabel-head", True),
                            multiclass=_head_map(multiclass_heads, "--multiclass-head", False),
                            ignore=tuple(ignore_columns), id_column=id_column, path_column=path_column)
    tails: dict[str, list[str]] = {}
    for item in tail_classes:
        h, sep, lab = item.partition("=")
        h, lab = (h, lab) if sep else (head or "", item)
        tails.setdefault(h.strip(), []).append(lab.strip())
    s = state()
    if folder_mode:
        if mapping.explicit or card:
            raise click.BadParameter(f"{src} is an image-folder tree (one head from its class folders); column mappings and --card "
                                     "apply to a label file", param_hint="--multilabel-head/--multiclass-head/--card")
        folder_head = head or "class"
        tails = {(h or folder_head): v for h, v in tails.items()}
        extra = sorted(set(tails) - {folder_head})
        if extra:
            raise click.BadParameter(f"an image-folder golden set has one head, {folder_head!r}; got tail classes for {extra}", param_hint="--tail-class")
        counts = read_train_counts_file(train_counts, folder_head) if train_counts else None
        result = build_from_image_folder(src, head=folder_head, name=name, version=version_, train_counts=counts,
                                         tail_classes=tails.get(folder_head))
        gs = result.golden
        summary = {"source": str(src), "root": str(gs.root), **heads_summary(gs.heads, len(gs), gs.train_counts), "warnings": []}
        if not as_json:
            _print_summary(summary)
    else:
        raw_counts = read_train_counts_raw(train_counts) if train_counts else None
        plan = plan_from_labels(existing or src, root=root, mapping=mapping, card=card, train_counts=raw_counts,
                                counts_head=head, counts_source=str(train_counts))
        if "" in tails:
            if len(plan.heads) != 1 and not head:
                raise click.BadParameter(f"say which head each tail class belongs to (HEAD=LABEL); heads: {sorted(plan.heads)}",
                                         param_hint="--tail-class")
            tails[head or next(iter(plan.heads))] = tails.pop("") + tails.get(head or next(iter(plan.heads)), [])
        summary = plan.summary()
        if not as_json:
            _print_summary(summary)
            for w in plan.warnings:
                s.info(f"[yellow]warning:[/yellow] {w}")
        result = write_plan(plan, name=name, version=version_, tail_classes=tails or None)
        gs = result.golden
    if as_json:
        print_json({"path": str(gs.root), "name": gs.name, "version": gs.version, "n_samples": len(gs),
                    "sha256": gs.recorded_sha256, "heads": sorted(gs.heads), "warnings": result.warnings,
                    "built": {"n_images": summary["n_images"], "heads": summary["heads"]}})
        return
    if folder_mode:
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
