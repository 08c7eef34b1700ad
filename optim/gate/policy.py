"""The release policy file ``optim.toml``: budgets per artifact pattern, validated.

Example (every key is optional; a typo is an error naming the key and the file)::

    schema_version = 1

    [defaults]                       # applies to every artifact
    required_devices = ["host"]      # a device listed here that verify did not measure fails
    max_top1_drop_pts = 1.0          # overall top-1 drop vs FP32, percentage points
    max_tail_top1_drop_pts = 3.0     # top-1 drop on tail classes (< tail_max_count training images)
    max_class_drop_pts = 10.0        # any single class, judged on its 95 % CI (see below)
    min_class_support = 20           # classes with fewer golden images cannot fail the class check alone
    max_multilabel_macro_f1_drop_pts = 2.0
    min_top1_agreement = 0.97        # fraction of golden images where top-1 equals FP32's top-1
    tail_max_count = 50

    [targets."*-int8"]               # glob on the artifact name (its directory, e.g. onnx-int8),
    size_mb = 20                     # on "format-scheme" and on the format alone
    p95_ms = { host = 30, pixel6a = 25 }

Sections under ``[targets]`` apply in file order on top of ``[defaults]``; a later section's
keys override earlier ones (``p95_ms`` merges per device). Units: MB = 10^6 bytes; ms;
accuracy drops in percentage points (1.0 = one point = 0.01 of top-1); agreement a fraction.

**How the single-class check decides.** optim's evaluation gives, per class, the top-1
(recall) delta of the artifact versus FP32 with a 95 % paired bootstrap interval
``[ci_low, ci_high]``. A class *fails* only if ``ci_high < -max_class_drop_pts/100``: the drop
is statistically significant and, even at the optimistic end of the interval, larger than
allowed. A class whose point estimate is beyond the threshold but whose interval still reaches
it is reported as *inconclusive* (listed, not failing). Classes with fewer than
``min_class_support`` golden images are listed as *low support* and cannot fail the release on
their own — with five images a single flipped prediction moves recall by 20 points; they still
count in the tail-class and overall checks, which pool many images.

Aggregate accuracy checks (overall, tail, multi-label macro-F1) decide on the point estimate
by default (``decide_on = "estimate"``); ``decide_on = "ci"`` is stricter: they then fail
unless the whole interval lies within the budget (``ci_low >= -threshold``). Either way the
report shows the interval.
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from optim.errors import InputError, describe_validation_error
from optim.files import parse_toml

POLICY_SCHEMA_VERSION = 1
DEFAULT_POLICY_NAME = "optim.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """One policy section. ``None`` means "no budget, no check". Units in the field names:
    ``_mb`` = 10^6 bytes, ``_ms`` = milliseconds, ``_pts`` = percentage points."""

    size_mb: float | None = Field(default=None, gt=0)
    p95_ms: dict[str, float] = Field(default_factory=dict)
    required_devices: tuple[str, ...] | None = None
    max_top1_drop_pts: float | None = Field(default=None, ge=0, le=100)
    max_tail_top1_drop_pts: float | None = Field(default=None, ge=0, le=100)
    max_class_drop_pts: float | None = Field(default=None, ge=0, le=100)
    min_class_support: int | None = Field(default=None, ge=1)
    max_multilabel_macro_f1_drop_pts: float | None = Field(default=None, ge=0, le=100)
    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)
    decide_on: Literal["estimate", "ci"] | None = None
    tail_max_count: int | None = Field(default=None, ge=1)

    @field_validator("p95_ms")
    @classmethod
    def _positive_ms(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not x > 0}
        if bad:
            raise ValueError(f"p95 budgets must be > 0 ms, got {bad}")
        return v


class ResolvedBudget(_Strict):
    """The budget that applies to one artifact after merging defaults and matching sections."""

    artifact: str
    sections: tuple[str, ...]  # "defaults" and the target patterns that matched, in order
    size_mb: float | None = None
    p95_ms: dict[str, float] = Field(default_factory=dict)
    required_devices: tuple[str, ...] = ()
    max_top1_drop_pts: float | None = None
    max_tail_top1_drop_pts: float | None = None
    max_class_drop_pts: float | None = None
    min_class_support: int = 20
    max_multilabel_macro_f1_drop_pts: float | None = None
    min_top1_agreement: float | None = None
    decide_on: Literal["estimate", "ci"] = "estimate"
    tail_max_count: int = 50

    @property
    def needs_reference(self) -> bool:
        """True if any accuracy check needs deltas versus the FP32 reference."""
        return any(
            x is not None
            for x in (
                self.max_top1_drop_pts,
                self.max_tail_top1_drop_pts,
                self.max_class_drop_pts,
                self.max_multilabel_macro_f1_drop_pts,
                self.min_top1_agreement,
            )
        )

    @property
    def has_checks(self) -> bool:
        return self.needs_reference or self.size_mb is not None or bool(self.p95_ms) or bool(self.required_devices)


class Policy(_Strict):
    """A whole ``optim.toml``; ``source`` is the file it came from (for messages)."""

    schema_version: Literal[1] = 1
    defaults: Budget = Field(default_factory=Budget)
    targets: dict[str, Budget] = Field(default_factory=dict)
    source: str = Field(default="<dict>", exclude=True)
    sha256: str | None = Field(default=None, exclude=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>", sha256: str | None = None) -> "Policy":
        """Validate ``data``; raises :class:`InputError` naming every bad key and ``source``."""
        if not isinstance(data, dict):
            raise InputError(f"policy {source}: expected a table at the top level")
        try:
            return cls.model_validate({**data, "source": source, "sha256": sha256})
        except ValidationError as e:
            raise InputError(f"invalid policy {source}: {describe_validation_error(e)}") from None

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """Read a policy TOML file. Raises :class:`InputError` if missing, not TOML or invalid."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"policy file {path} does not exist (write one, see `optim verify --help`)")
        raw = path.read_bytes()
        data = parse_toml(raw, path, "policy file")
        return cls.from_dict(data, source=str(path), sha256=hashlib.sha256(raw).hexdigest())

    def resolve(self, names: list[str] | tuple[str, ...], artifact: str | None = None) -> ResolvedBudget:
        """Merge ``defaults`` with every ``targets`` section whose glob matches any of
        ``names`` (e.g. ``["onnx-int8", "onnx"]``), in file order. ``artifact`` labels the
        result (defaults to ``names[0]``)."""
        merged: dict[str, Any] = {}
        sections = ["defaults"]
        p95: dict[str, float] = {}

        def apply(b: Budget) -> None:
            for k, v in b.model_dump(exclude_unset=True).items():
                if k == "p95_ms":
                    p95.update(v)
                elif v is not None:
                    merged[k] = v

        apply(self.defaults)
        for pattern, budget in self.targets.items():
            if any(fnmatch.fnmatchcase(n, pattern) for n in names):
                sections.append(pattern)
                apply(budget)
        return ResolvedBudget(artifact=artifact or names[0], sections=tuple(sections), p95_ms=p95, **merged)


def find_policy(path: str | Path | None, search_dir: str | Path = ".") -> Policy | None:
    """Load ``path``; if None, load ``optim.toml`` from ``search_dir`` when it exists, else None."""
    if path is not None:
        return Policy.load(path)
    candidate = Path(search_dir) / DEFAULT_POLICY_NAME
    return Policy.load(candidate) if candidate.is_file() else None
