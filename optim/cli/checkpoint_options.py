"""Options shared by every command that loads a checkpoint (they fill or override the card)."""

from __future__ import annotations

import functools

import click


def parse_input_shape(value: str | None) -> tuple[int, int, int, int] | None:
    """``"1x3x224x224"`` → (1, 3, 224, 224); raises click.BadParameter otherwise."""
    if value is None:
        return None
    try:
        dims = tuple(int(d) for d in value.lower().replace("×", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4:
        raise click.BadParameter(f"{value!r}: expected N×C×H×W such as 1x3x224x224", param_hint="--input-shape")
    return dims  # type: ignore[return-value]


def checkpoint_options(fn):
    """Adds --arch, --allow-module, --card, --trust-pickle, --input-shape and passes them as
    ``load_kwargs`` (see :func:`optim.load_checkpoint`)."""

    @click.option("--arch", help="Architecture for a state_dict, e.g. 'torchvision:resnet18(num_classes=250)' or 'pkg.module:factory' (with --allow-module pkg.module).")
    @click.option("--allow-module", "allow_modules", multiple=True, metavar="MODULE",
                  help="Let an architecture reference import MODULE (and its submodules), e.g. mypkg.models; repeatable. "
                       "torchvision:/timm: need none; the standard library, torch, numpy and the like are never allowed.")
    @click.option("--card", type=click.Path(dir_okay=False), help="Model card TOML (default: <ckpt>.optim.toml).")
    @click.option("--trust-pickle", is_flag=True,
                  help="Allow formats that can run code from the file: pickled modules, TorchScript, .pt2 archives with "
                       "pickled members. Only for checkpoints you trust; prefer a state_dict or a clean .pt2.")
    @click.option("--input-shape", help="N×C×H×W when no card is given, e.g. 1x3x224x224.")
    @functools.wraps(fn)
    def wrapper(*args, arch, allow_modules, card, trust_pickle, input_shape, **kwargs):
        load_kwargs = {"arch": arch, "card": card, "trust_pickle": trust_pickle, "input_shape": parse_input_shape(input_shape),
                       "allow_modules": tuple(allow_modules)}
        return fn(*args, load_kwargs=load_kwargs, **kwargs)

    return wrapper
