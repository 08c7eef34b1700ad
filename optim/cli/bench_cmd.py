"""``optim bench ARTIFACT... --device host|PROFILE|SERIAL [--device ...]``: p50/p95/p99 latency
and peak memory; several ``--device`` options benchmark the devices in parallel, each with its
own status."""

from __future__ import annotations

import click

from optim.cli.checkpoint_options import checkpoint_options
from optim.cli.output import json_option, make_table, print_json, state


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _figures(r) -> list[str]:
    """p50, p95, p99, p95 CI95, spread, peak MB of a BenchResult as table cells."""
    ci = f"{r.p95_ci_ms[0]:.3f}–{r.p95_ci_ms[1]:.3f}" if r.p95_ci_ms else "n/a"
    return [_ms(r.latency.p50), _ms(r.latency.p95), _ms(r.latency.p99), ci,
            "n/a" if r.trial_spread_pct is None else f"{r.trial_spread_pct:.1f}%",
            "n/a" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.1f}"]


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--device", "devices", multiple=True, default=("host",), show_default=True,
              help="'host', a device profile (e.g. pixel6a; see `optim devices`) or an adb serial. Repeat it to "
                   "benchmark several devices in parallel (one worker each; a device that fails fails alone).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: runtime default on host; the fastest cores on Android).")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed iterations per trial.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed iterations before each trial.")
@click.option("--trials", type=click.IntRange(min=1), default=3, show_default=True, help="Independent trials (their p95 spread is reported).")
@click.option("--cooldown", "cooldown_s", type=click.FloatRange(min=0), help="Seconds between trials (default: 0 on host, the profile's value on Android).")
@click.option("--no-memory", is_flag=True, help="Host: skip the peak-memory measurement (a fresh child process per artifact).")
@click.option("--output", "output", type=click.Path(dir_okay=False), help="Also write the JSON result(s) to this file.")
@checkpoint_options
@json_option
def command(artifacts: tuple[str, ...], devices: tuple[str, ...], threads: int | None, runs: int, warmup: int, trials: int,
            cooldown_s: float | None, no_memory: bool, output: str | None, load_kwargs: dict, as_json: bool) -> None:
    """Measure single-image (batch 1) latency of each ARTIFACT (checkpoint, artifact directory or
    .onnx/.tflite/.pte file) and print p50/p95/p99 in ms, the p95 spread between trials and peak
    memory (MB = 10^6 bytes).

    On Android the official tools (benchmark_model, executor_runner, onnxruntime_perf_test)
    run over adb, pinned to the fastest cores; statistics a tool does not report are shown as
    n/a and listed as unavailable, never estimated.

    With several --device options the devices run in parallel: one row per device and artifact
    with its own status; the JSON is {"devices": {DEVICE: {"status", "results", "errors"}}}.
    Exit code then: 0 every device succeeded, 2 a device failed on an input problem, else 3
    when a device or its tool failed; the devices that succeeded are printed (and written) first.
    """
    if len(devices) > 1:
        return _several(artifacts, devices, threads=threads, runs=runs, warmup=warmup, trials=trials,
                        cooldown_s=cooldown_s, no_memory=no_memory, output=output, load_kwargs=load_kwargs,
                        as_json=as_json)
    import json
    from pathlib import Path

    from optim.device_bench.api import bench
    from optim.files import atomic_write_bytes

    device = devices[0]
    s = state()
    results = []
    for path in artifacts:
        s.info(f"benchmarking {path} on {device} ({trials} × ({warmup} warm-up + {runs} runs))")
        r = bench(path, device, threads=threads, runs=runs, warmup=warmup, trials=trials, cooldown_s=cooldown_s,
                  load_kwargs=load_kwargs, measure_memory=not no_memory, log=s.info)
        results.append(r)
        for w in r.warnings:
            s.info(f"[yellow]warning ({path}): {w}[/yellow]")
    payload = results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results]
    if output:
        atomic_write_bytes(output, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
    if as_json:
        print_json(payload)
        return
    rows = [[f"{Path(r.artifact).name} ({r.format})", *_figures(r)] for r in results]
    r0 = results[0]
    threads_txt = r0.threads if r0.threads is not None else "default"
    s.console.print(make_table(f"{r0.device.name}: latency ms, batch 1, {threads_txt} thread(s), {trials}×{runs} runs",
                               ["artifact", "p50", "p95", "p99", "p95 CI95", "spread", "peak MB"], rows))
    unavailable = sorted({u for r in results for u in r.unavailable})
    if unavailable:
        s.console.print(f"not measured (n/a): {', '.join(unavailable)}")


def _several(artifacts: tuple[str, ...], devices: tuple[str, ...], *, threads: int | None, runs: int, warmup: int,
             trials: int, cooldown_s: float | None, no_memory: bool, output: str | None, load_kwargs: dict,
             as_json: bool) -> None:
    """Several --device options: each artifact on every device in parallel
    (:func:`optim.device_bench.api.bench_devices`), then one row per device and artifact."""
    import json
    from pathlib import Path

    from rich.markup import escape

    from optim.device_bench.api import bench_devices
    from optim.errors import InputError, OptimError, ToolError
    from optim.files import atomic_write_bytes

    s = state()
    per_device: dict[str, dict] = {d: {"status": "ok", "results": [], "errors": []} for d in devices}
    rows = []
    failures: list[tuple[str, str, BaseException]] = []
    for path in artifacts:
        s.info(f"benchmarking {path} on {', '.join(devices)} in parallel ({trials} × ({warmup} warm-up + {runs} runs))")
        outcome = bench_devices(path, devices, threads=threads, runs=runs, warmup=warmup, trials=trials,
                                cooldown_s=cooldown_s, load_kwargs=load_kwargs, measure_memory=not no_memory,
                                log=s.info)
        for d, r in outcome.items():
            if isinstance(r, BaseException):
                code = r.exit_code if isinstance(r, OptimError) else ToolError.exit_code
                per_device[d]["status"] = "failed"
                per_device[d]["errors"].append({"artifact": str(path), "error": type(r).__name__, "exit_code": code,
                                                "message": str(r)})
                failures.append((d, str(path), r))
                rows.append([escape(d), escape(Path(path).name), f"[red]failed (exit {code})[/red]", *["-"] * 6])
                continue
            per_device[d]["results"].append(r.to_dict())
            rows.append([escape(d), escape(f"{Path(r.artifact).name} ({r.format})"), "ok", *_figures(r)])
            for w in r.warnings:
                s.info(f"[yellow]warning ({escape(d)}, {escape(str(path))}): {escape(w)}[/yellow]")
    payload = {"devices": per_device}
    if output:
        atomic_write_bytes(output, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
    if as_json:
        print_json(payload)
    else:
        threads_txt = threads if threads is not None else "default"
        s.console.print(make_table(f"{len(devices)} devices in parallel: latency ms, batch 1, {threads_txt} thread(s), "
                                   f"{trials}×{runs} runs",
                                   ["device", "artifact", "status", "p50", "p95", "p99", "p95 CI95", "spread", "peak MB"],
                                   rows))
        unavailable = sorted({u for e in per_device.values() for r in e["results"] for u in r["unavailable"]})
        if unavailable:
            s.console.print(f"not measured (n/a): {', '.join(unavailable)}")
    if not failures:
        return
    failed = sorted({d for d, _, _ in failures}, key=devices.index)
    detail = "; ".join(f"{d} ({Path(p).name}): {type(e).__name__}: {e}" for d, p, e in failures)
    msg = (f"{len(failed)} of {len(devices)} devices failed ({', '.join(failed)}); the results of the others are "
           f"above. {detail}")
    if any(isinstance(e, InputError) for _, _, e in failures):
        raise InputError(msg)
    raise ToolError(msg)
