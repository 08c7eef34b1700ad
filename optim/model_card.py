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

Validation errors name the field and the file (:class:`optim.errors.InputError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from optim.errors import InputError, describe_validation_error
from optim.files import parse_toml

CARD_SUFFIX = ".optim.toml"


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
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "ModelCard":
        """Validate ``data``; raises :class:`InputError` naming each bad field and ``source``."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise InputError(f"invalid model card {source}: {describe_validation_error(e)}") from None

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        """Read a model card TOML file. Raises :class:`InputError` if missing, not TOML or invalid."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"model card {path} does not exist; write one (see `optim inspect --help`) or pass --card")
        return cls.from_dict(parse_toml(path.read_bytes(), path, "model card"), source=str(path))

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
