"""External tools never outlive their timeout: run_tool kills the whole process group, and a
hung adb (the TEST DOUBLE in tests/doubles/adb_test_double.py, fault "hang") leaves no child."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from optim.cli.main import cli
from optim.device_bench.process import ToolTimeoutError, run_tool
from optim.errors import ToolError
from test_bench_android import AdbDouble


def gone(pid: int) -> bool:
    """No such process, or a zombie waiting to be reaped (it runs no code any more)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" in status.read_text()
    except FileNotFoundError:
        return True


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def test_timeout_kills_the_grandchild_too(tmp_path):
    pidfile = tmp_path / "pid"
    # the child forks a grandchild that ignores SIGTERM and sleeps, then sleeps itself
    script = ("import os, signal, subprocess, sys, time\n"
              "g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
              f"open({str(pidfile)!r}, 'w').write(str(g.pid))\n"
              "time.sleep(600)\n")
    t0 = time.monotonic()
    with pytest.raises(ToolTimeoutError, match=r"`hung tool` did not finish within 1 s") as e:
        run_tool([sys.executable, "-c", script], timeout_s=1, what="hung tool", grace_s=0.5)
    assert isinstance(e.value, ToolError) and e.value.exit_code == 3
    assert time.monotonic() - t0 < 10
    pid = int(pidfile.read_text())
    assert wait_gone(pid), f"grandchild {pid} survived the timeout"


def test_normal_run_returns_output_and_exit_status(tmp_path):
    proc = run_tool([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(4)"],
                    timeout_s=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, "out\n", "err\n")
    with pytest.raises(ToolError, match="could not be started"):
        run_tool([str(tmp_path / "no-such-tool")], timeout_s=5)


def test_hung_adb_is_a_tool_error_and_leaves_no_child(tmp_path, monkeypatch):
    adb = AdbDouble(tmp_path, monkeypatch)
    adb.fault("hang")
    monkeypatch.setenv("OPTIM_ADB_TIMEOUT_S", "1")
    res = CliRunner().invoke(cli, ["devices"])
    assert res.exit_code == 3, res.output
    assert "adb devices -l" in res.stderr and "did not finish within 1 s" in res.stderr
    pid = int((adb.state / "grandchild.pid").read_text())
    assert wait_gone(pid), f"the hung adb's child {pid} is still running"


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_bad_adb_timeout_variable_is_an_input_error(tmp_path, monkeypatch, value):
    AdbDouble(tmp_path, monkeypatch)
    monkeypatch.setenv("OPTIM_ADB_TIMEOUT_S", value)
    res = CliRunner().invoke(cli, ["devices"])
    assert res.exit_code == 2 and "OPTIM_ADB_TIMEOUT_S" in res.stderr, res.output
    assert os.environ["OPTIM_ADB_TIMEOUT_S"] == value
