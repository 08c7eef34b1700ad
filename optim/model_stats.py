"""Size and compute figures of a torch model: parameters, FP32 bytes, MACs."""

from __future__ import annotations

from dataclasses import dataclass

from optim.files import size_mb


@dataclass(frozen=True)
class ModelStats:
    """Figures for one model at one input shape.

    Attributes:
        parameters: number of parameters (elements).
        fp32_bytes: bytes of all floating-point parameters and buffers stored as FP32.
        macs: multiply-accumulates for one forward at ``input_shape`` (None if not countable).
        input_shape: N×C×H×W used for ``macs``.
    """

    parameters: int
    fp32_bytes: int
    macs: int | None
    input_shape: tuple[int, int, int, int]

    @property
    def fp32_mb(self) -> float:
        """FP32 size in MB (10^6 bytes)."""
        return size_mb(self.fp32_bytes)


def model_stats(model, input_shape: tuple[int, int, int, int]) -> ModelStats:
    """Count parameters, FP32 bytes and MACs (MACs via Torch-Pruning's op counter).

    For TorchScript or exported graphs whose ops cannot be hooked, ``macs`` is None.
    """
    import torch
    import torch_pruning as tp

    sd = model.state_dict()
    params = sum(p.numel() for p in model.parameters()) if list(model.parameters()) else sum(
        t.numel() for t in sd.values() if t.is_floating_point()
    )
    fp32_bytes = sum(t.numel() * 4 for t in sd.values() if t.is_floating_point())
    try:
        macs, _ = tp.utils.count_ops_and_params(model, torch.zeros(input_shape))
        macs = int(macs) or None
    except Exception:
        macs = None
    return ModelStats(parameters=int(params), fp32_bytes=int(fp32_bytes), macs=macs, input_shape=tuple(input_shape))
