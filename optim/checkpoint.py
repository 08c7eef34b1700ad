"""Loading the checkpoints users actually have, safely.

Accepted (see :func:`load_checkpoint`):

* a ``torch.export`` ExportedProgram (``.pt2``);
* a TorchScript archive (``torch.jit.save``);
* a ``state_dict`` — raw, or nested under ``state_dict`` / ``model`` / ``model_state_dict`` /
  ``net``, with or without DataParallel's ``module.`` prefix — plus an architecture
  reference (``torchvision:resnet18(num_classes=250)`` or ``package.module:factory(...)``);
* a pruned checkpoint (``state_dict`` + ``channel_spec``, written by ``optim prune``; see
  :mod:`optim.optimize.channel_spec`), read with ``weights_only=True`` like a state_dict;
* a whole pickled ``nn.Module`` only with ``trust_pickle=True``.

Everything else is read with ``torch.load(weights_only=True)``, which never runs code from
the file. A checkpoint that needs full unpickling is refused (:class:`UnsafeCheckpointError`).
"""

from __future__ import annotations

import ast
import importlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optim.errors import InputError, UnsafeCheckpointError
from optim.files import sha256_file
from optim.model_card import Head, InputSpec, ModelCard, card_path_for

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass
class LoadedModel:
    """What :func:`load_checkpoint` returns.

    Attributes:
        model: the ``torch.nn.Module`` in eval mode (FP32, CPU).
        card: the model card (from the card file, or inferred — see ``card_inferred``).
        path: the checkpoint file.
        sha256: hex sha256 of the checkpoint file's bytes (provenance).
        source_format: ``exported_program`` | ``torchscript`` | ``state_dict`` | ``pruned_state_dict`` | ``pickled_module``.
        card_path: the card file read, or None when the card was inferred.
    """

    model: Any
    card: ModelCard
    path: Path
    sha256: str
    source_format: str
    card_path: Path | None

    @property
    def card_inferred(self) -> bool:
        return self.card_path is None


# ---- architecture references --------------------------------------------------------------
def parse_arch_ref(ref: str) -> tuple[str, str, dict[str, Any]]:
    """``"torchvision:resnet18(num_classes=250)"`` → ``("torchvision", "resnet18", {"num_classes": 250})``.

    Keyword values must be Python literals. Raises :class:`InputError` on a malformed reference.
    """
    ref = ref.strip()
    kwargs: dict[str, Any] = {}
    if "(" in ref:
        if not ref.endswith(")"):
            raise InputError(f"architecture {ref!r}: expected 'module:factory(key=value, ...)'")
        ref, _, arglist = ref[:-1].partition("(")
        try:
            call = ast.parse(f"f({arglist})", mode="eval").body
            if not isinstance(call, ast.Call) or call.args:
                raise ValueError("only keyword arguments are allowed")
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError) as e:
            raise InputError(f"architecture arguments {arglist!r}: {e}; use key=literal pairs, e.g. num_classes=250") from None
    module, sep, factory = ref.partition(":")
    if not sep or not module or not factory:
        raise InputError(f"architecture {ref!r}: expected 'torchvision:NAME' or 'package.module:factory'")
    return module, factory, kwargs


def build_architecture(ref: str, extra_kwargs: dict[str, Any] | None = None):
    """Instantiate an architecture reference with random weights (never downloads any).

    Raises :class:`InputError` if the module or factory does not exist.
    """
    module_name, factory, kwargs = parse_arch_ref(ref)
    kwargs = {**kwargs, **(extra_kwargs or {})}
    if module_name == "torchvision":
        import torchvision

        available = torchvision.models.list_models()
        if factory not in available:
            raise InputError(f"unknown torchvision architecture {factory!r}; known: {', '.join(sorted(available)[:12])}, ...")
        kwargs.setdefault("weights", None)
        return torchvision.models.get_model(factory, **kwargs)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError(f"architecture module {module_name!r} cannot be imported ({e}); is it on PYTHONPATH?") from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise InputError(f"architecture {ref!r}: {module_name} has no callable {factory!r}")
    try:
        return fn(**kwargs)
    except TypeError as e:
        raise InputError(f"architecture {ref!r} rejected its arguments {kwargs}: {e}") from None


# ---- state dicts --------------------------------------------------------------------------
def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(obj: Any) -> dict[str, Any] | None:
    """Find the state_dict inside a loaded object (raw or nested), stripping ``module.``."""
    sd = None
    if _is_tensor_dict(obj):
        sd = obj
    elif isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if _is_tensor_dict(obj.get(key)):
                sd = obj[key]
                break
    if sd is None:
        return None
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def load_state_dict_strict(model, state_dict: dict[str, Any], source: str) -> None:
    """Load ``state_dict`` into ``model``, or raise :class:`InputError` listing the missing
    keys, unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" … (+{len(items) - 8})" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {show(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {show(shapes)}")
        raise InputError(
            f"state_dict in {source} does not fit the architecture: " + "; ".join(parts)
            + ". Check the architecture name and its arguments (e.g. num_classes)."
        )
    model.load_state_dict(state_dict, strict=True)


# ---- file formats -------------------------------------------------------------------------
def _zip_names(path: Path) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" not in msg:
            raise InputError(f"{path} is not a PyTorch checkpoint or is corrupt ({msg.splitlines()[0]})") from None
        if not trust_pickle:
            raise UnsafeCheckpointError(
                f"{path} needs full unpickling, which can run arbitrary code from the file "
                "(it holds Python objects, not only tensors). Nothing from it was executed. "
                "If you trust where it came from, pass --trust-pickle (trust_pickle=True); "
                "better, re-save it as a state_dict, TorchScript or torch.export .pt2."
            ) from None
    except Exception as e:  # zip/stream/pickle-framing errors all mean the bytes are bad
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path} is truncated or corrupt and cannot be read ({first}); re-export or re-download it") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a trusted pickle may fail for any reason its classes choose
        raise InputError(f"{path}: trusted unpickling failed ({type(e).__name__}: {e})") from None


def _load_model_object(path: Path, arch: str | None, trust_pickle: bool) -> tuple[Any, str]:
    import torch

    names = _zip_names(path)
    if names is not None and any(n.endswith("/archive_format") for n in names):  # torch.export .pt2
        try:
            ep = torch.export.load(path)
        except Exception as e:
            raise InputError(f"{path} looks like a torch.export archive but cannot be loaded ({type(e).__name__}: {e})") from None
        return ep.module(), "exported_program"
    if names is not None and any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        try:
            return torch.jit.load(str(path), map_location="cpu"), "torchscript"
        except Exception as e:
            raise InputError(f"{path} looks like TorchScript but cannot be loaded ({type(e).__name__}: {e})") from None
    obj = _torch_load(path, trust_pickle)
    if isinstance(obj, torch.nn.Module):
        return obj, "pickled_module"
    sd = extract_state_dict(obj)
    if sd is None:
        kind = type(obj).__name__
        keys = f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else ""
        raise InputError(
            f"{path} is not a checkpoint optim can use: it holds a {kind}{keys}, not a state_dict, "
            f"module, TorchScript or ExportedProgram (state_dicts may be nested under {list(STATE_DICT_KEYS)})"
        )
    pruned = isinstance(obj, dict) and bool(obj.get("optim_pruned"))  # see optim.optimize.channel_spec
    if pruned and not arch and isinstance(obj.get("architecture"), str):
        arch = obj["architecture"]
    if not arch:
        raise InputError(
            f"{path} holds a state_dict, which needs an architecture: pass --arch "
            "'torchvision:resnet18(num_classes=10)' or set `architecture` in the model card"
        )
    model = build_architecture(arch)
    if pruned:
        from optim.optimize.channel_spec import apply_channel_spec

        apply_channel_spec(model, obj.get("channel_spec", {}), sd, str(path))
    load_state_dict_strict(model, sd, str(path))
    return model, "pruned_state_dict" if pruned else "state_dict"


def set_eval_mode(model) -> Any:
    """Put ``model`` in eval mode, including torch.export graph modules (which refuse ``.eval()``)."""
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):
        # torch.export modules refuse .eval(); switch their dropout/batch-norm the supported way.
        from torchao.quantization.pt2e import move_exported_model_to_eval

        move_exported_model_to_eval(model)
    return model


def infer_card(model, input_shape: tuple[int, int, int, int] = (1, 3, 224, 224), architecture: str | None = None) -> ModelCard:
    """A default card when none is given: one multiclass head named ``logits`` (or one per
    output) with labels ``"0"…"K-1"``, ImageNet preprocessing, the given input shape."""
    import torch

    with torch.inference_mode():
        out = model(torch.zeros(input_shape))
    if isinstance(out, dict):
        items = list(out.items())
    elif isinstance(out, (tuple, list)):
        items = [(f"head{i}", o) for i, o in enumerate(out)]
    else:
        items = [("logits", out)]
    heads = [Head(name=n, kind="multiclass", labels=tuple(str(i) for i in range(o.shape[-1]))) for n, o in items]
    return ModelCard(name="model", architecture=architecture, input=InputSpec(shape=input_shape), heads=tuple(heads))


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    card: ModelCard | str | Path | None = None,
    trust_pickle: bool = False,
    input_shape: tuple[int, int, int, int] | None = None,
) -> LoadedModel:
    """Load a checkpoint and its model card; return the eval-mode model (CPU, FP32).

    Args:
        path: checkpoint file (``.pt2``, TorchScript, state_dict or — trusted — pickled module).
        arch: architecture reference for state_dicts; overrides the card's ``architecture``.
        card: a :class:`ModelCard` or a card file; default ``<path>.optim.toml`` if it exists,
            else a card is inferred from one forward pass (see :func:`infer_card`).
        trust_pickle: allow full unpickling (can run code from the file). Off by default.
        input_shape: N×C×H×W used only when the card is inferred (default 1×3×224×224).

    Raises:
        InputError: missing, truncated, corrupt or non-checkpoint file; unknown architecture;
            state_dict that does not fit; invalid card.
        UnsafeCheckpointError: the file needs full unpickling and ``trust_pickle`` is False.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise InputError(f"checkpoint {path} is not a file")
    card_path: Path | None = None
    if isinstance(card, (str, Path)):
        card_path = Path(card)
        card = ModelCard.load(card_path)
    elif card is None and card_path_for(path).is_file():
        card_path = card_path_for(path)
        card = ModelCard.load(card_path)
    arch = arch or (card.architecture if card is not None else None)
    if card is not None and arch and card.architecture_kwargs:
        module, factory, kw = parse_arch_ref(arch)
        merged = {**card.architecture_kwargs, **kw}
        arch = f"{module}:{factory}(" + ", ".join(f"{k}={v!r}" for k, v in merged.items()) + ")"
    model, source_format = _load_model_object(path, arch, trust_pickle)
    model = set_eval_mode(model)
    if card is None:
        card = infer_card(model, input_shape or (1, 3, 224, 224), architecture=arch)
    return LoadedModel(model=model, card=card, path=path, sha256=sha256_file(path), source_format=source_format, card_path=card_path)
