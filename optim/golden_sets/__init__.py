"""Golden sets: curated labelled images, class frequencies, evaluation against FP32.

* :mod:`~optim.golden_sets.golden_set` — the format (manifest, golden.json, content hash), loading, verify;
* :mod:`~optim.golden_sets.build` — builders (image-folder tree, existing CSV/Parquet, in-memory images);
* :mod:`~optim.golden_sets.summary` — what ``optim golden inspect`` shows;
* :mod:`~optim.golden_sets.tail` — head/tail classes from training counts;
* :mod:`~optim.golden_sets.metrics`, :mod:`~optim.golden_sets.stats` — pure metrics and statistics;
* :mod:`~optim.golden_sets.head_report` — one head's report section from arrays;
* :mod:`~optim.golden_sets.evaluate` — :func:`evaluate` (I/O: runtimes, preprocessing cache);
* :mod:`~optim.golden_sets.stream` — batch cuts, worker processes, resumable Parquet results;
* :mod:`~optim.golden_sets.report` — :class:`EvalReport` (JSON, Markdown, Parquet).
"""

from optim.golden_sets.build import build_from_image_folder, build_from_manifest, build_golden_set_from_images
from optim.golden_sets.golden_set import GoldenSet

__all__ = ["GoldenSet", "build_from_image_folder", "build_from_manifest", "build_golden_set_from_images"]
