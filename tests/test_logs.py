"""optim.logs.capture_library_output: library output (fd 1/2 writes from C, Python prints,
logging, warnings, child processes) goes to the log file; optim's own output to the original
stdout/stderr. The fd-level cases run in a child process so that the test's own descriptors
are never redirected."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from optim.errors import InputError
from optim.logs import DEFAULT_LOG_DIR, LOG_DIR_ENV, capture_library_output

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import ctypes, logging, os, subprocess, sys, warnings, json
    from optim.logs import capture_library_output
    verbose = sys.argv[1] == "verbose"
    fail = sys.argv[2] == "fail"
    print("BEFORE-stdout", flush=True)
    cap = None
    try:
        with capture_library_output("quantize", verbose=verbose) as cap:
            os.write(1, b"NOISE-fd1 (a C++ library writing to fd 1)\\n")
            os.write(2, b"NOISE-fd2 (a C++ library writing to fd 2)\\n")
            libc = ctypes.CDLL(None)
            libc.printf(b"NOISE-cstdio buffered printf\\n")  # stays in libc's buffer unless flushed
            print("NOISE-print Relu partition has more than one output node")
            print("NOISE-print-stderr", file=sys.stderr)
            logging.getLogger("somelib").warning("NOISE-logging absl-like warning")
            warnings.warn("NOISE-warning deprecated thing", FutureWarning)
            subprocess.run(["sh", "-c", "echo NOISE-child-out; echo NOISE-child-err >&2"], check=True)
            cap.out.write("OPTIM-OUT table\\n")
            cap.err.write("OPTIM-ERR progress\\n")
            if fail:
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    print("AFTER-stdout", flush=True)
    os.write(2, b"AFTER-fd2\\n")
    sys.stdout.write(json.dumps({"log": str(cap.log_path) if cap.log_path else None, "kept": cap.kept, "mode": cap.mode}) + "\\n")
""")

NOISE = ("NOISE-fd1", "NOISE-fd2", "NOISE-cstdio", "NOISE-print Relu", "NOISE-print-stderr", "NOISE-logging",
         "NOISE-warning", "NOISE-child-out", "NOISE-child-err")


def _child(tmp_path, *args, env=None):
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc, info


@pytest.mark.parametrize("fail", ["ok", "fail"])
def test_fd_level_capture_in_a_real_process(tmp_path, fail):
    proc, info = _child(tmp_path, "quiet", fail)
    assert info["mode"] == "fd" and info["kept"]
    # optim's own output on the real streams, in order, and nothing else
    assert proc.stdout.splitlines()[:-1] == ["BEFORE-stdout", "OPTIM-OUT table", "AFTER-stdout"]
    assert proc.stderr.splitlines() == ["OPTIM-ERR progress", "AFTER-fd2"]
    log = Path(tmp_path, info["log"]) if not os.path.isabs(info["log"]) else Path(info["log"])
    assert log.parent == tmp_path / DEFAULT_LOG_DIR and log.name.startswith("optim-quantize-") and log.suffix == ".log"
    text = log.read_text()
    for n in NOISE:
        assert n in text, f"{n} missing from the log:\n{text}"
    assert "OPTIM-" not in text and "AFTER" not in text and "BEFORE" not in text


def test_verbose_shows_library_output_on_stderr_and_keeps_stdout_clean(tmp_path):
    proc, info = _child(tmp_path, "verbose", "ok")
    assert info["mode"] == "verbose" and info["log"] is None
    assert proc.stdout.splitlines()[:-1] == ["BEFORE-stdout", "OPTIM-OUT table", "AFTER-stdout"]
    for n in NOISE:
        assert n in proc.stderr
    assert not (tmp_path / DEFAULT_LOG_DIR).exists()


def test_log_dir_from_env(tmp_path):
    logs = tmp_path / "ci" / "logs"
    proc, info = _child(tmp_path, "quiet", "ok", env={LOG_DIR_ENV: str(logs)})
    assert Path(info["log"]).parent == logs and "NOISE-fd1" in Path(info["log"]).read_text()
    assert not (tmp_path / DEFAULT_LOG_DIR).exists()


def test_python_level_capture_under_in_memory_streams(tmp_path, monkeypatch):
    """What click's CliRunner does: sys.stdout/sys.stderr are in-memory, fds are not theirs."""
    monkeypatch.chdir(tmp_path)
    fake_out, fake_err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake_out)
    monkeypatch.setattr(sys, "stderr", fake_err)
    with capture_library_output("eval") as cap:
        assert cap.mode == "python" and cap.out is fake_out and cap.err is fake_err
        print("NOISE-print")
        print("NOISE-print-stderr", file=sys.stderr)
        logging.getLogger("somelib").warning("NOISE-logging")
        cap.out.write("OPTIM-OUT\n")
    assert sys.stdout is fake_out and sys.stderr is fake_err
    assert fake_out.getvalue() == "OPTIM-OUT\n" and fake_err.getvalue() == ""
    text = cap.log_path.read_text()
    assert all(n in text for n in ("NOISE-print", "NOISE-print-stderr", "NOISE-logging")) and cap.kept


def test_empty_log_and_the_directory_it_created_are_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with capture_library_output("inspect") as cap:
        assert cap.log_path.exists()
    assert not cap.kept and not cap.log_path.exists() and not (tmp_path / DEFAULT_LOG_DIR).exists()
    (tmp_path / DEFAULT_LOG_DIR).mkdir()
    (tmp_path / DEFAULT_LOG_DIR / "older.log").write_text("x")
    with capture_library_output("inspect"):
        pass
    assert sorted(p.name for p in (tmp_path / DEFAULT_LOG_DIR).iterdir()) == ["older.log"]  # not ours: kept


def test_streams_are_restored_after_an_exception(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    handlers = list(logging.getLogger().handlers)
    with pytest.raises(KeyboardInterrupt):
        with capture_library_output("verify") as cap:
            print("NOISE before the interrupt")
            raise KeyboardInterrupt
    assert sys.stdout is out and logging.getLogger().handlers == handlers
    assert cap.kept and "NOISE before the interrupt" in cap.log_path.read_text()


def test_a_planted_symlink_as_log_dir_is_refused(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / DEFAULT_LOG_DIR).symlink_to(outside)
    monkeypatch.chdir(work)
    with pytest.raises(InputError, match=f"{DEFAULT_LOG_DIR} is a symbolic link.*{LOG_DIR_ENV}"):
        with capture_library_output("publish"):
            pass
    assert list(outside.iterdir()) == []


def test_a_file_as_log_dir_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notadir").write_text("x")
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "notadir"))
    with pytest.raises(InputError, match="notadir"):
        with capture_library_output("verify"):
            pass


def test_never_follows_or_overwrites_a_planted_log_name(tmp_path, monkeypatch):
    """Log names are predictable (command, time, pid): a link planted under the next names is
    neither followed nor replaced; the log goes to a fresh name."""
    import time

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    target = tmp_path / "victim.txt"
    logs = tmp_path / DEFAULT_LOG_DIR
    logs.mkdir()
    now = time.time()
    planted = []
    for dt in range(0, 3):
        stem = f"optim-verify-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now + dt))}-{os.getpid()}"
        for suffix in ("", "-1"):
            p = logs / f"{stem}{suffix}.log"
            p.symlink_to(target)
            planted.append(p)
    with capture_library_output("verify") as cap:
        print("NOISE")
    assert not target.exists()
    assert cap.log_path not in planted and "NOISE" in cap.log_path.read_text()
    assert all(p.is_symlink() for p in planted)
