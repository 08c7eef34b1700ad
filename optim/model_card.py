"""The model card: what optim needs to know about a checkpoint beyond its weights.

A model card is a small TOML file next to the checkpoint (``<ckpt>.optim.toml``, e.g.
``model.pt.optim.toml``) or given with ``--card``. It declares the input tensor, the
preprocessing that turns an image file into that tensor, and the output heads. Example::

    name = "mnist-resnet18"
    architecture = "torchvision:resnet18"   # or "mypkg.models:make_net" with allowed_modules
    # allowed_modules = ["mypkg.models"]    # modules (and submodules) `architecture` may import

    [architecture_kwargs]
    num_classes = 10

    [input]
    shape = [1, 3, 32, 32]      # N×C×H×W
    layout = "NCHW"
    dtype = "float32"

    [preprocessing]
    resize = [32, 32]           # [H, W] exact, or one int: shorter side, aspect kept
    mean = [0.1307, 0.1307, 0.1307]
    std = [0.3081, 0.3081, 0.3081]
    channel_order = "RGB"
    value_range = 1.0           # pixels scaled to [0, value_range] before mean/std

    [[heads]]
    name = "digit"
    kind = "multiclass"
    labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

Heads with many labels need not list them inline: ``labels = "classes.txt"`` reads them from a
file next to the card (a path relative to the card's folder, no ``..``, not a symbolic link;
UTF-8, one label per line in output order, no empty lines, no duplicates, surrounding
whitespace stripped; at most :data:`MAX_LABELS_FILE_BYTES`), and ``num_labels = 1200`` names
them ``"0"`` … ``"1199"``. Both are expanded when the card is read: a card written back
(:meth:`ModelCard.save`, an artifact's ``artifact.json``) lists every label, so it never depends
on a file it does not carry. A card given as a dict (no file) cannot name a labels file.

Validation errors name the field and the file (:class:`optim.errors.InputError`); labels-file
errors also name that file and the line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from optim.errors import InputError, describe_validation_error
from optim.files import parse_toml

CARD_SUFFIX = ".optim.toml"
MAX_LABELS_FILE_BYTES = 16 * 1024 * 1024
"""Largest labels file read (16 MiB: a million labels of 16 characters)."""
MAX_LABELS = 1_000_000
"""Most labels one head may have (``num_labels`` or a labels file)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """The model's input tensor: ``shape`` is N×C×H×W (C = 3), float32, NCHW layout."""

    name: str = "input"
    shape: tuple[int, int, int, int] = (1, 3, 224, 224)
    layout: Literal["NCHW"] = "NCHW"
    dtype: Literal["float32"] = "float32"

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        if any(d <= 0 for d in v):
            raise ValueError(f"every dimension must be positive, got {list(v)}")
        if v[1] != 3:
            raise ValueError(f"C must be 3 (RGB/BGR input), got {v[1]}")
        return v

    @property
    def hw(self) -> tuple[int, int]:
        return self.shape[2], self.shape[3]


class Preprocessing(_Strict):
    """How an image file becomes one C×H×W float32 tensor.

    Order: decode → convert to 3-channel RGB (grayscale is repeated) → resize → centre crop
    → scale pixels to ``[0, value_range]`` → reorder channels to ``channel_order`` →
    ``(x - mean) / std`` per channel (mean/std in the same scale as ``value_range``).
    """

    resize: int | tuple[int, int] | None = None
    center_crop: int | tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    value_range: float = 1.0
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError(f"std must be > 0 per channel, got {list(v)}")
        return v

    @field_validator("value_range")
    @classmethod
    def _range(cls, v: float) -> float:
        if v not in (1.0, 255.0):
            raise ValueError(f"value_range must be 1.0 or 255.0, got {v}")
        return v


class Head(_Strict):
    """One output head: ``multiclass`` (softmax over ``labels``) or ``multilabel`` (one
    sigmoid per tag in ``labels``). The head's output is N×len(labels) float logits."""

    name: str = Field(min_length=1)
    kind: Literal["multiclass", "multilabel"]
    labels: tuple[str, ...]

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any, info: ValidationInfo) -> Any:
        """``num_labels = N`` → labels "0"…"N-1"; ``labels = "file.txt"`` → the file's lines
        (relative to the card's folder, given as ``context={"card_dir": …}``)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "num_labels" in data:
            n = data.pop("num_labels")
            if "labels" in data:
                raise ValueError("give either labels or num_labels, not both")
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_LABELS:
                raise ValueError(f"num_labels must be an integer from 1 to {MAX_LABELS}, got {n!r}")
            data["labels"] = tuple(str(i) for i in range(n))
        elif isinstance(data.get("labels"), str):
            card_dir = (info.context or {}).get("card_dir")
            if card_dir is None:
                raise ValueError(f"labels = {data['labels']!r} names a labels file, which only a card file can do "
                                 "(the path is relative to the card's folder); list the labels or use num_labels")
            data["labels"] = read_labels_file(Path(card_dir), data["labels"])
        return data

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) < 1:
            raise ValueError("a head needs at least one label")
        dupes = sorted({x for x in v if v.count(x) > 1})
        if dupes:
            raise ValueError(f"duplicate labels: {dupes}")
        return v

    @property
    def num_classes(self) -> int:
        return len(self.labels)


class ModelCard(_Strict):
    """Typed model card; see the module docstring for the file format."""

    name: str = "model"
    architecture: str | None = None
    architecture_kwargs: dict[str, Any] = Field(default_factory=dict)
    #: modules (and their submodules) ``architecture`` may import besides the torchvision/timm
    #: registries; the standard library, torch, numpy and the like are refused even if listed
    #: (see :func:`optim.checkpoint.build_architecture`). Review it in cards you did not write.
    allowed_modules: tuple[str, ...] = ()
    input: InputSpec = Field(default_factory=InputSpec)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    heads: tuple[Head, ...]

    @field_validator("allowed_modules")
    @classmethod
    def _module_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in v if not m or not all(part.isidentifier() for part in m.split("."))]
        if bad:
            raise ValueError(f"expected dotted module names such as 'mypkg.models', got {bad}")
        return v

    @model_validator(mode="after")
    def _unique_heads(self) -> "ModelCard":
        names = [h.name for h in self.heads]
        if not names:
            raise ValueError("heads: at least one head is required")
        if len(set(names)) != len(names):
            raise ValueError(f"heads: duplicate head names {names}")
        return self

    def head(self, name: str) -> Head:
        for h in self.heads:
            if h.name == name:
                return h
        raise InputError(f"model card {self.name!r} has no head {name!r}; heads: {[h.name for h in self.heads]}")

    # ---- files -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>", card_dir: str | Path | None = None) -> "ModelCard":
        """Validate ``data``; raises :class:`InputError` naming each bad field and ``source``.

        ``card_dir``: the folder ``labels = "file"`` paths are relative to (the card file's);
        without it a labels file is refused."""
        try:
            return cls.model_validate(data, context={"card_dir": None if card_dir is None else Path(card_dir)})
        except ValidationError as e:
            raise InputError(f"invalid model card {source}: {describe_validation_error(e)}") from None

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        """Read a model card TOML file. Raises :class:`InputError` if missing, not TOML or invalid."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"model card {path} does not exist; write one (see `optim inspect --help`) or pass --card")
        return cls.from_dict(parse_toml(path.read_bytes(), path, "model card"), source=str(path), card_dir=path.parent)

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", exclude_none=True)
        if not d.get("allowed_modules"):
            d.pop("allowed_modules", None)  # keep cards written before the field unchanged
        return d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(tomli_w.dumps(self.to_dict()), encoding="utf-8")
        return path


def card_path_for(checkpoint: str | Path) -> Path:
    """The conventional card path next to ``checkpoint``: ``<checkpoint>.optim.toml``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + CARD_SUFFIX)


def read_labels_file(card_dir: Path, rel: str) -> tuple[str, ...]:
    """The labels of a ``labels = "classes.txt"`` head: one per line of ``card_dir/rel``.

    The file must lie inside ``card_dir`` (relative path, no ``..``, no symbolic link on the
    way), be a regular file of at most :data:`MAX_LABELS_FILE_BYTES` bytes, UTF-8 (a BOM is
    allowed), with no empty lines, no duplicates and no control characters; surrounding
    whitespace and ``\\r`` are stripped; a final newline is optional.

    Raises ``ValueError`` (reported by the card loader with the field and card file) naming the
    file and the line (1-based) of the first problem.
    """
    pp = PurePosixPath(rel.replace("\\", "/"))
    if not rel.strip() or "\x00" in rel or pp.is_absolute() or ".." in pp.parts or not pp.parts:
        raise ValueError(f"labels file {rel!r} must be a path relative to the card's folder {card_dir}, without '..'")
    cur = card_dir
    for part in pp.parts:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            raise ValueError(f"labels file {card_dir / pp} does not exist (the path is relative to the card's folder)") from None
        except OSError as e:
            raise ValueError(f"labels file {card_dir / pp} cannot be read ({e.strerror or e})") from None
        if stat.S_ISLNK(st.st_mode):
            raise ValueError(f"labels file {card_dir / pp}: {cur} is a symbolic link; put a copy of the file next to the card")
    path = card_dir / pp
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"labels file {path} is not a regular file")
    if st.st_size > MAX_LABELS_FILE_BYTES:
        raise ValueError(f"labels file {path} is {st.st_size} bytes, over the {MAX_LABELS_FILE_BYTES}-byte limit")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ValueError(f"labels file {path} is not a regular file")
            raw = f.read(MAX_LABELS_FILE_BYTES + 1)
    except OSError as e:
        raise ValueError(f"labels file {path} cannot be read ({e.strerror or e})") from None
    if len(raw) > MAX_LABELS_FILE_BYTES:
        raise ValueError(f"labels file {path} is over the {MAX_LABELS_FILE_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"labels file {path} line {line}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        raise ValueError(f"labels file {path} is empty; write one label per line")
    if len(lines) > MAX_LABELS:
        raise ValueError(f"labels file {path} has {len(lines)} lines, over the {MAX_LABELS}-label limit")
    seen: dict[str, int] = {}
    out: list[str] = []
    for i, line in enumerate(lines, start=1):
        label = line.strip()
        if not label:
            raise ValueError(f"labels file {path} line {i} is empty; write one label per line, without blank lines")
        bad = next((c for c in label if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:
            raise ValueError(f"labels file {path} line {i}: label {label!r} holds the control character {bad!r}")
        if label in seen:
            raise ValueError(f"labels file {path} line {i}: duplicate label {label!r} (first on line {seen[label]})")
        seen[label] = i
        out.append(label)
    return tuple(out)


def describe_head_differences(a: "ModelCard", b: "ModelCard", a_name: str = "target", b_name: str = "reference") -> list[str]:
    """What differs between two cards' heads, one readable item per difference (empty if none).

    Compares head names and order, kind, label count and label order; for labels it names the
    first position where they differ (``label 3: 'cat' vs 'dog'``) and which labels only one
    side has (first few). Used by every message that refuses two cards with different heads."""
    out: list[str] = []
    an, bn = [h.name for h in a.heads], [h.name for h in b.heads]
    only_a, only_b = [n for n in an if n not in bn], [n for n in bn if n not in an]
    if only_a:
        out.append(f"heads only in the {a_name}: {only_a}")
    if only_b:
        out.append(f"heads only in the {b_name}: {only_b}")
    common = [n for n in an if n in bn]
    if not only_a and not only_b and an != bn:
        out.append(f"head order differs: {a_name} {an}, {b_name} {bn}")
    for n in common:
        ha, hb = a.head(n), b.head(n)
        if ha.kind != hb.kind:
            out.append(f"head {n!r} is {ha.kind} in the {a_name}, {hb.kind} in the {b_name}")
        if ha.labels == hb.labels:
            continue
        parts = []
        if len(ha.labels) != len(hb.labels):
            parts.append(f"{len(ha.labels)} labels in the {a_name}, {len(hb.labels)} in the {b_name}")
        i = next((k for k, (x, y) in enumerate(zip(ha.labels, hb.labels)) if x != y), None)
        if i is not None:
            parts.append(f"first difference at label {i}: {ha.labels[i]!r} vs {hb.labels[i]!r}")
        sa, sb = set(ha.labels), set(hb.labels)
        xa, xb = [x for x in ha.labels if x not in sb], [x for x in hb.labels if x not in sa]
        if xa:
            parts.append(f"only in the {a_name}: {_first(xa)}")
        if xb:
            parts.append(f"only in the {b_name}: {_first(xb)}")
        if not xa and not xb and len(ha.labels) == len(hb.labels):
            parts.append("same labels in another order")
        out.append(f"head {n!r}: " + ", ".join(parts))
    return out


def _first(items: list[str], k: int = 5) -> str:
    return ", ".join(repr(x) for x in items[:k]) + (f" and {len(items) - k} more" if len(items) > k else "")
