"""The one interface every host runtime implements.

A runtime takes a float32 N×C×H×W batch (preprocessed per the model card) and returns
``{head name: float32 N×K logits}``, dequantized where the artifact is quantized. Runtimes
whose artifact has a fixed batch dimension (``max_batch``) are fed in chunks by
:meth:`Runtime.predict`, so callers may pass any N ≥ 1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from optim.model_card import ModelCard
from optim.preprocessing import check_input_shape


class Runtime(ABC):
    """A loaded model ready to predict on the host.

    Attributes:
        format: registry name of the format (``"torch"`` for the eager reference).
        card: the model card (input spec, preprocessing, heads).
        max_batch: largest N one call of :meth:`_predict_batch` accepts (None = any).
        threads: CPU threads the runtime was configured with (None = library default).
    """

    format: ClassVar[str] = ""
    max_batch: int | None = None

    def __init__(self, card: ModelCard, threads: int | None = None):
        self.card = card
        self.threads = threads

    @abstractmethod
    def _predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch of at most ``max_batch`` images; return float32 logits per head."""

    def predict(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Predict on a float32 N×C×H×W batch → ``{head: float32 N×K}``.

        Raises :class:`optim.errors.InputError` if the batch shape/dtype does not match the
        model card's input spec.
        """
        check_input_shape(batch, self.card.input.shape[1:])
        step = self.max_batch or len(batch)
        parts = [self._predict_batch(batch[i : i + step]) for i in range(0, len(batch), step)]
        return {h.name: np.concatenate([p[h.name] for p in parts]).astype(np.float32, copy=False) for h in self.card.heads}

    def close(self) -> None:  # pragma: no cover - most runtimes hold nothing to release
        """Release native resources, if any."""


class TorchRuntime(Runtime):
    """Torch eager execution of an ``nn.Module``: the FP32 reference every artifact is compared with."""

    format = "torch"

    def __init__(self, model, card: ModelCard, threads: int | None = None, max_batch: int | None = None):
        super().__init__(card, threads)
        from optim.checkpoint import set_eval_mode

        self.model = set_eval_mode(model)
        self.max_batch = max_batch

    def _predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from optim.heads import outputs_by_head

        prev = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                out = self.model(torch.from_numpy(np.ascontiguousarray(batch)))
        finally:
            torch.set_num_threads(prev)
        return {k: v.detach().float().numpy() for k, v in outputs_by_head(out, self.card).items()}
