"""Train the `wine` sample's MLP on scikit-learn's wine data; write model/ and the demo instances.

    python samples/custom/prepare.py [--out DIR] [--force]

178 wines from three cultivars, 13 chemical measurements each, on wildly different scales (hue about 1, proline
about 750): the model only works on standardised inputs, so the training mean and standard deviation of every
feature are part of the model. That is what makes this sample `custom`: its handler (handler.py) takes instances
as {"alcohol": 13.2, ...} objects, checks the names and numbers, standardises with those statistics, and answers
{"class": name, "probability": p}. Every fourth wine (index % 4 == 0, 45 wines) is held out; the others train
WineNet (net.py) in well under a second. model/ gets net.py, weights.pt (its state_dict), preprocessing.json
(feature order, mean, std, class names) and metrics.json. sample.json holds one held-out wine per class as the
handler takes them; expected.json their true classes.
"""

from __future__ import annotations

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
SEED = 3
THREADS = 1  # a 13 -> 16 -> 3 network: threads would only add overhead
EPOCHS = 300  # full-batch steps
LEARNING_RATE = 1e-2
WEIGHT_DECAY = 1e-3
HELD_OUT_EVERY = 4


def class_names() -> list[str]:
    """mar.yaml's class_names: cultivar names for scikit-learn's classes 0, 1, 2, in that order."""
    names = [str(n) for n in common.read_spec(SAMPLE)["class_names"]]
    if len(names) != 3:
        raise SystemExit("mar.yaml class_names must name the 3 cultivars")
    return names


def load_wine() -> dict[str, Any]:
    """{"features": names, "train": (X, y), "held-out": (X, y)} with X float64 [N, 13] in feature order."""
    import numpy as np
    from sklearn.datasets import load_wine as sklearn_wine

    wine = sklearn_wine()
    held = np.arange(len(wine.target)) % HELD_OUT_EVERY == 0
    return {
        "features": list(wine.feature_names),
        "train": (wine.data[~held], wine.target[~held]),
        "held-out": (wine.data[held], wine.target[held]),
    }


def load_net_class(path: Path = NET) -> type:
    """The one nn.Module class defined in net.py."""
    return common.load_module_class(path)


def standardise(x: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """float32 tensor of (x - mean) / std, feature by feature: what the handler does to each instance."""
    import torch

    return (torch.as_tensor(x, dtype=torch.float32) - torch.tensor(mean)) / torch.tensor(std)


def predict(model: Any, x: Any) -> list[int]:
    import torch

    model.eval()
    with torch.inference_mode():
        return model(x).argmax(dim=1).tolist()


def build(out: Path) -> dict[str, Any]:
    """Fit the statistics and WineNet on the training wines, measure the held-out ones, write ``out``."""
    import torch

    common.seed_everything(SEED, THREADS)
    names = class_names()
    data = load_wine()
    x_raw, y = data["train"]
    # Rounded for a readable JSON; training uses the rounded numbers too, so it sees exactly what the handler does.
    mean = [round(float(v), 6) for v in x_raw.mean(axis=0)]
    std = [round(float(v), 6) for v in x_raw.std(axis=0)]
    x_train = standardise(x_raw, mean, std)
    y_train = torch.from_numpy(y).long()
    model = load_net_class()()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    print(f"training WineNet on {len(y_train)} wines, {EPOCHS} full-batch steps, {torch.get_num_threads()} thread")
    start = time.perf_counter()
    model.train()
    for _ in range(EPOCHS):
        loss = torch.nn.functional.cross_entropy(model(x_train), y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_seconds = time.perf_counter() - start

    x_held, y_held = data["held-out"]
    predicted = predict(model, standardise(x_held, mean, std))
    correct = sum(int(p == t) for p, t in zip(predicted, y_held.tolist(), strict=True))

    shutil.copyfile(NET, out / "net.py")
    torch.save(model.state_dict(), out / "weights.pt")
    common.write_json(out / "preprocessing.json", {
        "features": data["features"], "mean": mean, "std": std, "classes": names,
    })
    return {
        "task": "custom",
        "dataset": "sklearn.datasets.load_wine",
        "train_size": len(y_train),
        "held_out_size": len(y_held),
        "held_out_accuracy": round(correct / len(y_held), 4),
        "steps": EPOCHS,
        "train_seconds": round(train_seconds, 2),
        "held_out_predictions": [names[p] for p in predicted],
    }


def instance(row: Any, features: Sequence[str]) -> dict[str, float]:
    """One wine as the handler takes it: {feature name: value}."""
    return {name: float(value) for name, value in zip(features, row, strict=True)}


def write_examples() -> None:
    """sample.json (one held-out wine per class) and expected.json (their classes), when they differ."""
    names = class_names()
    data = load_wine()
    x_held, y_held = data["held-out"]
    # The first held-out wine of each class, in an order that is not 0, 1, 2.
    picks = [int(next(i for i, y in enumerate(y_held) if y == c)) for c in (2, 0, 1)]
    common.write_examples(
        SAMPLE,
        [instance(x_held[i], data["features"]) for i in picks],
        {"classes": [names[int(y_held[i])] for i in picks], "held_out_positions": picks},
    )


def summary(metrics: dict[str, Any]) -> str:
    return (f"held-out accuracy {metrics['held_out_accuracy']:.3f} on {metrics['held_out_size']} wines "
            f"(trained in {metrics['train_seconds']} s)")


def main(argv: Sequence[str] | None = None) -> common.Prepared:
    result = common.run(
        __doc__.splitlines()[0], SAMPLE,
        inputs=[NET, Path(__file__)],
        values={"class_names": class_names(), "threads": THREADS,
                **common.library_versions("torch", "scikit-learn", "numpy")},
        build=build, summary=summary, argv=argv,
    )
    if not result.skipped or not common.has_examples(SAMPLE):
        write_examples()
    return result


if __name__ == "__main__":
    main()
