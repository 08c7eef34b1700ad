"""Output that reads in a CI log: commands run through the CLI with output captured (not a
terminal) print every table column and every status cell in full, however narrow $COLUMNS is;
library output goes to the run's log, never into the console or the --json document."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from optim.cli.main import cli

ELLIPSIS = "…"


def run(args, monkeypatch, cwd: Path):
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("COLUMNS", "40")  # a narrow CI runner: must not matter outside a terminal
    monkeypatch.setenv("OPTIM_CACHE_DIR", str(cwd / ".cache"))
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def table_rows(text: str) -> list[list[str]]:
    """Cells of every rich table line (box-drawing separators split the cells; SIMPLE_HEAD
    tables separate cells by runs of 2+ spaces)."""
    rows = []
    for line in text.splitlines():
        if re.fullmatch(r"[\s━─┏┓┗┛┡┩┃│┠┨╇╈┳┻┼┬┴└┘┌┐├┤╭╮╰╯]*", line):
            continue
        cells = [c.strip() for c in re.split(r"[┃│]", line)] if re.search(r"[┃│]", line) else re.split(r"\s{2,}", line.strip())
        rows.append([c for c in cells if c])
    return rows


def no_cut_cells(text: str) -> bool:
    """No table line holds rich's truncation ellipsis (the text around tables may use "…" on purpose)."""
    return not any(ELLIPSIS in line for line in text.splitlines() if re.search(r"[┃│]", line) or "  " in line.strip())


def assert_header(text: str, headers: list[str]) -> list[str]:
    """The line holding the first header holds them all, each unbroken, in order; returns its cells."""
    for row in table_rows(text):
        if headers[0] in row and all(h in row for h in headers):
            assert [c for c in row if c in headers] == headers, row
            return row
    raise AssertionError(f"no header line with all of {headers} in:\n{text}")


def test_verify_tables_read_in_full_outside_a_terminal(fuzz_world, tmp_path, monkeypatch):
    r = run(["verify", fuzz_world.artifact, "--golden", fuzz_world.golden, "--policy", fuzz_world.policy,
             "--reference", fuzz_world.ckpt, "--out", tmp_path / "v", "--runs", "5", "--warmup", "1", "--trials", "1"],
            monkeypatch, tmp_path)
    assert r.exit_code == 0, r.output
    assert no_cut_cells(r.stdout), r.stdout
    header = assert_header(r.stdout, ["check", "measured", "budget", "margin", "95 % CI", "unit", "status"])
    report = json.loads((tmp_path / "v" / "verify.json").read_text())
    checks = [c for a in report["artifacts"] for c in a["checks"]]
    assert checks
    rows = {row[0]: row for row in table_rows(r.stdout) if row and row[0] in {c["id"] for c in checks}}
    for c in checks:
        assert c["id"] in rows, f"check {c['id']} has no row:\n{r.stdout}"
        assert rows[c["id"]][-1] == {"pass": "pass", "fail": "FAIL"}.get(c["status"], c["status"].upper() if c["status"] == "error" else c["status"])
        assert rows[c["id"]][-1] == "pass"  # the world's artifact passes every check
    assert len(header) == 7


def test_verify_failing_status_reads_FAIL(fuzz_world, tmp_path, monkeypatch):
    policy = tmp_path / "tight.toml"
    policy.write_text(fuzz_world.policy.read_text().replace("size_mb = 100", "size_mb = 0.001"))
    r = run(["verify", fuzz_world.artifact, "--golden", fuzz_world.golden, "--policy", policy,
             "--reference", fuzz_world.ckpt, "--out", tmp_path / "v", "--runs", "3", "--warmup", "1", "--trials", "1"],
            monkeypatch, tmp_path)
    assert r.exit_code == 1, r.output
    assert no_cut_cells(r.stdout), r.stdout
    statuses = {row[0]: row[-1] for row in table_rows(r.stdout) if len(row) >= 3}
    size_rows = [k for k in statuses if k.startswith("size")]
    assert size_rows and all(statuses[k] == "FAIL" for k in size_rows), r.stdout
    assert "pass" in statuses.values()


def test_quantize_eval_bench_and_golden_tables_read_in_full(fuzz_world, tmp_path, monkeypatch):
    q = run(["quantize", fuzz_world.ckpt, "--format", "onnx", "--scheme", "fp32", "--out", tmp_path / "a"], monkeypatch, tmp_path)
    assert q.exit_code == 0, q.output
    row = assert_header(q.stdout, ["format", "scheme", "size MB", "top-1 agreement vs FP32", "max-abs error", "export s", "status"])
    assert len(row) == 7
    assert any(r[:2] == ["onnx", "fp32"] and r[-1] == "ok" for r in table_rows(q.stdout)), q.stdout
    assert str(tmp_path / "a") in q.stdout  # the title is not cut either

    e = run(["eval", fuzz_world.artifact, "--golden", fuzz_world.golden, "--reference", fuzz_world.ckpt], monkeypatch, tmp_path)
    assert e.exit_code == 0, e.output
    assert_header(e.stdout, ["class", "tail", "support", "precision", "recall", "F1", "Δ top-1 pp [95 % CI]"])

    g = run(["golden", "inspect", fuzz_world.golden], monkeypatch, tmp_path)
    assert g.exit_code == 0, g.output

    b = run(["bench", fuzz_world.artifact, "--runs", "3", "--warmup", "1", "--trials", "1", "--no-memory"], monkeypatch, tmp_path)
    assert b.exit_code == 0, b.output
    for out in (q.stdout, e.stdout, g.stdout, b.stdout):
        assert no_cut_cells(out), out
        assert max(len(line) for line in out.splitlines()) > 40  # not squeezed into $COLUMNS


# ---- library output goes to the run's log -----------------------------------------------------
def _noisy_model_stats(real):
    def stats(*a, **k):
        print("Relu partition has more than one output node")
        logging.getLogger("absl").warning("NOISE absl: CUDA_HOME is not set")
        warnings.warn("NOISE FutureWarning from a library", FutureWarning)
        return real(*a, **k)
    return stats


@pytest.fixture
def noisy_inspect(monkeypatch):
    import optim.model_stats as ms

    monkeypatch.setattr(ms, "model_stats", _noisy_model_stats(ms.model_stats))


def test_library_output_goes_to_the_log_and_json_stays_clean(noisy_inspect, resnet18_ckpt, tmp_path, monkeypatch):
    r = run(["inspect", resnet18_ckpt, "--json"], monkeypatch, tmp_path)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["parameters"] == 11_181_642  # the whole stdout is the JSON document
    assert "Relu partition" not in r.output and "NOISE" not in r.output
    logs = list((tmp_path / "optim-logs").glob("optim-inspect-*.log"))
    assert len(logs) == 1 and f"library output: {Path('optim-logs') / logs[0].name}" in r.stderr
    text = logs[0].read_text()
    assert "Relu partition has more than one output node" in text and "CUDA_HOME" in text and "FutureWarning" in text


def test_table_output_without_noise(noisy_inspect, resnet18_ckpt, tmp_path, monkeypatch):
    r = run(["-q", "inspect", resnet18_ckpt], monkeypatch, tmp_path)
    assert r.exit_code == 0 and "11.18 M" in r.stdout
    assert "Relu" not in r.output and "NOISE" not in r.output and "library output" not in r.output  # -q: no status line


def test_verbose_shows_library_output_on_stderr_only(noisy_inspect, resnet18_ckpt, tmp_path, monkeypatch):
    r = run(["-v", "inspect", resnet18_ckpt, "--json"], monkeypatch, tmp_path)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["parameters"] == 11_181_642
    assert "Relu partition has more than one output node" in r.stderr
    assert not (tmp_path / "optim-logs").exists()


def test_error_message_names_the_log(resnet18_ckpt, tmp_path, monkeypatch):
    import optim.model_stats as ms
    from optim.errors import ToolError

    def broken(*a, **k):
        print("NOISE from the exporter before it broke")
        raise ToolError("exporter crashed")

    monkeypatch.setattr(ms, "model_stats", broken)
    r = run(["inspect", resnet18_ckpt], monkeypatch, tmp_path)
    assert r.exit_code == 3 and "error: exporter crashed" in r.stderr
    log = next((tmp_path / "optim-logs").glob("optim-inspect-*.log"))
    assert f"library output of this run: {Path('optim-logs') / log.name}" in r.stderr
    assert "NOISE from the exporter" in log.read_text() and "NOISE" not in r.output


def test_quiet_commands_leave_no_log(resnet18_ckpt, tmp_path, monkeypatch):
    r = run(["inspect", resnet18_ckpt], monkeypatch, tmp_path)
    assert r.exit_code == 0 and not (tmp_path / "optim-logs").exists()
    assert "library output" not in r.output
    assert run(["inspect", "--help"], monkeypatch, tmp_path).stdout.startswith("Usage")  # help is not captured


@pytest.mark.slow
def test_real_quantize_prints_no_library_noise(resnet18_ckpt, tmp_path):
    """A real `optim quantize` in a subprocess (fds 1/2 are real): TFLite INT8 through
    litert-torch prints "Relu partition has more than one output node" ×8 (Python print), a
    root-logger warning and TFLite's C++ "INFO: Created TensorFlow Lite XNNPACK delegate";
    all of it must be in the log and none on the console. (Before the capture it all reached
    stderr.)"""
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", "from optim.cli.main import main; main()", "quantize", str(resnet18_ckpt),
                           "--format", "tflite", "--scheme", "int8", "--calib", str(calib), "--out", str(tmp_path / "art")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    console = proc.stdout + proc.stderr
    for noise in ("Relu partition", "XNNPACK delegate", "WARNING:root", "_pytree"):
        assert noise not in console, console
    assert proc.stderr.splitlines()[0].startswith("tflite-int8: ok")
    assert_header(proc.stdout, ["format", "scheme", "size MB", "top-1 agreement vs FP32", "max-abs error", "export s", "status"])
    assert no_cut_cells(proc.stdout), proc.stdout
    logs = list((tmp_path / "optim-logs").glob("optim-quantize-*.log"))
    assert len(logs) == 1 and f"library output: optim-logs/{logs[0].name}" in proc.stderr
    text = logs[0].read_text()
    assert text.count("Relu partition has more than one output node") == 8
    assert "Created TensorFlow Lite XNNPACK delegate" in text  # C++ writing to fd 2
