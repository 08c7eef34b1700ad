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
    """Adds --arch, --card, --trust-pickle, --input-shape and passes them as ``load_kwargs``."""

    @click.option("--arch", help="Architecture for a state_dict, e.g. 'torchvision:resnet18(num_classes=250)' or 'pkg.module:factory'.")
    @click.option("--card", type=click.Path(dir_okay=False), help="Model card TOML (default: <ckpt>.optim.toml).")
    @click.option("--trust-pickle", is_flag=True, help="Allow loading a whole pickled nn.Module. This can run code from the file: only for checkpoints you trust.")
    @click.option("--input-shape", help="N×C×H×W when no card is given, e.g. 1x3x224x224.")
    @functools.wraps(fn)
    def wrapper(*args, arch, card, trust_pickle, input_shape, **kwargs):
        load_kwargs = {"arch": arch, "card": card, "trust_pickle": trust_pickle, "input_shape": parse_input_shape(input_shape)}
        return fn(*args, load_kwargs=load_kwargs, **kwargs)

    return wrapper
