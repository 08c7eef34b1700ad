"""Latency benchmarks on the host and on Android phones over adb.

* :mod:`~optim.device_bench.stats` — pure statistics (percentiles, bootstrap CI, trial spread);
* :mod:`~optim.device_bench.host` — host runtimes timed in-process;
* :mod:`~optim.device_bench.android` — adb + the official on-device tools, with
  :mod:`~optim.device_bench.parsers` for their outputs and :mod:`~optim.device_bench.profiles`
  for known phones;
* :func:`optim.bench` (:mod:`~optim.device_bench.api`) — the entry point.
"""
