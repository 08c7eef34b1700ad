"""Typed gate inputs: what :mod:`optim.gate.checks` reads, parsed once from the JSON forms.

The evaluation and the benchmark hand the gate their JSON forms (``EvalReport.to_dict()``,
``BenchResult.to_dict()``: the contracts of :mod:`optim.golden_sets.report` and
:mod:`optim.device_bench.result`). :meth:`EvalView.from_dict` and :meth:`BenchView.from_dict`
turn them into frozen views holding only what the checks need, read by attribute:

* :class:`EvalView`: the golden set (:class:`GoldenView`) and per head (:class:`HeadView`) its
  kind, its own metrics (fractions), tail classes, number of classes and the delta block
  versus FP32 (:class:`DeltaView`: intervals ``{value, ci_low, ci_high}`` per metric, fractions,
  target − reference; top-1 agreement; per-class top-1 and per-tag F1 rows, :class:`DeltaRow`);
* :class:`BenchView`: p95 in ms, its 95 % bootstrap interval, warnings, trial spread;
* :class:`ArtifactMeasurement`: one artifact's size (bytes), evaluation or its error,
  benchmarks per device or their errors, and the golden / reference digests.

Fail closed. Missing or null values stay missing (None): the check that needs one fails and
says why, exactly as it did on the dicts. A value of the wrong *type* where the checks decide
on it (a string or a bool where a number is due, a string where an object is due, a negative
latency) raises :class:`MalformedMeasurement` naming the field; :meth:`ArtifactMeasurement.from_dict`
turns that into an evaluation error (check ``evaluation``: error) or a benchmark error on that
device (check ``p95[device]``: error), so a forged or garbled report can never pass. NaN is
kept as NaN (it compares false: the check fails). The head's own ``metrics`` are kept as
reported: the floors judge each value themselves (a non-number fails that floor).

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

#: delta keys that are intervals the checks may judge (fractions, target − reference)
INTERVAL_KEY = re.compile(r"^(top\d+|head_top1|tail_top1|macro_f1|head_macro_f1|tail_macro_f1|macro_ap)$")


class MalformedMeasurement(ValueError):
    """An evaluation report, benchmark result or measurement whose shape breaks the JSON
    contract. ``path`` names the field (``heads.digit.delta.top1.value``)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path or '<root>'}: {problem}")
        self.path = path


def _got(x: Any) -> str:
    r = repr(x)
    return f"{type(x).__name__} {r[:60] + '…' if len(r) > 60 else r}"


def _num(x: Any, path: str, *, min_value: float | None = None) -> float | int | None:
    """A JSON number or null; bools and strings are refused (NaN is kept, it fails every comparison)."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise MalformedMeasurement(path, f"expected a number or null, got {_got(x)}")
    if min_value is not None and x < min_value:
        raise MalformedMeasurement(path, f"expected a number ≥ {min_value:g}, got {x!r}")
    return x


def _str(x: Any, path: str) -> str | None:
    if x is None or isinstance(x, str):
        return x
    raise MalformedMeasurement(path, f"expected a string or null, got {_got(x)}")


def _obj(x: Any, path: str) -> dict[str, Any]:
    """A JSON object; a missing / null / empty value is an empty one (the checks then say what is missing)."""
    if isinstance(x, dict):
        return x
    if not x:
        return {}
    raise MalformedMeasurement(path, f"expected an object, got {_got(x)}")


def _seq(x: Any, path: str) -> list[Any]:
    """A JSON array; missing / null / empty is empty."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if not x:
        return []
    raise MalformedMeasurement(path, f"expected an array, got {_got(x)}")


def _label(x: Any) -> str | None:
    return None if x is None else str(x)


# ---- evaluation ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A delta (fraction, target − reference) with its 95 % paired-bootstrap interval; None where
    the evaluation could not compute it."""

    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def from_dict(cls, d: Any, path: str) -> "Interval | None":
        if not d:
            return None
        d = _obj(d, path)
        return cls(*(_num(d.get(k), f"{path}.{k}") for k in ("value", "ci_low", "ci_high")))


@dataclass(frozen=True)
class DeltaRow:
    """One class's top-1 delta or one tag's F1 delta (fractions) with its interval and support
    (golden images of the class / known positive labels of the tag)."""

    label: str | None
    support: float | None
    value: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class DeltaView:
    """A head's ``delta`` block versus the FP32 reference."""

    intervals: Mapping[str, Interval | None] = field(default_factory=dict)  # only the keys the report has
    agreement: float | None = None  # top-1 agreement with FP32 (fraction)
    per_class: tuple[DeltaRow, ...] | None = None  # None: missing or empty in the report
    per_tag: tuple[DeltaRow, ...] | None = None  # None: missing, empty or not a list

    def interval(self, metric: str) -> Interval | None:
        return self.intervals.get(metric)

    @classmethod
    def from_dict(cls, d: Any, path: str) -> "DeltaView | None":
        if d is None:
            return None
        if not isinstance(d, dict):
            raise MalformedMeasurement(path, f"expected an object or null, got {_got(d)}")
        intervals = {k: Interval.from_dict(v, f"{path}.{k}") for k, v in d.items() if INTERVAL_KEY.match(str(k))}
        per_class = None
        if d.get("per_class"):
            per_class = []
            for i, r in enumerate(_seq(d["per_class"], f"{path}.per_class")):
                p = f"{path}.per_class[{i}]"
                if not isinstance(r, dict):
                    raise MalformedMeasurement(p, f"expected an object, got {_got(r)}")
                per_class.append(DeltaRow(_label(r.get("label")), _num(r.get("support"), f"{p}.support"),
                                          *(_num(r.get(k), f"{p}.{k}") for k in ("value", "ci_low", "ci_high"))))
            per_class = tuple(per_class)
        per_tag = None
        tags = d.get("per_tag")
        if tags and isinstance(tags, list):
            per_tag = []
            for i, t in enumerate(tags):
                p = f"{path}.per_tag[{i}]"
                t = t if isinstance(t, dict) else {}  # a row that is not an object has no F1: it fails as uncomputable
                f1 = Interval.from_dict(t.get("f1"), f"{p}.f1") or Interval()
                per_tag.append(DeltaRow(_label(t.get("label")), _num(t.get("support"), f"{p}.support"),
                                        f1.value, f1.ci_low, f1.ci_high))
            per_tag = tuple(per_tag)
        return cls(intervals, _num(d.get("agreement"), f"{path}.agreement"), per_class, per_tag)


@dataclass(frozen=True)
class HeadView:
    """One evaluated head: ``kind`` ("multiclass" | "multilabel"), its own ``metrics`` (fractions,
    as reported), ``tail_classes`` (labels), ``n_classes`` (rows of its per-class table) and
    ``delta`` (None without a reference)."""

    kind: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    tail_classes: tuple[Any, ...] = ()
    n_classes: int = 0
    delta: DeltaView | None = None

    @classmethod
    def from_dict(cls, h: Any, path: str) -> "HeadView":
        if not isinstance(h, dict):
            raise MalformedMeasurement(path, f"expected an object, got {_got(h)}")
        return cls(kind=_str(h.get("kind"), f"{path}.kind"), metrics=dict(_obj(h.get("metrics"), f"{path}.metrics")),
                   tail_classes=tuple(_seq(h.get("tail_classes"), f"{path}.tail_classes")),
                   n_classes=len(_seq(h.get("per_class"), f"{path}.per_class")),
                   delta=DeltaView.from_dict(h.get("delta"), f"{path}.delta"))


@dataclass(frozen=True)
class GoldenView:
    """The golden set as evaluated: ``verified`` is True only when its content matched golden.json."""

    path: Any = None
    name: Any = None
    version: Any = None
    sha256: str | None = None
    verified: bool = False

    @classmethod
    def from_dict(cls, g: Any, path: str = "golden") -> "GoldenView":
        g = _obj(g, path)
        return cls(g.get("path"), g.get("name"), g.get("version"), _str(g.get("sha256"), f"{path}.sha256"),
                   g.get("verified") is True)


@dataclass(frozen=True)
class EvalView:
    """What the gate reads of an ``EvalReport.to_dict()``; ``raw`` is that dict (for the report)."""

    golden: GoldenView
    heads: Mapping[str, HeadView]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: Any) -> "EvalView":
        """Raises :class:`MalformedMeasurement` naming the first field of the wrong type."""
        if not isinstance(d, dict):
            raise MalformedMeasurement("", f"an evaluation report is a JSON object, got {_got(d)}")
        heads = _obj(d.get("heads"), "heads")
        return cls(GoldenView.from_dict(d.get("golden")),
                   {str(k): HeadView.from_dict(v, f"heads.{k}") for k, v in heads.items()}, d)

    @classmethod
    def of(cls, x: Any) -> "EvalView":
        """An :class:`EvalView` from a view, an ``EvalReport`` (anything with ``to_dict()``) or its dict."""
        return x if isinstance(x, cls) else cls.from_dict(json_form(x))


# ---- benchmark -----------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchView:
    """What the gate reads of a ``BenchResult.to_dict()`` (times in ms); ``raw`` is that dict."""

    p95: float | None = None  # None: the tool gave no per-iteration times
    p95_ci: tuple[float, float] | None = None  # 95 % bootstrap interval of p95
    device: Mapping[str, Any] | None = None  # the result's device block, as reported
    warnings: tuple[str, ...] = ()
    trial_spread_pct: float | None = None
    unavailable: tuple[str, ...] | None = None  # statistics the tool did not provide
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: Any) -> "BenchView":
        """Raises :class:`MalformedMeasurement` naming the first field of the wrong type."""
        if not isinstance(d, dict):
            raise MalformedMeasurement("", f"a benchmark result is a JSON object, got {_got(d)}")
        lat = _obj(d.get("latency_ms"), "latency_ms")
        ci = d.get("p95_ci_ms")
        if ci:
            ci = _seq(ci, "p95_ci_ms")
            if len(ci) != 2:
                raise MalformedMeasurement("p95_ci_ms", f"expected [low, high], got {_got(ci)}")
            ci = tuple(_num(x, f"p95_ci_ms[{i}]") for i, x in enumerate(ci))
            if None in ci:
                raise MalformedMeasurement("p95_ci_ms", f"expected two numbers, got {_got(list(ci))}")
        device = d.get("device")
        if device is not None and not isinstance(device, dict):
            raise MalformedMeasurement("device", f"expected an object or null, got {_got(device)}")
        warnings = _seq(d.get("warnings"), "warnings")
        for i, w in enumerate(warnings):
            _str(w, f"warnings[{i}]")
        unavailable = d.get("unavailable")
        return cls(p95=_num(lat.get("p95"), "latency_ms.p95", min_value=0), p95_ci=ci or None, device=device,
                   warnings=tuple(warnings), trial_spread_pct=_num(d.get("trial_spread_pct"), "trial_spread_pct"),
                   unavailable=None if unavailable is None else tuple(_seq(unavailable, "unavailable")), raw=d)

    @classmethod
    def of(cls, x: Any) -> "BenchView":
        """A :class:`BenchView` from a view, a ``BenchResult`` (anything with ``to_dict()``) or its dict."""
        return x if isinstance(x, cls) else cls.from_dict(json_form(x))


def json_form(x: Any) -> Any:
    """The JSON form of a result: a dict as is, else ``x.to_dict()`` (``EvalReport``, ``BenchResult``)."""
    if isinstance(x, (EvalView, BenchView)):
        return dict(x.raw)
    to_dict = getattr(x, "to_dict", None)
    return to_dict() if callable(to_dict) and not isinstance(x, dict) else x


# ---- one artifact --------------------------------------------------------------------------
@dataclass
class ArtifactMeasurement:
    """Everything measured for one artifact. ``size_bytes``: sum of its files (MB = 10^6 bytes).
    ``eval`` is None when the evaluation did not run (``eval_error`` says why;
    ``eval_error_kind`` "input" = a bad input, exit 2; "tool" = a runtime or library broke,
    exit 3). ``bench[device]`` per device measured; ``bench_errors[device]`` per device whose
    benchmark raised. ``reference_sha256``: sha256 of the FP32 reference checkpoint used (None:
    none); ``golden_sha256``: the golden digest as measured (None: take the evaluation's)."""

    size_bytes: int | None = None
    eval: EvalView | None = None
    eval_error: str | None = None
    eval_error_kind: Literal["input", "tool"] | None = None
    bench: dict[str, BenchView] = field(default_factory=dict)
    bench_errors: dict[str, str] = field(default_factory=dict)
    reference_sha256: str | None = None
    golden_sha256: str | None = None

    @classmethod
    def from_dict(cls, m: Mapping[str, Any]) -> "ArtifactMeasurement":
        """From the dict form ``{"size_bytes", "eval", "eval_error", "eval_error_kind", "bench",
        "bench_errors", "reference_sha256", "golden_sha256"}`` (every key optional). A malformed
        ``eval`` becomes an evaluation error of kind "tool"; a malformed ``bench[device]`` a
        benchmark error on that device. Raises :class:`MalformedMeasurement` when the measurement
        itself has a field of the wrong type (a caller's bug, not a measurement)."""
        if not isinstance(m, Mapping):
            raise MalformedMeasurement("", f"a measurement is a mapping, got {_got(m)}")
        size = _num(m.get("size_bytes"), "size_bytes", min_value=0)
        kind = m.get("eval_error_kind")
        if kind not in (None, "input", "tool"):
            raise MalformedMeasurement("eval_error_kind", f"expected 'input', 'tool' or null, got {_got(kind)}")
        out = cls(size_bytes=size, eval_error=_str(m.get("eval_error"), "eval_error"), eval_error_kind=kind,
                  bench_errors={str(d): str(e) for d, e in _obj(m.get("bench_errors"), "bench_errors").items()},
                  reference_sha256=_str(m.get("reference_sha256"), "reference_sha256"),
                  golden_sha256=_str(m.get("golden_sha256"), "golden_sha256"))
        if m.get("eval") is not None:
            out.set_eval(m["eval"])
        for d, b in _obj(m.get("bench"), "bench").items():
            out.set_bench(str(d), b)
        return out

    def set_eval(self, result: Any) -> None:
        """Record what the evaluation returned (an ``EvalReport``, its dict, or a view; None: it
        did not run). A malformed report is recorded as an evaluation error of kind "tool"."""
        if result is None:
            self.eval = None
            return
        try:
            self.eval = EvalView.of(result)
        except MalformedMeasurement as e:
            self.eval, self.eval_error, self.eval_error_kind = None, f"malformed evaluation report: {e}", "tool"

    def set_bench(self, device: str, result: Any) -> None:
        """Record what the benchmark on ``device`` returned (a ``BenchResult``, its dict, or a
        view). A malformed result is recorded as a benchmark error on that device."""
        try:
            self.bench[device] = BenchView.of(result)
        except MalformedMeasurement as e:
            self.bench.pop(device, None)
            self.bench_errors[device] = f"malformed benchmark result: {e}"

    @property
    def golden_digest(self) -> str | None:
        """The golden digest of this run: ``golden_sha256`` and/or the evaluation's ``golden.sha256``
        (lower case); None if neither is known or if they disagree (then a golden pin fails)."""
        seen = {x.strip().lower() for x in (self.golden_sha256, self.eval.golden.sha256 if self.eval else None) if x}
        return seen.pop() if len(seen) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        """The dict form (``eval`` and ``bench`` as the JSON the views were read from)."""
        return {"size_bytes": self.size_bytes, "eval": None if self.eval is None else dict(self.eval.raw),
                "eval_error": self.eval_error, "eval_error_kind": self.eval_error_kind,
                "bench": {d: dict(b.raw) for d, b in self.bench.items()}, "bench_errors": dict(self.bench_errors),
                "reference_sha256": self.reference_sha256, "golden_sha256": self.golden_sha256}

    @classmethod
    def of(cls, m: "ArtifactMeasurement | Mapping[str, Any]") -> "ArtifactMeasurement":
        return m if isinstance(m, cls) else cls.from_dict(m)
