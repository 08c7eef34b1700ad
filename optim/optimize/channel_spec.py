"""Moved to :mod:`optim.channel_spec` (core: the checkpoint loader needs it, and core never
imports ``optimize``; issue 12). Re-exported here for existing callers."""

from optim.channel_spec import FORMAT_KEY, FORMAT_VERSION, apply_channel_spec, channel_spec

__all__ = ["FORMAT_KEY", "FORMAT_VERSION", "apply_channel_spec", "channel_spec"]
