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
from optim.gate.policy import Policy, ResolvedBudget, find_policy

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
    from optim import evaluate
    from optim.golden_sets.evaluate import PROCESS_TENSORS

    return evaluate(target, golden, reference, cache_dir=False, memo=PROCESS_TENSORS, **kw)


def _default_evaluate(target, golden, reference, **kw):
    """:func:`gate_evaluate` as the JSON dict the checks read."""
    return gate_evaluate(target, golden, reference, **kw).to_dict()


def _default_bench(artifact, device, **kw):
    from optim import bench

    return bench(artifact, device, **kw).to_dict()


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
    evaluate_fn: Callable[..., dict] | None = None,
    bench_fn: Callable[..., dict] | None = None,
    progress: Callable[[str], None] | None = None,
    sign_key: str | Path | None = None,
) -> VerifyResult:
    """Gate ``artifacts`` (artifact directories) for release.

    For each artifact: size (sum of its files, MB = 10^6 bytes), golden-set evaluation against
    the FP32 ``reference`` checkpoint (``optim.evaluate``; default: the source checkpoint
    recorded in the artifact if it is still on disk), and ``optim.bench`` on every device in
    ``devices``; then the checks of :mod:`optim.gate.checks` against the policy section that
    matches it (``policy``: a :class:`Policy`, a path, or None for ``./optim.toml``).
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
    results computed elsewhere); they return the JSON dicts of those APIs.
    """
    say = progress or (lambda _m: None)
    devices = list(dict.fromkeys(devices))
    if not devices:
        raise InputError("verify needs at least one --device (e.g. host, pixel6a)")
    if not artifacts:
        raise InputError("verify needs at least one artifact directory")
    if not isinstance(policy, Policy):
        policy_obj = find_policy(policy)
        if policy_obj is None:
            raise InputError("no policy: pass --policy FILE or put an optim.toml in the current directory "
                             "(a gate without budgets would pass anything)")
        policy = policy_obj
    if sign_key is not None:
        from optim.gate.attestation import load_signer

        load_signer(sign_key)  # a bad key is an input error before anything is measured
    golden = Path(golden)
    if not golden.is_dir():
        raise InputError(f"golden set {golden} is not a directory")
    paths = [Path(p) for p in artifacts]
    loaded = [_load_artifact(p) for p in paths]
    budgets: list[ResolvedBudget] = []
    for a, p in zip(loaded, paths):
        b = policy.resolve(_names_for(a, p), artifact=p.name)
        if not b.has_checks:
            raise InputError(f"policy {policy.source} sets no budget for artifact {p} (names tried: "
                             f"{_names_for(a, p)}); add a [defaults] or a matching [targets.\"PATTERN\"] section")
        budgets.append(b)
    ref, ref_info = resolve_reference(loaded, reference)
    if ref is None and any(b.needs_reference for b in budgets):
        raise InputError("the policy has accuracy budgets but no FP32 reference was found (the artifacts' source "
                         "checkpoint is not on disk): pass --reference CKPT")
    if ref is not None:
        say(f"FP32 reference: {ref} (sha256 {ref_info['sha256'][:12]}…, from {ref_info['resolved_from']})")
    evaluate_fn = evaluate_fn or _default_evaluate
    bench_fn = bench_fn or _default_bench

    entries, input_errors = [], []
    for a, p, budget in zip(loaded, paths, budgets):
        digests_before = a.digests()  # what the attestation binds: every file, artifact.json included
        sha_before = a.content_sha256()
        m: dict[str, Any] = {"size_bytes": a.size_bytes, "eval": None, "eval_error": None, "eval_error_kind": None,
                             "bench": {}, "bench_errors": {},
                             "reference_sha256": None if ref_info is None else ref_info["sha256"]}
        say(f"{p.name}: evaluating on {golden}")
        try:
            m["eval"] = evaluate_fn(str(p), str(golden), None if ref is None else str(ref),
                                    tail_max_count=budget.tail_max_count, topk=budget.topk_ks, batch_size=batch_size,
                                    threads=threads)
        except InputError as e:
            m["eval_error"], m["eval_error_kind"] = str(e), "input"
            input_errors.append(f"{p.name}: evaluation: {e}")
        except Exception as e:  # a runtime or library broke: infrastructure, never a pass
            m["eval_error"], m["eval_error_kind"] = f"{type(e).__name__}: {e}", "tool"
        for d in devices:
            say(f"{p.name}: benchmarking on {d}")
            try:
                extra = {} if cooldown_s is None else {"cooldown_s": cooldown_s}
                m["bench"][d] = bench_fn(str(p), d, threads=threads, runs=runs, warmup=warmup, trials=trials, **extra)
            except InputError as e:
                m["bench_errors"][d] = str(e)
                input_errors.append(f"{p.name}: bench on {d}: {e}")
            except Exception as e:  # ToolError (device missing/unauthorized/tool crash) or a library bug
                kind = "" if isinstance(e, OptimError) else f"{type(e).__name__}: "
                m["bench_errors"][d] = f"{kind}{e}"
        checks = C.artifact_checks(budget, m, devices)
        sha_after = a.content_sha256()
        if sha_after != sha_before or a.digests() != digests_before:
            checks.append(C.Check("artifact_bytes", "integrity", C.FAIL, "", reason=(
                f"the artifact's files changed while it was being verified (sha256 {sha_before[:12]} → {sha_after[:12]})")))
        entries.append({
            "name": p.name, "path": str(p), "format": a.format, "scheme": a.scheme,
            "content_sha256": sha_before, "size_bytes": a.size_bytes, "size_mb": a.size_bytes / 1e6,
            "files": list(a.files), "digests": digests_before,
            "budget": budget.model_dump(mode="json"),
            "verdict": C.verdict(checks),
            "checks": [c.to_dict() for c in checks],
            "eval": m["eval"], "eval_error": m["eval_error"],
            "bench": m["bench"], "bench_errors": m["bench_errors"],
        })

    verdict_ = C.verdict([c for e in entries for c in e["checks"]])
    exit_code = 2 if input_errors else C.exit_code_for(verdict_)
    statuses = [c["status"] for e in entries for c in e["checks"]]
    golden_info = next((e["eval"]["golden"] for e in entries if e["eval"]), None) or {"path": str(golden)}
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "optim.verify",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "verdict": verdict_,
        "exit_code": exit_code,
        "devices": devices,
        "policy": {"path": policy.source, "sha256": policy.sha256},
        "golden": golden_info,
        "reference": ref_info,
        "environment": environment(),
        "summary": {s: statuses.count(s) for s in ("pass", "fail", "error", "skipped")} | {"checks": len(statuses)},
        "input_errors": input_errors,
        "notes": [HOST_ACCURACY_NOTE],
        "artifacts": entries,
    }
    result = VerifyResult(report)
    if out is not None:
        from optim.gate.reports import write_reports

        from optim.gate.attestation import write_attestation

        result.paths = write_reports(report, Path(out))
        result.paths["attestation"] = write_attestation(report, [e["digests"] for e in entries], result.paths["json"],
                                                        Path(out), sign_key=sign_key)
    return result
