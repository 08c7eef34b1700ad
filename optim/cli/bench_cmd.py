"""``optim bench ARTIFACT... --device host|PROFILE|SERIAL``: p50/p95/p99 latency and peak memory."""

from __future__ import annotations

import click

from optim.cli.checkpoint_options import checkpoint_options
from optim.cli.output import json_option, make_table, print_json, state


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--device", default="host", show_default=True,
              help="'host', a device profile (e.g. pixel6a; see `optim devices`) or an adb serial.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: runtime default on host; the fastest cores on Android).")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed iterations per trial.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed iterations before each trial.")
@click.option("--trials", type=click.IntRange(min=1), default=3, show_default=True, help="Independent trials (their p95 spread is reported).")
@click.option("--cooldown", "cooldown_s", type=click.FloatRange(min=0), help="Seconds between trials (default: 0 on host, the profile's value on Android).")
@click.option("--no-memory", is_flag=True, help="Host: skip the peak-memory measurement (a fresh child process per artifact).")
@click.option("--output", "output", type=click.Path(dir_okay=False), help="Also write the JSON result(s) to this file.")
@checkpoint_options
@json_option
def command(artifacts: tuple[str, ...], device: str, threads: int | None, runs: int, warmup: int, trials: int,
            cooldown_s: float | None, no_memory: bool, output: str | None, load_kwargs: dict, as_json: bool) -> None:
    """Measure single-image (batch 1) latency of each ARTIFACT (checkpoint, artifact directory or
    .onnx/.tflite/.pte file) and print p50/p95/p99 in ms, the p95 spread between trials and peak
    memory (MB = 10^6 bytes).

    On Android the official tools (benchmark_model, executor_runner, onnxruntime_perf_test)
    run over adb, pinned to the fastest cores; statistics a tool does not report are shown as
    n/a and listed as unavailable, never estimated.
    """
    import json
    from pathlib import Path

    from optim.device_bench.api import bench
    from optim.files import atomic_write_bytes

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
    rows = []
    for r in results:
        ci = f"{r.p95_ci_ms[0]:.3f}–{r.p95_ci_ms[1]:.3f}" if r.p95_ci_ms else "n/a"
        rows.append([f"{Path(r.artifact).name} ({r.format})", _ms(r.latency.p50), _ms(r.latency.p95),
                     _ms(r.latency.p99), ci, "n/a" if r.trial_spread_pct is None else f"{r.trial_spread_pct:.1f}%",
                     "n/a" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.1f}"])
    r0 = results[0]
    threads_txt = r0.threads if r0.threads is not None else "default"
    s.console.print(make_table(f"{r0.device.name}: latency ms, batch 1, {threads_txt} thread(s), {trials}×{runs} runs",
                               ["artifact", "p50", "p95", "p99", "p95 CI95", "spread", "peak MB"], rows))
    unavailable = sorted({u for r in results for u in r.unavailable})
    if unavailable:
        s.console.print(f"not measured (n/a): {', '.join(unavailable)}")
