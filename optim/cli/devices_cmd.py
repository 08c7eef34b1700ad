"""``optim devices``: connected Android devices, their profiles and the configured on-device
tools; ``optim devices setup``: register the tools' paths."""

from __future__ import annotations

import click

from optim.cli.output import echo, json_option, make_table, print_json, state


def _devices_report() -> dict:
    from optim.device_bench.adb import Adb
    from optim.device_bench.config import config_path, load_config
    from optim.device_bench.errors import AdbNotFoundError, DeviceError, ToolRunError
    from optim.device_bench.profiles import all_profiles, match_profile
    from optim.runtimes.registry import device_tools

    cfg = load_config()
    profiles = all_profiles(cfg)
    tools = {name: ({"path": str(cfg.tools[name].path), "libs": [str(p) for p in cfg.tools[name].libs],
                     "exists": cfg.tools[name].path.is_file()} if name in cfg.tools else None)
             for name in device_tools()}
    report = {"config": str(config_path()), "adb": None, "adb_error": None, "devices": [], "tools": tools,
              "profiles": {k: {"name": p.name, "codenames": list(p.codenames), "soc": p.soc} for k, p in profiles.items()}}
    try:
        adb = Adb()
        report["adb"] = adb.adb
        for d in adb.devices():
            entry = {"serial": d.serial, "state": d.state, "model": d.props.get("model"),
                     "product_device": d.props.get("device"), "profile": None, "abi": None}
            if d.ready:
                try:
                    a = adb.for_device(d.serial)
                    entry["product_device"] = a.getprop("ro.product.device") or entry["product_device"]
                    entry["model"] = a.getprop("ro.product.model") or entry["model"]
                    entry["abi"] = a.getprop("ro.product.cpu.abi") or None
                except (DeviceError, ToolRunError) as e:
                    entry["error"] = str(e)
            p = match_profile(profiles, d.serial, entry["product_device"])
            entry["profile"] = p.key if p else None
            report["devices"].append(entry)
    except AdbNotFoundError as e:
        report["adb_error"] = str(e)
    return report


@click.group("devices", invoke_without_command=True)
@json_option
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """List connected Android devices (adb), the profile each matches, and which on-device
    benchmark tools are set up. Profiles: optim/device_bench/profiles.toml plus
    [profiles.*] in your devices.toml. Exits 3 when adb is missing, hangs
    ($OPTIM_ADB_TIMEOUT_S, default 30 s for the listing) or answers something unreadable;
    2 when devices.toml is invalid."""
    if ctx.invoked_subcommand is not None:
        return
    from optim.errors import EXIT_TOOL_ERROR

    report = _devices_report()
    device_errors = [f"device {d['serial']}: {d['error']}" for d in report["devices"] if d.get("error")]
    if as_json:
        print_json(report)
        if report["adb_error"] or device_errors:
            for e in device_errors:
                echo(f"error: {e}", err=True)
            ctx.exit(EXIT_TOOL_ERROR)
        return
    s = state()
    if report["adb_error"]:
        s.console.print("[yellow]adb not found: connected devices cannot be listed[/yellow]")
    elif not report["devices"]:
        s.console.print("no Android device connected (adb devices lists none)")
    else:
        rows = [[d["serial"], d["state"], d.get("model") or "", d.get("product_device") or "", d.get("abi") or "",
                 d["profile"] or "(none)"] for d in report["devices"]]
        s.console.print(make_table("connected devices", ["serial", "state", "model", "ro.product.device", "abi", "profile"], rows))
    from optim.runtimes.registry import device_tools

    fmt_for_tool = {name: spec.name for name, spec in device_tools().items()}
    trows = [[name, fmt_for_tool.get(name, "?"),
              (t["path"] + ("" if t["exists"] else "  [red](missing)[/red]")) if t else "not set up"]
             for name, t in report["tools"].items()]
    s.console.print(make_table(f"on-device tools ({report['config']})", ["tool", "format", "path"], trows))
    s.console.print("profiles: " + ", ".join(sorted(report["profiles"])))
    if report["adb_error"]:
        echo(f"error: {report['adb_error']}", err=True)
        ctx.exit(EXIT_TOOL_ERROR)
    if device_errors:  # a device whose answers could not be read: listed, but not a clean result
        for e in device_errors:
            echo(f"error: {e}", err=True)
        ctx.exit(EXIT_TOOL_ERROR)


def _tool_options(f):
    """One ``--TOOL-NAME PATH`` option per registered format's on-device tool."""
    from optim.runtimes.registry import device_tools

    for name, spec in reversed(list(device_tools().items())):
        tool = spec.device_tool
        f = click.option(tool.option, name, type=click.Path(dir_okay=False),
                         help=tool.description or f"{name} (arm64-v8a) for {spec.suffix}.")(f)
    return f


@command.command("setup")
@_tool_options
@click.option("--lib", "libs", multiple=True, metavar="[TOOL=]PATH",
              help="Shared library pushed next to a tool (TOOL=PATH, or PATH when one tool is given in the same "
                   "call), e.g. onnxruntime_perf_test=libonnxruntime.so; repeatable.")
@click.option("--ort-lib", "ort_libs", multiple=True, type=click.Path(dir_okay=False),
              help="Same as --lib onnxruntime_perf_test=PATH (kept for existing scripts).")
def setup(libs: tuple[str, ...], ort_libs: tuple[str, ...], **given: str | None) -> None:
    """Register the official on-device benchmark tools (optim ships no Android binaries).
    Each must be an ELF executable; a non-arm64 build is accepted with a warning."""
    from pathlib import Path

    from optim.device_bench.config import ToolConfig, check_android_binary, save_tools
    from optim.errors import InputError
    from optim.runtimes.registry import device_tools

    s = state()
    options = {name: spec.device_tool.option for name, spec in device_tools().items()}
    if not any(given.values()):
        raise InputError(f"give at least one of {', '.join(options.values())}")
    named = [name for name, path in given.items() if path]
    libs_for: dict[str, list[str]] = {}
    for entry in (*libs, *(f"onnxruntime_perf_test={p}" for p in ort_libs)):
        tool, sep, lib_path = entry.partition("=")
        if not sep:
            if len(named) != 1:
                raise InputError(f"--lib {entry}: say which tool loads it (--lib TOOL=PATH) when several are given")
            tool, lib_path = named[0], entry
        if tool not in named:
            raise InputError(f"--lib {entry}: {tool} is not set up in this call; give its {options.get(tool, 'tool option')} too")
        libs_for.setdefault(tool, []).append(lib_path)
    tools = {}
    for name, path in given.items():
        if not path:
            continue
        warning = check_android_binary(path, options[name])
        if warning:
            s.info(f"[yellow]warning: {warning}[/yellow]")
        tool_libs = tuple(Path(p).expanduser().resolve() for p in libs_for.get(name, ()))
        for lib in tool_libs:
            if not lib.is_file():
                raise InputError(f"--lib: {lib} does not exist")
        tools[name] = ToolConfig(name, Path(path).expanduser().resolve(), tool_libs)
    written = save_tools(tools)
    for name, t in tools.items():
        s.console.print(f"{name}: {t.path}" + (f" (+ {len(t.libs)} lib(s))" if t.libs else ""))
    s.console.print(f"saved to {written}")
