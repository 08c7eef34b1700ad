"""Latency benchmarks on the host and on Android phones over adb."""
