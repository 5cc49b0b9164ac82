"""The wine classifier: a small MLP over the 13 standardised measurements, output 3 logits (one per cultivar).

Copied into model/ by prepare.py; the custom handler loads it with the handler package's load_torch_model (exactly
one nn.Module class here, constructible without arguments, whose state_dict is model/weights.pt).
"""

from torch import Tensor, nn


class WineNet(nn.Module):
    def __init__(self, features: int = 13, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
