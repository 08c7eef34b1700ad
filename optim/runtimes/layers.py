"""Layer names for mixed precision: which modules of a model can be quantized, and checking the
``float_layers`` a caller asks to keep in float.

Layer names are qualified torch module names, as ``model.named_modules()`` yields them
(``"features.16.0"``, ``"classifier.3"``, ``"layer1.0.conv1"``). A name may also be a container
(``"features.16"``): every quantizable layer inside it stays float. Each format maps the names
to its own graph (PT2E ``nn_module_stack`` for XNNPACK / litert-torch, the ONNX exporter's
``pkg.torch.onnx.name_scopes`` node metadata for NNCF's ignored scope).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from optim.errors import InputError

#: module types quantized by every built-in INT8 scheme (weights + input activations)
QUANTIZABLE_TYPES = ("Conv1d", "Conv2d", "Conv3d", "Linear")


def _is_quantizable(module) -> bool:
    import torch

    return isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear))


def _trace(model, input_shape: Sequence[int]):
    """One forward pass on zeros of ``input_shape`` with hooks: ``(leaf call order, {module
    name: its output}, {module name: its first input tensor})`` (the tensors are kept, so that
    identity comparisons are sound)."""
    import torch

    order: list[str] = []
    out_ids: dict[str, object] = {}
    in_ids: dict[str, object] = {}
    hooks = []

    def hook(name):
        def fn(module, args, output):
            if name not in out_ids:
                order.append(name)
                out_ids[name] = output
                if args and isinstance(args[0], torch.Tensor):
                    in_ids[name] = args[0]
        return fn

    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(tuple(input_shape)))
    finally:
        for h in hooks:
            h.remove()
    return order, out_ids, in_ids


def quantizable_layers(model, input_shape: Sequence[int] | None = None) -> list[str]:
    """Qualified names of the model's Conv1d/2d/3d and Linear modules — the layers INT8 PTQ
    quantizes — in graph (call) order when ``input_shape`` (N×C×H×W) is given (one forward
    pass on zeros with hooks; modules never called are dropped), else in
    ``named_modules()`` (definition) order. The candidates of per-layer sensitivity analysis
    and of ``float_layers``."""
    names = [n for n, m in model.named_modules() if n and _is_quantizable(m)]
    if input_shape is None:
        return names
    order, _, _ = _trace(model, input_shape)
    wanted = set(names)
    return [n for n in order if n in wanted]


def check_float_layers(model, float_layers: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validate ``float_layers`` (a sequence, or one comma-separated string) against the model's
    modules; returns them stripped and de-duplicated, in the given order.

    Any module may be named: besides Conv/Linear, quantizers also place activation
    quantizers at pooling layers (NNCF quantizes a ReduceMean's input) and other ops.

    Raises :class:`InputError` for a name that is not a module of the model, listing close
    matches (or some quantizable layers when nothing is close).
    """
    if float_layers is None:
        return ()
    items = [s.strip() for s in float_layers.split(",")] if isinstance(float_layers, str) else [str(s).strip() for s in float_layers]
    items = list(dict.fromkeys(s for s in items if s))
    modules = dict(model.named_modules())
    quantizable = [n for n, m in modules.items() if n and _is_quantizable(m)]
    for name in items:
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.6)
            hint = (f"close matches: {', '.join(close)}" if close
                    else f"quantizable layers include: {', '.join(quantizable[:8])}{' …' if len(quantizable) > 8 else ''}")
            raise InputError(f"float layer {name!r} is not a module of the model; {hint} "
                             "(names as in model.named_modules(); `optim inspect` lists them)")
    return tuple(items)


def expand_float_layers(model, float_layers: Sequence[str], input_shape: Sequence[int]) -> dict[str, tuple[str, ...]]:
    """``{float layer: (itself, each BatchNorm fed directly by one of its convolutions)}``,
    found with one forward pass on zeros of ``input_shape`` (N×C×H×W). Exporters fold
    BatchNorm into the convolution before it and the folded node carries the BatchNorm's name
    (the ONNX exporter's ``FuseBatchNormIntoConv``), so a graph lookup by name needs both."""
    import torch

    if not float_layers:
        return {}
    _, outputs, inputs = _trace(model, input_shape)
    modules = dict(model.named_modules())
    convs = [n for n, m in modules.items() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))]
    bns = [n for n, m in modules.items() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d))
           and n in inputs]
    out: dict[str, tuple[str, ...]] = {}
    for f in float_layers:
        mine = [c for c in convs if (c == f or c.startswith(f + ".")) and c in outputs]
        out[f] = (f, *(b for b in bns if any(outputs[c] is inputs[b] for c in mine) and not (b == f or b.startswith(f + "."))))
    return out
