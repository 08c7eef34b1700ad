"""The demo pipeline: data → train (or reuse) → FP32 evaluation on the golden set.

Everything is written into one work directory:

* ``model.pt`` — the trained state_dict; ``model.pt.optim.toml`` — its model card;
* ``golden/`` — the balanced golden set in optim's golden-set format (PNG images, one folder
  per class, ``manifest.csv``, ``golden.json`` and ``train_counts.json``, which defines head
  and tail classes);
* ``train/`` — the long-tailed training images in the same format, for fine-tuning and QAT;
* ``demo.json`` — the recipe and FP32 results, used to reuse a finished training run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from optim.demo.data import CLASS_NAMES, TRAIN_COUNTS, DemoSplit, long_tail_split, write_image_folder
from optim.demo.train import TrainConfig, train_classifier
from optim.files import atomic_write_bytes, atomic_write_json
from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

ARCHITECTURE = "torchvision:resnet18"
INPUT_HW = 32
TAIL_MAX_COUNT = 50  # tail class: fewer than 50 training images (the bake-off brief)
#: MNIST pixel mean/std on the 0–1 scale (the usual published values), repeated to 3 channels
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def demo_card() -> ModelCard:
    """resnet18 adapted to 28×28 grayscale digits purely through preprocessing:
    gray → RGB (channel repeated), resized to 32×32, MNIST mean/std."""
    return ModelCard(
        name="mnist-longtail-resnet18",
        architecture=ARCHITECTURE,
        architecture_kwargs={"num_classes": len(CLASS_NAMES)},
        input=InputSpec(shape=(1, 3, INPUT_HW, INPUT_HW)),
        preprocessing=Preprocessing(resize=(INPUT_HW, INPUT_HW), mean=(MNIST_MEAN,) * 3, std=(MNIST_STD,) * 3),
        heads=(Head(name="digit", kind="multiclass", labels=CLASS_NAMES),),
    )


@dataclass
class DemoResult:
    workdir: Path
    checkpoint: Path
    golden_dir: Path
    train_dir: Path
    reused: bool
    train_seconds: float
    top1: float
    head_top1: float
    tail_top1: float
    tail_classes: list[str]
    per_class_top1: dict[str, float]

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def _preprocess(images: np.ndarray, card: ModelCard) -> np.ndarray:
    from PIL import Image

    from optim.preprocessing import preprocess_pil

    return np.stack([preprocess_pil(Image.fromarray(img, mode="L"), card.preprocessing) for img in images])


def _recipe(seed: int, cfg: TrainConfig) -> dict:
    return {"architecture": ARCHITECTURE, "input_hw": INPUT_HW, "train_counts": list(TRAIN_COUNTS), "seed": seed, "train": asdict(cfg)}


def _write_data(workdir: Path, split: DemoSplit, head: str) -> None:
    import shutil

    from optim.golden_sets.build import build_from_image_folder

    for name, images, labels in (("golden", split.golden_images, split.golden_labels),
                                 ("train", split.train_images, split.train_labels)):
        if (workdir / name).exists():
            shutil.rmtree(workdir / name)
        write_image_folder(workdir / name, images, labels, prefix=name)
        build_from_image_folder(workdir / name, head=head, name=f"mnist-longtail-{name}", train_counts=split.train_counts())


def run_demo(workdir: str | Path = "optim-demo", *, seed: int = 0, cfg: TrainConfig = TrainConfig(),
             retrain: bool = False, log: Callable[[str], None] = print) -> DemoResult:
    """Build the data, train resnet18 (or reuse a finished run with the same recipe), and
    evaluate FP32 top-1 on the golden set, overall and for head/tail classes.

    Raises :class:`optim.errors.ToolError` if the embedded MNIST data cannot be read.
    """
    import torch

    from optim.checkpoint import load_checkpoint
    from optim.runtimes import TorchRuntime

    torch.set_num_threads(max(1, torch.get_num_threads()))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = workdir / "model.pt"
    recipe = _recipe(seed, cfg)
    meta_path = workdir / "demo.json"
    previous = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    reusable = (not retrain and previous is not None and previous.get("recipe") == recipe and ckpt.is_file()
                and card_path_for(ckpt).is_file() and (workdir / "golden" / "golden.json").is_file())
    split = long_tail_split(seed)
    card = demo_card()
    train_seconds = 0.0
    if reusable:
        log(f"reusing the trained checkpoint {ckpt} (same recipe; --retrain to train again)")
        model = load_checkpoint(ckpt).model
        train_seconds = previous.get("train_seconds", 0.0)
    else:
        log(f"writing the long-tailed training split ({len(split.train_labels)} images, per class "
            f"{list(TRAIN_COUNTS)}) and the golden set ({len(split.golden_labels)} images) to {workdir}")
        _write_data(workdir, split, card.heads[0].name)
        import torchvision

        torch.manual_seed(seed)
        model = torchvision.models.resnet18(num_classes=len(CLASS_NAMES))
        t0 = time.perf_counter()
        train_classifier(model, _preprocess(split.train_images, card), split.train_labels, cfg,
                         progress=lambda e, loss: log(f"epoch {e}/{cfg.epochs}  loss {loss:.3f}"))
        train_seconds = time.perf_counter() - t0
        import io

        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(ckpt, buf.getvalue())
        card.save(card_path_for(ckpt))
    from optim.golden_sets.evaluate import evaluate

    report = evaluate(TorchRuntime(model, card), workdir / "golden", tail_max_count=TAIL_MAX_COUNT, cache_dir=False)
    head = report.heads[card.heads[0].name]
    result = DemoResult(
        workdir=workdir, checkpoint=ckpt, golden_dir=workdir / "golden", train_dir=workdir / "train",
        reused=reusable, train_seconds=round(train_seconds, 1),
        top1=head["metrics"]["top1"], head_top1=head["metrics"]["head_top1"], tail_top1=head["metrics"]["tail_top1"],
        tail_classes=list(head["tail_classes"]),
        per_class_top1={row["label"]: row["recall"] for row in head["per_class"]},
    )
    atomic_write_json(meta_path, {"recipe": recipe, "train_seconds": result.train_seconds, "fp32": result.to_dict()})
    return result
