"""What is being benchmarked: a checkpoint (host only), an artifact directory written by
``optim quantize`` (``artifact.json`` inside), or a bare model file (.onnx/.tflite/.pte)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from optim.errors import InputError

MODEL_SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".pte": "pte"}


@dataclass(frozen=True)
class Target:
    """``path``: what the user named; ``format``: onnx|tflite|pte|torch; ``model_file``: the file
    the on-device tool loads (None for a checkpoint); ``files``: every file to push."""

    path: Path
    format: str
    model_file: Path | None
    files: tuple[Path, ...]
    is_artifact_dir: bool = False


def _sidecars(model: Path) -> list[Path]:
    """Files a model needs next to it: ONNX external data (``model.onnx.data``/``model.data``),
    ExecuTorch named data (``*.ptd``) in the same directory."""
    out = []
    if model.suffix == ".onnx":
        for cand in (model.with_name(model.name + ".data"), model.with_suffix(".data")):
            if cand.is_file():
                out.append(cand)
    if model.suffix == ".pte":
        out += sorted(model.parent.glob("*.ptd"))
    return out


def resolve_target(path: str | Path) -> Target:
    """Classify ``path``. Raises :class:`InputError` if it does not exist or an artifact
    directory holds no (or several) model files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist (give a checkpoint, an artifact directory or a .onnx/.tflite/.pte file)")
    if path.is_dir():
        meta = path / "artifact.json"
        files: list[Path] | None = None
        fmt = None
        try:  # issue 3's Artifact, when it is on this branch
            from optim.runtimes.artifact import Artifact  # type: ignore[import-not-found]

            art = Artifact.load(path)
            fmt = art.format
            files = [art.dir / f for f in art.files]
        except ImportError:
            if meta.is_file():
                try:
                    data = json.loads(meta.read_text())
                    fmt = data.get("format")
                    if isinstance(data.get("files"), list):
                        files = [path / f for f in data["files"]]
                except json.JSONDecodeError as e:
                    raise InputError(f"{meta} is not valid JSON ({e})") from None
        if files is None:
            files = sorted(p for p in path.iterdir() if p.is_file() and p.name != "artifact.json" and not p.name.startswith("."))
        models = [f for f in files if f.suffix in MODEL_SUFFIXES]
        if len(models) != 1:
            raise InputError(f"artifact directory {path} holds {len(models)} model files "
                             f"({', '.join(m.name for m in models) or 'none'}); expected exactly one .onnx/.tflite/.pte")
        model = models[0]
        fmt = fmt or MODEL_SUFFIXES[model.suffix]
        return Target(path, fmt, model, tuple(files), is_artifact_dir=True)
    if path.suffix in MODEL_SUFFIXES:
        return Target(path, MODEL_SUFFIXES[path.suffix], path, tuple([path] + _sidecars(path)))
    return Target(path, "torch", None, (path,))
