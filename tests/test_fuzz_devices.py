"""Fuzz table, area "devices": adb, phones, on-device tools, the device config and the
card-shape guard of `optim quantize`, each through the real CLI (tests/fuzz_harness.py).

No phone is attached: cases put the TEST DOUBLE of adb (tests/doubles/adb_test_double.py)
behind $OPTIM_ADB / PATH and pick its fault with $ADB_DOUBLE_FAULT. Every case asserts the exit
class (2 input, 3 tool/device), that the message names adb, the device or the file, and the
harness's promises (no traceback, nothing outside the workdir, registry unchanged).
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from fuzz_harness import Case, make_workspace, run_case

DOUBLE = Path(__file__).parent / "doubles" / "adb_test_double.py"
SERIAL = "28011JEGR09914"


def _braces(text: str) -> str:
    """Case.env values go through str.format: escape literal braces."""
    return text.replace("{", "{{").replace("}", "}}")


def phone_env(fault: str = "", devices: list[dict] | None = None, **extra: str) -> dict[str, str]:
    env = {"OPTIM_ADB": "{work}/bin/adb", "ADB_DOUBLE_DIR": "{work}/adb-state", "ADB_DOUBLE_FAULT": fault,
           "OPTIM_CONFIG_DIR": "{work}/config", "OPTIM_ADB_RETRY_DELAY_S": "0", "OPTIM_ADB_TIMEOUT_S": "20",
           "ADB_DOUBLE_DEVICES": _braces(json.dumps(devices)) if devices else ""}
    env.update(extra)
    return env


def fake_arm64_elf(path: Path) -> Path:
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5] = 2, 1
    header[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    path.write_bytes(bytes(header) + path.name.encode())
    return path


def setup_phone(ws, config: str | None = None) -> Path:
    """adb wrapper → the test double, a registered benchmark_model, a small .tflite to bench."""
    (ws.work / "bin").mkdir(exist_ok=True)
    wrapper = ws.work / "bin" / "adb"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{DOUBLE}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    (ws.work / "config").mkdir(exist_ok=True)
    tool = fake_arm64_elf(ws.work / "benchmark_model")
    (ws.work / "config" / "devices.toml").write_text(
        config if config is not None else f'[tools.benchmark_model]\npath = "{tool}"\n')
    model = ws.work / "model.tflite"
    model.write_bytes(b"TFL3" + bytes(range(256)))
    return model


def bench(ws, *extra: str, device: str = "pixel6a", config: str | None = None) -> list[str]:
    model = setup_phone(ws, config)
    return ["bench", str(model), "--device", device, "--runs", "5", "--warmup", "1", "--trials", "1",
            "--cooldown", "0", *extra]


def devices(ws, config: str | None = None) -> list[str]:
    setup_phone(ws, config)
    return ["devices"]


TWO_PIXELS = [{"serial": "PIXEL-A", "state": "device", "device": "bluejay", "model": "Pixel 6a", "abi": "arm64-v8a"},
              {"serial": "PIXEL-B", "state": "device", "device": "bluejay", "model": "Pixel 6a", "abi": "arm64-v8a"}]
NO_ADB = {"OPTIM_ADB": "", "PATH": "{work}/empty-bin", "OPTIM_CONFIG_DIR": "{work}/config"}


def no_adb(ws, args):
    (ws.work / "empty-bin").mkdir()
    return args


# ------------------------------------------------------------------ quantize: card shape guard
def mlp_checkpoint(ws) -> list[str]:
    """A TorchScript model whose Linear only takes 3×28×28 inputs, with a card saying 3×32×32."""
    import torch

    from conftest import small_card
    from optim.model_card import card_path_for

    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.flat = torch.nn.Flatten()
            self.fc = torch.nn.Linear(3 * 28 * 28, 10)

        def forward(self, x):
            return self.fc(self.flat(x))

    path = ws.work / "mlp.pt"
    torch.jit.script(Mlp().eval()).save(str(path))
    small_card(hw=32).save(card_path_for(path))
    # TorchScript needs --trust-pickle since issue 11; this test wrote the file itself
    return ["quantize", str(path), "--trust-pickle", "--format", "onnx", "--scheme", "fp32", "--out", str(ws.work / "out")]


def static_pt2_checkpoint(ws) -> list[str]:
    """A torch.export program traced at 1×3×16×16 (static shapes), card saying 1×3×32×32."""
    import torch

    from conftest import small_card
    from optim.model_card import card_path_for

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 10)).eval()
    path = ws.work / "static.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 16, 16),)), str(path))
    small_card(hw=32).save(card_path_for(path))
    return ["quantize", str(path), "--format", "onnx", "--scheme", "fp32", "--out", str(ws.work / "out")]


CASES = [
    # adb itself
    Case("devices-adb-missing", "devices", lambda ws: no_adb(ws, ["devices"]), 3, "adb is not on PATH", NO_ADB),
    Case("bench-adb-missing", "devices", lambda ws: no_adb(ws, bench(ws)), 3, "adb is not on PATH", NO_ADB),
    Case("devices-adb-prints-garbage-line", "devices", devices, 3, "'@@@ @@@'", phone_env("garbage")),
    Case("bench-adb-prints-no-header", "devices", bench, 3, "no 'List of devices attached' header", phone_env("noise")),
    Case("devices-adb-hangs", "devices", devices, 3, "`adb devices -l` did not finish within 1 s",
         phone_env("hang", OPTIM_ADB_TIMEOUT_S="1")),
    Case("bench-adb-hangs", "devices", bench, 3, "did not finish within 1 s", phone_env("hang", OPTIM_ADB_TIMEOUT_S="1")),
    Case("bench-adb-timeout-not-a-number", "devices", bench, 2, "OPTIM_ADB_TIMEOUT_S", phone_env(OPTIM_ADB_TIMEOUT_S="soon")),
    # the phone
    Case("bench-no-device", "devices", bench, 3, "no Android device connected", phone_env("no-devices")),
    Case("bench-device-unauthorized", "devices", bench, 3, f"device {SERIAL} is unauthorized", phone_env("unauthorized")),
    Case("bench-device-offline", "devices", bench, 3, f"device {SERIAL} is offline", phone_env("offline")),
    Case("bench-two-devices-none-chosen", "devices", bench, 2, "several connected devices match profile pixel6a",
         phone_env(devices=TWO_PIXELS)),
    Case("bench-device-vanishes-mid-run", "devices", bench, 3, f"device {SERIAL} disappeared", phone_env("disappear")),
    Case("bench-cpufreq-not-numeric", "devices", bench, 3, "cpuinfo_max_freq:fast", phone_env("bad-cpufreq")),
    Case("devices-getprop-garbled", "devices", devices, 3, "getprop ro.product.device", phone_env("bad-getprop")),
    # the on-device tool
    Case("bench-tool-prints-garbage", "devices", bench, 3, "benchmark_model printed no statistics line",
         phone_env("tool-garbage")),
    Case("bench-tool-exits-non-zero", "devices", bench, 3, "benchmark_model crashed (SIGSEGV)", phone_env("tool-crash")),
    # names and the device config
    Case("bench-unknown-device-name", "devices", lambda ws: bench(ws, device="galaxy-s99"), 2,
         "'galaxy-s99' is neither a device profile", phone_env()),
    Case("bench-device-name-not-a-serial", "devices", lambda ws: bench(ws, device="../../etc/passwd"), 2,
         "'../../etc/passwd' is neither a device profile", phone_env()),
    Case("devices-config-top-level-typo", "devices",
         lambda ws: devices(ws, '[tool.benchmark_model]\npath = "/x"\n'), 2, "unknown key(s) 'tool'", phone_env()),
    Case("bench-config-tool-key-typo", "devices",
         lambda ws: bench(ws, config='[tools.benchmark_model]\npath = "/x"\nlib = ["/y"]\n'), 2,
         "[tools.benchmark_model] has unknown key(s) 'lib'", phone_env()),
    Case("devices-config-unknown-tool", "devices",
         lambda ws: devices(ws, '[tools.benchmark_modle]\npath = "/x"\n'), 2, "[tools.benchmark_modle] is not a known tool",
         phone_env()),
    Case("devices-config-profile-typo", "devices",
         lambda ws: devices(ws, '[profiles.lab]\nname = "Lab"\ncodename = ["lab"]\n'), 2, "codename: unknown key (typo?)",
         phone_env()),
    Case("devices-config-not-toml", "devices", lambda ws: devices(ws, "[tools\npath = \n"), 2, "devices.toml", phone_env()),
    # quantize: the card's input shape is an input problem, not a tool error
    Case("quantize-card-shape-vs-fixed-linear", "devices", mlp_checkpoint, 2, "input shape 1×3×32×32"),  # refused at load (optim.checkpoint.check_card_fits)
    Case("quantize-card-shape-vs-static-export", "devices", static_pt2_checkpoint, 2, "fix `input.shape` in the card"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_devices(case, fuzz_world, tmp_path, monkeypatch):
    out = run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)
    if case.id.startswith(("bench-", "devices-")) and case.exit_code == 3:
        assert "adb" in out or "benchmark_model" in out or "device" in out
