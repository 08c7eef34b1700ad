"""Export targets and host runtimes: one module per format behind one interface.

``open_runtime(path)`` opens a checkpoint (torch eager, the FP32 reference) or an exported
artifact directory, whichever ``path`` is.
"""

from __future__ import annotations

from pathlib import Path

from optim.runtimes.base import Runtime, TorchRuntime

__all__ = ["Runtime", "TorchRuntime", "open_runtime"]


def open_runtime(path: str | Path, threads: int | None = None, **load_kwargs) -> Runtime:
    """Open ``path`` for prediction on the host.

    ``path`` is a checkpoint file (loaded with :func:`optim.load_checkpoint`, run in torch
    eager) or an artifact directory written by ``optim quantize``.
    Raises :class:`optim.errors.InputError` if it is neither.
    """
    from optim.checkpoint import load_checkpoint

    path = Path(path)
    loaded = load_checkpoint(path, **load_kwargs)
    # graphs captured by torch.export / tracing may have a static batch dimension
    fixed = loaded.source_format in ("exported_program", "torchscript")
    return TorchRuntime(loaded.model, loaded.card, threads=threads, max_batch=loaded.card.input.shape[0] if fixed else None)
