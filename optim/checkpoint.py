"""Loading the checkpoints users actually have, safely.

Accepted (see :func:`load_checkpoint`):

* a ``torch.export`` ExportedProgram (``.pt2``);
* a TorchScript archive (``torch.jit.save``);
* a ``state_dict`` — raw, or nested under ``state_dict`` / ``model`` / ``model_state_dict`` /
  ``net``, with or without DataParallel's ``module.`` prefix — plus an architecture
  reference (``torchvision:resnet18(num_classes=250)`` or ``package.module:factory(...)``);
* a pruned checkpoint (``state_dict`` + ``channel_spec``, written by ``optim prune``; see
  :mod:`optim.optimize.channel_spec`), read with ``weights_only=True`` like a state_dict;
* a whole pickled ``nn.Module`` or a TorchScript archive only with ``trust_pickle=True``.

What is checked before anything is loaded (threat model: the file and its card may be forged):

* zip-based files (``torch.save``, ``.pt2``, TorchScript) have every member CRC-checked
  (``zipfile.ZipFile.testzip``): flipped bytes are an :class:`InputError` naming the member;
* ``.pt2`` archives are checked member by member (:func:`check_pt2_archive`): every member
  that ``torch.export.load`` would unpickle (sample inputs, weights or constants marked
  ``use_pickle``, legacy weight files) must load with ``torch.load(weights_only=True)``;
  pickled Python objects and compiled code (AOTInductor) are refused; and
  ``torch.export.load`` itself runs with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``;
* TorchScript runs code stored in the file, so it needs ``trust_pickle=True``;
* architecture references resolve only to the torchvision / timm registries or to modules the
  user allows (``allow_modules``, the card's ``allowed_modules``); ``os``, ``subprocess``,
  ``builtins``, the standard library and loaders such as ``torch`` / ``numpy`` never
  (:func:`build_architecture`);
* the card must fit the model: one forward pass at the card's input shape, one output per head
  with ``len(labels)`` logits.

Everything else is read with ``torch.load(weights_only=True)``, which never runs code from
the file. A checkpoint that needs full unpickling is refused (:class:`UnsafeCheckpointError`,
naming the Python globals the restricted loader refused).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import json
import os
import pickle
import pickletools
import re
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from optim.errors import InputError, ToolError, UnsafeCheckpointError, describe_validation_error
from optim.files import sha256_file
from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

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
        lineage: where a compressed checkpoint came from (see :class:`Lineage`), as a plain
            dict ``{"kind", "parent": {"path", "sha256"}, "reference": {"path", "sha256"},
            "fine_tuned", "epochs"}``; ``None`` for a plain (FP32 original) checkpoint.
    """

    model: Any
    card: ModelCard
    path: Path
    sha256: str
    source_format: str
    card_path: Path | None
    lineage: dict[str, Any] | None = None

    @property
    def card_inferred(self) -> bool:
        return self.card_path is None


# ---- architecture references --------------------------------------------------------------
#: Registries an architecture reference may name without being allowed: ``torchvision:NAME``
#: (``torchvision.models.get_model``) and ``timm:NAME`` (``timm.create_model``, if installed).
ARCH_REGISTRIES = ("torchvision", "timm")

#: Modules (and their submodules) never imported for an architecture, even when allowed: the
#: ones the brief of issue 11 names, plus libraries whose callables load files or run commands
#: (``torch.load``, ``torch.hub.load``, ``numpy.load``, ``pandas.read_pickle``, optim itself).
#: Every standard-library module is refused too (``sys.stdlib_module_names``).
NEVER_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "builtins", "sys", "importlib", "shutil", "pickle", "marshal",
    "ctypes", "runpy", "code", "pty", "socket", "pathlib", "io", "multiprocessing", "signal", "tempfile",
    "__main__",
    "torch", "numpy", "pandas", "joblib", "dill", "cloudpickle", "pip", "setuptools", "pkg_resources",
    "IPython", "optim",
})

_ARCH_HELP = ("optim imports only the torchvision/timm registries and modules you allow: pass "
              "--allow-module {mod} (load_checkpoint(allow_modules=[...])) or add "
              "allowed_modules = [\"{mod}\"] to the model card")


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def never_allowed(module_name: str) -> bool:
    """True if ``module_name`` (or a package above it) may never be imported for an
    architecture: :data:`NEVER_MODULES` or any standard-library module."""
    top = module_name.split(".")[0]
    parts = module_name.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return bool(prefixes & NEVER_MODULES) or top in sys.stdlib_module_names


def check_allowed_modules(modules: Iterable[str], source: str) -> tuple[str, ...]:
    """Validate module names a user allows for architecture factories.

    Raises :class:`InputError` (naming ``source``, e.g. ``--allow-module``) for a name that is
    not a dotted Python identifier or that is never allowed (see :func:`never_allowed`).
    """
    out = []
    for m in modules:
        m = str(m).strip()
        if not _dotted(m):
            raise InputError(f"{source} {m!r}: expected a dotted module name such as mypkg.models")
        if never_allowed(m):
            raise InputError(f"{source} {m!r}: this module is never allowed for architectures "
                             "(standard library, torch, numpy, loaders and runners can run code from a reference)")
        out.append(m)
    return tuple(out)


def parse_arch_ref(ref: str) -> tuple[str, str, dict[str, Any]]:
    """``"torchvision:resnet18(num_classes=250)"`` → ``("torchvision", "resnet18", {"num_classes": 250})``.

    Keyword values must be Python literals; the module must be a dotted identifier and the
    factory a public name (no dots, no leading underscore). Raises :class:`InputError` on a
    malformed reference.
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
            if any(kw.arg is None for kw in call.keywords):
                raise ValueError("**mappings are not allowed")
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError) as e:
            raise InputError(f"architecture arguments {arglist!r}: {e}; use key=literal pairs, e.g. num_classes=250") from None
    module, sep, factory = ref.partition(":")
    module, factory = module.strip(), factory.strip()
    if not sep or not module or not factory:
        raise InputError(f"architecture {ref!r}: expected 'torchvision:NAME' or 'package.module:factory'")
    if not _dotted(module):
        raise InputError(f"architecture {ref!r}: module {module!r} is not a dotted Python name")
    if not factory.isidentifier() or factory.startswith("_"):
        raise InputError(f"architecture {ref!r}: factory {factory!r} must be a public module-level name "
                         "(no dots, no leading underscore)")
    return module, factory, kwargs


def build_architecture(
    ref: str,
    extra_kwargs: dict[str, Any] | None = None,
    *,
    allow_modules: Iterable[str] = (),
    source: str = "--arch",
):
    """Instantiate an architecture reference with random weights (never downloads any).

    ``torchvision:NAME`` and ``timm:NAME`` resolve through their registries. Any other
    ``package.module:factory`` is imported only if ``package.module`` is in ``allow_modules``
    (or below one of them), is not :func:`never_allowed`, and ``factory`` is a public function
    or class defined in that allowed module tree (not re-exported from elsewhere).
    ``source`` names where the reference came from (``--arch``, a card or checkpoint file).

    Raises :class:`InputError` (naming the reference, ``source`` and how to allow a module) if
    the module is refused or does not exist, or the factory does not exist or rejects its
    arguments.
    """
    module_name, factory, kwargs = parse_arch_ref(ref)
    kwargs = {**kwargs, **(extra_kwargs or {})}
    where = f"architecture {ref!r} (from {source})"
    if module_name == "torchvision":
        import torchvision

        available = torchvision.models.list_models()
        if factory not in available:
            raise InputError(f"unknown torchvision architecture {factory!r} in {source}; known: {', '.join(sorted(available)[:12])}, ...")
        kwargs.setdefault("weights", None)
        try:
            return torchvision.models.get_model(factory, **kwargs)
        except (TypeError, ValueError) as e:
            raise InputError(f"{where} rejected its arguments {kwargs}: {e}") from None
    if module_name == "timm":
        try:
            import timm
        except ImportError:
            raise InputError(f"{where}: timm is not installed (pip install timm)") from None
        if not timm.is_model(factory):
            raise InputError(f"unknown timm architecture {factory!r} in {source}")
        kwargs["pretrained"] = False  # never download weights
        try:
            return timm.create_model(factory, **kwargs)
        except (TypeError, ValueError) as e:
            raise InputError(f"{where} rejected its arguments {kwargs}: {e}") from None
    allowed = check_allowed_modules(allow_modules, "allowed module")
    if never_allowed(module_name):
        raise InputError(f"{where}: module {module_name!r} is never allowed for architectures "
                         "(standard library, torch, numpy, loaders and runners); nothing was imported")

    def in_allowed(name: str) -> bool:
        return any(name == a or name.startswith(a + ".") for a in allowed)

    if not in_allowed(module_name):
        raise InputError(f"{where}: module {module_name!r} is not allowed; nothing was imported. "
                         + _ARCH_HELP.format(mod=module_name))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError(f"{where}: module {module_name!r} cannot be imported ({e}); is it on PYTHONPATH?") from None
    fn = vars(module).get(factory)
    if not callable(fn):
        raise InputError(f"{where}: {module_name} has no callable {factory!r}")
    if not (inspect.isfunction(fn) or inspect.isclass(fn)) or not in_allowed(getattr(fn, "__module__", "") or ""):
        raise InputError(f"{where}: {factory!r} must be a function or class defined in an allowed module "
                         f"(it comes from {getattr(fn, '__module__', None)!r}); " + _ARCH_HELP.format(mod=module_name))
    try:
        return fn(**kwargs)
    except TypeError as e:
        raise InputError(f"{where} rejected its arguments {kwargs}: {e}") from None


# ---- lineage ------------------------------------------------------------------------------
_SHA256 = r"^[0-9a-f]{64}$"


class LineageFile(BaseModel):
    """One checkpoint in a lineage: its path (absolute when written by optim) and sha256."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    path: str = Field(min_length=1)
    sha256: str = Field(pattern=_SHA256)


class Lineage(BaseModel):
    """Where a compressed checkpoint came from, so the gate compares it with the FP32 original.

    Stored under ``"lineage"`` in a pruned or distilled checkpoint (see
    :mod:`optim.optimize.channel_spec` and :mod:`optim.optimize.distill`):

    * ``kind``: ``"pruned"`` (``optim prune``) or ``"distilled"`` (``optim distill``: a student
      of another architecture trained from the parent, its teacher; always ``fine_tuned``);
    * ``parent``: the checkpoint that was pruned, or the teacher (path, sha256 of its bytes);
    * ``reference``: the FP32 root — the parent's own ``reference`` if the parent has a
      lineage, else the parent itself;
    * ``fine_tuned``: whether recovery fine-tuning ran; ``epochs``: how many (0 if not).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    kind: Literal["pruned", "distilled"]
    parent: LineageFile
    reference: LineageFile
    fine_tuned: bool
    epochs: int = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> "Lineage":
        if self.fine_tuned and self.epochs < 1:
            raise ValueError("fine_tuned is true but epochs is 0")
        if not self.fine_tuned and self.epochs != 0:
            raise ValueError(f"fine_tuned is false but epochs is {self.epochs}")
        if self.kind == "distilled" and not self.fine_tuned:
            raise ValueError("kind is distilled but fine_tuned is false (a distilled student is always trained)")
        return self


def validate_lineage(data: Any, source: str, own_sha256: str | None = None) -> dict[str, Any]:
    """Check a lineage mapping (see :class:`Lineage`) and return it as a plain dict.

    Raises :class:`InputError` naming ``source`` and each malformed field, or if the lineage
    names the checkpoint itself (``own_sha256``) as its parent or reference.
    """
    if not isinstance(data, dict):
        raise InputError(f"{source}: lineage must be a mapping, got {type(data).__name__}; re-run `optim prune`")
    try:
        lin = Lineage.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{source}: malformed lineage: {describe_validation_error(e)}; re-run `optim prune` (or `optim distill`)") from None
    if own_sha256 is not None and own_sha256 in (lin.parent.sha256, lin.reference.sha256):
        raise InputError(f"{source}: its lineage names the checkpoint itself as parent or reference; "
                         "a model cannot be its own FP32 reference")
    return lin.model_dump()


def make_lineage(parent: "LoadedModel", *, fine_tuned: bool, epochs: int, kind: str = "pruned") -> dict[str, Any]:
    """The lineage of a checkpoint derived from ``parent`` (see :class:`Lineage`): the parent
    is named by absolute path and sha256; the reference is the parent's reference if it has a
    lineage, else the parent. ``epochs`` is recorded only if ``fine_tuned``."""
    me = {"path": str(Path(parent.path).resolve()), "sha256": parent.sha256}
    reference = parent.lineage["reference"] if parent.lineage else me
    return validate_lineage({"kind": kind, "parent": me, "reference": dict(reference),
                             "fine_tuned": bool(fine_tuned), "epochs": int(epochs) if fine_tuned else 0},
                            f"lineage of a checkpoint derived from {parent.path}")


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
_ZIP_MAGIC = b"PK\x03\x04"


def check_zip(path: Path) -> list[str] | None:
    """Member names of a zip-based checkpoint after CRC-checking every member; ``None`` if
    the file is not a zip (a raw pickle, or not a checkpoint at all).

    Raises :class:`InputError`: ``"corrupt: member X fails its CRC"`` for flipped bytes, or
    truncated / unreadable zip structure.
    """
    with open(path, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            return None
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = zf.namelist()
    except Exception as e:  # BadZipFile, EOFError, zlib.error, OSError: the bytes are bad
        raise InputError(f"{path} is a truncated or corrupt zip archive ({type(e).__name__}: {e}); re-export or re-download it") from None
    if bad is not None:
        raise InputError(f"{path} is corrupt: member {bad!r} fails its CRC (or header) check; re-export or re-download it")
    return names


def _loads_weights_only(data: bytes) -> bool:
    """Whether ``data`` (a ``torch.save`` stream) loads with ``torch.load(weights_only=True)``."""
    import torch

    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return True
    except Exception:
        return False


# Members of a .pt2 archive (below its root folder) that torch.export.load reads as plain
# text/JSON; data folders are checked entry by entry (see check_pt2_archive).
_PT2_TEXT = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id", "version")
_PT2_DATA = ("data/weights/", "data/constants/", "data/sample_inputs/")


def check_pt2_archive(path: Path, names: list[str]) -> list[str]:
    """Members of a ``torch.export`` archive that loading would unpickle unsafely or that hold
    code; empty when the archive can be loaded without running anything from it.

    Follows torch 2.13's loader (``torch.export.pt2_archive._package.load_pt2``): JSON configs
    in ``data/weights`` / ``data/constants`` list each payload; ``use_pickle=False`` payloads
    are raw tensor bytes; everything else in the data folders (pickled weights or constants,
    sample inputs, legacy weight files) is passed to ``torch.load`` — it must load with
    ``weights_only=True``. Custom/opaque object constants (``torch._C._pickle_load_obj``,
    ``pickle.loads``), AOTInductor / ExecuTorch payloads and any member outside the known layout
    are reported. Each entry reads ``"member (why)"``.
    """
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1:
        return [f"{n} (outside the archive's single root folder)" for n in names if "/" not in n] or \
            [f"{sorted(roots)} (several root folders)"]
    root = roots.pop() + "/"
    rel = {n[len(root):]: n for n in names}
    unsafe: list[str] = []
    raw: set[str] = set()
    configs: set[str] = set()
    with zipfile.ZipFile(path) as zf:
        for r, full in rel.items():
            m = re.fullmatch(r"data/(weights|constants)/[^/]+_(weights|constants)_config\.json", r)
            if not m:
                continue
            configs.add(r)
            try:
                config = json.loads(zf.read(full))["config"]
                entries = list(config.items())
            except Exception as e:
                unsafe.append(f"{full} (unreadable payload config: {type(e).__name__})")
                continue
            folder = f"data/{m.group(1)}/"
            for fqn, meta in entries:
                if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
                    unsafe.append(f"{full} (malformed entry {fqn!r})")
                    continue
                name = meta["path_name"]
                if name.startswith(("custom_obj_", "opaque_obj_")):
                    unsafe.append(f"{root}{folder}{name} (pickled Python object {fqn!r})")
                elif not meta.get("use_pickle"):
                    raw.add(folder + name)
        for r, full in rel.items():
            if r.endswith("/") or r in _PT2_TEXT or r in configs or r in raw:
                continue
            if r.startswith("models/") and r.endswith(".json"):
                continue
            if r.startswith("extra/"):
                continue  # read as text only
            if r.startswith(_PT2_DATA):
                data = zf.read(full)
                if data and not _loads_weights_only(data):
                    unsafe.append(f"{full} (pickle that torch.load(weights_only=True) refuses)")
                continue
            why = "compiled code" if r.startswith(("data/aotinductor/", "data/executorch/", "data/mtia")) else "not part of the torch.export layout"
            unsafe.append(f"{full} ({why})")
    return unsafe


@contextlib.contextmanager
def _force_weights_only(enabled: bool) -> Iterator[None]:
    """Set ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` while loading: every ``torch.load`` inside
    torch's own loaders (even ``weights_only=False`` fallbacks) becomes weights-only."""
    if not enabled:
        yield
        return
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


class _Discard:
    """A text sink for :func:`pickletools.dis`, whose listing is not wanted, only its checks."""

    def write(self, text: str) -> int:
        return len(text)


def pickle_globals(stream) -> set[str] | None:
    """The Python globals (``module.name``) one pickle in a seekable binary stream imports,
    read with :mod:`pickletools` without unpickling anything; the stream is left just after
    that pickle's STOP.

    Returns:
        The set of globals (empty for a pickle of plain data), or ``None`` if the stream is
        not a valid pickle: an unknown opcode, no STOP, or a stack or memo that
        :func:`pickletools.dis` finds inconsistent (random bytes often decode as opcodes up
        to a STOP byte, but almost never with a consistent stack).
    """
    start = stream.tell()
    try:
        pickletools.dis(stream, out=_Discard())
    except Exception:
        return None
    stream.seek(start)
    found: set[str] = set()
    strings: list[str] = []
    memo: dict[int, str] = {}
    last_string: str | None = None
    n_memo = 0
    try:
        for op, arg, _ in pickletools.genops(stream):
            name, pushed = op.name, None
            if name in ("GLOBAL", "INST"):
                found.add(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL":
                if len(strings) >= 2:
                    found.add(f"{strings[-2]}.{strings[-1]}")
                else:
                    found.add("<dynamic global>")
            elif name in _STRING_OPS:
                pushed = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
                strings.append(pushed)
            elif name == "MEMOIZE":
                if last_string is not None:
                    memo[n_memo] = last_string
                n_memo += 1
                pushed = last_string
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if last_string is not None:
                    memo[int(arg)] = last_string
                pushed = last_string
            elif name in ("GET", "BINGET", "LONG_BINGET") and int(arg) in memo:
                pushed = memo[int(arg)]
                strings.append(pushed)
            last_string = pushed
    except Exception:
        return None
    return found


_HARMLESS_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode", "numpy.core.multiarray._reconstruct",
                     "numpy._core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray")


def _refused_globals(path: Path, is_zip: bool) -> list[str] | None:
    """Python globals in a checkpoint that the restricted loader does not allow; ``None``
    when the file is not a ``torch.save`` archive or pickle at all."""
    import torch

    if is_zip:
        try:
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:
            return None
    with open(path, "rb") as f:
        head = f.read(64)
        # torch.save's legacy (non-zip) layout is four pickles in a row (magic number,
        # protocol version, system info, the object), then raw storages; it begins with
        # the pickled magic number, in whatever protocol the caller chose.
        legacy = any(head.startswith(pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=p)) for p in range(2, 6))
        f.seek(0)
        found: set[str] = set()
        for _ in range(4 if legacy else 1):
            part = pickle_globals(f)
            if part is None:
                return None
            found |= part
    if not found and not legacy:
        return None  # a pickle that names no global holds no tensor: not a checkpoint
    return sorted(g for g in found if not g.startswith(_HARMLESS_GLOBALS))


def _why(e: Exception) -> str:
    """One short line from a torch loading error."""
    msg = str(e)
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(e).__name__


def _torch_load(path: Path, trust_pickle: bool, is_zip: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = _why(e)
    refused = _refused_globals(path, is_zip)
    if refused is None:
        if is_zip:
            raise InputError(f"{path} is a zip archive but not a readable PyTorch checkpoint ({why}); re-export or re-download it")
        raise InputError(f"{path} is not a PyTorch checkpoint (neither a torch.save archive nor a pickle of tensors; "
                         f"{why}); check the path")
    if not trust_pickle:
        if refused:
            raise UnsafeCheckpointError(
                f"{path} needs full unpickling, which can run arbitrary code from the file: it references the "
                f"Python global(s) {', '.join(refused[:8])}{' …' if len(refused) > 8 else ''}, which torch's restricted "
                "loader refuses. Nothing from it was executed. If you trust where it came from, pass --trust-pickle "
                "(trust_pickle=True); better, re-save it as a state_dict (torch.save(model.state_dict())) or a torch.export .pt2."
            )
        raise InputError(f"{path} is a pickle that torch's restricted loader cannot read ({why}); "
                         "re-save it with torch.save(model.state_dict())")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a trusted pickle may fail for any reason its classes choose
        raise InputError(f"{path}: trusted unpickling failed ({type(e).__name__}: {e})") from None


def _load_exported_program(path: Path, names: list[str], trust_pickle: bool):
    import torch

    unsafe = check_pt2_archive(path, names)
    if unsafe and not trust_pickle:
        raise UnsafeCheckpointError(
            f"{path} is a torch.export archive with member(s) that can run code when loaded: {'; '.join(unsafe[:5])}"
            f"{' …' if len(unsafe) > 5 else ''}. Nothing from it was executed. If you trust where it came from, "
            "pass --trust-pickle (trust_pickle=True); better, re-export it with torch.export.save from plain tensors."
        )
    try:
        with _force_weights_only(not trust_pickle):
            ep = torch.export.load(path)
        return ep.module()
    except Exception as e:
        raise InputError(f"{path} looks like a torch.export archive but cannot be loaded ({type(e).__name__}: {_why(e)})") from None


def _load_model_object(path: Path, arch: str | None, trust_pickle: bool, allow_modules: tuple[str, ...],
                       arch_source: str) -> tuple[Any, str, dict[str, Any] | None]:
    import torch

    names = check_zip(path)
    if names is not None and any(n.endswith("/archive_format") for n in names):  # torch.export .pt2
        return _load_exported_program(path, names, trust_pickle), "exported_program", None
    if names is not None and any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names):  # TorchScript
        if not trust_pickle:
            raise UnsafeCheckpointError(
                f"{path} is a TorchScript archive: loading it runs the TorchScript code stored in the file "
                "(and unpickles its constants). Nothing from it was executed. If you trust where it came from, pass "
                "--trust-pickle (trust_pickle=True); better, re-save the model as a state_dict "
                "(torch.save(model.state_dict())) with an architecture, or as a torch.export .pt2."
            )
        try:
            return torch.jit.load(str(path), map_location="cpu"), "torchscript", None
        except Exception as e:
            raise InputError(f"{path} looks like TorchScript but cannot be loaded ({type(e).__name__}: {_why(e)})") from None
    obj = _torch_load(path, trust_pickle, names is not None)
    if isinstance(obj, torch.nn.Module):
        return obj, "pickled_module", None
    sd = extract_state_dict(obj)
    if sd is None:
        kind = type(obj).__name__
        keys = f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else ""
        raise InputError(
            f"{path} is not a checkpoint optim can use: it holds a {kind}{keys}, not a state_dict, "
            f"module, TorchScript or ExportedProgram (state_dicts may be nested under {list(STATE_DICT_KEYS)})"
        )
    pruned = isinstance(obj, dict) and bool(obj.get("optim_pruned"))  # see optim.optimize.channel_spec
    lineage = None
    if pruned:
        if "lineage" not in obj:
            raise InputError(f"{path} is a pruned checkpoint without a lineage (written by an older optim, or the "
                             "lineage was removed), so the gate cannot find its FP32 reference; re-run `optim prune`")
        lineage = validate_lineage(obj["lineage"], str(path), own_sha256=None)
    if pruned and not arch and isinstance(obj.get("architecture"), str):
        arch, arch_source = obj["architecture"], f"checkpoint {path}"
    if not arch:
        raise InputError(
            f"{path} holds a state_dict, which needs an architecture: pass --arch "
            "'torchvision:resnet18(num_classes=10)' or set `architecture` in the model card"
        )
    model = build_architecture(arch, allow_modules=allow_modules, source=arch_source)
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"architecture {arch!r} (from {arch_source}) returned a {type(model).__name__}, not a torch.nn.Module")
    if pruned:
        from optim.channel_spec import apply_channel_spec

        apply_channel_spec(model, obj.get("channel_spec", {}), sd, str(path))
    load_state_dict_strict(model, sd, str(path))
    return model, "pruned_state_dict" if pruned else "state_dict", lineage


def set_eval_mode(model) -> Any:
    """Put ``model`` in eval mode, including torch.export graph modules (which refuse ``.eval()``)."""
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):
        # torch.export modules refuse .eval(); switch their dropout/batch-norm the supported way.
        from torchao.quantization.pt2e import move_exported_model_to_eval

        move_exported_model_to_eval(model)
    return model


DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
"""Input tried for a cardless model whose graph does not fix its input (ImageNet's 224×224)."""


def graph_input_shape(model) -> tuple[int, int, int, int] | None:
    """The N×C×H×W input a ``torch.export`` graph module was traced with (a symbolic batch
    dimension becomes 1), or None for a model that does not record it (an ``nn.Module``)."""
    graph = getattr(model, "graph", None)
    if graph is None:
        return None
    try:
        for node in graph.nodes:
            if node.op != "placeholder":
                continue
            shape = getattr(node.meta.get("val"), "shape", None)
            if shape is None or len(shape) != 4:
                return None
            dims = [d if isinstance(d, int) else None for d in shape]
            if any(d is None for d in dims[1:]):
                return None  # dynamic height/width: nothing fixed to resize to
            return (dims[0] or 1, dims[1], dims[2], dims[3])
    except Exception:  # an unusual graph: fall back to trying the default input
        return None
    return None


def infer_card(model, input_shape: tuple[int, int, int, int] | None = None, architecture: str | None = None,
               source: str = "the model") -> ModelCard:
    """A default card when none is given: one multiclass head named ``logits`` (or one per
    output) with labels ``"0"…"K-1"``, ImageNet mean/std, and the model's input shape.

    The input shape is ``input_shape`` (``--input-shape``) if given, else the shape a
    ``torch.export`` program was traced with, else :data:`DEFAULT_INPUT_SHAPE`. The card's
    preprocessing resizes every image to that H×W, so calibration, evaluation and benchmarks
    feed the model what it takes.

    Raises :class:`InputError` naming ``source`` when the model rejects that input (one forward
    pass on zeros): the message says to pass ``--input-shape`` or write a card."""
    import torch

    given = input_shape is not None
    shape = tuple(input_shape) if given else (graph_input_shape(model) or DEFAULT_INPUT_SHAPE)
    try:
        with torch.inference_mode():
            out = model(torch.zeros(shape))
    except Exception as e:
        how = ("the --input-shape given" if given else
               "the shape its graph records" if graph_input_shape(model) else "the default input, as it cannot be inferred")
        raise InputError(f"{source} has no model card and does not accept {'×'.join(map(str, shape))} ({how}; "
                         f"{type(e).__name__}: {_why(e)}); pass --input-shape N×C×H×W (e.g. 1x3x32x32) with the size it was "
                         "trained at, or write a model card <checkpoint>.optim.toml with [input] shape and [preprocessing] resize") from None
    if isinstance(out, dict):
        items = list(out.items())
    elif isinstance(out, (tuple, list)):
        items = [(f"head{i}", o) for i, o in enumerate(out)]
    else:
        items = [("logits", out)]
    bad = [n for n, o in items if len(getattr(o, "shape", ())) != 2]
    if bad:
        raise InputError(f"{source} has no model card and its output(s) {bad} are not N×K logits; write a model card with its heads")
    heads = [Head(name=str(n), kind="multiclass", labels=tuple(str(i) for i in range(o.shape[-1]))) for n, o in items]
    return ModelCard(name="model", architecture=architecture, input=InputSpec(shape=shape),
                     preprocessing=Preprocessing(resize=(shape[2], shape[3])), heads=tuple(heads))


def check_card_fits(model, card: ModelCard, source: str) -> None:
    """One forward pass on zeros of the card's input shape (N×C×H×W float32): the model must
    accept it and return one output per head with ``len(labels)`` logits.

    Raises :class:`InputError` naming ``source`` (the checkpoint and card) otherwise.
    """
    import torch

    from optim.heads import outputs_by_head

    shape = tuple(card.input.shape)
    try:
        with torch.inference_mode():
            out = model(torch.zeros(shape))
    except MemoryError as e:
        raise ToolError(f"{source}: out of memory running the model on its card's input shape "
                        f"{'×'.join(map(str, shape))}") from e
    except Exception as e:
        raise InputError(f"{source}: the model does not accept the card's input shape {'×'.join(map(str, shape))} "
                         f"({type(e).__name__}: {_why(e)}); fix `input.shape` in the card to the N×C×H×W the model "
                         "was trained or exported with (or, without a card, pass --input-shape N×C×H×W)") from None
    try:
        outputs_by_head(out, card)
    except InputError as e:
        raise InputError(f"{source}: the model card does not fit the model's outputs: {e}") from None


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    card: ModelCard | str | Path | None = None,
    trust_pickle: bool = False,
    input_shape: tuple[int, int, int, int] | None = None,
    allow_modules: Iterable[str] = (),
) -> LoadedModel:
    """Load a checkpoint and its model card; return the eval-mode model (CPU, FP32).

    Args:
        path: checkpoint file (``.pt2``, state_dict, pruned checkpoint, or — trusted —
            TorchScript or a pickled module).
        arch: architecture reference for state_dicts; overrides the card's ``architecture``.
        card: a :class:`ModelCard` or a card file; default ``<path>.optim.toml`` if it exists,
            else a card is inferred from one forward pass (see :func:`infer_card`). A given
            card is checked against one forward pass (:func:`check_card_fits`).
        trust_pickle: allow formats that can run code from the file (pickled modules,
            TorchScript, ``.pt2`` members that need full unpickling). Off by default.
        input_shape: N×C×H×W used only when the card is inferred (default: the shape a
            ``torch.export`` program records, else 1×3×224×224); the inferred card resizes
            images to its H×W.
        allow_modules: modules (with their submodules) an architecture reference may import
            besides the torchvision/timm registries; added to the card's ``allowed_modules``
            (see :func:`build_architecture`).

    Raises:
        InputError: missing, empty, truncated, corrupt (zip CRC) or non-checkpoint file;
            unknown, refused or not-allowed architecture; state_dict that does not fit;
            invalid card, or a card that does not fit the model; malformed lineage.
        UnsafeCheckpointError: the file can run code when loaded and ``trust_pickle`` is False.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise InputError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {path} is empty (0 bytes), not a PyTorch checkpoint; re-export or re-download it")
    allowed = list(check_allowed_modules(allow_modules, "--allow-module"))
    card_path: Path | None = None
    if isinstance(card, (str, Path)):
        card_path = Path(card)
        card = ModelCard.load(card_path)
    elif card is None and card_path_for(path).is_file():
        card_path = card_path_for(path)
        card = ModelCard.load(card_path)
    if card is not None and card.allowed_modules:
        allowed += check_allowed_modules(card.allowed_modules, f"model card {card_path or card.name}: allowed_modules entry")
    arch_source = "--arch" if arch else (f"model card {card_path}" if card_path else "the model card")
    arch = arch or (card.architecture if card is not None else None)
    if card is not None and arch and card.architecture_kwargs:
        module, factory, kw = parse_arch_ref(arch)
        merged = {**card.architecture_kwargs, **kw}
        arch = f"{module}:{factory}(" + ", ".join(f"{k}={v!r}" for k, v in merged.items()) + ")"
    sha256 = sha256_file(path)
    model, source_format, lineage = _load_model_object(path, arch, trust_pickle, tuple(allowed), arch_source)
    if lineage is not None and sha256 in (lineage["parent"]["sha256"], lineage["reference"]["sha256"]):
        raise InputError(f"{path}: its lineage names the checkpoint itself as parent or reference; "
                         "a model cannot be its own FP32 reference")
    model = set_eval_mode(model)
    if card is None:
        card = infer_card(model, input_shape, architecture=arch, source=f"checkpoint {path}")
    else:
        check_card_fits(model, card, f"checkpoint {path} with model card {card_path or card.name}")
    return LoadedModel(model=model, card=card, path=path, sha256=sha256, source_format=source_format,
                       card_path=card_path, lineage=lineage)
