"""Parsers for the on-device tools' output: moved to :mod:`optim.runtimes.tool_parsers`, next
to the format specs that name them (issue 12); re-exported here for existing callers."""

from optim.runtimes.device_tool import ToolOutput, ToolRunError
from optim.runtimes.tool_parsers import (BENCHMARK_MODEL_PERCENTILES, MIB_TO_MB, ORT_MEMORY, ORT_PERCENTILES,
                                         parse_benchmark_model, parse_executor_runner, parse_ort_perf_test,
                                         parse_ort_result_file)

__all__ = ["ToolOutput", "ToolRunError", "BENCHMARK_MODEL_PERCENTILES", "MIB_TO_MB", "ORT_MEMORY", "ORT_PERCENTILES",
           "parse_benchmark_model", "parse_executor_runner", "parse_ort_perf_test", "parse_ort_result_file"]
