"""Fuzz table, logs area: the run's log file is where library output goes, so its location is
attacker-reachable input (a checked-out repository can plant ./optim-logs). Every case runs
through the real CLI (see tests/fuzz_harness.py for what each one asserts)."""

from __future__ import annotations

import os
import time

import pytest

from fuzz_harness import Case, Workspace, make_workspace, run_case


def planted_dir_link(ws: Workspace) -> list:
    (ws.work / "optim-logs").symlink_to(ws.outside)
    return ["inspect", ws.world.ckpt]


def planted_dangling_link(ws: Workspace) -> list:
    (ws.work / "optim-logs").symlink_to(ws.outside / "made-by-optim")
    return ["inspect", ws.world.ckpt]


def logs_is_a_file(ws: Workspace) -> list:
    (ws.work / "optim-logs").write_text("not a directory\n")
    return ["inspect", ws.world.ckpt]


def planted_log_names(ws: Workspace) -> list:
    """Links under the predictable next log names (command, time, pid) aimed at the payload:
    never followed, the log goes to a fresh name, the command succeeds."""
    d = ws.work / "optim-logs"
    d.mkdir()
    now = time.time()
    for dt in range(0, 4):
        stem = f"optim-inspect-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now + dt))}-{os.getpid()}"
        for suffix in ("", "-1", "-2"):
            (d / f"{stem}{suffix}.log").symlink_to(ws.payload)
    return ["inspect", ws.world.ckpt]


def env_dir_is_a_file(ws: Workspace) -> list:
    (ws.work / "logfile").write_text("x\n")
    return ["inspect", ws.world.ckpt]


def env_dir_under_a_file(ws: Workspace) -> list:
    (ws.work / "logfile").write_text("x\n")
    return ["verify", ws.world.artifact, "--golden", ws.world.golden, "--policy", ws.world.policy]


CASES = [
    Case("log-dir-symlink-to-outside", "logs", planted_dir_link, 2, "optim-logs is a symbolic link"),
    Case("log-dir-dangling-symlink", "logs", planted_dangling_link, 2, "optim-logs is a symbolic link"),
    Case("log-dir-is-a-file", "logs", logs_is_a_file, 2, "optim-logs is not a directory"),
    Case("log-names-planted-links", "logs", planted_log_names, 0, "11.18 M"),
    Case("log-env-dir-is-a-file", "logs", env_dir_is_a_file, 2, "logfile is not a directory",
         env={"OPTIM_LOG_DIR": "{work}/logfile"}),
    Case("log-env-dir-under-a-file", "logs", env_dir_under_a_file, 2, "OPTIM_LOG_DIR",
         env={"OPTIM_LOG_DIR": "{work}/logfile/sub"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_logs(case, fuzz_world, tmp_path, monkeypatch):
    run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)
