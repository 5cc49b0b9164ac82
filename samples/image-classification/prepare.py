"""Train the `digits` sample's CNN on scikit-learn's 8x8 digits; write model/ and the demo images.

    python samples/image-classification/prepare.py [--out DIR] [--force]

The 1797 digits are split by position: every fourth image (index % 4 == 0, 450 images) is held out, the other
1347 train DigitNet (net.py) for a few seconds on CPU. The images go through exactly what a served request goes
through: scikit-learn's 0..16 gray levels become 8-bit pixels (a PNG's bytes), then pixel/255, then
(x - mean) / std with mar.yaml's options. model/ gets net.py (the model_file) and weights.pt (its state_dict),
plus metrics.json. sample.json holds ten held-out digits, one per class, as base64 PNGs (8x8, so the handler's
resize to image_size is the identity); expected.json holds their true labels, in the same order.
"""

from __future__ import annotations

import base64
import io
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parent
if str(SAMPLE.parent) not in sys.path:
    sys.path.insert(0, str(SAMPLE.parent))
import _prepare_common as common  # noqa: E402

NET = SAMPLE / "net.py"
SEED = 7
THREADS = 1  # its ops are too small to share: two threads are slower (measured 2 x per step)
EPOCHS = 20
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
HELD_OUT_EVERY = 4


def options() -> dict[str, Any]:
    """mar.yaml's image options: the preprocessing the handler applies, hence the one training must use."""
    opts = dict(common.read_spec(SAMPLE).get("options", {}))
    if list(opts.get("image_size", [])) != [8, 8] or opts.get("grayscale") is not True:
        raise SystemExit("mar.yaml options must keep image_size [8, 8] and grayscale true: the net is built for it")
    return {"image_size": [8, 8], "grayscale": True, "mean": list(opts["mean"]), "std": list(opts["std"])}


def load_digits() -> dict[str, tuple[Any, Any]]:
    """{"train": (pixels, labels), "held-out": (pixels, labels)}: uint8 arrays [N, 8, 8] as a PNG carries them."""
    import numpy as np
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    held = np.arange(len(pixels)) % HELD_OUT_EVERY == 0
    return {"train": (pixels[~held], digits.target[~held]), "held-out": (pixels[held], digits.target[held])}


def to_tensor(pixels: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """uint8 [N, 8, 8] -> float [N, 1, 8, 8], normalised as the handler does."""
    import torch

    x = torch.from_numpy(pixels).float().div(255).unsqueeze(1)
    return (x - mean[0]) / std[0]


def predict(model: Any, x: Any) -> list[int]:
    import torch

    model.eval()
    with torch.inference_mode():
        return model(x).argmax(dim=1).tolist()


def load_net_class(path: Path = NET) -> type:
    """The one nn.Module class defined in net.py."""
    return common.load_module_class(path)


def build(out: Path) -> dict[str, Any]:
    """Train DigitNet, measure it on the held-out images, write net.py + weights.pt into ``out``."""
    import torch

    common.seed_everything(SEED, THREADS)
    opts = options()
    data = load_digits()
    x_train = to_tensor(data["train"][0], opts["mean"], opts["std"])
    y_train = torch.from_numpy(data["train"][1]).long()
    model = load_net_class()()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    generator = torch.Generator().manual_seed(SEED)
    print(f"training DigitNet on {len(y_train)} digits, {EPOCHS} epochs, {torch.get_num_threads()} threads")
    start = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(y_train), generator=generator).split(BATCH_SIZE):
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    train_seconds = time.perf_counter() - start

    held_pixels, held_labels = data["held-out"]
    predicted = predict(model, to_tensor(held_pixels, opts["mean"], opts["std"]))
    correct = sum(int(p == t) for p, t in zip(predicted, held_labels.tolist(), strict=True))

    shutil.copyfile(NET, out / "net.py")
    torch.save(model.state_dict(), out / "weights.pt")
    return {
        "task": "image-classification",
        "dataset": "sklearn.datasets.load_digits",
        "train_size": len(y_train),
        "held_out_size": len(held_labels),
        "held_out_accuracy": round(correct / len(held_labels), 4),
        "epochs": EPOCHS,
        "train_seconds": round(train_seconds, 1),
        **opts,
        "held_out_predictions": predicted,
    }


def png_base64(pixels: Any) -> str:
    """An 8x8 uint8 array as a base64 grayscale PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_examples() -> None:
    """sample.json (one held-out digit per class, base64 PNG) and expected.json (their labels), when they differ."""
    held_pixels, held_labels = load_digits()["held-out"]
    picks = [int(next(i for i, y in enumerate(held_labels) if y == digit)) for digit in range(10)]
    # Shuffled order (fixed): a demo answer of 0..9 in order would hide a handler that ignores its input.
    order = [3, 8, 0, 5, 9, 1, 6, 2, 7, 4]
    picks = [picks[d] for d in order]
    common.write_examples(
        SAMPLE,
        [{"data": png_base64(held_pixels[i])} for i in picks],
        {"labels": [str(int(held_labels[i])) for i in picks], "held_out_positions": picks},
    )


def summary(metrics: dict[str, Any]) -> str:
    return (f"held-out accuracy {metrics['held_out_accuracy']:.3f} on {metrics['held_out_size']} digits "
            f"(trained in {metrics['train_seconds']} s)")


def main(argv: Sequence[str] | None = None) -> common.Prepared:
    result = common.run(
        __doc__.splitlines()[0], SAMPLE,
        inputs=[NET, Path(__file__)],
        values={**options(), "threads": THREADS, **common.library_versions("torch", "scikit-learn", "numpy")},
        build=build, summary=summary, argv=argv,
    )
    if not result.skipped or not common.has_examples(SAMPLE):
        write_examples()
    return result


if __name__ == "__main__":
    main()
