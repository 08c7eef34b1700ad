"""The release policy file ``optim.toml``: budgets per artifact pattern, validated.

Example (every key is optional; a typo is an error naming the key and the file)::

    schema_version = 1
    golden_sha256 = "9f2c…"          # optional pin: the golden set's digest (64 hex) this gate expects
    reference_sha256 = "41ab…"       # optional pin: the FP32 reference checkpoint's sha256

    [defaults]                       # applies to every artifact
    required_devices = ["host"]      # a device listed here that verify did not measure fails
    max_top1_drop_pts = 1.0          # overall top-1 drop vs FP32, percentage points
    max_tail_top1_drop_pts = 3.0     # top-1 drop on tail classes (< tail_max_count training images)
    max_class_drop_pts = 10.0        # any single class, judged on its 95 % CI (see below)
    min_class_support = 20           # classes with fewer golden images cannot fail the class check alone
    max_multilabel_macro_f1_drop_pts = 2.0
    max_top2_drop_pts = 1.0          # top-2 accuracy drop (short for max_topk_drop_pts = { 2 = 1.0 })
    max_topk_drop_pts = { 5 = 0.5 }  # top-k drop per k (k ≥ 2, clipped to the head's classes)
    max_tag_f1_drop_pts = 10.0       # any single multi-label tag's F1, judged on its 95 % CI
    max_tail_tag_macro_f1_drop_pts = 3.0  # macro-F1 over tail tags (< tail_max_count training positives)
    min_top1_agreement = 0.97        # fraction of golden images where top-1 equals FP32's top-1
    tail_max_count = 50
    min_top1 = 0.90                  # absolute floors (fractions 0-1), no reference needed:
    min_tail_top1 = { digit = 0.6 }  # a number (every head of the right kind) or { HEAD = floor }
    min_macro_f1 = 0.85
    min_tail_tag_macro_f1 = 0.5      # multi-label heads: macro-F1 over tail tags

    [targets."*-int8"]               # glob on the artifact name (its directory, e.g. onnx-int8),
    size_mb = 20                     # on "format-scheme" and on the format alone
    p95_ms = { host = 30, pixel6a = 25 }

Sections under ``[targets]`` apply in file order on top of ``[defaults]``; a later section's
keys override earlier ones (``p95_ms`` merges per device, ``max_topk_drop_pts`` per k, the
``min_*`` floors per head).
Units: MB = 10^6 bytes; ms; accuracy drops in percentage points (1.0 = one point = 0.01 of
top-1); agreement and floors are fractions (0.9 = 90 %).

**What is an error (exit 2, before anything is measured).** An unknown key at any level; a
value of the wrong type (``size_mb = "20"`` and ``size_mb = true`` are errors, not 20 and 1); a
number that is not finite (``nan``, ``inf``) or out of range (a negative budget, a fraction
above 1); ``schema_version`` other than 1; a device in ``p95_ms`` or ``required_devices`` that
is neither ``host`` nor a known device profile (the profiles shipped in
``optim/device_bench/profiles.toml`` plus the user's ``[profiles.*]`` in ``devices.toml``):
``p95_ms = { hots = 1 }`` would otherwise silently skip the latency budget. A policy that sets
no budget for an artifact is refused by ``optim verify``.

**Pins.** ``golden_sha256`` / ``reference_sha256`` name the exact golden set (its
``golden.json`` digest) and FP32 reference checkpoint (sha256 of its bytes) the gate was
written for. A run that used anything else fails the ``golden_pin`` / ``reference_pin`` check
(exit 1), so swapping in an easier golden set or a weaker reference cannot turn a FAIL into a
PASS.

**Absolute floors.** ``min_top1``, ``min_tail_top1`` (multiclass heads), ``min_macro_f1``
(multiclass and multi-label heads) and ``min_tail_tag_macro_f1`` (multi-label heads) compare the artifact's own metrics with a fixed floor. They
need no reference, so a bad or wrong reference cannot make a bad model pass. A bare number
applies to every head of the right kind (it is short for ``{ "*" = number }``); a table names
heads; a head's own entry wins over ``"*"``. A head named in a table that the model lacks, a
head of the wrong kind, or a metric the evaluation could not compute fails the check; it never
passes. Floors decide on the point estimate (the evaluation gives no interval for absolute
metrics).

**How the single-class check decides.** optim's evaluation gives, per class, the top-1
(recall) delta of the artifact versus FP32 with a 95 % paired bootstrap interval
``[ci_low, ci_high]``. A class *fails* only if ``ci_high < -max_class_drop_pts/100``: the drop
is statistically significant and, even at the optimistic end of the interval, larger than
allowed. A class whose point estimate is beyond the threshold but whose interval still reaches
it is reported as *inconclusive* (listed, not failing). Classes with fewer than
``min_class_support`` golden images are listed as *low support* and cannot fail the release on
their own — with five images a single flipped prediction moves recall by 20 points; they still
count in the tail-class and overall checks, which pool many images.

**Top-k.** ``max_topk_drop_pts = { 2 = 1.0, 5 = 0.5 }`` budgets the drop of top-k accuracy
(the true class among the k highest scores) per k, for every multiclass head;
``max_top2_drop_pts = x`` is short for ``{ 2 = x }`` (setting both for k = 2 in one section is
an error). A key must be an integer k ≥ 2 (top-1 has ``max_top1_drop_pts``), at most 8 ks.
``optim verify`` has the evaluation compute every k the policy names; k is clipped to the
head's number of classes K (top-k with k ≥ K is always 1.0, so such a budget cannot fail; the
check says so).

**How the single-tag check decides.** ``max_tag_f1_drop_pts`` is the per-class rule applied to
each tag of every multi-label head: the evaluation gives each tag's F1 delta versus FP32 with a
95 % paired bootstrap interval; a tag fails only if ``ci_high < -max_tag_f1_drop_pts/100`` and
it has at least ``min_class_support`` known positive golden labels (fewer: listed as low
support, never failing alone). This is what catches one tag collapsing while the macro
average barely moves. ``max_tail_tag_macro_f1_drop_pts`` budgets the drop of macro-F1 over the
*tail tags* (fewer than ``tail_max_count`` training positives, from the golden set's
``train_counts.json``); no tail tag means the check fails (it cannot be judged).

Aggregate accuracy checks (overall, tail, top-k, multi-label macro-F1 and tail-tag macro-F1)
decide on the point estimate
by default (``decide_on = "estimate"``); ``decide_on = "ci"`` is stricter: they then fail
unless the whole interval lies within the budget (``ci_low >= -threshold``). Either way the
report shows the interval.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr, ValidationError, field_validator, model_validator

from optim.errors import InputError
from optim.files import parse_toml

POLICY_SCHEMA_VERSION = 1
DEFAULT_POLICY_NAME = "optim.toml"
#: the device every run can measure on; every other device key must be a known profile
HOST = "host"
#: a policy larger than this is refused unread (a policy is a few hundred bytes)
MAX_POLICY_BYTES = 1_000_000
#: the floor keys and the head kinds each applies to
FLOORS: dict[str, tuple[str, ...]] = {
    "min_top1": ("multiclass",),
    "min_tail_top1": ("multiclass",),
    "min_macro_f1": ("multiclass", "multilabel"),
    "min_tail_tag_macro_f1": ("multilabel",),
}
#: at most this many ks in ``max_topk_drop_pts`` (after merging ``max_top2_drop_pts``)
MAX_TOPK_BUDGETS = 8
ALL_HEADS = "*"

# TOML gives ints and floats; strict types refuse bools and strings ("20", true) that a lax
# parse would silently turn into numbers. Floats accept ints (1 == 1.0); non-finite is refused
# model-wide (allow_inf_nan=False).
Num = Annotated[float, Strict()]
Int = Annotated[int, Strict()]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1)]
Sha256 = Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")]
Pts = Annotated[float, Strict(), Field(ge=0, le=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _floor_table(v: Any) -> Any:
    """A floor is a number (every head) or a table {HEAD: number}; normalise to a table."""
    if v is None or isinstance(v, dict):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return {ALL_HEADS: v}
    raise ValueError(f"expected a fraction 0-1 or a table {{ HEAD = fraction }}, got {type(v).__name__} {v!r}")


class Budget(_Strict):
    """One policy section. ``None`` means "no budget, no check". Units in the field names:
    ``_mb`` = 10^6 bytes, ``_ms`` = milliseconds, ``_pts`` = percentage points; ``min_*`` are
    fractions 0-1 (floors: a number is stored as ``{"*": number}``)."""

    size_mb: Num | None = Field(default=None, gt=0)
    p95_ms: dict[StrictStr, Num] = Field(default_factory=dict)
    required_devices: tuple[StrictStr, ...] | None = None
    max_top1_drop_pts: Num | None = Field(default=None, ge=0, le=100)
    max_tail_top1_drop_pts: Num | None = Field(default=None, ge=0, le=100)
    max_class_drop_pts: Num | None = Field(default=None, ge=0, le=100)
    min_class_support: Int | None = Field(default=None, ge=1)
    max_multilabel_macro_f1_drop_pts: Num | None = Field(default=None, ge=0, le=100)
    max_top2_drop_pts: Num | None = Field(default=None, ge=0, le=100)
    max_topk_drop_pts: dict[StrictStr, Pts] | None = None
    max_tag_f1_drop_pts: Num | None = Field(default=None, ge=0, le=100)
    max_tail_tag_macro_f1_drop_pts: Num | None = Field(default=None, ge=0, le=100)
    min_top1_agreement: Num | None = Field(default=None, ge=0, le=1)
    decide_on: Literal["estimate", "ci"] | None = None
    tail_max_count: Int | None = Field(default=None, ge=1)
    min_top1: dict[StrictStr, Fraction] | None = None
    min_tail_top1: dict[StrictStr, Fraction] | None = None
    min_macro_f1: dict[StrictStr, Fraction] | None = None
    min_tail_tag_macro_f1: dict[StrictStr, Fraction] | None = None

    @field_validator("p95_ms")
    @classmethod
    def _positive_ms(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not x > 0}
        if bad:
            raise ValueError(f"p95 budgets must be > 0 ms, got {bad}")
        return v

    @field_validator("min_top1", "min_tail_top1", "min_macro_f1", "min_tail_tag_macro_f1", mode="before")
    @classmethod
    def _floor(cls, v: Any) -> Any:
        return _floor_table(v)

    @field_validator("max_topk_drop_pts")
    @classmethod
    def _topk_keys(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        bad = [k for k in v if not (k.isascii() and k.isdigit() and 2 <= int(k) <= 1_000_000)]
        if bad:
            one = " (top-1 has its own key, max_top1_drop_pts)" if any(k.strip() in ("1", "01") for k in bad) else ""
            raise ValueError(f"keys must be integers k ≥ 2 (e.g. {{ 2 = 1.0, 5 = 0.5 }}), got {bad}{one}")
        if len({int(k) for k in v}) != len(v):
            raise ValueError(f"the same k is given twice ({sorted(v)})")
        if len(v) > MAX_TOPK_BUDGETS:
            raise ValueError(f"at most {MAX_TOPK_BUDGETS} ks, got {len(v)}")
        return v

    @model_validator(mode="after")
    def _top2_once(self) -> "Budget":
        if self.max_top2_drop_pts is not None and any(int(k) == 2 for k in (self.max_topk_drop_pts or {})):
            raise ValueError("max_top2_drop_pts and max_topk_drop_pts.2 both budget the top-2 drop; keep one")
        return self

    def devices(self) -> list[str]:
        """Every device this section names (``p95_ms`` keys and ``required_devices``)."""
        return list(dict.fromkeys([*self.p95_ms, *(self.required_devices or ())]))


class ResolvedBudget(_Strict):
    """The budget that applies to one artifact after merging defaults and matching sections,
    plus the policy's pins (``golden_sha256``, ``reference_sha256``: 64 hex or None)."""

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
    max_topk_drop_pts: dict[int, float] = Field(default_factory=dict)  # k (≥ 2) → max drop, pts
    max_tag_f1_drop_pts: float | None = None
    max_tail_tag_macro_f1_drop_pts: float | None = None
    min_top1_agreement: float | None = None
    decide_on: Literal["estimate", "ci"] = "estimate"
    tail_max_count: int = 50
    min_top1: dict[str, float] = Field(default_factory=dict)  # head (or "*") → floor, fraction
    min_tail_top1: dict[str, float] = Field(default_factory=dict)
    min_macro_f1: dict[str, float] = Field(default_factory=dict)
    min_tail_tag_macro_f1: dict[str, float] = Field(default_factory=dict)
    golden_sha256: str | None = None
    reference_sha256: str | None = None

    @field_validator("min_top1", "min_tail_top1", "min_macro_f1", "min_tail_tag_macro_f1", mode="before")
    @classmethod
    def _floor(cls, v: Any) -> Any:
        return {} if v is None else _floor_table(v)

    @field_validator("max_topk_drop_pts", mode="before")
    @classmethod
    def _int_keys(cls, v: Any) -> Any:
        return {int(k): x for k, x in (v or {}).items()}

    @property
    def max_top2_drop_pts(self) -> float | None:
        """The top-2 budget (``max_topk_drop_pts[2]``), None if not set."""
        return self.max_topk_drop_pts.get(2)

    @property
    def topk_ks(self) -> tuple[int, ...]:
        """The ks the policy budgets, sorted; ``optim verify`` has the evaluation compute them."""
        return tuple(sorted(self.max_topk_drop_pts))

    @property
    def needs_reference(self) -> bool:
        """True if any accuracy check needs deltas versus the FP32 reference (the absolute
        floors ``min_*`` do not)."""
        return any(
            x is not None
            for x in (
                self.max_top1_drop_pts,
                self.max_tail_top1_drop_pts,
                self.max_class_drop_pts,
                self.max_multilabel_macro_f1_drop_pts,
                self.max_tag_f1_drop_pts,
                self.max_tail_tag_macro_f1_drop_pts,
                self.min_top1_agreement,
            )
        ) or bool(self.max_topk_drop_pts)

    @property
    def has_floors(self) -> bool:
        return any(getattr(self, k) for k in FLOORS)

    @property
    def has_checks(self) -> bool:
        """True if the budget judges anything (pins alone are not a budget)."""
        return (self.needs_reference or self.has_floors or self.size_mb is not None or bool(self.p95_ms)
                or bool(self.required_devices))


def known_device_names() -> list[str]:
    """``host`` plus every device profile (built-in and the user's devices.toml). Raises
    :class:`InputError` if the user's devices.toml is invalid."""
    from optim.device_bench.profiles import all_profiles

    return [HOST, *all_profiles()]


def _devices_config_path() -> str:
    from optim.device_bench.config import config_path

    return str(config_path())


def _describe(error: ValidationError) -> str:
    """Like :func:`optim.errors.describe_validation_error` (dotted key: message), plus the
    offending value of each bad key that is not simply unknown."""
    problems = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key (typo?)")
            continue
        got = "" if isinstance(err.get("input"), dict) else repr(err.get("input"))
        got = got[:60] + "…" if len(got) > 60 else got
        problems.append(f"{key}: {err['msg']}" + (f" (got {got})" if got else ""))
    return "; ".join(problems)


class Policy(_Strict):
    """A whole ``optim.toml``; ``source`` is the file it came from (for messages)."""

    schema_version: Literal[1] = 1
    golden_sha256: Sha256 | None = None
    reference_sha256: Sha256 | None = None
    defaults: Budget = Field(default_factory=Budget)
    targets: dict[str, Budget] = Field(default_factory=dict)
    source: str = Field(default="<dict>", exclude=True)
    sha256: str | None = Field(default=None, exclude=True)

    @field_validator("golden_sha256", "reference_sha256", mode="before")
    @classmethod
    def _lower_hex(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>", sha256: str | None = None,
                  known_devices: Iterable[str] | None = None) -> "Policy":
        """Validate ``data``; raises :class:`InputError` naming every bad key and ``source``.

        ``known_devices``: the device names a ``p95_ms`` key or ``required_devices`` entry may
        use; default ``host`` plus :func:`optim.device_bench.profiles.all_profiles` (read only
        when the policy names a device other than ``host``). Any other name is an input error
        naming the key, ``source`` and the known names.
        """
        if not isinstance(data, dict):
            raise InputError(f"policy {source}: expected a table at the top level")
        try:
            policy = cls.model_validate({**data, "source": source, "sha256": sha256})
        except ValidationError as e:
            raise InputError(f"invalid policy {source}: {_describe(e)}") from None
        policy._check_devices(known_devices)
        return policy

    def _check_devices(self, known_devices: Iterable[str] | None) -> None:
        sections = {"defaults": self.defaults, **{f"targets.{k}": v for k, v in self.targets.items()}}
        named = {(where, d) for where, b in sections.items() for d in b.devices() if d != HOST}
        if not named:
            return
        known = list(dict.fromkeys([HOST, *(known_device_names() if known_devices is None else known_devices)]))
        problems = []
        for where, b in sections.items():
            for key in ("p95_ms", "required_devices"):
                for d in (b.p95_ms if key == "p95_ms" else (b.required_devices or ())):
                    if d not in known:
                        close = difflib.get_close_matches(d, known, n=1)
                        hint = f" (did you mean {close[0]!r}?)" if close else ""
                        problems.append(f"{where}.{key}: unknown device {d!r}{hint}")
        if problems:
            raise InputError(
                f"invalid policy {self.source}: {'; '.join(problems)}. Known devices: {', '.join(known)}. "
                f"A device must be 'host' or a device profile (add one under [profiles.NAME] in "
                f"{_devices_config_path()}); otherwise its budget would silently not apply")

    @classmethod
    def load(cls, path: str | Path, known_devices: Iterable[str] | None = None) -> "Policy":
        """Read a policy TOML file (UTF-8, at most 1 MB). Raises :class:`InputError` if it is
        missing, not a regular file, too large, not TOML or invalid (see :meth:`from_dict`)."""
        path = Path(path)
        if path.is_dir():
            raise InputError(f"policy {path} is a directory; pass the policy file (optim.toml) itself")
        if not path.exists():
            raise InputError(f"policy file {path} does not exist (write one, see `optim verify --help`)")
        if not path.is_file():
            raise InputError(f"policy {path} is not a regular file; pass the policy file (optim.toml) itself")
        try:
            size = path.stat().st_size
            if size > MAX_POLICY_BYTES:
                raise InputError(f"policy file {path} is {size} bytes; a policy is at most {MAX_POLICY_BYTES} bytes")
            raw = path.read_bytes()
        except OSError as e:
            raise InputError(f"policy file {path} cannot be read ({e.strerror or e})") from None
        data = parse_toml(raw, path, "policy file")
        return cls.from_dict(data, source=str(path), sha256=hashlib.sha256(raw).hexdigest(), known_devices=known_devices)

    def resolve(self, names: list[str] | tuple[str, ...], artifact: str | None = None) -> ResolvedBudget:
        """Merge ``defaults`` with every ``targets`` section whose glob matches any of
        ``names`` (e.g. ``["onnx-int8", "onnx"]``), in file order. ``artifact`` labels the
        result (defaults to ``names[0]``). ``p95_ms`` merges per device, ``max_topk_drop_pts``
        per k (``max_top2_drop_pts`` is its k = 2) and the ``min_*`` floors per head; other
        keys: the last section that sets one wins. The policy's pins are copied into the
        result. Raises :class:`InputError` if the merged top-k budgets name more than
        :data:`MAX_TOPK_BUDGETS` ks."""
        merged: dict[str, Any] = {}
        sections = ["defaults"]
        tables: dict[str, dict[str, float]] = {"p95_ms": {}, "max_topk_drop_pts": {}, **{k: {} for k in FLOORS}}

        def apply(b: Budget) -> None:
            for k, v in b.model_dump(exclude_unset=True).items():
                if k == "max_top2_drop_pts":
                    if v is not None:
                        tables["max_topk_drop_pts"][2] = v
                elif k == "max_topk_drop_pts":
                    tables[k].update({int(kk): x for kk, x in (v or {}).items()})
                elif k in tables:
                    tables[k].update(v or {})
                elif v is not None:
                    merged[k] = v

        apply(self.defaults)
        for pattern, budget in self.targets.items():
            if any(fnmatch.fnmatchcase(n, pattern) for n in names):
                sections.append(pattern)
                apply(budget)
        if len(tables["max_topk_drop_pts"]) > MAX_TOPK_BUDGETS:
            raise InputError(f"policy {self.source}: sections {sections} together budget {len(tables['max_topk_drop_pts'])} "
                             f"top-k ks {sorted(tables['max_topk_drop_pts'])}; at most {MAX_TOPK_BUDGETS}")
        return ResolvedBudget(artifact=artifact or names[0], sections=tuple(sections), **tables, **merged,
                              golden_sha256=self.golden_sha256, reference_sha256=self.reference_sha256)


def find_policy(path: str | Path | None, search_dir: str | Path = ".") -> Policy | None:
    """Load ``path``; if None, load ``optim.toml`` from ``search_dir`` when it exists, else None."""
    if path is not None:
        return Policy.load(path)
    candidate = Path(search_dir) / DEFAULT_POLICY_NAME
    return Policy.load(candidate) if candidate.is_file() else None


def require_policy(policy: "Policy | str | Path | None", why: str) -> "Policy":
    """``policy`` as a :class:`Policy`: passed through, loaded from its path, or ``./optim.toml``.

    ``why`` says in the error what the policy is for. Raises :class:`InputError` (exit 2) when
    none is given and there is no ``optim.toml`` (a gate without budgets would pass anything),
    and whatever :meth:`Policy.load` raises for a bad file."""
    if isinstance(policy, Policy):
        return policy
    found = find_policy(policy)
    if found is None:
        raise InputError(f"no policy: pass --policy FILE or put an optim.toml in the current directory ({why})")
    return found
