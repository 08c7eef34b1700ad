"""``optim.verify``: measure artifacts (size, golden-set eval vs FP32, latency per device),
judge them against the policy, and write the reports.

I/O lives here; the verdicts are :mod:`optim.gate.checks` (pure) and the report renderers are
:mod:`optim.gate.reports`. Exit codes (:attr:`VerifyResult.exit_code`): 0 every check passed ·
1 a check failed · 2 input error (bad policy, artifact, golden set, reference) · 3 a tool or
device broke so a check could not be measured.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from optim.errors import InputError, OptimError
from optim.files import sha256_file
from optim.gate import checks as C
from optim.gate.measurement import ArtifactMeasurement
from optim.gate.policy import Policy, ResolvedBudget, require_policy

REPORT_SCHEMA_VERSION = 1
#: libraries every run uses; each format adds its own (FormatSpec.libraries, .qat_libraries)
LIBRARIES = ("optim", "torch", "torchvision", "numpy", "scikit-learn", "scipy")
HOST_ACCURACY_NOTE = ("Accuracy is measured on the host runtime for each artifact (the same bytes that ship); "
                      "latency is measured on each listed device.")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that shape an artifact's numbers (None if absent):
    :data:`LIBRARIES` plus every registered format's libraries."""
    from optim.runtimes.artifact import library_versions as versions_of
    from optim.runtimes.registry import all_libraries

    return versions_of(*dict.fromkeys((*LIBRARIES, *all_libraries())), missing=None)


def environment() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "libraries": library_versions()}


@dataclass
class VerifyResult:
    """The verify run: ``report`` is the JSON document (schema in
    ``optim/gate/schemas/verify-report.v1.schema.json``); ``paths`` the written reports."""

    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.report["verdict"]

    @property
    def exit_code(self) -> int:
        return self.report["exit_code"]

    def to_dict(self) -> dict[str, Any]:
        return self.report


def gate_evaluate(target, golden, reference, **kw):
    """``optim.evaluate`` in the gate's mode, returning the ``EvalReport`` (shared by verify and
    compare). It never reads a preprocessed cache from disk (whoever can write one could turn a
    FAIL into a PASS): the golden images are decoded in this process, from bytes whose sha256
    matches the golden digest reported, and the tensors are shared in memory
    (``PROCESS_TENSORS``, keyed by that digest and the preprocessing) so the N artifacts of a
    run decode the images once."""
    from optim.golden_sets.evaluate import PROCESS_TENSORS, evaluate

    return evaluate(target, golden, reference, cache_dir=False, memo=PROCESS_TENSORS, **kw)


def gate_bench(artifact, device, **kw):
    """``optim.bench`` (:func:`optim.device_bench.api.bench`): the ``BenchResult``."""
    from optim.device_bench.api import bench

    return bench(artifact, device, **kw)


# ---- measurement steps (shared with optim.gate.compare) -------------------------------------
def evaluate_step(m: ArtifactMeasurement, evaluate_fn: Callable[..., Any], target: str, golden: str,
                  reference: str | None, **kw) -> tuple[Any, str | None]:
    """Evaluate one target into ``m`` (``m.eval``, or ``m.eval_error`` and its kind).

    ``evaluate_fn(target, golden, reference, **kw)`` returns an ``EvalReport``, its dict or an
    :class:`~optim.gate.measurement.EvalView`; it is parsed once here (a malformed report is an
    evaluation error of kind "tool"). An :class:`InputError` is an input problem (kind "input", exit 2); any other
    exception means a runtime or library broke (kind "tool", exit 3): never a pass.
    Returns ``(what evaluate_fn returned or None, the input error's text or None)``."""
    try:
        result = evaluate_fn(target, golden, reference, **kw)
    except InputError as e:
        m.eval_error, m.eval_error_kind = str(e), "input"
        return None, str(e)
    except Exception as e:  # a runtime or library broke: infrastructure, never a pass
        m.eval_error, m.eval_error_kind = f"{type(e).__name__}: {e}", "tool"
        return None, None
    m.set_eval(result)
    return result, None


def bench_step(m: ArtifactMeasurement, bench_fn: Callable[..., Any], artifact: str, devices: list[str],
               **kw) -> dict[str, str]:
    """Benchmark one artifact on every device into ``m``, the devices in parallel (one worker
    each, :func:`optim.device_bench.parallel.run_per_device`), each device's outcome its own.

    ``bench_fn(artifact, device, **kw)`` returns a ``BenchResult``, its dict or a
    :class:`~optim.gate.measurement.BenchView` (parsed once here; a malformed one is an error on
    that device). An :class:`InputError` is recorded in ``m.bench_errors[device]`` and returned as an input
    error (exit 2); any other exception (a :class:`~optim.errors.ToolError`: device lost,
    unauthorized, tool crash; or a library bug, prefixed with its type) only in
    ``m.bench_errors[device]`` (its ``p95[device]`` check is an error, exit 3). Returns
    ``{device: input error text}``."""
    from optim.device_bench.parallel import run_per_device

    outcomes = run_per_device(devices, lambda d: bench_fn(artifact, d, **kw))
    input_errors: dict[str, str] = {}
    for d, r in outcomes.items():
        if isinstance(r, InputError):
            m.bench_errors[d] = input_errors[d] = str(r)
        elif isinstance(r, BaseException):  # ToolError (device missing/lost/unauthorized, tool crash) or a bug
            m.bench_errors[d] = f"{'' if isinstance(r, OptimError) else f'{type(r).__name__}: '}{r}"
        else:
            m.set_bench(d, r)
    return input_errors


def _load_artifact(path: Path):
    from optim.runtimes.artifact import Artifact

    if not path.exists():
        raise InputError(f"artifact {path} does not exist")
    return Artifact.load(path)


def _lineage(a) -> dict[str, Any] | None:
    src = (a.metadata or {}).get("source") or {}
    lin = src.get("lineage") if isinstance(src, dict) else None
    if lin is None:
        return None
    ref = lin.get("reference") if isinstance(lin, dict) else None
    if not isinstance(ref, dict) or not isinstance(ref.get("sha256"), str) or not isinstance(ref.get("path"), str):
        raise InputError(f"artifact {a.dir}: source.lineage in artifact.json has no FP32 reference "
                         "{path, sha256}; re-run `optim quantize` on the checkpoint")
    return lin


def resolve_reference(artifacts, reference: str | Path | None) -> tuple[Path | None, dict[str, Any] | None]:
    """The FP32 reference the artifacts are judged against, and how it was found.

    The reference is the FP32 original, always named: for an artifact exported from a
    compressed checkpoint (pruned, distilled: ``source.lineage`` in ``artifact.json``) it is
    the lineage's ``reference``; otherwise the source checkpoint itself (the FP32 model the
    artifact was quantized from). ``reference`` (``--reference``) may point at the same bytes
    elsewhere on disk. Returns ``(path, {"path", "sha256", "resolved_from"})`` or
    ``(None, None)`` when no candidate is on disk.

    Raises :class:`InputError` when the reference would be the compressed model itself (a
    model compared with itself shows every delta as 0), when ``--reference`` names another
    model than the artifact's lineage, when a recorded checkpoint's bytes changed since
    export, or when the artifacts descend from different references.
    """
    wanted = []  # per artifact: (path, sha256, resolved_from, compressed source sha or None)
    for a in artifacts:
        src = (a.metadata or {}).get("source") or {}
        src = src if isinstance(src, dict) else {}
        lin = _lineage(a)
        if lin is not None:
            wanted.append((lin["reference"]["path"], lin["reference"]["sha256"], "lineage", src.get("sha256")))
        elif src.get("checkpoint"):
            wanted.append((src["checkpoint"], src.get("sha256"), "source checkpoint", None))
        else:
            wanted.append((None, None, None, None))
    if reference is not None:
        p = Path(reference)
        if not p.is_file():
            raise InputError(f"reference checkpoint {p} does not exist or is not a file")
        sha = sha256_file(p)
        for a, (_, want_sha, how, compressed_sha) in zip(artifacts, wanted):
            if compressed_sha is not None and sha == compressed_sha:
                raise InputError(f"--reference {p} is the compressed checkpoint artifact {a.dir} was exported from; "
                                 "comparing a model with itself shows no loss. Pass its FP32 original "
                                 "(recorded in its lineage) or omit --reference")
            if how == "lineage" and sha != want_sha:
                raise InputError(f"--reference {p} (sha256 {sha[:12]}…) is not the FP32 original of {a.dir}, whose "
                                 f"lineage names {want_sha[:12]}…; omit --reference or pass that checkpoint")
        return p, {"path": str(p), "sha256": sha, "resolved_from": "--reference"}
    found: dict[str, tuple[Path, str]] = {}
    for a, (path, want_sha, how, _) in zip(artifacts, wanted):
        if path is None or not Path(path).is_file():
            continue
        sha = sha256_file(path)
        if want_sha is not None and sha != want_sha:
            raise InputError(f"the {how} of {a.dir}, {path}, changed since export (sha256 {sha[:12]}… but "
                             f"artifact.json records {want_sha[:12]}…); pass the original with --reference")
        found.setdefault(sha, (Path(path).resolve(), how))
    if len(found) > 1:
        raise InputError("the artifacts descend from different FP32 references ("
                         + ", ".join(f"{p} [{h}]" for p, h in found.values())
                         + "): verify the artifacts of one model per run, or pass --reference")
    if not found:
        return None, None
    sha, (path, how) = next(iter(found.items()))
    return path, {"path": str(path), "sha256": sha, "resolved_from": how}


def _names_for(a, path: Path) -> list[str]:
    """What policy globs match: the directory name, "format-scheme", and the format."""
    return list(dict.fromkeys([path.name, f"{a.format}-{a.scheme}", a.format]))


@dataclass
class _Run:
    """One verify run's inputs, once validated and resolved (the pipeline's shared state)."""

    devices: list[str]
    policy: Policy
    golden: Path
    paths: list[Path]
    artifacts: list[Any]
    budgets: list[ResolvedBudget] = field(default_factory=list)
    reference: Path | None = None
    reference_info: dict[str, Any] | None = None
    input_errors: list[str] = field(default_factory=list)


def verify(
    artifacts: list[str | Path] | tuple[str | Path, ...],
    golden: str | Path,
    *,
    devices: list[str] | tuple[str, ...] = ("host",),
    policy: Policy | str | Path | None = None,
    reference: str | Path | None = None,
    out: str | Path | None = None,
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    trials: int = 3,
    cooldown_s: float | None = None,
    batch_size: int = 32,
    evaluate_fn: Callable[..., Any] | None = None,
    bench_fn: Callable[..., Any] | None = None,
    progress: Callable[[str], None] | None = None,
    sign_key: str | Path | None = None,
) -> VerifyResult:
    """Gate ``artifacts`` (artifact directories) for release.

    For each artifact: size (sum of its files, MB = 10^6 bytes), golden-set evaluation against
    the FP32 ``reference`` checkpoint (``optim.evaluate``; default: the source checkpoint
    recorded in the artifact if it is still on disk), and ``optim.bench`` on every device in
    ``devices`` (in parallel, one worker per device; a device that fails fails only its own
    ``p95[device]`` check and its entry in ``device_verdicts``); then the checks of
    :mod:`optim.gate.checks` against the policy section that matches it (``policy``: a
    :class:`Policy`, a path, or None for ``./optim.toml``).
    Reports (JSON, Markdown, JUnit XML, HTML) are written to ``out`` when given, with the
    attestation ``verify.intoto.json`` (:mod:`optim.gate.attestation`) that ``optim publish``
    admits artifacts by; ``sign_key`` (a PEM private key) signs it. The FP32 reference is
    resolved by :func:`resolve_reference` and named in every report.
    ``runs``/``warmup``/``trials``/``threads``/``cooldown_s`` (seconds between trials; None =
    the device profile's value, 0 on the host) go to ``optim.bench``.

    Raises :class:`InputError` (exit 2) before measuring anything for a missing or invalid
    policy, artifact, golden set or reference; measurement failures are recorded in the
    result (tool/device errors → verdict "error", exit 3) and never pass.
    ``evaluate_fn``/``bench_fn`` replace ``optim.evaluate``/``optim.bench`` (tests, or
    results computed elsewhere); they return an ``EvalReport``/``BenchResult``, their JSON
    dicts, or the typed views of :mod:`optim.gate.measurement`.

    Pipeline: :func:`_validate_inputs` → :func:`_load_artifacts` → :func:`_resolve_budgets` →
    :func:`_resolve_reference` → per artifact :func:`_measure` (:func:`evaluate_step`,
    :func:`bench_step`) → :func:`_judge` → :func:`_assemble_report` → :func:`_write_outputs`.
    """
    say = progress or (lambda _m: None)
    run = _validate_inputs(artifacts, golden, devices, policy, sign_key, real_devices=bench_fn is None)
    _load_artifacts(run)
    _resolve_budgets(run)
    _resolve_reference(run, reference, say)
    bench_kw = {"threads": threads, "runs": runs, "warmup": warmup, "trials": trials,
                **({} if cooldown_s is None else {"cooldown_s": cooldown_s})}
    entries = []
    for a, p, budget in zip(run.artifacts, run.paths, run.budgets):
        digests_before, sha_before = a.digests(), a.content_sha256()  # what the attestation binds
        m = _measure(run, a, p, budget, evaluate_fn or gate_evaluate, bench_fn or gate_bench,
                     {"batch_size": batch_size, "threads": threads}, bench_kw, say)
        entries.append(_judge(run, a, p, budget, m, digests_before, sha_before))
    result = VerifyResult(_assemble_report(run, entries))
    _write_outputs(result, entries, out, sign_key)
    return result


def _validate_inputs(artifacts, golden, devices, policy, sign_key, real_devices: bool = True) -> _Run:
    """Refuse, before anything is measured, a run without devices or artifacts, without a
    policy (a gate without budgets would pass anything), with a bad signing key, or whose
    golden set is not a directory; with ``real_devices`` (the default bench), also unknown
    device names and two names for one physical device
    (:func:`optim.device_bench.api.resolve_devices`). Raises :class:`InputError`."""
    devices = list(dict.fromkeys(devices))
    if not devices:
        raise InputError("verify needs at least one --device (e.g. host, pixel6a)")
    if real_devices:
        from optim.device_bench.api import resolve_devices

        resolve_devices(devices)  # a device that cannot be reached now fails alone, later, in its bench
    if not artifacts:
        raise InputError("verify needs at least one artifact directory")
    policy = require_policy(policy, "a gate without budgets would pass anything")
    if sign_key is not None:
        from optim.gate.attestation import load_signer

        load_signer(sign_key)  # a bad key is an input error before anything is measured
    golden = Path(golden)
    if not golden.is_dir():
        raise InputError(f"golden set {golden} is not a directory")
    return _Run(devices, policy, golden, [Path(p) for p in artifacts], [])


def _load_artifacts(run: _Run) -> None:
    """Load every artifact directory (:class:`InputError` for a missing or invalid one)."""
    run.artifacts = [_load_artifact(p) for p in run.paths]


def _resolve_budgets(run: _Run) -> None:
    """The policy section that applies to each artifact; an artifact no section budgets is an
    :class:`InputError` (it would pass on nothing)."""
    for a, p in zip(run.artifacts, run.paths):
        b = run.policy.resolve(_names_for(a, p), artifact=p.name)
        if not b.has_checks:
            raise InputError(f"policy {run.policy.source} sets no budget for artifact {p} (names tried: "
                             f"{_names_for(a, p)}); add a [defaults] or a matching [targets.\"PATTERN\"] section")
        run.budgets.append(b)


def _resolve_reference(run: _Run, reference: str | Path | None, say: Callable[[str], None]) -> None:
    """The FP32 reference (:func:`resolve_reference`); accuracy budgets without one are an
    :class:`InputError`."""
    run.reference, run.reference_info = resolve_reference(run.artifacts, reference)
    if run.reference is None and any(b.needs_reference for b in run.budgets):
        raise InputError("the policy has accuracy budgets but no FP32 reference was found (the artifacts' source "
                         "checkpoint is not on disk): pass --reference CKPT")
    if run.reference is not None:
        say(f"FP32 reference: {run.reference} (sha256 {run.reference_info['sha256'][:12]}…, "
            f"from {run.reference_info['resolved_from']})")


def _measure(run: _Run, a, p: Path, budget: ResolvedBudget, evaluate_fn, bench_fn, eval_kw: dict[str, Any],
             bench_kw: dict[str, Any], say: Callable[[str], None]) -> ArtifactMeasurement:
    """Size, the golden-set evaluation (:func:`evaluate_step`) and the benchmark on every device
    (:func:`bench_step`) of one artifact; input errors are added to ``run.input_errors``."""
    m = ArtifactMeasurement(size_bytes=a.size_bytes,
                            reference_sha256=None if run.reference_info is None else run.reference_info["sha256"])
    say(f"{p.name}: evaluating on {run.golden}")
    _, err = evaluate_step(m, evaluate_fn, str(p), str(run.golden), None if run.reference is None else str(run.reference),
                           tail_max_count=budget.tail_max_count, topk=budget.topk_ks, **eval_kw)
    if err is not None:
        run.input_errors.append(f"{p.name}: evaluation: {err}")
    for d in run.devices:
        say(f"{p.name}: benchmarking on {d}")
    for d, err in bench_step(m, bench_fn, str(p), run.devices, **bench_kw).items():
        run.input_errors.append(f"{p.name}: bench on {d}: {err}")
    return m


def _judge(run: _Run, a, p: Path, budget: ResolvedBudget, m: ArtifactMeasurement, digests_before: dict[str, str],
           sha_before: str) -> dict[str, Any]:
    """The checks of one artifact (:func:`optim.gate.checks.artifact_checks`, plus
    ``artifact_bytes`` when its files changed while being measured), its verdict, its
    per-device verdicts, and its report entry."""
    checks = C.artifact_checks(budget, m, run.devices)
    sha_after = a.content_sha256()
    if sha_after != sha_before or a.digests() != digests_before:
        checks.append(C.Check("artifact_bytes", "integrity", C.FAIL, "", reason=(
            f"the artifact's files changed while it was being verified (sha256 {sha_before[:12]} → {sha_after[:12]})")))
    form = m.to_dict()
    return {
        "name": p.name, "path": str(p), "format": a.format, "scheme": a.scheme,
        "content_sha256": sha_before, "size_bytes": a.size_bytes, "size_mb": a.size_bytes / 1e6,
        "files": list(a.files), "digests": digests_before,
        "budget": budget.model_dump(mode="json"),
        "verdict": C.verdict(checks),
        "checks": [c.to_dict() for c in checks],
        "eval": form["eval"], "eval_error": m.eval_error,
        "bench": form["bench"], "bench_errors": form["bench_errors"],
        "device_verdicts": C.device_verdicts(checks, m, run.devices),
    }


def _assemble_report(run: _Run, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The verify report (schema ``verify-report.v1``): overall verdict, exit code (2 when any
    input error was recorded), run metadata, summary counts and the artifact entries."""
    verdict_ = C.verdict([c for e in entries for c in e["checks"]])
    statuses = [c["status"] for e in entries for c in e["checks"]]
    golden_info = next((e["eval"].get("golden") for e in entries if e["eval"]), None) or {"path": str(run.golden)}
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "optim.verify",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "verdict": verdict_,
        "exit_code": 2 if run.input_errors else C.exit_code_for(verdict_),
        "devices": run.devices,
        "policy": {"path": run.policy.source, "sha256": run.policy.sha256},
        "golden": golden_info,
        "reference": run.reference_info,
        "environment": environment(),
        "summary": {s: statuses.count(s) for s in ("pass", "fail", "error", "skipped")} | {"checks": len(statuses)},
        "input_errors": run.input_errors,
        "notes": [HOST_ACCURACY_NOTE],
        "artifacts": entries,
    }


def _write_outputs(result: VerifyResult, entries: list[dict[str, Any]], out: str | Path | None,
                   sign_key: str | Path | None) -> None:
    """Write the four reports and the attestation into ``out`` (nothing when ``out`` is None)."""
    if out is None:
        return
    from optim.gate.attestation import write_attestation
    from optim.gate.reports import write_reports

    result.paths = write_reports(result.report, Path(out))
    result.paths["attestation"] = write_attestation(result.report, [e["digests"] for e in entries],
                                                    result.paths["json"], Path(out), sign_key=sign_key)
