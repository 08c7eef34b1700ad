"""Device profiles: known phones (``profiles.toml`` shipped with optim) plus the user's own
(``[profiles.*]`` in devices.toml, which may add or override), and matching a connected
device to a profile by serial or ``ro.product.device``."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from optim.errors import InputError, describe_validation_error


class Cluster(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cores: int = Field(ge=1)
    core: str
    max_ghz: float | None = None


class DeviceProfile(BaseModel):
    """A phone model. ``clusters``: published core layout (spec sheet), not a pinning source."""

    model_config = ConfigDict(extra="forbid")
    key: str
    name: str
    codenames: tuple[str, ...] = ()
    serials: tuple[str, ...] = ()
    soc: str | None = None
    abi: str = "arm64-v8a"
    ram_gb: float | None = None
    clusters: tuple[Cluster, ...] = ()
    cooldown_s: float = 30.0
    notes: str | None = None

    @property
    def fastest_cluster_cores(self) -> int | None:
        """Core count of the cluster with the highest published clock (None if unknown)."""
        known = [c for c in self.clusters if c.max_ghz is not None]
        return max(known, key=lambda c: c.max_ghz).cores if known else None

    def matches(self, serial: str | None, product_device: str | None) -> bool:
        return (serial is not None and serial in self.serials) or (product_device is not None and product_device in self.codenames)


def _parse(key: str, entry: dict[str, Any], source: str) -> DeviceProfile:
    try:
        return DeviceProfile(key=key, **entry)
    except ValidationError as e:
        raise InputError(f"{source}: profile [{key}] is invalid ({describe_validation_error(e)})") from None


def builtin_profiles() -> dict[str, DeviceProfile]:
    text = resources.files("optim.device_bench").joinpath("profiles.toml").read_text()
    return {k: _parse(k, v, "optim/device_bench/profiles.toml") for k, v in tomllib.loads(text).items()}


def all_profiles(config=None) -> dict[str, DeviceProfile]:
    """Built-in profiles updated with the user's ``[profiles.*]`` (user entries win)."""
    from optim.device_bench.config import load_config

    config = config or load_config()
    profiles = builtin_profiles()
    for key, entry in config.profiles.items():
        base = profiles[key].model_dump(exclude={"key"}) if key in profiles else {}
        base.update(entry)
        profiles[key] = _parse(key, base, str(config.source))
    return profiles


def match_profile(profiles: dict[str, DeviceProfile], serial: str | None, product_device: str | None) -> DeviceProfile | None:
    """The profile matching a device by serial (first) or ``ro.product.device``; None if none."""
    for p in profiles.values():
        if serial is not None and serial in p.serials:
            return p
    for p in profiles.values():
        if product_device is not None and product_device in p.codenames:
            return p
    return None
