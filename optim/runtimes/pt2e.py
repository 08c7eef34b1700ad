"""PT2E helpers shared by the formats that quantize through torchao's PT2E flow
(:mod:`~optim.runtimes.tflite_format`, :mod:`~optim.runtimes.executorch_format`)."""

from __future__ import annotations

import numpy as np

PT2E_CALIB_BATCH = 32


def pt2e_prepare_and_calibrate(model, quantizer, input_shape: tuple[int, int, int, int], calib: np.ndarray | None,
                               batch_size: int = PT2E_CALIB_BATCH):
    """``torch.export`` → ``prepare_pt2e(quantizer)`` → calibration forward passes → return
    the observed graph module (call ``convert_pt2e`` on it next).

    The graph is exported with a dynamic batch dimension so that calibration runs in batches
    of ``batch_size`` (PT2E's histogram observers cost per call: 100 single images took
    131 s vs 13 s in batches of 25 for resnet18 at 32×32 on this host); if the model does not
    export with a dynamic batch, it is calibrated one ``input_shape[0]``-sized batch at a time.
    ``calib``: float32 N×C×H×W; None runs one all-zeros batch (enough for dynamic/weight
    observers to see their shapes).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    n0 = input_shape[0]
    sample = (torch.zeros(input_shape),)
    try:
        program = torch.export.export(model, (torch.zeros((max(2, n0), *input_shape[1:])),),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
        step = batch_size
    except Exception:  # data-dependent or batch-specialised model: static batch
        program = torch.export.export(model, sample)
        step = n0
    graph = prepare_pt2e(program.module(), quantizer)
    with torch.no_grad():
        if calib is None:
            graph(*sample)
        else:
            last = len(calib) if step != n0 else len(calib) - n0 + 1
            for i in range(0, max(last, 0), step):
                graph(torch.from_numpy(np.ascontiguousarray(calib[i : i + step])))
    return graph


def keep_float(quantizer, float_layers) -> None:
    """Leave the modules named in ``float_layers`` (qualified ``named_modules()`` names, a
    container covers everything inside it) unquantized: the PT2E per-module config
    ``module_name_config[name] = None``, which the XNNPACK and litert-torch quantizers read as
    "annotate nothing here" and exclude from the global config. (Their ``set_module_name``
    asserts on ``None`` — "not supported yet" — although their annotators handle it, so the
    entry is set directly.) The quantizers match names against each node's
    ``nn_module_stack`` (torchao ``get_module_name_filter``)."""
    for name in float_layers:
        quantizer.module_name_config[name] = None
