"""A test-only third-party export format, registered through the ``optim.formats`` entry-point
group: the model's FP32 (or FP16) weights as a NumPy ``.npz`` (no pickle: ``allow_pickle=False``),
run with torch on the CPU after rebuilding the architecture named by the model card.

It is one module, one entry point (``npz = optim_npz_format:SPEC``); nothing in optim names it.
It also registers a device kind (``optim.devices``: ``loopback = optim_npz_format:LoopbackDevice``)
that times the artifact on the host under another device name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optim.checkpoint import build_architecture
from optim.device_bench.devices import Device
from optim.device_bench.host import bench_host
from optim.errors import InputError
from optim.runtimes.base import Runtime
from optim.runtimes.spec import ExportOutput, FormatSpec

NAME = "npz"
MODEL_FILE = "weights.npz"
SCHEMES = ("fp32", "fp16")


def _tensor_specs(model_path: Path, card) -> tuple[list[dict], list[dict]]:
    shape = list(card.input.shape)
    return ([{"name": card.input.name, "shape": shape, "dtype": "float32", "layout": "NCHW", "quantization": None}],
            [{"name": h.name, "shape": [shape[0], h.num_classes], "dtype": "float32", "head": h.name, "quantization": None}
             for h in card.heads])


def export(model, card, scheme: str, calib, out_dir: Path) -> ExportOutput:
    if scheme not in SCHEMES:
        raise InputError(f"{NAME}: unknown scheme {scheme!r}; supported: {', '.join(SCHEMES)}")
    dtype = np.float16 if scheme == "fp16" else np.float32
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    arrays = {k: (a.astype(dtype) if a.dtype.kind == "f" else a) for k, a in arrays.items()}
    out_dir = Path(out_dir)
    with open(out_dir / MODEL_FILE, "wb") as f:
        np.savez(f, **arrays)
    inputs, outputs = _tensor_specs(out_dir / MODEL_FILE, card)
    return ExportOutput(files=[MODEL_FILE], inputs=inputs, outputs=outputs,
                        recipe={"exporter": "numpy.savez(state_dict)", "weights": np.dtype(dtype).name})


class NpzRuntime(Runtime):
    format = NAME

    def __init__(self, artifact, threads: int | None = None):
        import torch

        super().__init__(artifact.card, threads)
        card = artifact.card
        with np.load(artifact.require_file(MODEL_FILE), allow_pickle=False) as z:
            state = {k: torch.from_numpy(z[k].astype(np.float32) if z[k].dtype.kind == "f" else z[k]) for k in z.files}
        self.model = build_architecture(card.architecture, card.architecture_kwargs, source=str(artifact.dir))
        self.model.load_state_dict(state, strict=True)
        self.model.eval()

    def _predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(batch)))
        return {self.card.heads[0].name: out.float().numpy()}


SPEC = FormatSpec(
    name=NAME, suffix=".npz", model_file=MODEL_FILE, schemes=SCHEMES, libraries=("numpy", "torch"),
    export=export, open_runtime=NpzRuntime, tensor_specs=_tensor_specs, runtime_modules=("torch", "torchvision"),
    default=False, description="test-only: NumPy .npz weights run with torch on the CPU",
)


class LoopbackDevice(Device):
    """Times on the host, reported under the device name ``loopback``."""

    kind = "loopback"

    @classmethod
    def claims(cls, name: str) -> bool:
        return name == cls.kind

    def bench(self, artifact, *, threads=None, runs=100, warmup=10, trials=3, cooldown_s=None, drift_pct=15.0,
              load_kwargs=None, measure_memory=True, log=None):
        import dataclasses

        r = bench_host(artifact, threads=threads, runs=runs, warmup=warmup, trials=trials, drift_pct=drift_pct,
                       load_kwargs=load_kwargs, measure_memory=False)
        return dataclasses.replace(r, device=dataclasses.replace(r.device, name="loopback", kind="loopback"))
