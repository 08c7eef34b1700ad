"""What is being benchmarked: a checkpoint (host only), an artifact directory written by
``optim quantize`` (``artifact.json`` inside), or a bare model file of a registered format
(recognised by its :class:`~optim.runtimes.spec.FormatSpec` suffix)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optim.errors import InputError



@dataclass(frozen=True)
class Target:
    """``path``: what the user named; ``format``: a registered format name, or ``"torch"`` for a
    checkpoint; ``model_file``: the file the on-device tool loads (None for a checkpoint);
    ``files``: every file to push."""

    path: Path
    format: str
    model_file: Path | None
    files: tuple[Path, ...]
    is_artifact_dir: bool = False


def resolve_target(path: str | Path) -> Target:
    """Classify ``path``: an artifact directory (loaded and verified with
    :meth:`optim.runtimes.artifact.Artifact.load`), a bare model file of a registered format
    (by suffix, with its sidecars), or else a checkpoint (format ``"torch"``).

    Raises :class:`InputError` if it does not exist, the artifact is not intact, or an
    artifact directory holds no (or several) model files of its format.
    """
    from optim.runtimes.artifact import Artifact
    from optim.runtimes.registry import format_for_suffix, formats, get_format

    path = Path(path)
    if not path.exists():
        suffixes = "/".join(s.suffix for s in formats().values())
        raise InputError(f"{path} does not exist (give a checkpoint, an artifact directory or a {suffixes} file)")
    if path.is_dir():
        art = Artifact.load(path)
        spec = get_format(art.format)
        files = [art.dir / f for f in art.files]
        models = [f for f in files if f.suffix == spec.suffix]
        if len(models) != 1:
            raise InputError(f"artifact directory {path} holds {len(models)} model files "
                             f"({', '.join(m.name for m in models) or 'none'}); expected exactly one {spec.suffix}")
        return Target(path, spec.name, models[0], tuple(files), is_artifact_dir=True)
    spec = format_for_suffix(path.suffix)
    if spec is not None:
        return Target(path, spec.name, path, tuple([path] + spec.sidecars(path)))
    return Target(path, "torch", None, (path,))
