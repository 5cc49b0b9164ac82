"""The digits classifier: a small CNN for 8x8 grayscale images, input [N, 1, 8, 8] normalised, output 10 logits.

This file travels in the archive as the model_file: TorchServe's loader wants exactly one nn.Module class in it,
constructible without arguments, whose state_dict is model/weights.pt.
"""

from torch import Tensor, nn


class DigitNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
