"""Channel specs: how a structurally pruned model is saved without pickling code.

A pruned model no longer matches its architecture factory (``torchvision:resnet18`` builds
64-channel convolutions; the pruned one has 45). optim saves it as a *pruned checkpoint*, a
plain dict that ``torch.load(weights_only=True)`` reads without running any code::

    {"optim_pruned": 1,
     "architecture": "torchvision:resnet18(num_classes=10)",   # informational
     "state_dict": {name: tensor, ...},                        # the pruned weights
     "channel_spec": {module name: {"in_channels": 45, "out_channels": 90, "groups": 1}, ...},
     "lineage": {"kind": "pruned", "parent": {"path": ..., "sha256": ...},     # required: see
                 "reference": {"path": ..., "sha256": ...},                   # optim.checkpoint.Lineage
                 "fine_tuned": False, "epochs": 0}}

``channel_spec`` lists, for every module whose shape-defining attributes differ from the
factory's, the new integer values (whitelisted per module type, see ``SPEC_ATTRS``). Loading =
build the factory model (random weights), :func:`apply_channel_spec` (set the attributes and
resize the module's parameters and buffers to the shapes stored in the state_dict), then a
strict ``load_state_dict``. :func:`optim.load_checkpoint` does this when it sees the
``optim_pruned`` key, and refuses a pruned checkpoint whose ``lineage`` is missing or
malformed (the gate needs it to find the FP32 reference).

Chosen over a ``torch.export`` ``.pt2`` because the reloaded model stays an ordinary
``nn.Module`` that can be fine-tuned, pruned again, quantized with PT2E and exported to every
format, and over Torch-Pruning's own ``tp.state_dict`` because that pickles each module's
whole ``__dict__`` (hooks and arbitrary objects), which ``weights_only=True`` refuses.
"""

from __future__ import annotations

from typing import Any

from optim.errors import InputError

FORMAT_KEY = "optim_pruned"
FORMAT_VERSION = 1

# module type name → shape-defining integer attributes that pruning may change
SPEC_ATTRS: dict[str, tuple[str, ...]] = {
    "Conv1d": ("in_channels", "out_channels", "groups"),
    "Conv2d": ("in_channels", "out_channels", "groups"),
    "Conv3d": ("in_channels", "out_channels", "groups"),
    "ConvTranspose2d": ("in_channels", "out_channels", "groups"),
    "Linear": ("in_features", "out_features"),
    "BatchNorm1d": ("num_features",),
    "BatchNorm2d": ("num_features",),
    "BatchNorm3d": ("num_features",),
    "GroupNorm": ("num_groups", "num_channels"),
    "PReLU": ("num_parameters",),
}


def channel_spec(model) -> dict[str, dict[str, int]]:
    """The shape-defining attributes of every supported module of ``model``.

    Returns ``{module name: {attribute: int}}`` (all modules of the types in ``SPEC_ATTRS``).
    """
    spec: dict[str, dict[str, int]] = {}
    for name, module in model.named_modules():
        attrs = SPEC_ATTRS.get(type(module).__name__)
        if attrs:
            spec[name] = {a: int(getattr(module, a)) for a in attrs}
    return spec


def spec_diff(pruned_spec: dict[str, dict[str, int]], base_spec: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Entries of ``pruned_spec`` that differ from ``base_spec`` (what a pruned checkpoint stores)."""
    return {n: v for n, v in pruned_spec.items() if base_spec.get(n) != v}


def apply_channel_spec(model, spec: dict[str, Any], state_dict: dict[str, Any], source: str) -> None:
    """Reshape ``model``'s modules in place to the pruned widths in ``spec``.

    For each module named in ``spec``: set the whitelisted integer attributes, then resize its
    own parameters and buffers to the shapes of the matching ``state_dict`` entries (values
    are filled by the caller's ``load_state_dict``).

    Raises:
        InputError: a module name the architecture does not have, an attribute that is not
            whitelisted for that module type, or a non-integer value (names ``source``).
    """
    import torch

    modules = dict(model.named_modules())
    if not isinstance(spec, dict):
        raise InputError(f"{source}: channel_spec must be a mapping of module name → attributes, got {type(spec).__name__}")
    for name, attrs in spec.items():
        module = modules.get(name)
        if module is None:
            raise InputError(f"{source}: channel_spec names module {name!r}, which the architecture does not have; wrong --arch?")
        allowed = SPEC_ATTRS.get(type(module).__name__, ())
        if not isinstance(attrs, dict):
            raise InputError(f"{source}: channel_spec[{name!r}] must be a mapping, got {type(attrs).__name__}")
        for attr, value in attrs.items():
            if attr not in allowed:
                raise InputError(f"{source}: channel_spec[{name!r}] sets {attr!r}, not a shape attribute of {type(module).__name__} ({list(allowed)})")
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"{source}: channel_spec[{name!r}][{attr!r}] must be a positive int, got {value!r}")
            setattr(module, attr, value)
        prefix = f"{name}." if name else ""
        for pname, param in list(module.named_parameters(recurse=False)):
            saved = state_dict.get(prefix + pname)
            if saved is not None and tuple(saved.shape) != tuple(param.shape):
                setattr(module, pname, torch.nn.Parameter(torch.empty(saved.shape, dtype=param.dtype), requires_grad=param.requires_grad))
        for bname, buf in list(module.named_buffers(recurse=False)):
            saved = state_dict.get(prefix + bname)
            if buf is not None and saved is not None and tuple(saved.shape) != tuple(buf.shape):
                module.register_buffer(bname, torch.empty(saved.shape, dtype=buf.dtype))
