"""Export targets and host runtimes: one module per format behind one interface.

``open_runtime(path)`` opens a checkpoint (torch eager, the FP32 reference) or an exported
artifact directory, whichever ``path`` is. Formats are :class:`~optim.runtimes.spec.FormatSpec` objects listed by
:mod:`optim.runtimes.registry`; artifacts are described in :mod:`optim.runtimes.artifact`.
"""

from __future__ import annotations

from pathlib import Path

from optim.runtimes.base import Runtime, TorchRuntime

__all__ = ["Runtime", "TorchRuntime", "open_runtime"]


def open_runtime(path: str | Path, threads: int | None = None, **load_kwargs) -> Runtime:
    """Open ``path`` for prediction on the host.

    ``path`` is an artifact directory written by ``optim quantize`` (or its
    ``artifact.json``), opened on its format's host runtime (ONNX Runtime, the LiteRT
    interpreter, the ExecuTorch runtime); or a checkpoint file (loaded with
    :func:`optim.load_checkpoint` with ``load_kwargs``, run in torch eager).
    ``threads``: CPU threads for the runtime (None = library default).

    Raises :class:`optim.errors.InputError` if it is neither, or the artifact is incomplete.
    """
    from optim.runtimes.artifact import Artifact, is_artifact

    path = Path(path)
    if is_artifact(path):
        from optim.runtimes.registry import get_format

        artifact = Artifact.load(path)
        return get_format(artifact.format).open_runtime(artifact, threads)
    if path.is_dir():
        from optim.errors import InputError

        raise InputError(f"{path} is a directory but not an artifact (no artifact.json); pass an artifact directory or a checkpoint file")
    from optim.checkpoint import load_checkpoint

    loaded = load_checkpoint(path, **load_kwargs)
    # graphs captured by torch.export / tracing may have a static batch dimension
    fixed = loaded.source_format in ("exported_program", "torchscript")
    return TorchRuntime(loaded.model, loaded.card, threads=threads, max_batch=loaded.card.input.shape[0] if fixed else None)
