"""image-classification: eager module + state_dict, TorchScript, and a Hugging Face ViT folder.

Expected scores come from the same weights fed images preprocessed here independently (numpy, one at a time).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from handler_support import Call, model_source, raw, tensor, v1, v2
from PIL import Image

NET = """
import torch
from torch import nn


class TinyConvNet(nn.Module):
    def __init__(self, channels=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.conv(x).relu().mean(dim=(2, 3)))


class Unused(nn.Module):
    pass
"""
NAMES = ["cat", "dog", "fish"]
OPTIONS = {"image_size": [8, 10], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "output": "scores"}


def picture(seed: int, size: tuple[int, int] = (23, 17), kind: str = "PNG") -> bytes:
    """A small image of random-looking pixels, encoded (width, height = size)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=kind)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prepared(data: bytes, size=(8, 10), mean=OPTIONS["mean"], std=OPTIONS["std"], mode="RGB") -> torch.Tensor:
    image = Image.open(io.BytesIO(data)).convert(mode).resize((size[1], size[0]), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32).reshape(size[0], size[1], -1) / 255.0
    array = (array - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)


@pytest.fixture(scope="module")
def eager(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("net")
    module = model_source(folder / "net.py", NET)
    torch.manual_seed(3)
    net = module.TinyConvNet().eval()
    torch.save(net.state_dict(), folder / "weights.pt")
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    torch.manual_seed(4)
    gray = module.TinyConvNet(channels=1).eval()
    torch.jit.script(gray).save(str(folder / "gray.pt"))
    return {"folder": folder, "net": net, "gray": gray}


def probabilities(model, batch: list[torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(x.unsqueeze(0)).softmax(-1) for x in batch])


def assert_scores(prediction, expected: torch.Tensor, names=NAMES) -> None:
    assert prediction["label"] == names[int(expected.argmax())]
    assert list(prediction["scores"]) == names
    assert list(prediction["scores"].values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_eager_model_serves_every_instance_form_and_answers_bad_images_400(archive, eager):
    folder = eager["folder"]
    served = archive(
        "image-classification",
        folder / "weights.pt",
        model_file=folder / "net.py",
        model_class="TinyConvNet",
        class_names=NAMES,
        options=OPTIONS,
    )
    images = [picture(i, kind="PNG" if i % 2 else "JPEG") for i in range(6)]
    answers = served.batch(
        v1([b64(images[0]), {"data": b64(images[1])}, {"b64": b64(images[2])}]),
        v1([{"image_bytes": {"b64": b64(images[3])}}, "data:image/png;base64," + b64(images[4])]),
        v1(["not base64 at all!"]),
        raw(images[5], "image/jpeg"),
        v1([b64(b"plain text, not an image")]),
        v1([{"data": 7}]),
        raw(b"\x89PNG broken", "image/png"),
    )
    assert [a.status for a in answers] == [200, 200, 400, 200, 400, 400, 400]
    assert answers[2].body["error"].startswith("instance 0: the image is not valid base64")
    assert answers[4].body["error"].startswith("instance 0: cannot decode the image: cannot identify image file")
    assert answers[5].body["error"].startswith('instance 0: expected a base64 image: a string, {"data": b64}')
    assert answers[6].body["error"].startswith("cannot decode the image")
    expected = probabilities(eager["net"], [prepared(image) for image in images])
    got = [*answers[0].body["predictions"], *answers[1].body["predictions"], answers[3].body]
    for prediction, row in zip(got, expected, strict=True):
        assert_scores(prediction, row)


def test_explain_and_top_k(archive, eager):
    folder = eager["folder"]
    options = {**OPTIONS, "output": None, "top_k": 2}
    served = archive(
        "image-classification",
        folder / "weights.safetensors",
        model_file=folder / "net.py",
        model_class="TinyConvNet",
        options=options,
    )
    images = [picture(10), picture(11, size=(5, 40))]
    expected = probabilities(eager["net"], [prepared(image) for image in images])
    answers = served.batch(v1([b64(images[0])], explain=True), v1([b64(images[1])]))
    [explanation] = answers[0].body["explanations"]
    assert list(explanation) == ["0", "1", "2"]
    assert list(explanation.values()) == pytest.approx(expected[0].tolist(), abs=1e-5)
    [top] = answers[1].body["predictions"]
    order = expected[1].argsort(descending=True)[:2].tolist()
    assert [entry["label"] for entry in top] == order
    assert [entry["score"] for entry in top] == pytest.approx(expected[1][order].tolist(), abs=1e-5)


def test_torchscript_grayscale_model(archive, eager):
    served = archive(
        "image-classification",
        eager["folder"] / "gray.pt",
        options={"grayscale": True, "image_size": 12, "mean": 0.5, "std": 0.5},
    )
    images = [picture(20), picture(21, kind="JPEG")]
    expected = probabilities(eager["gray"], [prepared(i, (12, 12), [0.5], [0.5], mode="L") for i in images])
    answer = served.one(v1([b64(image) for image in images]))
    assert answer.body == {"predictions": expected.argmax(-1).tolist()}


def test_a_model_file_with_several_modules_needs_model_class(archive, eager):
    folder = eager["folder"]
    with pytest.raises(ValueError, match=r"exactly one nn.Module subclass \(found: TinyConvNet, Unused\)"):
        archive("image-classification", folder / "weights.pt", model_file=folder / "net.py")


def test_a_state_dict_without_its_model_file_is_named_as_such(archive, eager):
    with pytest.raises(ValueError, match="weights.pt is not a TorchScript file"):
        archive("image-classification", eager["folder"] / "weights.pt")


@pytest.fixture(scope="module")
def vit(tmp_path_factory) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path_factory.mktemp("vit")
    torch.manual_seed(5)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=3,
        id2label=dict(enumerate(NAMES)),
        label2id={name: i for i, name in enumerate(NAMES)},
    )
    ViTForImageClassification(config).eval().save_pretrained(str(folder))
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(folder))
    return folder


def test_hugging_face_image_model_uses_its_own_processor_and_names(archive, vit):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    served = archive("image-classification", vit, options={"output": "scores"})
    images = [picture(30), picture(31, size=(64, 48), kind="JPEG")]
    processor = AutoImageProcessor.from_pretrained(str(vit))
    model = AutoModelForImageClassification.from_pretrained(str(vit)).eval()
    with torch.inference_mode():
        expected = [
            model(**processor(images=Image.open(io.BytesIO(i)).convert("RGB"), return_tensors="pt"))
            .logits[0]
            .softmax(-1)
            for i in images
        ]
    answers = served.batch(v1([b64(images[0])]), v1(["%%%"]), raw(images[1], "image/jpeg"))
    assert [a.status for a in answers] == [200, 400, 200]
    assert_scores(answers[0].body["predictions"][0], expected[0])
    assert_scores(answers[2].body, expected[1])


def test_v2_takes_base64_bytes_or_binary_images_and_answers_labels(archive, eager):
    from tritonclient.http import InferenceServerClient, InferInput

    folder = eager["folder"]
    options = {**OPTIONS, "output": None}
    served = archive(
        "image-classification",
        folder / "weights.pt",
        model_file=folder / "net.py",
        model_class="TinyConvNet",
        class_names=NAMES,
        options=options,
    )
    images = [picture(20 + i) for i in range(3)]
    binary = InferInput("image", [2], "BYTES")
    binary.set_data_from_numpy(np.array(images[1:], dtype=np.object_))  # the raw PNG bytes, tritonclient's way
    body, length = InferenceServerClient.generate_request_body([binary])
    answers = served.batch(
        v2([tensor("image", [1], "BYTES", [b64(images[0])])]),
        Call(body, "", {"explain": "False", "Inference-Header-Content-Length": str(length)}),
        v2([tensor("image", [1], "BYTES", ["not base64!"])]),
        v2([tensor("image", [1, 1], "BYTES", [b64(images[0])])]),
    )
    assert [a.status for a in answers] == [200, 200, 400, 400]
    expected = probabilities(eager["net"], [prepared(image) for image in images])
    labels = [NAMES[int(row.argmax())] for row in expected]
    assert answers[0].body["outputs"] == [{"name": "output-0", "shape": [1], "datatype": "BYTES", "data": labels[:1]}]
    assert answers[1].body["outputs"][0]["data"] == labels[1:]
    assert answers[2].body["error"].startswith("input 'image': instance 0: the image is not valid base64")
    assert answers[3].body["error"] == (
        "input 'image': shape [1, 1], expected [N] (one base64 PNG/JPEG per image, or its bytes as binary data)"
    )
