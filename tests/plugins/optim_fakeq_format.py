"""TEST DOUBLE of a quantizing export format (registered through the ``optim.formats`` entry
point group in tests only): weights stored in a NumPy ``.npz``; scheme ``int8`` stores every
weight tensor of a conv / linear layer as INT8 with ONE per-tensor symmetric scale
(max|w| / 127, real rounding), except the layers named in ``float_layers`` (mixed precision,
kept float32). Run with torch after de-quantizing. It is fast (no graph export), so the tune
tests can run many candidates in seconds; per-tensor scales make a layer with one outlier
weight collapse under INT8, which is what the sensitivity tests plant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optim.checkpoint import build_architecture
from optim.errors import InputError
from optim.runtimes.base import Runtime
from optim.runtimes.spec import ExportOutput, FormatSpec

NAME = "fakeq"
MODEL_FILE = "model.fqz"
SCHEMES = ("fp32", "fp16", "int8")
QUANT_SUFFIX = "::int8"
SCALE_SUFFIX = "::scale"


def _tensor_specs(model_path: Path, card) -> tuple[list[dict], list[dict]]:
    shape = list(card.input.shape)
    return ([{"name": card.input.name, "shape": shape, "dtype": "float32", "layout": "NCHW", "quantization": None}],
            [{"name": h.name, "shape": [shape[0], h.num_classes], "dtype": "float32", "head": h.name, "quantization": None}
             for h in card.heads])


def _weighted_layers(model) -> list[str]:
    import torch.nn as nn

    return [n for n, m in model.named_modules() if n and isinstance(m, (nn.Conv2d, nn.Linear))]


def export(model, card, scheme: str, calib, out_dir: Path, *, float_layers=()) -> ExportOutput:
    if scheme not in SCHEMES:
        raise InputError(f"{NAME}: unknown scheme {scheme!r}; supported: {', '.join(SCHEMES)}")
    if scheme == "int8" and (calib is None or len(calib) == 0):
        raise InputError(f"{NAME} int8: needs calibration images")
    keep = set(float_layers)
    unknown = keep - set(_weighted_layers(model))
    if unknown:
        raise InputError(f"{NAME}: float_layers {sorted(unknown)} are not conv/linear layers")
    quantized = {f"{n}.weight" for n in _weighted_layers(model) if n not in keep} if scheme == "int8" else set()
    arrays: dict[str, np.ndarray] = {}
    for k, v in model.state_dict().items():
        a = v.detach().cpu().numpy()
        if k in quantized:
            scale = float(np.abs(a).max()) / 127 or 1.0
            arrays[k + QUANT_SUFFIX] = np.clip(np.round(a / scale), -127, 127).astype(np.int8)
            arrays[k + SCALE_SUFFIX] = np.array(scale, dtype=np.float32)
        elif a.dtype.kind == "f":
            arrays[k] = a.astype(np.float16 if scheme == "fp16" else np.float32)
        else:
            arrays[k] = a
    with open(Path(out_dir) / MODEL_FILE, "wb") as f:
        np.savez(f, **arrays)
    inputs, outputs = _tensor_specs(Path(out_dir) / MODEL_FILE, card)
    return ExportOutput(files=[MODEL_FILE], inputs=inputs, outputs=outputs,
                        recipe={"exporter": "test double: per-tensor int8 weights in npz", "float_layers": sorted(keep)})


class FakeqRuntime(Runtime):
    format = NAME

    def __init__(self, artifact, threads: int | None = None):
        import torch

        super().__init__(artifact.card, threads)
        state = {}
        with np.load(artifact.require_file(MODEL_FILE), allow_pickle=False) as z:
            for k in z.files:
                if k.endswith(SCALE_SUFFIX):
                    continue
                if k.endswith(QUANT_SUFFIX):
                    base = k[: -len(QUANT_SUFFIX)]
                    state[base] = torch.from_numpy(z[k].astype(np.float32) * z[base + SCALE_SUFFIX])
                else:
                    a = z[k]
                    state[k] = torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f" else a)
        self.model = build_architecture(artifact.card.architecture, artifact.card.architecture_kwargs, source=str(artifact.dir))
        self.model.load_state_dict(state, strict=True)
        self.model.eval()

    def _predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(batch)))
        return {self.card.heads[0].name: out.float().numpy()}


SPEC = FormatSpec(
    name=NAME, suffix=".fqz", model_file=MODEL_FILE, schemes=SCHEMES, libraries=("numpy", "torch"),
    export=export, open_runtime=FakeqRuntime, tensor_specs=_tensor_specs, runtime_modules=("torch", "torchvision"),
    default=False, description="TEST DOUBLE: per-tensor int8 weights in npz, run with torch",
)
